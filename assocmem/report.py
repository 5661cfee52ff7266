"""Tables for the terminal: attention per layer and stage, a logit lens, final logits, PASS/FAIL."""
from __future__ import annotations

import unicodedata

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from assocmem.contention import BUSY_OTHERS, BUSY_SPREAD
from assocmem.focus import SHOWN, top_k
from assocmem.readout import competing, share_held
from assocmem.runs import NO_MARGIN, Attention, Column, PromptRun, Result, VariantRun

PART_SHOWN = 0.1  # a step or hop of a prefix read gets its own line where it put at least this on one position
TOP = 3         # logits shown per layer in the logit lens
TOP_WEIGHTS = 5  # weights shown per attention row (--top): at 2000 positions a row is otherwise 2000 entries


# Characters a terminal would act on or hide instead of showing: controls (ESC starts an escape sequence),
# format characters (bidi overrides, zero-width), surrogates, private and unassigned code points, line separators.
HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def visible(text: str, keep: str = "") -> str:
    """Text with every hidden character written as its escape (ESC as \\x1b, U+202E as \\u202e), so it is shown,
    never sent raw to the terminal; `keep` lists the ones to leave (a description's newlines)."""
    if text.isprintable():
        return text
    return "".join(c if c in keep or unicodedata.category(c) not in HIDDEN else c.encode("unicode_escape").decode()
                   for c in text)


def markup(text: str) -> str:
    """User text for a place where rich reads markup: visible, and `[bold]` or `[/x]` shown as written."""
    return escape(visible(text))


def token_label(token: str) -> str:
    """Spaces, empty names and hidden characters made visible."""
    return visible(token.replace(" ", "␣")) if token.strip() else "␣" * max(len(token), 1)


def print_result(result: Result, console: Console, all_positions: bool = False, top: int = TOP_WEIGHTS) -> None:
    sc = result.scenario
    console.print(Text(visible(sc.name), style="bold") + Text(f"  {visible(str(sc.path))}", style="dim"))
    if sc.description:
        console.print(Text(visible(sc.description.strip(), keep="\n\t"), style="dim"))
    for run in result.variants:
        print_variant(run, console, all_positions, top)


SUMMARY = (("variant", "left"), ("prompt", "left"), ("verdict", "left"), ("margin", "right"), ("winner", "left"))


def print_summary(result: Result, console: Console) -> None:
    """One line per (variant, prompt): its name, PASS or FAIL, the margin and the winner.  The verdict and margin
    never shrink (they are what the line is for); the variant and winner keep up to 24 and 16 columns (a fifth and a
    sixth of a narrow width), and the
    prompt has what is left (at least 8), each cut with an ellipsis."""
    rows = []
    for run in result.variants:
        variant = visible(run.variant.name) + ("" if run.variant.check else " (not checked)")
        for p in run.prompts:
            e = p.expectation
            verdict = ("—" if e is None else Text("PASS", style="green") if e.passed else Text("FAIL", style="red"))
            margin = "—" if e is None else f"{e.margin:+.3f}" if np.isfinite(e.margin) else "none (one candidate)"
            rows.append((Text(variant), Text(visible(p.prompt.label)), verdict, margin,
                         Text(token_label(e.winner)) if e else Text("—")))
    widest = lambda k, cap: min(cap, max([cell_len(str(r[k])) for r in rows] + [len(SUMMARY[k][0])]))  # noqa: E731
    fixed = [widest(0, min(24, console.width // 5)), widest(2, 20), widest(3, 20), widest(4, min(16, console.width // 6))]
    prompt = max(8, console.width - sum(fixed) - 2 * 4)  # four gaps of two columns (box=None pads one a side)
    table = Table(box=None, show_header=True, pad_edge=False)
    for (column, justify), size in zip(SUMMARY, [fixed[0], prompt] + fixed[1:]):
        table.add_column(column, justify=justify, no_wrap=True, overflow="ellipsis", max_width=size,
                         min_width=min(size, len(column)))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_variant(run: VariantRun, console: Console, all_positions: bool, top: int = TOP_WEIGHTS) -> None:
    m = run.variant.model
    title = f"variant {run.variant.name}" + ("" if run.variant.check else " (shown, not checked)")
    console.rule(Text(visible(title), style="bold cyan"))
    if run.variant.description:
        console.print(Text(visible(run.variant.description.strip(), keep="\n\t"), style="dim"))
    console.print(f"dim {m.dim} · seed {m.seed} · temperature {m.temperature:g} · similarity {m.similarity} · "
                  f"{m.dtype} · {len(m.pipeline)} layers · {len(run.names)} names · {len(run.memory_rows)} memory rows")
    for a in run.ablations:
        console.print(Text("ablated: ", style="bold yellow") + Text(visible(a.what)))
    for j, p in enumerate(run.prompts):
        print_prompt(run, j, p, console, all_positions, top)


def print_prompt(run: VariantRun, j: int, p: PromptRun, console: Console, all_positions: bool,
                 top: int = TOP_WEIGHTS) -> None:
    tokens = p.prompt.tokens
    last = len(tokens) - 1
    console.print()
    name = f" ({visible(p.prompt.name)})" if p.prompt.name else ""
    console.print(Text(f"prompt {j + 1}{name}: ", style="bold") +
                  Text(" ".join(f"{i}:{token_label(t)}" for i, t in enumerate(tokens))))
    table = Table(title="last position, layer by layer", title_justify="left", show_lines=False, expand=False)
    table.add_column("layer", justify="right")
    table.add_column("stage", overflow="fold")
    table.add_column(escape(f"weights of {token_label(tokens[-1])}@{last}"), overflow="fold")
    table.add_column(f"top {TOP} logits after the layer", overflow="fold")
    table.add_row("0", "embedding", "", _top(run.names, p.lens_logits[0]))  # _top and attention_line escape
    for a in p.attention:
        closes_layer = a.index == len(run.variant.model.pipeline[a.layer - 1].stages) - 1
        shown = [(name, row) for name, row in a.parts if row.max(initial=0) >= PART_SHOWN]
        table.add_row(str(a.layer) if a.index == 0 else "", escape(a.stage.label), attention_line(a, last, top),
                      _top(run.names, p.lens_logits[a.layer]) if closes_layer and not shown else "")
        for k, (name, row) in enumerate(shown):  # a prefix read's steps and hops, each with what it read
            table.add_row("", f"  ↳ {name}", weights_line(a.columns, row, last, top),
                          _top(run.names, p.lens_logits[a.layer]) if closes_layer and k == len(shown) - 1 else "")
    console.print(table)
    if all_positions:
        for a in p.attention:
            console.print(f"layer {a.layer}, {escape(a.stage.label)}: {a.what}, row by position")
            console.print(_all_positions_table(a, tokens, top))
    console.print(_final_logits(run, p))
    e = p.expectation
    if e:
        verdict = Text("PASS", style="bold green") if e.passed else Text("FAIL", style="bold red")
        note = "" if run.variant.check else " (not checked)"
        margin = f"margin {e.margin:+.3f}" if np.isfinite(e.margin) else NO_MARGIN
        if e.unablated is not None and np.isfinite(e.unablated):
            margin += f" (unablated {e.unablated:+.3f})"
        console.print(verdict + Text(f"  expect {token_label(e.expect)}: winner {token_label(e.winner)}, "
                                     f"{margin}{note}"))


def column_label(c: Column) -> str:
    """A position as token@i; a memory row as its relation and file:line."""
    return f"{token_label(c.name)}@{c.position}" if c.position is not None else visible(f"{c.name} [{c.source}]")


def attention_line(a: Attention, position: int, top: int = TOP_WEIGHTS) -> str:
    """The weights one position used, in one line: the `top` largest (at least SHOWN), largest first, then how many
    other columns got weight and their sum ("+57 others 0.43"); or, where the weights are equal over a run of
    positions (a plain mean), that run."""
    if not a.columns:
        return "(empty memory)"
    return weights_line(a.columns, a.weights[position], position, top)


def weights_line(columns, row, position: int, top: int = TOP_WEIGHTS) -> str:
    """One row of weights over `columns` in one line (see attention_line)."""
    used = np.nonzero(row)[0]
    if not used.size:
        return "(no past)" if position == 0 and columns[0].position is not None else "(not updated)"
    if used.size > 1 and columns[0].position is not None and used[-1] - used[0] == used.size - 1 \
            and row[used].min() == row[used].max():
        return f"uniform 1/{used.size} on positions {used[0]}..{used[-1]}"
    best = top_k(row, top)
    parts = [f"{column_label(columns[k])} {row[k]:.2f}" for k in best.columns]
    if best.others and best.rest >= SHOWN:  # a rest that rounds to 0.00 is left unsaid
        parts.append(f"+{best.others} {'other' if best.others == 1 else 'others'} {best.rest:.2f}")
    return escape(" · ".join(parts))


def _top(names, logits) -> str:
    order = np.argsort(-logits, kind="stable")[:TOP]
    return escape("  ".join(f"{token_label(names[k])} {logits[k]:+.2f}" for k in order))


def _all_positions_table(a: Attention, tokens, top: int = TOP_WEIGHTS) -> Table:
    """Every position's weights, one line each (its top `top`, the rest summed), so the table is as wide as one row
    of weights whatever the prompt's length; a run of positions the stage did not update is one line."""
    table = Table()
    table.add_column("position")
    table.add_column(f"top {top} weights, the rest summed", overflow="fold")
    updated = a.weights.any(axis=1) if a.columns else np.zeros(len(tokens), bool)
    i = 0
    while i < len(tokens):
        if updated[i]:
            table.add_row(escape(f"{token_label(tokens[i])}@{i}"), weights_line(a.columns, a.weights[i], i, top))
            i += 1
            continue
        end = i
        while end + 1 < len(tokens) and not updated[end + 1]:
            end += 1
        where = escape(f"{token_label(tokens[i])}@{i}") if end == i else f"{i}..{end}"
        why = "(empty memory)" if not a.columns else "(no past)" if i == 0 == end and a.columns[0].position is not None \
            else "(not updated)"
        table.add_row(where, why)
        i = end + 1
    return table


def _final_logits(run: VariantRun, p: PromptRun) -> Table:
    candidates = set(competing(p.prompt, run.names))
    table = Table(title="final logits at the last position", title_justify="left")
    table.add_column("token")
    table.add_column("logit", justify="right")
    table.add_column("")
    order = np.argsort(-p.logits, kind="stable")
    top = max(float(np.abs(p.logits).max()), 1e-12)
    for k in order:
        name = run.names[k]
        style = "bold" if name == p.prompt.expect else ("" if name in candidates else "dim")
        bar = "█" * int(round(12 * max(p.logits[k], 0) / top))
        mark = " ← expect" if name == p.prompt.expect else ("" if name in candidates else " (not a candidate)")
        if not p.prompt.candidates and name == p.prompt.tokens[-1]:
            mark = " (the last token: left out of the candidates)"
        table.add_row(Text(token_label(name), style=style), f"{p.logits[k]:+.3f}", bar + mark)
    return table


def print_sweep(result, console: Console) -> None:
    """Accuracy per (variant, dim, temperature) cell, then per prompt."""
    prompts = result.scenario.prompts
    n = len(result.cells[0].seeds) if result.cells else 0
    table = Table(title=f"{markup(result.scenario.name)}: share of (seed, prompt) pairs whose expectation holds, "
                        f"{n} seeds" + ("" if result.complete else " (interrupted: partial)"), title_justify="left")
    for col, just in (("variant", "left"), ("dim", "right"), ("T", "right"), ("accuracy", "right"),
                      ("mean margin", "right"), ("worst margin", "right"), ("fails most", "left")):
        table.add_column(col, justify=just)
    for c in result.cells:
        if c.margins is None:
            continue
        fails = c.fails()
        worst = int(np.argmax(fails))
        most = f"{markup(prompts[worst].label)} ({fails[worst]}/{len(c.seeds)})" if fails[worst] else "—"
        acc = c.accuracy()
        style = "green" if acc >= 0.99 else ("yellow" if acc >= 0.9 else "red")
        table.add_row(markup(c.variant) + ("" if c.check else " (unchecked)"), str(c.dim), f"{c.temperature:g}",
                      Text(_share(acc), style=style if acc == acc else ""), _signed(np.nanmean, c.margins),
                      _signed(np.nanmin, c.margins), most)
    console.print(table)
    for a in result.ablations:
        console.print(Text("ablated: ", style="bold yellow") + Text(visible(a.what)))
    for c in result.cells:
        if c.unablated is not None:
            console.print(f"{markup(c.variant)} d={c.dim} T={c.temperature:g} without the ablations: accuracy "
                          f"{_share(share_held(c.unablated))}, mean margin {_signed(np.nanmean, c.unablated)}")
    per = Table(title="per prompt", title_justify="left")
    ablated = any(c.unablated is not None for c in result.cells)
    for col in ("prompt", "variant", "dim", "T", "accuracy", "mean margin", "worst margin") + (
            ("unablated mean margin",) if ablated else ()):
        per.add_column(col, justify="left" if col in ("prompt", "variant") else "right")
    for j, p in enumerate(prompts):
        if p.expect is None:
            continue
        for c in result.cells:
            if c.margins is not None:
                per.add_row(markup(p.label), markup(c.variant), str(c.dim), f"{c.temperature:g}",
                            _share(c.accuracy(j)), _signed(np.nanmean, c.margins[:, j]), _signed(np.nanmin, c.margins[:, j]),
                            *((_signed(np.nanmean, c.unablated[:, j]),) if c.unablated is not None else ()))
    console.print(per)
    total = result.accuracy
    console.print("accuracy over every checked cell: " + (f"{total:.4f}" if total == total else
                                                          "— (no checked expectation)"))


def _share(x: float) -> str:
    """An accuracy, or a dash where nothing was checked (NaN)."""
    return f"{x:.3f}" if x == x else "—"


def _signed(reduce, margins) -> str:
    """A mean or worst margin, or a dash where no prompt expects anything (all NaN)."""
    values = np.asarray(margins, dtype=float)
    return f"{reduce(values):+.3f}" if (values == values).any() else "—"


def print_graph_report(report, name: str, model, console: Console) -> None:
    console.print(Text(visible(name), style="bold") + Text(f"  {report.tokens} tokens · {report.relations} relations · "
                                                  f"{report.concepts} concepts", style=""))
    table = Table(title="structure", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("", overflow="fold")

    def names(xs):
        xs = [str(x) for x in xs]
        return markup(", ".join(xs)) if xs else "—"

    fan_out = sorted(report.fan_out.items(), key=lambda kv: -kv[1])[:8]
    fan_in = sorted(report.fan_in.items(), key=lambda kv: -kv[1])[:8]
    table.add_row("largest fan-out", names(f"{n} → {k}" for n, k in fan_out))
    table.add_row("largest fan-in", names(f"{n} ← {k}" for n, k in fan_in))
    table.add_row("cycles", names(" → ".join(c + [c[0]]) for c in report.cycles))
    table.add_row("strongly connected", names("{" + ", ".join(c) + "}" for c in report.components))
    table.add_row("keys nothing leads to", names(report.only_keys))
    table.add_row("values that lead nowhere", names(report.only_values))
    table.add_row("never a key or a value", names(report.unused))
    console.print(table)
    ct = Table(title=f"crosstalk at dim {model.dim}, seed {model.seed}: the largest cosines between distinct rows "
                     f"(chance level about ±{3 / np.sqrt(model.dim):.2f})", title_justify="left", min_width=60)
    for col in ("between", "a", "b", "cosine"):
        ct.add_column(col, justify="right" if col == "cosine" else "left")
    for kind, pairs in (("keys", report.key_crosstalk), ("concepts", report.concept_crosstalk)):
        for a, b, c in pairs:
            ct.add_row(kind, markup(a), markup(b), f"{c:+.3f}")
    console.print(ct)
    for w in report.ambiguous:
        console.print(Text("warning: ", style="bold yellow") + Text(visible(w)))
    if not report.ambiguous:
        console.print(f"no ambiguous retrieval at temperature {model.temperature:g}")


BENCH_ROWS = (
    ("speedup_vs_batched_numpy", "engine vs a batched numpy program of the recipe"),
    ("floor_fraction", "recipe vs one read + write of the stream (copy)"),
    ("speedup_vs_loop", "engine vs the posts' per-prompt loop, per prompt"),
    ("speedup_vs_batched_torch", "engine vs the same program in torch eager"),
    ("default_recipe_floor_fraction", "the shipped default recipe vs the floor"),
    ("speedup_vs_batched_numpy_long", "B = 16, n = 1024: engine vs batched numpy"),
    ("floor_fraction_long", "B = 16, n = 1024: recipe vs the floor"),
    ("speedup_vs_batched_torch_long", "B = 16, n = 1024: engine vs torch eager"),
    ("gemm_fraction", "static read vs its two GEMMs"),
    ("scan_bandwidth_fraction", "10-layer scan, each layer counted as a pass"),
    ("scan_floor_fraction", "10-layer scan vs one copy of the stream"),
    ("speedup_vs_numpy", "whole recipe, GPU vs numpy backend"),
    ("sweep_speedup_local2", "sweep seed-cells/s, local:2 vs one process"),
)


def print_bench(result, console: Console) -> None:
    """The headline ratios (medians of interleaved pairs, their spread) against their targets, then what each was
    computed from, and a warning where the spread says the machine was busy."""
    table = Table(title=f"assocmem bench, {result.backend} backend (medians of {result.shapes.repeats} interleaved "
                        f"pairs; spread: interquartile range / median)", title_justify="left")
    for column in ("figure", "what", "measured", "spread", "target", ""):
        table.add_column(column, justify="right" if column in ("measured", "spread", "target") else "left")
    for key, what in BENCH_ROWS:
        if key not in result.figures:
            continue
        value, spread = result.figures[key], result.spreads.get(key)
        target = result.targets.get(key)
        if value is None:
            verdict = Text("invalid", style="bold red")
        elif target is None:
            verdict = Text("")
        else:
            verdict = Text("meets" if result.meets(key) else "short", style="green" if result.meets(key) else "red")
        table.add_row(key, what, "-" if value is None else f"{value:.3g}", f"{spread:.0%}" if spread is not None else "",
                      f">= {target:g}" if target is not None else "", verdict)
    console.print(table)
    for key, note in result.notes.items():
        console.print(Text(f"{key}: {note}", style="red"))
    details = Table(title="measurements", title_justify="left", show_header=False)
    details.add_column("part")
    details.add_column("values")
    for part, values in result.details.items():
        shown = [f"{k} {_number(v)}" for k, v in values.items()]
        if result.contention.get(part) is not None:  # what other processes took of the machine meanwhile
            shown.append(f"other processes {result.contention[part]:.1%} of the machine")
        details.add_row(part, ", ".join(shown))
    console.print(details)
    if result.busy:
        loaded = {part: share for part, share in result.contention.items() if share is not None and share > BUSY_OTHERS}
        why = f"their pairs spread more than {BUSY_SPREAD:.0%}" + (", or other processes took " + ", ".join(
            f"{share:.0%} of the machine during {part}" for part, share in loaded.items()) if loaded else "")
        console.print(Text(f"warning: the machine was busy for {', '.join(result.busy)}: {why} (load average "
                           f"{result.machine.get('load_average')}); rerun on a quiet machine before quoting them",
                           style="bold yellow"))
    m = result.machine
    console.print(f"machine: {m.get('cpu')}, {m.get('cores')} cores{', ' + m['gpu'] if 'gpu' in m else ''}; "
                  f"numpy {m.get('numpy')} ({m.get('blas', 'BLAS unknown')}); fused scan: {m.get('fused_scan')}; "
                  f"shapes {vars(result.shapes)}")


def print_scaling(scaling: dict, console: Console) -> None:
    """Time against B, n and d, one axis at a time, with the fitted exponents."""
    table = Table(title="assocmem bench --scaling: seconds (median of interleaved runs)", title_justify="left")
    for column in ("axis", "B", "n", "d", "feedback10 s", "default s"):
        table.add_column(column, justify="right")
    for p in scaling["points"]:
        table.add_row(p["axis"], str(p["B"]), str(p["n"]), str(p["d"]), f"{p['feedback10_s']:.4f}",
                      f"{p['default_s']:.4f}")
    console.print(table)
    for axis, fit in scaling["exponents"].items():
        console.print(f"time ~ {axis}^e: feedback10 e = {fit['feedback10']:.2f}, default e = {fit['default']:.2f}")


def print_memory(memory: dict, console: Console) -> None:
    """Each recipe's peak memory in one pass, over the stream's bytes."""
    table = Table(title=f"assocmem bench --memory: one pass of {memory['prompts']} prompts of {memory['tokens']} "
                        f"tokens at d = {memory['dim']} (a {memory['stream_bytes'] / 1e6:,.0f} MB stream)",
                  title_justify="left")
    for column in ("recipe", "peak MB", "over the stream"):
        table.add_column(column, justify="right")
    for name, how in (("feedback10", "the caller's tokens"), ("default", "tokens handed over")):
        table.add_row(f"{name} ({how})", f"{memory[f'{name}_peak_bytes'] / 1e6:,.1f}",
                      f"{memory[f'{name}_peak_over_stream']:.3f}x")
    console.print(table)


def _number(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)
