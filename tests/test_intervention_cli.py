"""The commands of issue 14 as a user types them: --ablate on run and sweep, attribute, patch and run --save on every
shipped scenario (strict JSON), their tables and pictures, and hostile input as one line and exit 2."""
import json

import pytest
from PIL import Image

from conftest import ROOT, cli_in_process, write

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
CHALLENGE = sorted((ROOT / "scenarios" / "challenge").glob("*.yaml"))
PRONOUN = ROOT / "scenarios" / "pronoun.yaml"


def strict_json(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_command_works_on_every_shipped_scenario(path, tmp_path):
    plain = strict_json(cli_in_process("run", path, "--json").stdout)["variants"][0]
    to = max(j for j, p in enumerate(plain["prompts"], 1) if p["expect"] is not None)
    # a position where some prompt has one before its last (successor's prompts are single tokens), and a rule
    where = "position:0" if any(len(p["tokens"]) > 1 for p in plain["prompts"]) else "concept:" + plain["vocabulary"][0]
    specs = [where, "layer:1"] + (["rule:" + plain["memory"][0]["source"]] if plain["memory"] else [])  # induction: none
    out = cli_in_process("run", path, *(a for spec in specs for a in ("--ablate", spec)), "--json", "--save",
                         tmp_path / "t.npz")
    assert out.returncode in (0, 1), out.stderr
    data = strict_json(out.stdout)
    assert all([a["spec"] for a in v["ablated"]] == specs for v in data["variants"])
    assert all("margin_unablated" in p for v in data["variants"] for p in v["prompts"])
    out = cli_in_process("sweep", path, "--seeds", "2", "--ablate", "layer:1", "--json")
    assert out.returncode == 0, out.stderr
    assert "accuracy_unablated" in strict_json(out.stdout)["cells"][0]
    out = cli_in_process("attribute", path, "--json", "--dim", "64", "--plot", tmp_path)
    assert out.returncode == 0, out.stderr
    data = strict_json(out.stdout)
    assert all(p["units"] for v in data["variants"] for p in v["prompts"])
    assert any(f.endswith("-attribution.png") for f in data["files"])
    out = cli_in_process("patch", path, "--from", "1", "--to", to, "--dim", "64", "--layer", "1", "--json",
                         "--plot", tmp_path)
    assert out.returncode == 0, out.stderr
    data = strict_json(out.stdout)
    pair = data["pairs"][0]
    assert len(pair["grid_mean"]) == 1 and len(pair["grid_mean"][0]) == len(pair["positions"])
    for png in tmp_path.glob("*.png"):  # the bar charts and the heatmap are whole PNGs
        with Image.open(png) as im:
            im.verify()
    assert any(f.endswith("-patch1.png") for f in data["files"])


@pytest.mark.parametrize("path", CHALLENGE, ids=lambda p: p.stem)
def test_ablation_and_patching_work_on_every_challenge_file(path):
    out = cli_in_process("run", path, "--ablate", "position:0", "--dim", "64", "--json")
    assert out.returncode in (0, 1), out.stderr
    strict_json(out.stdout)
    prompts = strict_json(out.stdout)["variants"][0]["prompts"]
    to = next(j for j, p in enumerate(prompts, 1) if p["expect"] is not None)
    out = cli_in_process("patch", path, "--from", to, "--to", to, "--dim", "64", "--layer", "1", "--positions", "0",
                         "--json")
    assert out.returncode == 0, out.stderr
    pair = strict_json(out.stdout)["pairs"][0]
    assert pair["grid_mean"][0][0] == pytest.approx(pair["margin_clean"])  # a prompt patched from itself


def test_run_says_what_was_ablated_and_prints_both_margins():
    out = cli_in_process("run", "scenarios/pronoun.yaml", "--ablate", "rule:graphs/pronoun.yaml:4")  # as typed in ROOT
    assert out.returncode == 1  # the ablated model fails the first prompt
    assert "ablated: rule ВКУСНАЯ = КАШУ (graphs/pronoun.yaml:4)" in out.stdout
    assert "FAIL  expect КАШУ: winner МАША, margin -0.026 (unablated +0.503)" in out.stdout
    sweep = cli_in_process("sweep", PRONOUN, "--seeds", "3", "--ablate", "position:ВКУСНАЯ")
    assert "ablated: every position of the token ВКУСНАЯ" in sweep.stdout and "unablated mean margin" in sweep.stdout


def test_attribute_and_patch_print_their_tables():
    out = cli_in_process("attribute", PRONOUN, "--top", "3")
    assert out.returncode == 0
    assert "ВКУСНАЯ@6" in out.stdout and "graphs/pronoun.yaml:4" in out.stdout and "13 more" in out.stdout
    out = cli_in_process("patch", PRONOUN, "--from", "1", "--to", "2")
    assert "6:ГОЛОДНАЯ←ВКУСНАЯ" in out.stdout and "-0.503" in out.stdout


def test_patch_runs_the_scenario_entries(tmp_path):
    text = PRONOUN.read_text(encoding="utf-8").replace("../graphs", str(ROOT / "graphs"))
    path = write(tmp_path, "p.yaml", text + "patch:\n  - {from: 1, to: 2, layers: [2], positions: [8]}\n")
    data = strict_json(cli_in_process("patch", path, "--json").stdout)
    assert data["pairs"][0]["layers"] == [2] and data["pairs"][0]["grid_mean"][0][0] < 0


@pytest.mark.parametrize("args, message", [
    (["run", PRONOUN, "--ablate", "rule:graphs/pronoun.yaml:40"], "no relation on line 40"),
    (["run", PRONOUN, "--ablate", "layer:0"], "there is no layer 0"),
    (["run", PRONOUN, "--ablate", "layer:99"], "there is no layer 99"),
    (["run", PRONOUN, "--ablate", "position:9"], "position 9 is not before the last position"),
    (["run", PRONOUN, "--ablate", "position:КОТ"], "no prompt has the token 'КОТ'"),
    (["run", PRONOUN, "--ablate", "layer:" + "9" * 5000], "too long"),
    (["sweep", PRONOUN, "--ablate", "concept:Nope"], "no name 'Nope'"),
    (["attribute", PRONOUN, "--seeds", "0"], "--seeds must be between 1"),
    (["attribute", PRONOUN, "--seeds", "10000000"], "--seeds must be between 1"),
    (["attribute", PRONOUN, "--top", "0"], "--top must be 1 or more"),
    (["patch", PRONOUN], "nothing to patch"),
    (["patch", PRONOUN, "--from", "1"], "--from and --to go together"),
    (["patch", PRONOUN, "--from", "1", "--to", "3"], "'3' is not a prompt"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--layer", "0"], "'0' is not a range of numbers from 1"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--layer", "3"], "layers 1 to 2"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--positions", "5-2"], "is not a range"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--positions", "0-99999999"], "'0-99999999'"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--positions", "x"], "numbers from 0 or ranges"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--positions", "9"], "share positions 0 to 8"),
    (["patch", PRONOUN, "--from", "1", "--to", "2", "--variant", "plus"], "not a variant"),
])
def test_hostile_input_is_one_line_and_exit_2(args, message):
    out = cli_in_process(*args)
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (("run", "scenarios/pronoun.yaml", "--ablate", "position:٣"), "position"),   # an Arabic-Indic three is no number
    (("run", "scenarios/pronoun.yaml", "--ablate", "layer:１"), "layer"),         # nor a fullwidth one
    (("patch", "scenarios/pronoun.yaml", "--from", "1", "--to", "2", "--positions", "٣"), "--positions must be"),
    (("patch", "scenarios/pronoun.yaml", "--from", "1", "--to", "2", "--positions", "0-99999999"), "goes past 10^6"),
    (("patch", "scenarios/pronoun.yaml", "--from", "1", "--to", "2", "--layer", "x"), "ranges like 1-9"),
])
def test_numbers_are_ascii_digits_and_ranges_are_bounded(args, message):
    r = cli_in_process(*args)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


SINGLE = """
name: noexp
graph: {graph}
prompts:
  - text: МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ ОНА ?
  - {{name: single, text: "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ ОНА ?", expect: КАШУ, candidates: [КАШУ]}}
"""


def test_a_single_candidate_prompt_says_no_margin_instead_of_inf_and_nan(tmp_path):
    path = write(tmp_path, "noexp.yaml", SINGLE.format(graph=ROOT / "graphs" / "pronoun.yaml"))
    out = cli_in_process("attribute", path)
    assert out.returncode == 0 and out.stderr == ""
    assert "single: no margin: a single candidate" in " ".join(out.stdout.split())
    assert "inf" not in out.stdout and "nan" not in out.stdout
    out = cli_in_process("patch", path, "--from", "1", "--to", "2")
    assert out.returncode == 2 and "inf" not in out.stdout
    assert "'single' has a single candidate, so no margin to patch" in out.stderr and out.stderr.count("\n") == 1


AMBIGUOUS = """
name: ambiguous
graph: {graph}
prompts:
  - {{text: "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ ОНА ?", expect: КАШУ, candidates: [КАШУ, МАША]}}
  - {{name: "1", text: "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ГОЛОДНАЯ ОНА ?", expect: МАША, candidates: [КАШУ, МАША]}}
  - {{name: dup, text: "МАША ЕСТ КАШУ ?", expect: КАШУ, candidates: [КАШУ, МАША]}}
  - {{name: dup, text: "КАШУ ЕСТ МАША ?", expect: КАШУ, candidates: [КАШУ, МАША]}}
"""


@pytest.mark.parametrize("ref, message", [
    ("1", "--from '1' matches 2 prompts: 1: 'МАША"), ("1", "2: '1' (its name)"), ("1", "by its number: '#1' or '2'"),
    ("dup", "--from 'dup' matches 2 prompts"), ("dup", "by its number: '3' or '4'"),
])
def test_a_patch_selector_matching_several_prompts_is_refused_with_the_matches(tmp_path, ref, message):
    path = write(tmp_path, "a.yaml", AMBIGUOUS.format(graph=ROOT / "graphs" / "pronoun.yaml"))
    out = cli_in_process("patch", path, "--from", ref, "--to", "3", "--layer", "1", "--positions", "0")
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1
    chosen = strict_json(cli_in_process("patch", path, "--from", "#1", "--to", "2", "--json").stdout)["pairs"][0]
    assert chosen["from"].startswith("МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ") and chosen["to"] == "1"
