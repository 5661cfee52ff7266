"""Pictures draw the trace's own numbers, in a bounded window: the vocabulary logit lens, the lens over positions, the
final stream's cosines, each context map (its updated rows, the non-causal half masked), the sweep's margins."""
import numpy as np
import pytest

from assocmem import plots, run
from assocmem.mem import unit
from conftest import ROOT


def drawn(monkeypatch, draw, *args, **kwargs):
    """What each figure would have shown: {file name: the figure}, the figures left open to be read."""
    figures = {}

    def save(fig, path, tight=False):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save", save)
    monkeypatch.setitem(plots.plt.rcParams, "figure.max_open_warning", 0)  # kept open to be read, closed after
    draw(*args, **kwargs)
    return figures


def image(fig):
    """The heatmap's cells, NaN where masked."""
    return np.ma.filled(np.ma.asarray(fig.axes[0].images[0].get_array(), dtype=float), np.nan)


def ticks(fig, axis="x"):
    ax = fig.axes[0]
    return [t.get_text() for t in (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plots.plt.close("all")


@pytest.fixture(scope="module")
def long_context():
    return run(ROOT / "scenarios" / "long_context.yaml")


def top5_tokens(lens_logits, expect):
    """Every token among the five best logits after some layer, and the expected one, best final logit first."""
    chosen = {expect}
    for row in lens_logits:
        chosen |= set(sorted(range(len(row)), key=lambda v: (-row[v], v))[:5])
    return sorted(chosen, key=lambda v: (-lens_logits[-1][v], v))


def test_the_vocabulary_lens_is_layers_by_the_tokens_that_reach_the_top_5(monkeypatch, tmp_path):
    result = run(ROOT / "scenarios" / "multihop.yaml")
    figures = drawn(monkeypatch, plots.plot_result, result, tmp_path)
    v = result.variants[0]
    for j, p in enumerate(v.prompts):
        fig = figures[f"multihop-p{j + 1}-vocab-lens.png"]
        columns = top5_tokens(p.lens_logits, v.names.index(p.prompt.expect))
        np.testing.assert_array_equal(image(fig), p.lens_logits[:, columns])
        assert ticks(fig) == [v.names[c] + (" ← expect" if v.names[c] == p.prompt.expect else "") for c in columns]
        assert ticks(fig, "y") == ["embedding", "1 context", "2 assoc", "3 assoc"]
    first = v.prompts[0]  # Коби соперник ?: the hidden hop, Лейкерс, leads after layer 2 and Селтикс after layer 3
    pair = ["Лейкерс", "Селтикс"]
    hop = [pair[k] for k in np.argmax(first.lens_logits[:, [v.names.index(n) for n in pair]], axis=1)]
    assert hop[2:] == ["Лейкерс", "Селтикс"]
    assert ticks(figures["multihop-p1-vocab-lens.png"])[:2] == ["Селтикс ← expect", "?"]


def test_long_prompts_are_drawn_in_a_window_around_the_positions_that_matter(monkeypatch, tmp_path, long_context):
    figures = drawn(monkeypatch, plots.plot_result, long_context, tmp_path)
    v = long_context.variants[0]  # the default recipe, positions: last
    p = v.prompts[4]              # 200 distractors, ВКУСНАЯ: 209 positions
    tokens = p.prompt.tokens
    lens = figures["long_context-default-p5-lens.png"]
    shown = [int(t.rsplit("@", 1)[1]) for t in ticks(lens)]
    assert shown == sorted(shown) and len(shown) <= 32 and len(tokens) == 209
    assert set(range(199, 209)) <= set(shown)  # the last ten
    assert 202 in shown and tokens[202] == "КАШУ"  # the expected token
    context = p.attention[0]
    weighted = np.nonzero(context.weights.max(axis=0) >= 0.005)[0]
    assert set(weighted) <= set(shown)  # every position the read put weight on
    np.testing.assert_array_equal(image(lens), p.lens_similarity[:, shown])
    assert "of 209 positions" in lens.texts[0].get_text()

    ctx = figures["long_context-default-p5-context-L1.png"]  # a positions: last read is one row
    assert ticks(ctx, "y") == ["?@208"]
    cols = [int(t.rsplit("@", 1)[1]) for t in ticks(ctx)]
    np.testing.assert_array_equal(image(ctx)[0, :-1], context.weights[208, cols[:-1]])
    assert cols[-1] == 208 and np.isnan(image(ctx)[0, -1])  # a position does not read itself: masked
    assert set(cols) <= set(range(199, 209)) | {202} | set(weighted)  # not the softmax's tiny weights
    assert "long_context-default-p5-stream.png" not in figures  # only the last row changed: nothing to see

    window1 = long_context.variants[2].prompts[4]  # six feedback layers change every row: the stream is drawn
    stream = figures["long_context-window1-p5-stream.png"]
    rows = [int(t.rsplit("@", 1)[1]) for t in ticks(stream, "y")]
    X = unit(window1.stream[rows])
    np.testing.assert_allclose(image(stream), X @ X.T, atol=1e-12)
    for name, fig in figures.items():
        w, h = fig.get_size_inches()
        assert w <= plots.MAX_WIDTH + 1e-9 and h <= plots.MAX_HEIGHT + 1e-9, name
        ax, bar = fig.axes[0].get_position(), fig.axes[1].get_position()
        assert 0 < (bar.x0 - ax.x1) * w < 0.2 and bar.y0 == ax.y0, name  # the colorbar right beside its plot


def test_context_maps_show_the_rows_a_stage_updated_with_the_future_masked(monkeypatch, tmp_path):
    result = run(ROOT / "scenarios" / "pronoun_seed.yaml")
    figures = drawn(monkeypatch, plots.plot_result, result, tmp_path)
    p = result.variants[0].prompts[1]
    contexts = [a for a in p.attention if a.column_kind == "positions"]
    assert len(contexts) == 3
    for a in contexts:
        fig = figures[f"pronoun_seed-p2-context-L{a.layer}s{a.index + 1}.png"]
        rows = [int(t.rsplit("@", 1)[1]) for t in ticks(fig, "y")]
        assert rows == list(np.nonzero(a.weights.any(axis=1))[0])  # updated rows only
        cells = image(fig)
        T = len(p.prompt.tokens)
        for r, i in enumerate(rows):
            np.testing.assert_array_equal(cells[r, :i], a.weights[i, :i])
            assert np.isnan(cells[r, i:]).all()  # not its past
        assert cells.shape[1] == T
    X = unit(p.stream)
    np.testing.assert_array_equal(image(figures["pronoun_seed-p2-stream.png"]), X @ X.T)
    np.testing.assert_array_equal(image(figures["pronoun_seed-p2-lens.png"]), p.lens_similarity)
    assert len(figures) == 2 * (3 + 3)


def test_one_token_prompts_get_no_one_by_one_pictures(monkeypatch, tmp_path):
    result = run(ROOT / "scenarios" / "successor.yaml")
    written = []
    figures = drawn(monkeypatch, plots.plot_result, result, tmp_path, on_file=written.append)
    assert sorted(figures) == sorted(f"successor-p{j}-vocab-lens.png" for j in range(1, 19))
    assert [f.name for f in written] == list(figures)  # each file announced as it is written
    assert all(min(image(f).shape[1], 2) == 2 for f in figures.values())


def test_sweep_heatmap_is_each_cells_accuracy_and_margins_one_row_per_cell(monkeypatch, tmp_path):
    from assocmem import sweep

    result = sweep(ROOT / "scenarios" / "induction.yaml", seeds=3, dims=[32, 64], temperatures=[0.05, 0.1])
    figures = drawn(monkeypatch, plots.plot_sweep, result, tmp_path)
    grid = image(figures["induction-minus_rmsnorm-accuracy.png"])
    cells = {(c.dim, c.temperature): c.accuracy() for c in result.cells if c.variant == "minus+rmsnorm"}
    np.testing.assert_array_equal(grid, [[cells[32, 0.05], cells[32, 0.1]], [cells[64, 0.05], cells[64, 0.1]]])
    margins = figures["induction-p1-margins.png"]
    ax = margins.axes[0]
    points = [c.get_offsets() for c in ax.collections]
    assert len(points) == len(result.cells) == 12
    for row, (c, xy) in enumerate(zip(result.cells, points)):
        np.testing.assert_array_equal(np.asarray(xy)[:, 0], c.margins[:, 0])  # every seed's margin, in its row
        assert (np.abs(np.asarray(xy)[:, 1] - row) < 0.25).all()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{c.variant} d={c.dim} T={c.temperature:g}" for c in result.cells]
    shown = [t.get_text() for t in ax.texts][:len(result.cells)]
    assert shown == [f"{c.accuracy(0):.2f}" for c in result.cells]


def test_the_vocabulary_lens_keeps_at_most_plot_max_tokens_and_the_expected_one():
    rng = np.random.default_rng(0)
    lens = rng.normal(size=(30, 400))  # 30 layers: up to 150 tokens reach a top 5
    worst = int(np.argmin(lens[-1]))
    columns = plots.lens_tokens(lens, worst)
    assert len(columns) == plots.PLOT_MAX and columns[-1] == worst
    best = top5_tokens(lens, worst)
    assert columns[:-1] == best[:plots.PLOT_MAX - 1]


def test_a_prompt_without_a_margin_gets_no_margins_picture(monkeypatch, tmp_path):
    from assocmem import sweep
    from conftest import write

    path = write(tmp_path, "s.yaml", "relations: [a = b]\nprompts:\n  - {text: 'a ?', expect: b, candidates: [b]}\n"
                                     "  - {text: 'a ?', expect: b}\n")
    figures = drawn(monkeypatch, plots.plot_sweep, sweep(path, seeds=3), tmp_path)
    assert sorted(figures) == ["s-model-accuracy.png", "s-p2-margins.png"]  # prompt 1 has a single candidate
