"""Heatmaps draw the trace's own numbers: the lens similarity, the final stream's cosines, each attention map."""
import numpy as np

from assocmem import plots, run
from assocmem.mem import unit
from conftest import ROOT


def drawn(monkeypatch, draw, *args):
    """What each figure would have shown: {file name: the image's array, or the histograms' bar heights}."""
    images = {}

    def save(fig, path):
        ax = fig.axes[0]
        images[path.name] = np.asarray(ax.images[0].get_array()) if ax.images else [b.get_height() for b in ax.patches]
        plots.plt.close(fig)
        return path

    monkeypatch.setattr(plots, "save", save)
    draw(*args)
    return images


def test_run_heatmaps_are_the_lens_the_stream_and_each_attention_map_over_positions(monkeypatch, tmp_path):
    result = run(ROOT / "scenarios" / "pronoun_seed.yaml")
    images = drawn(monkeypatch, plots.plot_result, result, tmp_path)
    p = result.variants[0].prompts[1]
    np.testing.assert_array_equal(images["pronoun_seed-p2-lens.png"], p.lens_similarity)
    X = unit(p.stream)
    np.testing.assert_array_equal(images["pronoun_seed-p2-stream.png"], X @ X.T)
    contexts = [a for a in p.attention if a.column_kind == "positions"]
    assert len(contexts) == 3
    for a in contexts:
        np.testing.assert_array_equal(images[f"pronoun_seed-p2-context-L{a.layer}s{a.index + 1}.png"], a.weights)
    assert len(images) == 2 * (2 + 3)


def test_sweep_heatmap_is_each_cells_accuracy(monkeypatch, tmp_path):
    from assocmem import sweep

    result = sweep(ROOT / "scenarios" / "induction.yaml", seeds=2, dims=[32, 64], temperatures=[0.05, 0.1])
    images = drawn(monkeypatch, plots.plot_sweep, result, tmp_path)
    grid = images["induction-minus_rmsnorm-accuracy.png"]
    cells = {(c.dim, c.temperature): c.accuracy() for c in result.cells if c.variant == "minus+rmsnorm"}
    np.testing.assert_array_equal(grid, [[cells[32, 0.05], cells[32, 0.1]], [cells[64, 0.05], cells[64, 0.1]]])
    assert sum(images["induction-p1-margins.png"]) == 2 * len(result.cells)  # every (seed, cell) margin counted
