"""The `assocmem` command: parse arguments, call the library, print.  No math here."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from assocmem.budget import DEFAULT_MAX_MEMORY
from assocmem.engine import NumericalError
from assocmem.errors import InputError
from assocmem.model import DTYPES
from assocmem.outfile import check_target

# Plain click help (rich_markup_mode None): typer's rich help gives every flag a `<bool>` metavar, --help included.
commands = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                       help="A transformer wired by hand from one primitive: mem(q, K, V) = softmax(sim(q, K)/T) @ V.")
state = {"debug": False, "announced": set()}  # announced: the files already named as they were written


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich's own handler exits 1, the status that means an expectation failed; a closed pipe is not that."""
        _quiet_stdout()
        raise typer.Exit(BROKEN_PIPE)


# Widths outside this range are refused from COLUMNS: 0 made rich print nothing at all, 1 a column of single
# characters, and 10^20 an OverflowError; a terminal wider than the maximum gets the maximum.
NARROWEST, WIDEST = 20, 1000


def width() -> int:
    """The output's width: COLUMNS where it is a whole number from NARROWEST (at most WIDEST), else the terminal's
    (stdout's, or stdin's or stderr's when piped), else 80."""
    text = os.environ.get("COLUMNS", "").strip()
    if text.isascii() and text.isdigit() and len(text) < 10 and int(text) >= NARROWEST:
        return min(int(text), WIDEST)
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        try:
            return max(NARROWEST, min(os.get_terminal_size(stream.fileno()).columns, WIDEST))
        except (OSError, ValueError, AttributeError):
            continue
    return 80


def console(stderr: bool = False) -> Console:
    return _Console(highlight=False, soft_wrap=False, width=width(), stderr=stderr)


def fail(err: Exception) -> None:
    """One line on stderr and exit status 2; --debug shows the traceback instead."""
    if state["debug"]:
        raise err
    print(f"assocmem: error: {err}", file=sys.stderr)
    raise typer.Exit(2)


@contextmanager
def user_errors(memory_hint: str = "lower --max-memory so the batch runs in smaller passes, or lower dim"):
    """Bad input, a non-finite stage or an unwritable output: one line and exit 2, never a traceback.  memory_hint:
    what to try when memory runs out, in the options this command has."""
    try:
        yield
    except (InputError, NumericalError) as err:
        fail(err)
    except MemoryError as err:  # numpy's, and cupy's OutOfMemoryError, which derives from it
        fail(InputError(f"out of memory ({err})".replace(" ()", ""), hint=memory_hint))
    except OSError as err:
        fail(InputError(f"cannot read or write: {err.strerror}", err.filename))


def strict(value):
    """The data with no NaN or infinity left for a strict JSON parser: each becomes null, and in a mapping a
    `KEY_note` beside it says what it was (the reports give their own reason where they know one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k] = strict(v)
            if isinstance(v, float) and not math.isfinite(v):
                out.setdefault(f"{k}_note", f"not a finite number ({v})")
        return out
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def wrote(as_json: bool):
    """What to call as each picture is written: `wrote FILE` at once, on stdout (on stderr beside --json, whose
    stdout is one JSON object), so a long --plot shows its progress."""
    from assocmem.report import visible

    def say(path) -> None:
        state["announced"].add(str(path))
        try:
            print(f"wrote {visible(str(path))}", file=sys.stderr if as_json else sys.stdout, flush=True)
        except BrokenPipeError:  # `| head`: the reader is gone, so stop quietly, as emit() does
            _quiet_stdout()
            raise typer.Exit(BROKEN_PIPE) from None
    return say


def emit(data: dict, files, as_json: bool, print_tables) -> None:
    """JSON on stdout (strict: no NaN or Infinity), or the tables followed by where each file went that was not
    named as it was written (see wrote).  A reader that stopped reading (`| head`) ends the command quietly with
    141; stdout that cannot be written (a full disk) is one line and exit 2."""
    from assocmem.report import markup

    try:
        if as_json:
            data["files"] = [str(f) for f in files]
            print(json.dumps(strict(data), ensure_ascii=False, allow_nan=False))
        else:
            con = console()
            print_tables(con)
            for f in files:
                if str(f) not in state["announced"]:
                    con.print(f"wrote {markup(str(f))}")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        raise typer.Exit(BROKEN_PIPE) from None
    except OSError as err:
        _quiet_stdout()
        fail(InputError(f"cannot write the output: {err.strerror}", "stdout"))


def backend_option():
    return typer.Option("numpy", "--backend", help="numpy, cupy (needs CuPy and a GPU), or auto (cupy if it works).")


def pipeline_option():
    from assocmem.model import RECIPES

    return typer.Option(None, "--pipeline", help=f"Run every variant through a built-in recipe instead: "
                                                  f"{', '.join(RECIPES)}.")


def built_in_pipeline(name: str | None):
    """The layers of a built-in recipe by name (None: keep the scenario's)."""
    from assocmem.errors import did_you_mean
    from assocmem.model import RECIPES

    if name is None:
        return None
    if name not in RECIPES:
        raise InputError(f"--pipeline {name!r} is not a built-in recipe",
                         hint=did_you_mean(name, RECIPES) or "built-in recipes: " + ", ".join(RECIPES))
    return RECIPES[name]()


def ablate_option():
    return typer.Option(None, "--ablate", help="Leave something out, repeatable: rule:FILE:LINE or rule:RELATION, "
                                                "layer:N or layer:N.S, position:I or position:TOKEN, concept:NAME.")


def pick_backend(name: str):
    """The backend by name; auto's fallback note goes to stderr, so --json output stays clean."""
    from assocmem.backends import get_backend

    backend = get_backend(name)
    if backend.note:
        print(f"assocmem: {backend.note}", file=sys.stderr)
    return backend


# Interleaved rounds a bench figure may ask for: 1000 rounds of the full bench are hours already.
MAX_REPEATS = 1000
# bench --memory's batch: 2^17 prompts of 16 x 1000 float32 is an 8.4 GB stream (and the default recipe's copy)
MAX_MEMORY_PROMPTS = 2**17


def max_memory_option(help: str = "GiB one batched pass may use."):
    return typer.Option(DEFAULT_MAX_MEMORY / 2**30, "--max-memory", help=help)


def memory_bytes(gib: float) -> int:
    """--max-memory in bytes, refused unless positive and finite."""
    if not 0 < gib < math.inf:
        raise InputError(f"--max-memory must be a positive number of GiB, got {gib}")
    return int(gib * 2**30)


def flag(name: str, help: str):
    """A boolean option shown without a metavar."""
    return typer.Option(False, name, help=help, metavar="")


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        print(f"assocmem {version('assocmem')}")
        raise typer.Exit(0)


def checked_backend_name(name: str) -> str:
    from assocmem.backends import NAMES
    from assocmem.errors import did_you_mean

    if name not in NAMES:
        raise InputError(f"unknown backend {name!r}", hint=did_you_mean(name, NAMES) or f"use one of {', '.join(NAMES)}")
    return name


@commands.callback()
def global_options(debug: bool = flag("--debug", "Show tracebacks for errors (accepted before or after the command)."),
         version: bool = typer.Option(False, "--version", help="Print the version and exit.", metavar="",
                                      is_eager=True, callback=_version)) -> None:
    state["debug"] = state["debug"] or debug


@commands.command(short_help="Run a scenario's prompts and show every layer's weights.")
def run(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write each prompt's pictures (logit lens, attention maps) here."),
    as_json: bool = flag("--json", "Print the whole trace as JSON instead of tables."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the model's seed."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Override the model's dimension."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Override the model's temperature."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help=" or ".join(DTYPES) + f" (default {DTYPES[0]})."),
    all_positions: bool = flag("--all-positions", "Print the attention of every position."),
    top: int = typer.Option(5, "--top", help="Weights shown per attention row, largest first; the rest are summed."),
    summary: bool = flag("--summary", "One line per prompt: its name, PASS or FAIL, the margin and the winner."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write an interactive, self-contained HTML report here."),
    pipeline: Optional[str] = pipeline_option(),
    max_memory: float = max_memory_option("GiB one pass may use; prompts run in passes that fit."),
    backend: str = backend_option(),
    ablate: Optional[list[str]] = ablate_option(),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the trace to this .npz file (assocmem.load_trace reads it)."),
) -> None:
    """Run every prompt of a scenario; exit 0 if every checked expectation holds, 1 if one fails, 2 on bad input."""
    from assocmem.report import markup, print_result, print_summary
    from assocmem.runs import run as run_scenario
    from assocmem.scenario import load_scenario

    with user_errors():
        if dtype is not None and dtype not in DTYPES:
            raise InputError(f"--dtype must be {' or '.join(DTYPES)}, got {dtype!r}")
        memory = memory_bytes(max_memory)
        if top < 1:
            raise InputError(f"--top must be 1 or more, got {top}")
        if html is not None:  # refused before the run, not after it
            check_target(html, "an HTML report", keep=[scenario])
        sc = load_scenario(scenario, seed=seed, dim=dim, temperature=temperature, dtype=dtype,
                           pipeline=built_in_pipeline(pipeline))
        if html is not None:  # and not over a file the scenario was read from (its graph)
            check_target(html, "an HTML report", keep=sc.files)
        result = run_scenario(sc, pick_backend(backend), max_memory=memory, ablate=ablate or ())
        files = []
        if plot is not None:
            from assocmem.plots import plot_result
            files = plot_result(result, plot, on_file=wrote(as_json))
        if html is not None:
            from assocmem.html_report import write_html
            files.append(write_html(result, html))
        if save is not None:
            from assocmem.traces import save_trace
            files.append(save_trace(result, save))
    verdict = "every expectation holds" if result.passed else "an expectation failed"
    tables = (lambda con: print_summary(result, con)) if summary else \
        (lambda con: print_result(result, con, all_positions, top))
    emit(result.to_dict(), files, as_json, lambda con: (tables(con), con.print(f"\n{markup(sc.name)}: {verdict}")))
    raise typer.Exit(0 if result.passed else 1)


def parse_list(text: str | None, kind, option: str) -> list | None:
    if text is None:
        return None
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} must be a comma-separated list of numbers, got {text!r}", hint="e.g. 256,1000,4096") from None
    if not values or any(not (0 < v < math.inf) for v in values):
        raise InputError(f"{option} values must be positive and finite, got {text!r}")
    return values


@commands.command(short_help="Accuracy and margins across seeds, dims and temperatures.")
def sweep(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    seeds: int = typer.Option(100, "--seeds", help="How many seeds (codebooks) to try."),
    seed_start: int = typer.Option(0, "--seed-start", help="The first seed; seeds are seed_start .. seed_start+N-1."),
    dims: Optional[str] = typer.Option(None, "--dims", help="Comma-separated dimensions (default: the scenario's)."),
    temperatures: Optional[str] = typer.Option(None, "--temperatures", help="Comma-separated temperatures."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the accuracy heatmaps and each prompt's margins (a box per cell) here."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the accuracy grid and margin distributions as one HTML file."),
    as_json: bool = flag("--json", "Print one JSON object; top-level `accuracy` is in [0, 1]."),
    max_memory: float = max_memory_option("GiB one batched pass may use; seeds and prompts are chunked to fit."),
    pipeline: Optional[str] = pipeline_option(),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Exit 1 when a checked cell's accuracy is below this (0 to 1), so a sweep can gate CI."),
    backend: str = backend_option(),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run the cells as tasks on Dask: local:N (N "
                                            "worker processes here) or a running scheduler's address (needs assocmem[dask])."),
    ablate: Optional[list[str]] = ablate_option(),
) -> None:
    """How often each expectation holds across seeds, dimensions and temperatures; exit 1 with --min-accuracy
    when a checked cell falls below it, 130 when interrupted."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from assocmem.report import print_sweep
    from assocmem.scenario import load_scenario
    from assocmem.sweeps import plan
    from assocmem.sweeps import sweep as run_sweep

    with user_errors():
        if seeds < 1 or seed_start < 0:
            raise InputError(f"--seeds must be 1 or more and --seed-start 0 or more, got {seeds} and {seed_start}")
        memory = memory_bytes(max_memory)
        if min_accuracy is not None and not 0 <= min_accuracy <= 1:
            raise InputError(f"--min-accuracy must be between 0 and 1, got {min_accuracy}")
        if html is not None:  # refused before the sweep, not after it
            check_target(html, "an HTML report", keep=[scenario])
        dim_list = parse_list(dims, int, "--dims")
        temp_list = parse_list(temperatures, float, "--temperatures")
        sc = load_scenario(scenario, dim=max(dim_list) if dim_list else None, pipeline=built_in_pipeline(pipeline))
        if html is not None:  # and not over a file the scenario was read from (its graph)
            check_target(html, "an HTML report", keep=sc.files)
        from assocmem.ablations import parse_all
        for v in sc.variants:  # a bad --ablate is refused before the progress bar starts
            parse_all(ablate or (), sc, v.model)
        if ablate and scheduler is not None:
            raise InputError("--ablate does not run on a --scheduler yet",
                             hint="run the ablated sweep without --scheduler (its passes hold both models)")
        total = len(plan(sc, dim_list, temp_list)) * seeds
        with ExitStack() as stack:
            about = {}
            if scheduler is None:
                engine, on = pick_backend(backend), {}
            else:  # the workers pick the backend by name: this machine may have no GPU where they do
                from assocmem.cluster import connect
                engine = checked_backend_name(backend)
                cluster = stack.enter_context(connect(scheduler))
                on = {"executor": cluster.executor, "task_threads": cluster.threads}
            with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("seed-cells"),
                          TimeRemainingColumn(), console=console(stderr=True), transient=True) as progress:
                task = progress.add_task("sweep", total=total)
                result = run_sweep(sc, range(seed_start, seed_start + seeds), dim_list, temp_list,
                                   memory, on_step=lambda n: progress.advance(task, n), backend=engine,
                                   ablate=ablate or (), **on)
            if scheduler is not None:
                about = {"scheduler": cluster.describe(result)}
        files = []
        if plot is not None:
            from assocmem.plots import plot_sweep
            files = plot_sweep(result, plot, on_file=wrote(as_json))
        if html is not None:
            from assocmem.html_report import write_html
            files.append(write_html(result, html))
    if not result.complete:
        print("assocmem: interrupted; reporting the seeds finished so far", file=sys.stderr)
    low = result.below(min_accuracy) if min_accuracy is not None else []
    for c in low:
        print(f"assocmem: {c.variant} at dim {c.dim}, model temperature {c.temperature:g}: accuracy {c.accuracy():.3f} is below "
              f"--min-accuracy {min_accuracy:g}", file=sys.stderr)
    emit({**result.to_dict(), **about}, files, as_json, lambda con: print_sweep(result, con))
    raise typer.Exit(130 if not result.complete else 1 if low else 0)


@commands.command(short_help="Why it answered that: the margin change of every rule, layer and position removed.")
def attribute(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    seeds: int = typer.Option(1, "--seeds", help="Codebooks: the model's seed and the ones after it; mean and spread over them."),
    top: int = typer.Option(15, "--top", help="Rows each ranked table shows (--json has every one)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a bar chart per prompt into this folder."),
    as_json: bool = flag("--json", "Print one JSON object instead of tables."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the model's seed (the first seed)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Override the model's dimension."),
    pipeline: Optional[str] = pipeline_option(),
    max_memory: float = max_memory_option(),
    backend: str = backend_option(),
) -> None:
    """Why did it answer that: for every prompt, the margin change when each memory row, layer, stage and earlier
    position is removed alone, all in one batch; ranked, with file:line and whether the answer flips."""
    from assocmem.attribution import attribute as run_attribute
    from assocmem.intervention_tables import print_attribution
    from assocmem.scenario import load_scenario

    with user_errors():
        if top < 1:
            raise InputError(f"--top must be 1 or more, got {top}")
        memory = memory_bytes(max_memory)
        sc = load_scenario(scenario, seed=seed, dim=dim, pipeline=built_in_pipeline(pipeline))
        result = run_attribute(sc, seeds, pick_backend(backend), memory)
        files = []
        if plot is not None:
            from assocmem.intervention_plots import plot_attribution
            files = plot_attribution(result, plot)
    emit(result.to_dict(), files, as_json, lambda con: print_attribution(result, con, top))


@commands.command(short_help="Activation patching: one prompt's stream into another's, a grid of margins.")
def patch(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    from_: Optional[str] = typer.Option(None, "--from", help="The prompt whose stream is copied: its name, number (from 1; #N is always the number) or text; one that matches several prompts is refused."),
    to: Optional[str] = typer.Option(None, "--to", help="The prompt that is run with the copied stream (chosen as --from is)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Patch before these layers (from 1), e.g. 1 or 1,2 (default all)."),
    positions: Optional[str] = typer.Option(None, "--positions", help="These positions (from 0), e.g. 6 or 0-8 (default all both prompts have)."),
    seeds: int = typer.Option(1, "--seeds", help="Codebooks: the model's seed and the ones after it; the grid is their mean."),
    variant: Optional[str] = typer.Option(None, "--variant", help="The variant to patch (default the first)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the patching heatmap of each pair into this folder."),
    as_json: bool = flag("--json", "Print one JSON object instead of tables."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the model's seed (the first seed)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Override the model's dimension."),
    pipeline: Optional[str] = pipeline_option(),
    max_memory: float = max_memory_option(),
    backend: str = backend_option(),
) -> None:
    """Activation patching: run --to with its stream at each (layer, position) taken from --from's, all cells in one
    batch, and print the patched margin as a grid (or the scenario's patch: entries)."""
    from assocmem.intervention_tables import print_patching
    from assocmem.patching import patch as run_patch
    from assocmem.scenario import PatchSpec, load_scenario, parse_numbers

    with user_errors():
        if (from_ is None) != (to is None):
            raise InputError("--from and --to go together", hint="give both, or neither to run the scenario's patch: entries")
        memory = memory_bytes(max_memory)
        layers, cells = parse_numbers(layer, "--layer", 1), parse_numbers(positions, "--positions", 0)
        sc = load_scenario(scenario, seed=seed, dim=dim, pipeline=built_in_pipeline(pipeline))
        if from_ is not None:
            specs = [PatchSpec(from_, to, layers, cells)]
        else:
            from dataclasses import replace
            specs = [replace(s, layers=layers or s.layers, positions=cells if cells is not None else s.positions)
                     for s in sc.patches]
        result = run_patch(sc, specs, seeds, pick_backend(backend), memory, variant)
        files = []
        if plot is not None:
            from assocmem.intervention_plots import plot_patching
            files = plot_patching(result, plot)
    emit(result.to_dict(), files, as_json, lambda con: print_patching(result, con))


@commands.command(short_help="Validate a graph; its structure, crosstalk and pictures.")
def graph(
    file: Path = typer.Argument(..., help="A graph or a scenario YAML file."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the graph into this PNG."),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="Cosine similarity of the concepts, as a PNG."),
    as_json: bool = flag("--json", "Print the report as JSON."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Dimension for the crosstalk report (default: the scenario's, or 1000)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the crosstalk report."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Temperature the ambiguity warning assumes."),
) -> None:
    """Parse and validate a relation graph; report its structure and crosstalk; draw it."""
    from assocmem.crosstalk import concept_vectors, report_file
    from assocmem.report import print_graph_report

    with user_errors("lower --dim: the report holds dim numbers for every name"):
        report, g, model = report_file(file, dim=dim, seed=seed, temperature=temperature)
        files = []
        if png is not None:
            from assocmem.plots import draw_graph
            files.append(draw_graph(g, png, f"{file.name}: {report.relations} relations, {report.concepts} concepts"))
        if heatmap is not None:
            from assocmem.plots import similarity_heatmap
            if not g.concepts:
                raise InputError("--heatmap needs concepts, and this graph has none", file)
            names, vectors = concept_vectors(g, model)
            files.append(similarity_heatmap(names, vectors, heatmap, f"{file.name}: cosine of the concepts, d = {model.dim}"))
    emit(report.to_dict(), files, as_json, lambda con: print_graph_report(report, str(file), model, con))


@commands.command(short_help="Speed as ratios: engine vs loop, read vs GEMM, scan vs copy.")
def bench(
    backend: str = backend_option(),
    as_json: bool = flag("--json", "One JSON object, the figures at top level, each with its _spread (and a _note "
                                    "where invalid)."),
    quick: bool = flag("--quick", "Small shapes: checks the bench runs; the figures mean little."),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="Interleaved rounds per figure (default 7); "
                                                                   "each figure is the median of its pair ratios."),
    scaling: bool = flag("--scaling", "Instead: time against B, n and d, with fitted exponents."),
    memory: Optional[int] = typer.Option(None, "--memory", metavar="B",
                                         help="Instead: the peak memory one pass of B prompts allocates, over the "
                                              "stream (numpy backend; --quick: small prompts)."),
) -> None:
    """Measure, in one process, interleaved: the engine against a batched numpy program of the same recipe, torch
    eager (where installed), the per-prompt loop and the floor (a copy of the stream); the static read against
    its GEMMs; the feedback scan against copy.  Ratios of pairs, so the machine's noise cancels or is flagged."""
    from dataclasses import replace

    from assocmem.bench import QUICK, Shapes, peak_memory, run_bench
    from assocmem.bench import scaling as scale
    from assocmem.report import print_bench, print_memory, print_scaling

    with user_errors("run assocmem bench --quick, or on a machine with more memory"):
        if repeats is not None and not 1 <= repeats <= MAX_REPEATS:
            raise InputError(f"--repeats must be 1 to {MAX_REPEATS}, got {repeats}")
        engine = pick_backend(backend)
        shapes = QUICK if quick else Shapes()
        if repeats is not None:
            shapes = replace(shapes, repeats=repeats)

        def progress(name, k, n):
            print(f"assocmem bench: part {k} of {n}, {name}", file=sys.stderr, flush=True)

        if memory is not None:
            if not 64 <= memory <= MAX_MEMORY_PROMPTS:
                raise InputError(f"--memory must be 64 to {MAX_MEMORY_PROMPTS} prompts, got {memory}")
            if engine.name != "numpy":
                raise InputError("--memory measures host memory, so the numpy backend's", hint="use --backend numpy")
            table = peak_memory(engine, memory, shapes)
            return emit(table, [], as_json, lambda con: print_memory(table, con))
        if scaling:
            table = scale(engine, shapes, on_step=progress)
        else:
            result = run_bench(engine, shapes, on_step=progress)
    if scaling:
        return emit(table, [], as_json, lambda con: print_scaling(table, con))
    emit(result.to_dict(), [], as_json, lambda con: print_bench(result, con))


try:  # typer 0.2x vendors click as typer._click; older versions use click itself
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as _click_errors

# Exit statuses, one meaning each: 0 every checked expectation holds, 1 one failed, 2 bad input or environment
# (one line on stderr), 3 a bug in assocmem (one line; --debug shows the traceback), 130 interrupted, and 141
# (128 + SIGPIPE, as the shell reports `yes | head`) when whoever reads stdout stopped reading.
INTERNAL_ERROR, INTERRUPTED, BROKEN_PIPE = 3, 130, 141


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of a broken pipe neither fails nor complains."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like an exception, so a PNG's temporary file is removed as on Ctrl-C; exit 143 (128 + 15)."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """The `assocmem` command: the typer app, with every way out mapped to one exit status and at most one line."""
    args = sys.argv[1:] if argv is None else list(argv)
    end = args.index("--") if "--" in args else len(args)  # after `--` every word is an argument
    debug = "--debug" in args[:end]
    state["debug"], state["announced"] = debug, set()
    args = [a for a in args[:end] if a != "--debug"] + args[end:]  # accepted anywhere, not only before the command
    signal.signal(signal.SIGTERM, _terminated)
    # numpy's overflow and divide warnings would be lines of their own before the one that matters: what they warn
    # of is caught where it counts (a stream or logits that stop being finite: NumericalError, one line, exit 2).
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    for stream in (sys.stdout, sys.stderr):  # PYTHONIOENCODING=ascii, a C locale: escapes, not UnicodeEncodeError
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    try:
        code = commands(args=args, prog_name="assocmem", standalone_mode=False)
        sys.stdout.flush()
    except _click_errors.NoArgsIsHelpError as err:  # `assocmem` alone: the help (rich prints it), as before
        if err.ctx:
            print(err.ctx.get_help())
        code = 2
    except _click_errors.ClickException as err:  # an unknown command or option, a value of the wrong type
        command = err.ctx.command_path if getattr(err, "ctx", None) else "assocmem"
        message = " ".join(err.format_message().split())
        print(f"assocmem: error: {message} (see {command} --help)", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        _quiet_stdout()
        code = BROKEN_PIPE
    except (KeyboardInterrupt, typer.Abort):
        print("assocmem: interrupted", file=sys.stderr)
        code = INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("assocmem: error: out of memory", file=sys.stderr)
        code = 2
    except (InputError, NumericalError):  # only with --debug (fail() re-raises them): the traceback, and still 2
        traceback.print_exc()
        code = 2
    except Exception as err:  # noqa: BLE001 - anything else is a bug in assocmem, and says so in one line
        if debug:
            traceback.print_exc()
            sys.exit(INTERNAL_ERROR)
        text = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"assocmem: internal error, a bug: {text} (--debug shows the traceback)", file=sys.stderr)
        code = INTERNAL_ERROR
    sys.exit(code or 0)


# A console script made before main() existed calls `app()`: it gets the same exit statuses.
app = main

if __name__ == "__main__":
    main()
