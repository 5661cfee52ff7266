"""The command behaves as command-line tools do: --version, -h everywhere, plain flags, --debug anywhere, the
terminal's width, progress on stderr."""
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from conftest import ROOT, cli, cli_in_process

COMMANDS = ([], ["run"], ["sweep"], ["graph"], ["bench"])


def test_version_is_the_package_metadata():
    r = cli_in_process("--version")
    assert r.returncode == 0 and r.stdout == f"assocmem {version('assocmem')}\n"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "assocmem")
def test_h_is_help_everywhere_and_flags_have_no_metavar(command):
    short, long = cli_in_process(*command, "-h"), cli_in_process(*command, "--help")
    assert short.returncode == 0 and short.stdout == long.stdout and "Usage: assocmem" in short.stdout
    assert "<bool>" not in short.stdout
    flags = {"run": ["--json", "--all-positions", "--summary"], "sweep": ["--json"], "graph": ["--json"],
             "bench": ["--json", "--quick"]}.get(command[0] if command else "", ["--debug", "--version"])
    for name in flags:
        assert re.search(rf"^  {name} {{2,}}[A-Z]", short.stdout, re.M), name  # the name, then its help at once


def test_debug_is_accepted_after_the_command_too():
    quiet = cli_in_process("run", "nowhere.yaml")
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1
    for args in (["--debug", "run", "nowhere.yaml"], ["run", "nowhere.yaml", "--debug"]):
        r = cli(*args)
        # the traceback instead of one line, and still the status of bad input, not 1 (an expectation failed)
        assert r.returncode == 2 and "Traceback" in r.stderr and "InputError" in r.stderr, args
    r = cli_in_process("run", "--", "--debug")  # after `--` it is a file name
    assert r.returncode == 2 and "--debug: file not found" in r.stderr


@pytest.mark.parametrize("columns, width", [("0", 80), ("1", 80), ("19", 80), ("abc", 80), ("99999999999999999999", 80),
                                            ("5000", 1000)])
def test_a_columns_out_of_range_is_not_obeyed(columns, width):
    """COLUMNS=0 once printed nothing at all, 1 a column of single characters, 10^20 an internal error."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS=columns)
    r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", "scenarios/pronoun.yaml"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    rules = [line for line in r.stdout.splitlines() if "variant model" in line]
    assert len(rules) == 1 and len(rules[0]) == width and "PASS" in r.stdout


@pytest.mark.parametrize("columns", [80, 132])
def test_output_width_follows_columns_when_piped(columns):
    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS=str(columns))
    r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", "scenarios/long_context.yaml"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rules = [line for line in r.stdout.splitlines() if "variant default" in line]
    assert len(rules[0]) == columns and max(map(len, r.stdout.splitlines())) <= columns


def test_bench_shows_a_progress_line_per_part():
    r = cli("bench", "--quick", "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["assocmem bench: part 1 of 5, recipe", "assocmem bench: part 2 of 5, long prompts",
                                     "assocmem bench: part 3 of 5, static read",
                                     "assocmem bench: part 4 of 5, feedback scan", "assocmem bench: part 5 of 5, sweep"]


def test_top_must_be_positive_and_summary_is_short():
    r = cli_in_process("run", "scenarios/pronoun.yaml", "--top", "0")
    assert r.returncode == 2 and "--top must be 1 or more, got 0" in r.stderr
    r = cli_in_process("run", "scenarios/pronoun.yaml", "--summary")
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 1 + 2 + 2  # header, 2 prompts, a blank line, the verdict


def test_plot_names_each_file_as_it_is_written(tmp_path):
    """On stdout before the tables, or on stderr beside --json, whose stdout stays one JSON object."""
    import json

    text = cli_in_process("run", "scenarios/pronoun.yaml", "--plot", tmp_path / "a")
    files = sorted((tmp_path / "a").iterdir())
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and len(files) == 2 * 3  # 2 prompts x (vocabulary lens, lens, context map)
    assert sorted(lines[:len(files)]) == [f"wrote {f}" for f in files] and lines[len(files)].startswith("pronoun")
    js = cli_in_process("run", "scenarios/pronoun.yaml", "--plot", tmp_path / "b", "--json")
    assert js.returncode == 0 and js.stderr.count("wrote ") == len(files)
    assert len(json.loads(js.stdout)["files"]) == len(files)


def test_a_reader_that_stops_during_plot_ends_it_quietly(tmp_path):
    """`run --plot DIR | head -1`: the reader goes away while files are still being named: 141, no message, no
    temporary file left."""
    p = subprocess.Popen([sys.executable, "-m", "assocmem.cli", "run", "scenarios/long_context.yaml", "--plot",
                          str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=300) == 141 and first.startswith(b"wrote ")
    assert p.stderr.read() == b"" and not list((tmp_path / "out").glob("*.part"))


def test_prompt_names_are_shown_as_written(tmp_path):
    from cases import MARKUP_SCENARIO
    from conftest import write

    path = write(tmp_path, "s.yaml", MARKUP_SCENARIO)
    for args in ([], ["--summary"]):
        r = cli_in_process("run", path, *args)
        assert r.returncode in (0, 1) and "[red]named $x^2$" in r.stdout, args
