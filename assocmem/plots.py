"""Heatmaps of a run; matplotlib is imported here only, with a headless backend."""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from assocmem.errors import InputError  # noqa: E402
from assocmem.mem import unit  # noqa: E402
from assocmem.report import token_label, visible  # noqa: E402
from assocmem.runs import Result, VariantRun  # noqa: E402

plt.rcParams["font.family"] = "DejaVu Sans"  # ships with matplotlib and has Cyrillic glyphs


def writable_target(path: Path) -> None:
    """Refuse to replace anything but a regular file: the rename would put a PNG where a device node, a FIFO, a
    folder or a symbolic link stood (a link would be replaced itself, not the file it points to)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            raise InputError(f"is {what}; only a regular file is replaced by a PNG", path,
                             hint="choose another file name")
    if not stat.S_ISREG(st.st_mode):
        raise InputError("is not a regular file; only a regular file is replaced by a PNG", path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(fig, path: Path) -> Path:
    """Write the figure whole or not at all: a temporary file in the same folder, then a rename.  Only a new file
    or a regular one is replaced; the file gets the mode a new file would (0666 less the umask: mkstemp's is
    0600); the temporary is removed on any exception, and on SIGTERM, which cli.main turns into SystemExit."""
    try:
        writable_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.part")
    except BaseException:
        plt.close(fig)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o666 & ~_umask())
        writable_target(path)  # again: something may have been put there while drawing
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path


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
PLOT_MAX = 100  # rows and columns a heatmap draws at most: 0.5 inch a column, so at most a 53-inch-wide figure


def literal(text: str, limit: int = TITLE_MAX) -> str:
    """Text that matplotlib shows as written: hidden characters as escapes, and `$` escaped, since a pair of them
    starts mathtext (`$\\foo$` is a parse error, `$x^2$` a formula); cut to `limit` characters."""
    text = str(text)
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return visible(text).replace("$", r"\$")


def slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE).strip("_") or "x"


def heatmap(matrix, row_labels, col_labels, title, cbar="cosine", vmin=None, vmax=None):
    """One heatmap; above PLOT_MAX rows or columns, the last PLOT_MAX of each (the last position and the last layers
    are what a run is read for), said in the title, so the figure never grows with an unbounded prompt."""
    rows, cols = matrix.shape
    if rows > PLOT_MAX or cols > PLOT_MAX:
        title = f"{title} (the last {min(rows, PLOT_MAX)} of {rows} rows, {min(cols, PLOT_MAX)} of {cols} columns)"
        matrix = matrix[-PLOT_MAX:, -PLOT_MAX:]
        row_labels, col_labels = list(row_labels)[-PLOT_MAX:], list(col_labels)[-PLOT_MAX:]
        rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * cols + 2.5), max(3.0, 0.32 * rows + 1.8)))
    im = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
    col_labels, row_labels = [literal(c, LABEL_MAX) for c in col_labels], [literal(r, LABEL_MAX) for r in row_labels]
    ax.set_xticks(range(cols), col_labels, rotation=90 if max(map(len, col_labels), default=0) > 3 else 0)
    ax.set_yticks(range(rows), row_labels)
    ax.set_title(literal(title), fontsize=10)
    fig.colorbar(im, ax=ax, label=cbar)
    return fig


def plot_variant(run: VariantRun, out: Path, variant_slug: str | None = None) -> list[Path]:
    files = []
    variant_slug = variant_slug or slug(run.variant.name)
    base = slug(run.scenario.name) + ("" if len(run.scenario.variants) == 1 else "-" + variant_slug)
    for j, p in enumerate(run.prompts):
        tokens = [f"{token_label(t)}" for t in p.prompt.tokens]
        stem = f"{base}-p{j + 1}"
        layer_labels = ["embed"] + [f"{l + 1}" for l in range(len(run.variant.model.pipeline))]
        files.append(save(heatmap(p.lens_similarity, layer_labels, tokens,
                                  f"{stem}: cosine of the last position ({tokens[-1]}) with every position, by layer",
                                  vmin=-1, vmax=1), out / f"{stem}-lens.png"))
        Xn = unit(p.stream)
        files.append(save(heatmap(Xn @ Xn.T, tokens, tokens, f"{stem}: token × token cosine of the final stream",
                                  vmin=-1, vmax=1), out / f"{stem}-stream.png"))
        for a in p.attention:  # the attention maps over positions (averaging weights are the recipe's, not drawn)
            if a.column_kind != "positions":
                continue
            several = len(run.variant.model.pipeline[a.layer - 1].stages) > 1
            name = f"{stem}-{a.kind}-L{a.layer}" + (f"s{a.index + 1}" if several else "")
            files.append(save(heatmap(a.weights, tokens, tokens, f"{stem}: layer {a.layer} {a.stage.label} (row: query)",
                                      cbar="attention", vmin=0, vmax=1), out / f"{name}.png"))
    return files


def plot_result(result: Result, out: Path) -> list[Path]:
    slugs = unique_slugs(run.variant.name for run in result.variants)
    return [f for run in result.variants for f in plot_variant(run, Path(out), slugs[run.variant.name])]


def plot_sweep(result, out: Path) -> list[Path]:
    """Per variant: accuracy over dim x temperature; per prompt: a histogram of margins."""
    out = Path(out)
    files = []
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
        fig = heatmap(grid, [str(d) for d in dims], [f"{t:g}" for t in temps],
                      f"{name} / {variant}: accuracy over {len(cells[0].seeds)} seeds", cbar="accuracy", vmin=0, vmax=1)
        ax = fig.axes[0]
        ax.set_xlabel("temperature")
        ax.set_ylabel("dim")
        for (i, k), v in np.ndenumerate(grid):
            ax.text(k, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
        files.append(save(fig, out / f"{name}-{slugs[variant]}-accuracy.png"))
    for j, p in enumerate(result.scenario.prompts):
        if p.expect is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for c in result.cells:
            if c.margins is not None:
                ax.hist(c.margins[:, j], bins=30, alpha=0.5, label=literal(f"{c.variant} d={c.dim} T={c.temperature:g}"))
        ax.axvline(0, color="k", lw=1)
        ax.set_xlabel("margin (expected logit - best other candidate)")
        ax.set_ylabel("seeds")
        ax.set_title(literal(f"{name} prompt {j + 1}: {p.label}"), fontsize=9)
        ax.legend(fontsize=6)
        files.append(save(fig, out / f"{name}-p{j + 1}-margins.png"))
    return files


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
    return save(fig, Path(out))


def similarity_heatmap(names, vectors, out: Path, title: str) -> Path:
    """Cosine similarity of the named vectors.  Shapes: vectors (k, d)."""
    u = unit(vectors)
    return save(heatmap(u @ u.T, names, names, title, vmin=-1, vmax=1), Path(out))
