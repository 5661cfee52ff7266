"""Terminal tables of interventions: the ranked attribution of a prompt, and the grid of patched margins."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from assocmem.report import markup, token_label, visible
from assocmem.runs import NO_MARGIN

KIND_SHOWN = {"rule": "rule", "layer": "layer", "stage": "stage", "position": "position"}


def unit_text(unit) -> tuple[str, str]:
    """(what, where) of an attribution unit as a table shows them: a rule's relation and file:line, a layer's label
    and number, a position's token and index."""
    if unit.kind == "position":
        return f"{token_label(unit.label)}@{unit.where}", f"position {unit.where}"
    if unit.kind == "rule":
        return visible(unit.label), visible(unit.where)
    return visible(unit.label), f"{unit.kind} {unit.where}"


def print_attribution(result, console: Console, top: int) -> None:
    n = len(result.seeds)
    seeds = f"seed {result.seeds[0]}" if n == 1 else f"{n} seeds ({result.seeds[0]}..{result.seeds[-1]})"
    console.print(Text(visible(result.scenario.name), style="bold") +
                  Text(f"  {visible(str(result.scenario.path))}  ·  {seeds}", style="dim"))
    for v in result.variants:
        console.rule(Text(visible(f"variant {v.variant.name}"), style="bold cyan"))
        for j, p in enumerate(v.prompts):
            print_prompt_attribution(p, console, top, n)
        for label in v.alone:
            console.print(f"{markup(label)}: {NO_MARGIN}; nothing to attribute")
        for label in v.skipped:
            console.print(f"{markup(label)}: expects nothing, so has no margin to attribute")


def print_prompt_attribution(p, console: Console, top: int, seeds: int) -> None:
    spread = "" if seeds == 1 else f" (mean over {seeds} seeds, worst {p.margins.min():+.3f})"
    title = (f"{markup(p.prompt.label)}: expect {markup(p.prompt.expect)}, margin {p.margins.mean():+.3f}{spread}; "
             f"Δmargin when each one is removed alone")
    table = Table(title=title, title_justify="left")
    for col, just in (("#", "right"), ("removed", "left"), ("where", "left"), ("Δmargin", "right"),
                      ("± sd" if seeds > 1 else "margin", "right"), ("flips", "right")):
        table.add_column(col, justify=just, max_width=56 if col == "removed" else None)  # a stage label folds
    order = p.ranked()
    delta = p.delta
    for rank, k in enumerate(order[:top], 1):
        what, where = unit_text(p.units[k])
        d = delta[:, k]
        flips = p.flips[k]
        flip = ("yes" if flips else "no") if seeds == 1 else f"{flips:.2f}"
        style = "bold red" if flips >= 0.5 else ""
        table.add_row(str(rank), escape(what), escape(where), f"{d.mean():+.3g}",
                      f"{d.std():.2g}" if seeds > 1 else f"{p.ablated[0, k]:+.3f}", Text(flip, style=style))
    console.print(table)
    if len(order) > top:
        rest = np.abs(delta[:, order[top:]].mean(axis=0)).max()
        console.print(Text(f"… {len(order) - top} more, each |Δmargin| ≤ {rest:.2g} (--top N shows more, --json all)",
                           style="dim"))


def print_patching(result, console: Console) -> None:
    n = len(result.seeds)
    seeds = f"seed {result.seeds[0]}" if n == 1 else f"mean over {n} seeds ({result.seeds[0]}..{result.seeds[-1]})"
    console.print(Text(visible(result.scenario.name), style="bold") +
                  Text(f"  {visible(str(result.scenario.path))}  ·  variant {visible(result.variant.name)}  ·  {seeds}",
                       style="dim"))
    for pair in result.pairs:
        src, dst = pair.from_prompt, pair.to_prompt
        console.print()
        console.print(Text("from: ", style="bold") + Text(" ".join(f"{i}:{token_label(t)}" for i, t in enumerate(src.tokens))))
        console.print(Text("to:   ", style="bold") + Text(" ".join(f"{i}:{token_label(t)}" for i, t in enumerate(dst.tokens))))
        console.print(f"margin of {markup(dst.expect)} in `to`: {pair.clean.mean():+.3f} as it is, "
                      f"{pair.source.mean():+.3f} read from `from`'s own run")
        table = Table(title=f"patched margin of {markup(dst.expect)}: `to` run with its stream before the layer, at the "
                            f"position, taken from `from` (red: the answer flips)", title_justify="left")
        table.add_column("before layer", justify="right")
        for i in pair.positions:
            a, b = src.tokens[i], dst.tokens[i]
            table.add_column(escape(f"{i}:{token_label(b)}" + ("" if a == b else f"←{token_label(a)}")), justify="right")
        grid = pair.grid.mean(axis=0)
        flips = (pair.grid <= 0).mean(axis=0)
        for a, l in enumerate(pair.layers):
            table.add_row(str(l), *(Text(f"{grid[a, b]:+.3f}", style="bold red" if flips[a, b] >= 0.5 else "")
                                    for b in range(len(pair.positions))))
        console.print(table)
