"""Heatmaps of a run; matplotlib is imported here only, with a headless backend."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from assocmem.focus import SHOWN, window  # noqa: E402
from assocmem.outfile import write_with  # noqa: E402
from assocmem.mem import unit  # noqa: E402
from assocmem.report import token_label, visible  # noqa: E402
from assocmem.runs import Result, VariantRun  # noqa: E402

plt.rcParams["font.family"] = "DejaVu Sans"  # ships with matplotlib and has Cyrillic glyphs


def save(fig, path: Path, tight: bool = False) -> Path:
    """Write the figure whole or not at all, in a folder made if need be (outfile.write_with: only a new file or a
    regular one is replaced).  tight: crop to what is drawn, which draws the figure twice; the heatmaps lay
    themselves out instead."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_with(path, "a PNG", lambda f: fig.savefig(
            f, format="png", dpi=DPI, bbox_inches="tight" if tight else None,
            pil_kwargs={"compress_level": 3}))  # zlib's 6 costs twice the time for 5% less
    finally:
        plt.close(fig)


def unique_slugs(names) -> dict:
    """A file-name slug per name, distinct even where slug() maps two names to one (`a/b` and `a?b` are both
    `a_b`): later ones get -2, -3, ...  Case is folded too, for case-insensitive file systems."""
    out, taken = {}, set()
    for name in dict.fromkeys(names):
        base = candidate = slug(name)
        k = 1
        while candidate.casefold() in taken:
            k += 1
            candidate = f"{base}-{k}"
        taken.add(candidate.casefold())
        out[name] = candidate
    return out


LABEL_MAX, TITLE_MAX = 40, 160  # characters of a tick label and of a title: a 1 MB token is cut, with an ellipsis
PLOT_MAX = 48  # rows and columns a heatmap draws at most (the callers pick which: see focus.window)
CELL = 0.26    # inches a row or column of a heatmap gets: 9-point labels, one per cell, stay apart
MAX_WIDTH, MAX_HEIGHT = 14.0, 11.0  # inches, so at 100 dpi no picture is wider than 1400 px
DPI = 100
CHAR = 0.085   # inches an 8-point character takes at most (Cyrillic capitals, as Ш): the room labels get
LENS_TOP = 5   # the vocabulary logit lens shows the tokens that ever reach this many best logits
BOXES = 40     # sweep cells per margins figure; more go on a second page


def literal(text: str, limit: int = TITLE_MAX) -> str:
    """Text that matplotlib shows as written: hidden characters as escapes, and `$` escaped, since a pair of them
    starts mathtext (`$\\foo$` is a parse error, `$x^2$` a formula); cut to `limit` characters."""
    text = str(text)
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return visible(text).replace("$", r"\$")


def slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE).strip("_") or "x"


def heatmap(matrix, row_labels, col_labels, title, cbar="cosine", vmin=None, vmax=None, cmap="viridis",
            annotate=False, gaps=(), row_gaps=()):
    """One heatmap of bounded size, its colorbar beside it, laid out by hand (a tight crop would draw it twice).
    NaN cells (a masked half) are light grey.  Above PLOT_MAX rows or columns, the last PLOT_MAX of each, said in
    the title (callers pick their window first).  annotate: each cell's value written in it; gaps: the column
    indices before which positions were skipped, marked by a white line (row_gaps: the same for rows)."""
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = matrix.shape
    if rows > PLOT_MAX or cols > PLOT_MAX:
        title = f"{title} (the last {min(rows, PLOT_MAX)} of {rows} rows, {min(cols, PLOT_MAX)} of {cols} columns)"
        matrix = matrix[-PLOT_MAX:, -PLOT_MAX:]
        row_labels, col_labels = list(row_labels)[-PLOT_MAX:], list(col_labels)[-PLOT_MAX:]
        rows, cols = matrix.shape
    col_labels, row_labels = [literal(c, LABEL_MAX) for c in col_labels], [literal(r, LABEL_MAX) for r in row_labels]
    rotate = max(map(len, col_labels), default=0) > 3
    cell = CELL * (1.7 if annotate else 1)
    left = 0.25 + CHAR * max(map(len, row_labels), default=1)
    bottom = 0.3 + (CHAR * max(map(len, col_labels), default=1) if rotate else 0.2)
    right = 1.0  # the colorbar, its numbers and its label
    axes_w = min(MAX_WIDTH - left - right, max(2.5, cell * cols))
    width = left + axes_w + right
    lines = textwrap.wrap(literal(title, 3 * TITLE_MAX), max(int(width / 0.08), 30))[:4]
    top = 0.2 + 0.17 * len(lines)
    axes_h = min(MAX_HEIGHT - top - bottom, max(0.3, CELL * rows * (1.3 if annotate else 1)))
    height = top + axes_h + bottom
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, axes_w / width, axes_h / height))
    side = fig.add_axes(((left + axes_w + 0.12) / width, bottom / height, 0.15 / width, axes_h / height))
    colors = plt.get_cmap(cmap).with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap=colors, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xticks(range(cols), col_labels, rotation=90 if rotate else 0, fontsize=8)
    ax.set_yticks(range(rows), row_labels, fontsize=8)
    for k in gaps:  # where the window skipped positions
        ax.axvline(k - 0.5, color="white", lw=2.5)
    for k in row_gaps:
        ax.axhline(k - 0.5, color="white", lw=2.5)
    if annotate:
        lo, hi = im.norm.vmin, im.norm.vmax
        for (i, k), v in np.ndenumerate(matrix):
            if v == v and (lo < 0 or v >= SHOWN):  # weights that round to 0.00 stay blank
                dark = (v - lo) / (hi - lo or 1) < 0.55 if cmap == "viridis" else abs(v) > 0.6 * max(abs(lo), abs(hi))
                ax.text(k, i, f"{v:+.2f}" if lo < 0 else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if dark else "k")
    fig.text(0.1 / width, 1 - 0.12 / height, "\n".join(lines), fontsize=9, va="top")
    fig.colorbar(im, cax=side, label=cbar)
    return fig


def positions_gaps(positions) -> list[int]:
    """The column indices before which a window skipped positions."""
    return [k for k in range(1, len(positions)) if positions[k] != positions[k - 1] + 1]


def layer_labels(model) -> list[str]:
    """embedding, then each layer's number and the kinds of its stages."""
    return ["embedding"] + [f"{n} {'+'.join(s.kind for s in layer.stages)}" for n, layer in enumerate(model.pipeline, 1)]


def lens_tokens(lens_logits, expect_index=None, top: int = LENS_TOP) -> list[int]:
    """The vocabulary columns of the logit lens: every token that is among the `top` best logits after some layer
    (and the expected one), ordered by the final logit, best first; at most PLOT_MAX of them (the best, and the
    expected one).  Shapes: lens_logits (L + 1, V)."""
    best = np.argsort(-lens_logits, axis=1, kind="stable")[:, :top]
    chosen = set(best.ravel().tolist()) | ({expect_index} if expect_index is not None else set())
    ordered = sorted(chosen, key=lambda v: (-lens_logits[-1, v], v))
    if len(ordered) > PLOT_MAX:  # many layers: the best by the final logit, and the expected one
        keep = ordered[:PLOT_MAX]
        if expect_index is not None and expect_index not in keep:
            keep = keep[:-1] + [expect_index]
        ordered = keep
    return ordered


LENS_SHOWN = 0.25  # a lens cosine that puts a position in the window: above chance (3/sqrt(d) is 0.19 at d = 256)


def position_weight(p) -> np.ndarray:
    """How much each position matters to a prompt's pictures, (T,): the most attention a context stage put on it
    (at least SHOWN), then, far below, its largest lens cosine with the last position where that is beyond chance;
    positions with neither score 0 and are not picked to fill the window."""
    score = np.zeros(len(p.prompt.tokens))
    for a in p.attention:
        if a.column_kind == "positions":
            score = np.maximum(score, a.weights.max(axis=0, initial=0))
    score[score < SHOWN] = 0
    lens = np.abs(p.lens_similarity).max(axis=0)
    return score + 1e-3 * np.where(lens >= LENS_SHOWN, lens, 0)


def plot_prompt(run: VariantRun, j: int, p, stem: str, out: Path, on_file=None) -> list[Path]:
    """A prompt's pictures: the vocabulary logit lens; the lens over positions, the final stream's cosines and each
    context map where the prompt has more than one position (one position is a 1 x 1 picture, skipped)."""
    files = []

    def write(fig, name):
        files.append(save(fig, out / name))
        if on_file:
            on_file(files[-1])

    tokens = [token_label(t) for t in p.prompt.tokens]
    T = len(tokens)
    layers = layer_labels(run.variant.model)
    names = list(run.names)
    expect = names.index(p.prompt.expect) if p.prompt.expect in names else None
    vocab = lens_tokens(p.lens_logits, expect)
    labels = [token_label(names[v]) + (" ← expect" if v == expect else "") for v in vocab]
    top = float(np.abs(p.lens_logits[:, vocab]).max()) or 1.0
    write(heatmap(p.lens_logits[:, vocab], layers, labels, f"{stem}: logit lens at the last position ({tokens[-1]}), "
                  f"the tokens that reach the top {LENS_TOP} after some layer", cbar="logit", vmin=-top, vmax=top,
                  cmap="RdBu_r", annotate=len(vocab) * len(layers) <= 120), f"{stem}-vocab-lens.png")
    if T < 2:
        return files
    marked = [i for i, t in enumerate(p.prompt.tokens) if t == p.prompt.expect]
    shown = window(T, weight=position_weight(p), marked=marked)
    where = f" ({shown.caption()})" if shown.cut else ""
    cols, gaps = list(shown.positions), positions_gaps(shown.positions)
    write(heatmap(p.lens_similarity[:, cols], layers, shown.labels(tokens), f"{stem}: cosine of the last position "
                  f"({tokens[-1]}) with every position, by layer{where}", vmin=-1, vmax=1, gaps=gaps),
          f"{stem}-lens.png")
    if any(a.weights[:-1].any() for a in p.attention):  # else every row but the last is its token: nothing to see
        Xn = unit(p.stream[cols])
        write(heatmap(Xn @ Xn.T, shown.labels(tokens), shown.labels(tokens), f"{stem}: position × position cosine "
                      f"of the final stream{where}", vmin=-1, vmax=1, gaps=gaps, row_gaps=gaps), f"{stem}-stream.png")
    for a in p.attention:  # the attention maps over positions (averaging weights are the recipe's, not drawn)
        if a.column_kind != "positions":
            continue
        updated = np.nonzero(a.weights.any(axis=1))[0]
        if not updated.size:
            continue
        weight = a.weights[updated].max(axis=0)
        weight[weight < SHOWN] = 0  # a softmax gives every position some weight: only what shows picks columns
        seen = window(T, weight=weight, marked=marked)
        rows = [i for i in seen.positions if i in set(updated.tolist())]
        if len(rows) < len(updated):  # positions: all on a long prompt: the window's rows, and the last row
            rows = sorted(set(rows) | {int(updated[-1])})
        cols = list(seen.positions)
        matrix = a.weights[np.ix_(rows, cols)].copy()
        matrix[np.array(cols)[None, :] >= np.array(rows)[:, None]] = np.nan  # a position reads only its past
        several = len(run.variant.model.pipeline[a.layer - 1].stages) > 1
        name = f"{stem}-{a.kind}-L{a.layer}" + (f"s{a.index + 1}" if several else "")
        caption = f"{len(rows)} of the {len(updated)} rows it updated" + (f"; {seen.caption()}" if seen.cut else "")
        write(heatmap(matrix, [f"{tokens[i]}@{i}" for i in rows], seen.labels(tokens),
                      f"{stem}: layer {a.layer} {a.stage.label}; a row is what that position read, grey is not its "
                      f"past; {caption}", cbar="attention", vmin=0, vmax=max(1.0, float(np.nanmax(matrix, initial=0))),
                      annotate=len(rows) * len(cols) <= 120, gaps=positions_gaps(cols)), f"{name}.png")
    return files


def plot_variant(run: VariantRun, out: Path, variant_slug: str | None = None, on_file=None) -> list[Path]:
    variant_slug = variant_slug or slug(run.variant.name)
    base = slug(run.scenario.name) + ("" if len(run.scenario.variants) == 1 else "-" + variant_slug)
    return [f for j, p in enumerate(run.prompts) for f in plot_prompt(run, j, p, f"{base}-p{j + 1}", out, on_file)]


def plot_result(result: Result, out: Path, on_file=None) -> list[Path]:
    """Every variant's pictures; on_file(path) is called as each file is written."""
    slugs = unique_slugs(run.variant.name for run in result.variants)
    return [f for run in result.variants for f in plot_variant(run, Path(out), slugs[run.variant.name], on_file)]


def plot_sweep(result, out: Path, on_file=None) -> list[Path]:
    """Per variant: accuracy over dim x temperature; per prompt: each cell's margins over the seeds, a box and the
    points on one shared axis.  on_file(path) is called as each file is written."""
    out = Path(out)
    files = []

    def write(fig, name, tight=False):
        files.append(save(fig, out / name, tight))
        if on_file:
            on_file(files[-1])

    name = slug(result.scenario.name)
    slugs = unique_slugs(c.variant for c in result.cells)
    for variant in slugs:
        cells = [c for c in result.cells if c.variant == variant and c.margins is not None]
        if not cells:  # interrupted before any of its cells finished
            continue
        dims = sorted({c.dim for c in cells})
        temps = sorted({c.temperature for c in cells})
        grid = np.full((len(dims), len(temps)), np.nan)
        for c in cells:
            grid[dims.index(c.dim), temps.index(c.temperature)] = c.accuracy()
        fig = heatmap(grid, [f"d={d}" for d in dims], [f"T={t:g}" for t in temps],
                      f"{name} / {variant}: accuracy over {len(cells[0].seeds)} seeds", cbar="accuracy", vmin=0, vmax=1,
                      annotate=True)
        write(fig, f"{name}-{slugs[variant]}-accuracy.png")
    cells = [c for c in result.cells if c.margins is not None]
    for j, p in enumerate(result.scenario.prompts):
        if p.expect is None or not any(np.isfinite(c.margins[:, j]).any() for c in cells):
            continue  # nothing to draw: it expects nothing, or it has a single candidate and so no margin
        pages = [cells[k:k + BOXES] for k in range(0, len(cells), BOXES)]
        for page, part in enumerate(pages, 1):
            suffix = "" if len(pages) == 1 else f"-{page}"
            write(margins_figure(part, j, f"{name} prompt {j + 1}: {p.label}" +
                                 ("" if len(pages) == 1 else f" (page {page} of {len(pages)})")),
                  f"{name}-p{j + 1}-margins{suffix}.png", tight=True)
    return files


def margins_figure(cells, j: int, title: str):
    """One row per cell: a box of its margins over the seeds and every seed as a point, on one shared axis, with
    the cell's accuracy at the right.  Margins that are not finite (a single candidate) are left out."""
    fig, ax = plt.subplots(figsize=(7.5, min(MAX_HEIGHT, 1.2 + 0.32 * len(cells))))
    rng = np.random.default_rng(0)  # the points' vertical jitter only
    data = [c.margins[:, j][np.isfinite(c.margins[:, j])] for c in cells]
    ax.boxplot(data, positions=range(len(cells)), orientation="horizontal", widths=0.6, showfliers=False,
               medianprops={"color": "k"})
    for row, values in enumerate(data):
        ax.scatter(values, row + rng.uniform(-0.22, 0.22, len(values)), s=6, alpha=0.5, color="#1f4e79", zorder=3)
    ax.axvline(0, color="#8b1e3f", lw=1)
    ax.set_yticks(range(len(cells)), [literal(f"{c.variant} d={c.dim} T={c.temperature:g}", LABEL_MAX) for c in cells],
                  fontsize=8)
    ax.set_ylim(len(cells) - 0.5, -0.5)
    for row, c in enumerate(cells):
        ax.annotate(f"{c.accuracy(j):.2f}", (1.01, row), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.annotate("accuracy", (1.01, 1.0), xycoords="axes fraction", va="bottom", fontsize=8)
    ax.set_xlabel("margin (expected logit - best other candidate); left of the line: fails")
    ax.set_title(literal(title), fontsize=9, loc="left")
    return fig


def draw_graph(graph, out: Path, title: str) -> Path:
    """Relation edges solid (rewrites dashed), concept edges dotted grey from term to concept."""
    import networkx as nx

    g = graph.to_networkx()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(g) + 3), max(4.5, 0.45 * len(g) + 2.5)))
    pos = nx.spring_layout(nx.Graph(g), seed=0, k=4.0 / max(len(g), 1) ** 0.5, iterations=300)  # numpy-only below 500 nodes
    concepts = {c.name for c in graph.concepts}
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=900, node_color=["#f3d9a4" if n in concepts else "#bcd7f0" for n in g])
    nx.draw_networkx_labels(g, pos, labels={n: literal(n, LABEL_MAX) for n in g}, ax=ax, font_size=9, font_family="DejaVu Sans")
    styles = {"assoc": ("solid", "#1f4e79"), "rewrite": ("dashed", "#8b1e3f"), "concept": ("dotted", "#888888")}
    for kind, (style, color) in styles.items():
        edges = [(u, v) for u, v, d in g.edges(data=True) if d["kind"] == kind]
        nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, style=style, edge_color=color, arrows=True,
                               arrowsize=14, node_size=900, connectionstyle="arc3,rad=0.08")
    handles = [plt.Line2D([], [], ls=st, color=c, label={"assoc": "relation KEY = VALUE", "rewrite": "rewrite KEY -> VALUE",
                                                         "concept": "concept term -> concept"}[k])
               for k, (st, c) in styles.items()]
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(literal(title), fontsize=10)
    ax.axis("off")
    return save(fig, Path(out), tight=True)


def similarity_heatmap(names, vectors, out: Path, title: str) -> Path:
    """Cosine similarity of the named vectors.  Shapes: vectors (k, d)."""
    u = unit(vectors)
    return save(heatmap(u @ u.T, names, names, title, vmin=-1, vmax=1), Path(out))
