"""The real command in a subprocess: exit codes, tables, JSON, PNG files."""
import json
import os
import signal
import stat
import struct
import time
import subprocess
import sys

import pytest

from assocmem.backends.cupy_backend import CupyBackend
from assocmem.errors import InputError
from cases import BAD_SCENARIOS, GOOD_PROMPTS, HOSTILE_RUNS, HOSTILE_SCENARIOS, SPECIAL_GRAPH_FILES, STRICT_JSON_EDGES, MARKUP_SCENARIO, SPECIAL_OUTPUTS, COLLIDING_VARIANTS
from conftest import ROOT, cli, cli_in_process, write


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


def test_run_pronoun_prints_tables_and_passes():
    r = cli("run", "scenarios/pronoun.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in ("prompt 1: 0:МАША", "last position, layer by layer", "context(values=tokens, match=prefix",
                 "ВКУСНАЯ = КАШУ [graphs/pronoun.yaml:4]", "final logits at the last position",
                 "PASS  expect КАШУ: winner КАШУ", "PASS  expect МАША: winner МАША"):
        assert text in out, text
    assert "FAIL" not in out


def test_run_json_is_the_whole_trace():
    r = cli("run", "scenarios/pronoun.yaml", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    v = data["variants"][0]
    assert data["passed"] is True and v["model"]["dim"] == 1000
    p = v["prompts"][0]
    assert p["winner"] == "КАШУ" and p["margin"] > 0
    assert len(p["layers"]) == 2
    induction, memory = p["layers"][0]["stages"][0], p["layers"][1]["stages"][0]
    assert induction["attention"][-1][6] > 0.99  # ВКУСНАЯ@6, the token after the earlier ОНА
    assert memory["columns"][1] == "ВКУСНАЯ = КАШУ"
    assert abs(sum(memory["attention"][-1]) - 1) < 1e-9
    assert v["memory"][1]["source"].endswith("graphs/pronoun.yaml:4")


def test_run_induction_writes_heatmaps(tmp_path):
    r = cli("run", "scenarios/induction.yaml", "--plot", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 12 and not list((tmp_path / "out").glob("*.part"))  # 3 variants x (vocab lens, lens, stream, map)
    for f in files:
        assert f"wrote {f}" in r.stdout
        w, h = png_size(f)
        assert 200 < w < 1500 and 100 < h < 1200  # a one-row map (positions: last) is short
    w, h = png_size(tmp_path / "out/induction-minus_rmsnorm-p1-lens.png")
    assert h > 300  # 17 rows of layers


def test_all_positions_prints_every_position():
    r = cli("run", "scenarios/pronoun.yaml", "--all-positions")
    assert r.returncode == 0, r.stderr
    assert "layer 1, context(values=tokens, match=prefix, steps=3, hops=3, threshold=0.55, fallback=previous, last, T=0.012):" in r.stdout
    assert "layer 2, assoc(last): attention over the memory rows, row by position" in r.stdout
    assert "ВКУСНАЯ@6" in r.stdout


def test_sweep_min_accuracy_gates_the_exit_status(tmp_path):
    path = write(tmp_path, "s.yaml", "relations: [a = b, d = c]\nprompts:\n  - {text: 'a ?', expect: b, candidates: [b, c]}\n"
                                      "  - {text: 'a ?', expect: c, candidates: [b, c]}\n")  # the second one fails
    ok = cli("sweep", path, "--seeds", 3, "--json", "--min-accuracy", 0.5)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["accuracy"] == 0.5
    low = cli("sweep", path, "--seeds", 3, "--min-accuracy", 0.51)
    assert low.returncode == 1 and "accuracy 0.500 is below --min-accuracy 0.51" in low.stderr
    bad = cli("sweep", path, "--seeds", 3, "--min-accuracy", 2)
    assert bad.returncode == 2 and "--min-accuracy must be between 0 and 1" in bad.stderr


def test_pipeline_option_runs_a_built_in_recipe_instead():
    old = cli("run", "scenarios/pronoun.yaml", "--json", "--pipeline", "feedback10")
    assert old.returncode == 0, old.stderr
    assert len(json.loads(old.stdout)["variants"][0]["prompts"][0]["layers"]) == 11
    posts = cli("run", "scenarios/pronoun.yaml", "--json", "--pipeline", "posts")
    assert [l["label"] for l in json.loads(posts.stdout)["variants"][0]["prompts"][0]["layers"]][-1] == \
        "assoc(last, T=0.1) → context(last, T=0.1) → mlp(last, T=0.1)"
    bad = cli("sweep", "scenarios/pronoun.yaml", "--seeds", 1, "--pipeline", "feedbak10")
    assert bad.returncode == 2 and "--pipeline 'feedbak10' is not a built-in recipe (did you mean 'feedback10'?)" in bad.stderr


def test_failing_expectation_exits_1(tmp_path):
    path = write(tmp_path, "s.yaml", "tokenizer: chars\nmodel:\n  pipeline: [{feedback: {sign: plus, norm: none}}, "
                                     "{context: {positions: last, values: tokens}}]\nprompts:\n  - {text: ' ABCD ABCDABCE', expect: D}\n")
    r = cli("run", path)
    assert r.returncode == 1 and "FAIL  expect D" in r.stdout


@pytest.mark.parametrize("case, text, message, line", BAD_SCENARIOS[::3], ids=[c[0] for c in BAD_SCENARIOS[::3]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, text, message, line):
    path = write(tmp_path, "s.yaml", text)
    r = cli_in_process("run", path)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def one_line_exit_2(r, message):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("case, text, message, line", HOSTILE_SCENARIOS + HOSTILE_RUNS,
                         ids=[c[0] for c in HOSTILE_SCENARIOS + HOSTILE_RUNS])
def test_hostile_file_is_one_line_exit_2(tmp_path, case, text, message, line):
    path = write(tmp_path, "s.yaml", text)
    error = one_line_exit_2(cli_in_process("run", path), message)
    prefix = f"assocmem: error: {path}:{line}: "
    assert error.startswith(prefix)
    said = error[len(prefix):]
    assert "salt" not in said and "root" not in said and "2001" not in said  # a file's contents are never echoed


def make_special(path, kind):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path.with_name("h.yaml"))
        path.with_name("h.yaml").symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(path.with_name("nothing.yaml"))
    elif kind == "dir":
        path.mkdir()
    elif kind == "big":
        with open(path, "wb") as f:
            f.truncate(16 * 2**20 + 1)


@pytest.mark.parametrize("case, kind, message", SPECIAL_GRAPH_FILES, ids=[c[0] for c in SPECIAL_GRAPH_FILES])
def test_only_regular_files_are_read(tmp_path, case, kind, message):
    """As a scenario's graph, as the scenario itself, and for the graph command: refused, without blocking."""
    make_special(tmp_path / "g.yaml", kind)
    scenario = write(tmp_path, "s.yaml", "graph: g.yaml\n" + GOOD_PROMPTS)
    for args in (["run", scenario], ["run", tmp_path / "g.yaml"], ["graph", tmp_path / "g.yaml"]):
        assert f"{tmp_path / 'g.yaml'}: " in one_line_exit_2(cli(*args, timeout=20), message)


def test_a_device_is_not_read():
    one_line_exit_2(cli("run", "/dev/zero", timeout=20), "is a character device")


@pytest.mark.parametrize("args, message", [
    (["run", "nowhere.yaml"], "file not found"),
    (["run", "scenarios"], "is a directory"),
    (["run", "scenarios/pronoun.yaml", "--temperature", "0"], "temperature must be a positive number"),
    (["run", "scenarios/pronoun.yaml", "--dim", "0"], "dim must be between"),
    (["run", "scenarios/pronoun.yaml", "--dtype", "float16"], "--dtype"),
    (["sweep", "scenarios/pronoun.yaml", "--seeds", "0"], "--seeds"),
    (["sweep", "scenarios/pronoun.yaml", "--dims", "10,abc"], "comma-separated"),
    (["sweep", "scenarios/pronoun.yaml", "--seeds", "2", "--backend", "tpu"], "unknown backend 'tpu'"),
    (["sweep", "scenarios/pronoun.yaml", "--temperatures", "0.05,inf"], "positive and finite"),
    (["sweep", "scenarios/pronoun.yaml", "--temperatures", "nan"], "positive and finite"),
    (["run", "scenarios/pronoun.yaml", "--max-memory", "inf"], "--max-memory must be a positive number"),
    (["graph", "graphs/pronoun.yaml", "--dim", "0"], "dim must be between 1 and"),
    (["graph", "graphs/pronoun.yaml", "--temperature", "0"], "temperature must be a positive number"),
])
def test_bad_arguments_exit_2(args, message):
    r = cli_in_process(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""


def test_debug_shows_the_traceback():
    r = cli("--debug", "run", "nowhere.yaml")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_same_seed_gives_identical_output():
    a, b = cli("run", "scenarios/pronoun.yaml", "--json"), cli("run", "scenarios/pronoun.yaml", "--json")
    assert a.stdout == b.stdout
    c = cli("run", "scenarios/pronoun.yaml", "--json", "--seed", "1")
    assert c.stdout != a.stdout


def test_overflow_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, "s.yaml", "model:\n  dtype: float32\n  pipeline:\n    - feedback: {repeat: 3000, sign: plus, norm: none}\n"
                                     "prompts:\n  - text: " + " ".join("abcdefghijklmnopqrstuvwxyz0123") + "\n")
    r = cli("run", path)
    assert r.returncode == 2 and "stopped being finite" in r.stderr and "Traceback" not in r.stderr


def test_memory_budget_is_refused_with_the_need(tmp_path):
    path = write(tmp_path, "s.yaml", "prompts:\n  - text: " + " ".join(["a"] * 3000) + "\n")
    r = cli("run", path, "--max-memory", "0.01")
    assert r.returncode == 2 and "would need about" in r.stderr and "GiB" in r.stderr


def test_the_cli_file_runs_as_a_script():
    """assocmem/ on sys.path first (as `python assocmem/cli.py` puts it) must not shadow the standard library."""
    r = subprocess.run([sys.executable, "assocmem/cli.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "run" in r.stdout and "sweep" in r.stdout and "graph" in r.stdout


def test_cupy_without_cupy_or_gpu_is_one_line_exit_2():
    try:
        CupyBackend.load()
        pytest.skip("this machine has a working cupy backend")
    except InputError:
        pass
    r = cli("run", "scenarios/pronoun.yaml", "--backend", "cupy")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cupy backend" in r.stderr
    assert "Traceback" not in r.stderr


def test_graph_command_report_png_and_heatmap(tmp_path):
    r = cli("graph", "graphs/calendar.yaml", "--png", tmp_path / "g.png", "--heatmap", tmp_path / "h.png", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["relations"] == 12 and data["concepts"] == 19 and data["unused"] == ["День", "Месяц"]
    assert ["1", "10", "11", "12", "2", "3", "4", "5", "6", "7", "8", "9"] in data["components"]
    assert png_size(tmp_path / "g.png")[0] > 400 and png_size(tmp_path / "h.png")[0] > 400
    assert data["files"] == [str(tmp_path / "g.png"), str(tmp_path / "h.png")]


def test_graph_command_on_a_scenario_and_bad_input(tmp_path):
    r = cli("graph", "scenarios/pronoun.yaml")
    assert r.returncode == 0 and "crosstalk at dim 1000, seed 0" in r.stdout
    bad = write(tmp_path, "g.yaml", "relations:\n  - a => b\n")
    r = cli("graph", bad)
    assert r.returncode == 2 and "g.yaml:2:" in r.stderr and "Traceback" not in r.stderr


def strict_loads(text):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers (JavaScript's, Go's) do."""
    def refuse(name):
        raise ValueError(f"{name} in the JSON output")
    return json.loads(text, parse_constant=refuse)


SHIPPED = sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_json_of_every_shipped_scenario_parses_strictly(name):
    for args in (["run", f"scenarios/{name}", "--json"], ["sweep", f"scenarios/{name}", "--seeds", 2, "--json"],
                 ["graph", f"scenarios/{name}", "--json"]):
        r = cli_in_process(*args)
        assert r.returncode in (0, 1), (args, r.stderr[-2000:])
        strict_loads(r.stdout)


def test_json_of_the_graphs_and_the_bench_parses_strictly():
    for path in sorted((ROOT / "graphs").glob("*.yaml")):
        strict_loads(cli("graph", path, "--json").stdout)
    r = cli("bench", "--quick", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    strict_loads(r.stdout)


@pytest.mark.parametrize("case, text, args", STRICT_JSON_EDGES, ids=[c[0] for c in STRICT_JSON_EDGES])
def test_json_has_null_with_a_reason_instead_of_nan_or_infinity(tmp_path, case, text, args):
    r = cli_in_process(*args, write(tmp_path, "s.yaml", text), "--json")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    data = strict_loads(r.stdout)
    if args[0] == "run":
        p = data["variants"][0]["prompts"][0]
        assert p["passed"] is True and p["margin"] is None and "single candidate" in p["margin_note"]
        assert "no margin: a single candidate" in cli("run", tmp_path / "s.yaml").stdout
    elif case == "single-candidate-sweep":
        cell = data["cells"][0]
        assert cell["accuracy"] is not None and cell["prompts"][0]["mean_margin"] is None
        assert "single candidate" in cell["mean_margin_note"] and cell["mean_margin"] is not None
    else:
        assert data["accuracy"] is None and data["accuracy_note"]


@pytest.mark.parametrize("args, message", [
    (["run", "scenarios/pronoun.yaml", "--seed", "1.5"], "Invalid value for '--seed'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["run"], "Missing argument"),
    (["run", "scenarios/pronoun.yaml", "--nope"], "No such option: --nope"),
])
def test_option_errors_are_one_line_not_a_usage_box(args, message):
    error = one_line_exit_2(cli(*args), message)
    assert "╭" not in error and "--help" in error


def run_main(code: str, *args):
    """The real entry point, cli.main, with one piece of the library replaced first (to plant a fault)."""
    script = f"import sys\n{code}\nfrom assocmem.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_bug_is_one_line_and_exit_3_and_debug_shows_the_traceback():
    plant = "import assocmem.runs\ndef boom(*a, **k):\n    raise KeyError('planted')\nassocmem.runs.run = boom"
    r = run_main(plant, "run", "scenarios/pronoun.yaml")
    assert r.returncode == 3 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "internal error, a bug: KeyError: 'planted'" in r.stderr and "--debug" in r.stderr
    r = run_main(plant, "--debug", "run", "scenarios/pronoun.yaml")
    assert r.returncode == 3 and "Traceback" in r.stderr and "planted" in r.stderr  # the same status, and the traceback


def test_ctrl_c_exits_130():
    plant = "import assocmem.runs\ndef stop(*a, **k):\n    raise KeyboardInterrupt\nassocmem.runs.run = stop"
    r = run_main(plant, "run", "scenarios/pronoun.yaml")
    assert r.returncode == 130 and r.stderr.count("\n") <= 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["run", "scenarios/pronoun.yaml"], ["run", "scenarios/pronoun.yaml", "--json"],
                                  ["graph", "graphs/calendar.yaml"]])
def test_a_closed_pipe_ends_quietly(args):
    """`assocmem run ... | head -1`: the reader is gone before the output is written; no traceback, no exit 1."""
    p = subprocess.Popen([sys.executable, "-m", "assocmem.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    stderr = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and stderr == ""


def test_stdout_on_a_full_disk_is_one_line_exit_2():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", "scenarios/pronoun.yaml", "--json"], cwd=ROOT,
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "No space left on device" in r.stderr


def test_markup_mathtext_and_escapes_are_shown_as_written(tmp_path):
    path = write(tmp_path, "s.yaml", MARKUP_SCENARIO)
    for args in (["run", path], ["run", path, "--all-positions"], ["run", path, "--plot", tmp_path / "run"],
                 ["sweep", path, "--seeds", 2, "--plot", tmp_path / "sweep"], ["graph", path, "--png", tmp_path / "g.png"]):
        r = cli(*args)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr and r.stderr.count("\n") <= 1, (args, r.stderr)
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\u200b" not in r.stdout  # never raw
        if args[0] == "run":
            assert "[/oops] $\\foo$ \\x1b[31mred: an expectation failed" in r.stdout
            assert "x\\x1b[2J" in r.stdout and "\\u202eevil" in r.stdout and "\\u200b" in r.stdout
            assert "variant [bold]v (shown, not checked)" in r.stdout and "[bold] = a[/x]" in r.stdout
            assert "weights of \\u200b@" in r.stdout
    assert len(list((tmp_path / "run").glob("*.png"))) == 6 and (tmp_path / "g.png").stat().st_size > 1000


def test_an_ascii_terminal_gets_escapes_not_a_crash():
    env = dict(os.environ, PYTHONIOENCODING="ascii", COLUMNS="160")
    outputs = []
    for args, code in ((["run", "scenarios/pronoun.yaml"], 0), (["run", "nowhere/МАША.yaml"], 2)):
        r = subprocess.run([sys.executable, "-m", "assocmem.cli", *args], cwd=ROOT, capture_output=True, env=env,
                           timeout=120)
        assert r.returncode == code and b"Traceback" not in r.stderr, r.stderr
        assert max(r.stdout + r.stderr) < 128
        outputs.append(r.stdout + r.stderr)
    assert b"\\u041a\\u0410\\u0428\\u0423" in outputs[0] and b"\\u041c" in outputs[1]  # КАШУ, М as escapes


@pytest.mark.parametrize("case, kind, message", SPECIAL_OUTPUTS, ids=[c[0] for c in SPECIAL_OUTPUTS])
def test_a_png_replaces_only_a_regular_file(tmp_path, case, kind, message):
    target = tmp_path / "g.yaml"  # make_special's name; what stands there must still stand there after
    make_special(target, kind)
    before = os.lstat(target)
    one_line_exit_2(cli("graph", "graphs/pronoun.yaml", "--png", target, timeout=60), message)
    assert os.lstat(target).st_mode == before.st_mode and not list(tmp_path.glob("*.part"))


def test_a_png_onto_a_device_is_refused():
    one_line_exit_2(cli("graph", "graphs/pronoun.yaml", "--png", "/dev/null"), "is a character device")


def test_colliding_variant_names_get_distinct_files_with_the_umask_mode(tmp_path):
    path = write(tmp_path, "s.yaml", COLLIDING_VARIANTS)
    r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", path, "--plot", tmp_path / "out"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o027))
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "out").iterdir())
    assert r.stdout.count("wrote ") == len(files) == 4 * 3  # 4 variants x (vocab lens, lens, one context map)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o640}  # 0666 less the umask, not mkstemp's 0600


def test_sigterm_while_drawing_leaves_no_temporary_file(tmp_path):
    plant = ("import time, matplotlib.figure\n"
             "def slow(self, f, **k):\n    f.write(b'partial')\n    f.flush()\n    time.sleep(60)\n"
             "matplotlib.figure.Figure.savefig = slow")
    script = f"import sys\n{plant}\nfrom assocmem.cli import main\nmain(sys.argv[1:])\n"
    p = subprocess.Popen([sys.executable, "-c", script, "graph", "graphs/pronoun.yaml", "--png", tmp_path / "g.png"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(tmp_path.glob("*.part")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("*.part")), "the planted savefig never started"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 143
    assert list(tmp_path.iterdir()) == []


def test_long_prompts_and_long_tokens_are_drawn_bounded(tmp_path):
    """--all-positions and --plot show a window, and say so, instead of growing with the prompt (a 10^4-token prompt
    was a MemoryError while drawing the table) or with a token (1 MB)."""
    long = write(tmp_path, "long.yaml", "prompts:\n  - text: " + " ".join(f"t{i}" for i in range(130)) + "\n")
    r = cli("run", long, "--all-positions", "--plot", tmp_path / "long")
    assert r.returncode == 0, r.stderr
    assert "│ t129@129 │" in r.stdout and "│ 0..128   │ (not updated)" in r.stdout  # one line a row, however long
    for f in (tmp_path / "long").glob("*.png"):
        assert max(png_size(f)) <= 1400, f  # 14 inches at 100 dpi at most
    big = write(tmp_path, "big.yaml", "prompts:\n  - text: a " + "x" * 1_000_000 + " b ?\n")
    r = cli("run", big, "--plot", tmp_path / "big")
    assert r.returncode == 0, r.stderr
    assert all(max(png_size(f)) < 4000 for f in (tmp_path / "big").glob("*.png"))


def test_sweep_plot_interrupted_before_a_cell_finished(tmp_path):
    plant = "import assocmem.sweeps\ndef stop(*a, **k):\n    raise KeyboardInterrupt\nassocmem.sweeps.run_cell = stop"
    r = run_main(plant, "sweep", "scenarios/pronoun.yaml", "--seeds", "2", "--plot", str(tmp_path / "out"))
    assert r.returncode == 130 and "Traceback" not in r.stderr and "interrupted" in r.stderr


def test_refusals_come_before_memory_runs_out(tmp_path):
    """Under a 1.5 GiB address-space limit (ulimit -v), a device, an alias bomb and aliases of a long string are
    still one line and exit 2: each is refused before anything is allocated in proportion to it."""
    import resource

    from cases import BILLION_LAUGHS

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**29, 3 * 2**29))

    long_string = [c for c in HOSTILE_SCENARIOS if c[0] == "alias-long-string"][0]
    for target, message in (("/dev/zero", "is a character device"),
                            (write(tmp_path, "bomb.yaml", BILLION_LAUGHS), "alias bomb"),
                            (write(tmp_path, "long.yaml", long_string[1]), long_string[2])):
        r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", target], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, preexec_fn=limit)
        one_line_exit_2(r, message)


def test_out_of_memory_suggests_only_options_the_command_has():
    plant = "import assocmem.crosstalk\ndef big(*a, **k):\n    raise MemoryError\nassocmem.crosstalk.graph_report = big"
    r = run_main(plant, "graph", "graphs/pronoun.yaml")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "out of memory" in r.stderr
    assert "--max-memory" not in r.stderr and "--dim" in r.stderr


def test_a_stream_that_overflows_is_one_line_without_numpy_warnings(tmp_path):
    """A temperature of 1e-300 under dot similarity divides by zero in float32: numpy's RuntimeWarning once came
    out as lines of its own before the one error."""
    path = write(tmp_path, "dot.yaml", "relations: [a = b, d = c]\nmodel: {similarity: dot, dtype: float32}\n"
                                       "prompts:\n  - {text: 'a ?', expect: b, candidates: [b, c]}\n")
    r = cli("run", path, "--temperature", "1e-300")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "stopped being finite" in r.stderr, r.stderr
