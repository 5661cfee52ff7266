"""patch(): every (layer, position) cell against the oracle copying the source prompt's own stream in the slow way;
the pronoun pair; patch: in a scenario; refusals."""
import json

import numpy as np
import pytest

import scenario_oracle
from assocmem.errors import InputError
from assocmem.patching import patch
from assocmem.scenario import PatchSpec, load_scenario
from conftest import ROOT, write

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"

UNEVEN = """
name: uneven
relations: [a = b, c = d]
model:
  dim: 64
  temperature: 0.2
  pipeline:
    - layer: [feedback, {context: {values: tokens}}]
    - {assoc: {positions: before_last}}
    - {context: {positions: last, values: tokens}}
    - {mlp: {positions: last}}
prompts:
  - {text: "a x c a ?", name: long, expect: b, candidates: [b, d]}
  - {text: "c x a ?", name: short, expect: d, candidates: [b, d]}
patch:
  - {from: long, to: short, layers: [1, 3], positions: [0, 2, 3]}
  - {from: 2, to: 1}
"""


@pytest.mark.parametrize("which", ["pronoun", "uneven"])
def test_every_cell_matches_the_oracle_patching_the_slow_way(which, tmp_path, backend):
    sc = load_scenario(PRONOUN if which == "pronoun" else write(tmp_path, "u.yaml", UNEVEN))
    specs = [PatchSpec("1", "2"), PatchSpec("2", "1")] if which == "pronoun" else None
    result = patch(sc, specs, seeds=2, backend=backend)
    model = sc.model
    for pair in result.pairs:
        for s, seed in enumerate(result.seeds):
            _, source = scenario_oracle.margin(sc, model, pair.from_prompt, seed)
            clean, _ = scenario_oracle.margin(sc, model, pair.to_prompt, seed)
            np.testing.assert_allclose(pair.clean[s], clean, rtol=1e-9, atol=1e-12)
            want_source, _ = scenario_oracle.margin(sc, model, pair.from_prompt, seed, read_as=pair.to_prompt)
            np.testing.assert_allclose(pair.source[s], want_source, rtol=1e-9, atol=1e-12)
            for a, l in enumerate(pair.layers):
                for b, i in enumerate(pair.positions):
                    want, _ = scenario_oracle.margin(sc, model, pair.to_prompt, seed,
                                                     patch={l - 1: {i: source.streams[l - 1][i]}})
                    np.testing.assert_allclose(pair.grid[s, a, b], want, rtol=1e-9, atol=1e-12, err_msg=f"{l}, {i}")
    if which == "uneven":  # the scenario's own patch: entries, layers and positions as written or all
        assert (result.pairs[0].layers, result.pairs[0].positions) == ([1, 3], [0, 2, 3])
        assert (result.pairs[1].layers, result.pairs[1].positions) == ([1, 2, 3, 4], [0, 1, 2, 3])


def test_the_pronoun_pair_flips_where_the_adjective_is_and_then_where_the_cloze_is():
    pair = patch(PRONOUN, [PatchSpec("1", "2")]).pairs[0]
    grid = pair.grid[0]
    assert pair.clean[0] > 0.4 and pair.source[0] < -0.4
    assert grid[0, 6] < 0 and grid[1, 8] < 0        # ВКУСНАЯ before layer 1; the cloze before layer 2
    flipped = {(l, i) for l in range(2) for i in range(9) if grid[l, i] < 0}
    assert flipped == {(0, 6), (1, 8)}
    np.testing.assert_allclose(grid[1, :8], pair.clean[0], rtol=1e-12)  # nothing else reads them after layer 1
    data = json.loads(json.dumps(patch(PRONOUN, [PatchSpec("1", "2")]).to_dict()))
    assert data["pairs"][0]["flips"][0][6] == 1.0


@pytest.mark.parametrize("spec, message", [
    (PatchSpec("7", "1"), "'7' is not a prompt"),
    (PatchSpec("1", "МАША ЕСТ"), "is not a prompt"),
    (PatchSpec("1", "2", layers=(3,)), "layers 1 to 2"),
    (PatchSpec("1", "2", layers=(0,)), "layers 1 to 2"),
    (PatchSpec("1", "2", positions=(9,)), "share positions 0 to 8"),
    (PatchSpec("1", "2", positions=(10**12,)), "share positions 0 to 8"),
])
def test_a_bad_patch_is_one_clear_error(spec, message):
    with pytest.raises(InputError, match=message):
        patch(PRONOUN, [spec])


def test_a_scenario_without_patch_entries_says_what_to_give():
    with pytest.raises(InputError, match="nothing to patch"):
        patch(PRONOUN)


@pytest.mark.parametrize("entry, message", [
    ("patch: 3", "non-empty list"), ("patch: [{from: 1}]", "has no to"), ("patch: [{from: 1, to: 2, layers: [0]}]",
                                                                           "whole numbers from 1"),
    ("patch: [{from: 1, to: 2, positions: [-1]}]", "whole numbers from 0"), ("patch: [{frm: 1, to: 2}]", "did you mean"),
    ("patch: [{from: 1, to: 9}]", "'9' is not a prompt"),
])
def test_a_bad_patch_entry_names_its_line(tmp_path, entry, message):
    text = "relations: [a = b]\nprompts:\n  - {text: \"a ?\", expect: b}\n  - {text: \"b ?\", expect: a}\n" + entry + "\n"
    with pytest.raises(InputError, match=message) as err:
        sc = load_scenario(write(tmp_path, "p.yaml", text))
        patch(sc)
    assert ":5:" in str(err.value)


@pytest.mark.parametrize("ref, message", [
    ("²", "'²' is not a prompt"),               # a digit to str.isdigit, not to int()
    ("9" * 5000, "is not a prompt"),             # past int()'s digit limit
    ("#3", "'#3' is not a prompt"),              # #N: the number alone, and there are 2
])
def test_a_selector_that_is_no_number_python_reads_is_one_clear_error(ref, message):
    with pytest.raises(InputError, match=message) as err:
        patch(PRONOUN, [PatchSpec(ref, "2")])
    assert len(str(err.value)) < 300


def test_a_selector_naming_two_prompts_is_refused_and_the_number_picks_one(tmp_path):
    text = ("relations: [a = b]\nprompts:\n  - {text: \"a ?\", expect: b}\n  - {text: \"b ?\", name: \"1\", expect: a}\n"
            "  - {text: \"a ?\", name: dup, expect: b, candidates: [a, b]}\n  - {text: \"b a ?\", name: dup, expect: b}\n")
    sc = load_scenario(write(tmp_path, "d.yaml", text))
    for ref, message in (("1", r"'1' matches 2 prompts: 1: 'a \?' \(its number\); 2: '1' \(its name\)"),
                         ("dup", "'dup' matches 2 prompts: 3: 'dup' .* 4: 'dup'"),
                         ("a ?", r"'a \?' matches 2 prompts: 1: 'a \?' \(its text\); 3: 'dup' \(its text\).*'#1' or '3'")):
        with pytest.raises(InputError, match=message):
            patch(sc, [PatchSpec(ref, "4")])
    pairs = patch(sc, [PatchSpec("#1", "2", (1,), (0,)), PatchSpec("3", "#4", (1,), (0,))]).pairs
    assert [(p.from_prompt, p.to_prompt) for p in pairs] == [(sc.prompts[0], sc.prompts[1]), (sc.prompts[2], sc.prompts[3])]


def test_a_single_candidate_prompt_is_refused_as_a_patch_target(tmp_path):
    text = ("relations: [a = b, x = x]\nprompts:\n  - {text: \"a ?\", expect: b, candidates: [b]}\n"
            "  - {text: \"b ?\", expect: a}\n  - {text: \"x ?\", expect: x, name: vocab}\n"
            "patch:\n  - {from: 2, to: 1}\n")
    sc = load_scenario(write(tmp_path, "s.yaml", text))
    with pytest.raises(InputError, match=r":7: prompt 'a \?' has a single candidate, so no margin to patch"):
        patch(sc)
    one = load_scenario(write(tmp_path, "v.yaml", "relations: [x = x]\nprompts:\n  - {text: \"x ?\", expect: x}\n"))
    with pytest.raises(InputError, match=r"'x \?' has a single candidate"):  # the vocabulary less `?` is x alone
        patch(one, [PatchSpec("1", "1")])
    assert patch(sc, [PatchSpec("1", "2")]).pairs[0].grid.shape == (1, 2, 2)  # from one: fine


@pytest.mark.parametrize("entry, layers, positions", [
    ("positions: 0-1", None, (0, 1)), ("positions: \"0-1,0\"", None, (0, 1, 0)), ("positions: [1, 0-1]", None, (1, 0, 1)),
    ("layers: 1-2, positions: 1", (1, 2), (1,)), ("layers: \"2\"", (2,), None),
])
def test_a_patch_entry_takes_ranges_as_the_command_line_does(tmp_path, entry, layers, positions):
    text = ("relations: [a = b]\nprompts:\n  - {text: \"a ?\", expect: b}\n  - {text: \"b ?\", expect: a}\n"
            f"patch: [{{from: 1, to: 2, {entry}}}]\n")
    spec = load_scenario(write(tmp_path, "p.yaml", text)).patches[0]
    assert (spec.layers, spec.positions) == (layers, positions)


@pytest.mark.parametrize("entry, message", [
    ("positions: 5-2", "'5-2' is not a range of numbers from 0"), ("layers: 0-1", "'0-1' is not a range of numbers from 1"),
    ("positions: 0-99999999", "'0-99999999' goes past 10"), ("positions: x", "numbers from 0 or ranges like 0-8"),
    ("layers: [1, 2000000]", "layers: '2000000' goes past 10"), ("layers: [1, true]", "whole numbers from 1 or ranges like 1-9, got 'true'"),
    ("positions: \"²\"", "numbers from 0 or ranges"), ("positions: [0-999999, 0-999999]", "more than a million"),
    ("positions: [0, 1.5]", "whole numbers from 0 or ranges like 0-8, got '1.5'"),
    ("positions: [0, \"1-2000000\"]", "'1-2000000' goes past 10"),
])
def test_a_bad_range_in_a_patch_entry_names_its_line(tmp_path, entry, message):
    text = ("relations: [a = b]\nprompts:\n  - {text: \"a ?\", expect: b}\n  - {text: \"b ?\", expect: a}\n"
            f"patch:\n  - {{from: 1, to: 2, {entry}}}\n")
    with pytest.raises(InputError, match=message) as err:
        load_scenario(write(tmp_path, "p.yaml", text))
    assert ":6:" in str(err.value)
