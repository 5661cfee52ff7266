"""The `assocmem` command: parse arguments, call the library, print.  No math here."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from assocmem.engine import NumericalError
from assocmem.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A transformer wired by hand from one primitive: mem(q, K, V) = softmax(sim(q, K)/T) @ V.")
state = {"debug": False}


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=False)


def fail(err: Exception) -> None:
    """One line on stderr and exit status 2; --debug shows the traceback instead."""
    if state["debug"]:
        raise err
    print(f"assocmem: error: {err}", file=sys.stderr)
    raise typer.Exit(2)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    state["debug"] = debug


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write PNG heatmaps into this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole trace as JSON instead of tables."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the model's seed."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Override the model's dimension."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Override the model's temperature."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float64 (default) or float32."),
    all_positions: bool = typer.Option(False, "--all-positions", help="Print the attention of every position."),
) -> None:
    """Run every prompt of a scenario; exit 0 if every checked expectation holds, 1 if one fails, 2 on bad input."""
    from assocmem.report import print_result
    from assocmem.result import run as run_scenario
    from assocmem.scenario import load_scenario

    try:
        if dtype is not None and dtype not in ("float32", "float64"):
            raise InputError(f"--dtype must be float32 or float64, got {dtype!r}")
        sc = load_scenario(scenario, seed=seed, dim=dim, temperature=temperature, dtype=dtype)
        result = run_scenario(sc)
        files = []
        if plot is not None:
            from assocmem.plots import plot_result
            files = plot_result(result, plot)
    except (InputError, NumericalError) as err:
        fail(err)
    except OSError as err:
        fail(InputError(f"cannot write: {err.strerror}", err.filename))
    if as_json:
        out = result.to_dict()
        out["plots"] = [str(f) for f in files]
        print(json.dumps(out, ensure_ascii=False))
    else:
        con = console()
        print_result(result, con, all_positions)
        for f in files:
            con.print(f"wrote {f}")
        verdict = "every expectation holds" if result.passed else "an expectation failed"
        con.print(f"\n{sc.name}: {verdict}")
    raise typer.Exit(0 if result.passed else 1)


if __name__ == "__main__":
    app()
