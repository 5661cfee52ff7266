"""sweep(): accuracy over seeds, dimensions and temperatures, its accounting, and its published figures."""
import numpy as np
import pytest

from assocmem import run, sweep
from assocmem.scenario import load_scenario
from assocmem.sweeps import Cell, SweepResult, plan
from cases import SWEEP_3_SEEDS
from conftest import ROOT, write

SHIPPED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))

# Written from the contract alone: other sentences, their own small graph, no model section.
OTHER_PRONOUNS = """
name: other pronouns
relations:
  - ОН = ПЁС + МЯЧ
  - ВЕСЁЛЫЙ = ПЁС
  - КРУГЛЫЙ = МЯЧ
  - ПЁС = ЛОВИТ
prompts:
  - text: ПЁС ЛОВИТ МЯЧ ПОТОМУ ЧТО ОН ВЕСЁЛЫЙ ОН ?
    expect: ПЁС
    candidates: [ПЁС, МЯЧ]
  - text: ПЁС ЛОВИТ МЯЧ ПОТОМУ ЧТО ОН КРУГЛЫЙ ОН ?
    expect: МЯЧ
    candidates: [ПЁС, МЯЧ]
  - text: КОТ ВИДИТ ПТИЦУ И ОНА КРАСИВАЯ ОНА ?
    expect: КРАСИВАЯ
    candidates: [КОТ, ПТИЦУ, КРАСИВАЯ]
"""
OTHER_COPIES = """
name: other copies
tokenizer: chars
prompts:
  - {text: "XYZW XYZQ", expect: W}
  - {text: "hello world hellq", expect: o}
  - {text: "1234 5678 1234 567?", expect: "8"}
"""


@pytest.mark.parametrize("text", [OTHER_PRONOUNS, OTHER_COPIES], ids=["pronouns", "copies"])
def test_someone_elses_scenario_passes_with_the_default_recipe_on_most_seeds(tmp_path, text):
    sc = load_scenario(write(tmp_path, "s.yaml", text))
    result = sweep(sc, range(50))
    assert result.accuracy >= 0.95, result.to_dict()["cells"][0]["prompts"]



@pytest.mark.parametrize("name", SHIPPED)
def test_a_three_seed_sweep_gives_its_published_figures(name):
    result = sweep(ROOT / "scenarios" / f"{name}.yaml", seeds=3)
    for c in result.cells:
        assert c.seeds == [0, 1, 2]
        want = SWEEP_3_SEEDS[name, c.variant]
        np.testing.assert_allclose((c.accuracy(), np.nanmean(c.margins), np.nanmin(c.margins)), want, atol=1e-6)


def test_a_sweeps_margins_are_the_runs_margins_seed_by_seed():
    path = ROOT / "scenarios" / "induction.yaml"
    swept = sweep(path, seeds=[5, 2], dims=[64])
    for c in swept.cells:
        for row, seed in zip(c.margins, c.seeds):
            (v,) = [v for v in run(path, seed=seed, dim=64).variants if v.variant.name == c.variant]
            np.testing.assert_allclose(row, [p.expectation.margin for p in v.prompts], atol=1e-12)


def cell(margins, check=True):
    return Cell("v", check, 8, 0.1, list(range(len(margins))), np.array(margins, dtype=float))


def test_a_tie_is_not_counted_as_held_and_prompts_without_expectations_are_left_out():
    c = cell([[0.0, 0.5, np.nan], [-0.1, 0.2, np.nan], [0.3, 0.0, np.nan]])
    assert c.accuracy() == 3 / 6
    assert (c.accuracy(0), c.accuracy(1)) == (1 / 3, 2 / 3) and np.isnan(c.accuracy(2))
    assert c.fails().tolist() == [2, 1, 0]
    result = SweepResult(None, [c, cell([[1.0, 1.0]], check=False), cell([[0.0, 2.0]])])
    assert result.accuracy == 4 / 8  # the unchecked cell is left out


def test_sweep_takes_a_path_a_seed_count_and_a_backend_name():
    result = sweep(str(ROOT / "scenarios" / "pronoun.yaml"), seeds=2, dims=[32, 64], temperatures=[0.1],
                   backend="numpy")
    assert [(c.dim, c.temperature, c.seeds) for c in result.cells] == [(32, 0.1, [0, 1]), (64, 0.1, [0, 1])]
    assert len(repr(result)) < 300 and repr(result).startswith("<SweepResult pronoun: accuracy")


def test_plan_lays_dims_and_temperatures_over_every_variant():
    sc = load_scenario(ROOT / "scenarios" / "induction.yaml")
    cells = plan(sc, [8, 16], [0.1])
    assert [(v.name, d, t, v.model.dim) for v, d, t in cells][:2] == [("minus+rmsnorm", 8, 0.1, 8), ("minus+rmsnorm", 16, 0.1, 16)]
    assert len(cells) == 6


def test_an_interrupted_sweep_keeps_what_finished(monkeypatch):
    import assocmem.sweeps as sweeps

    calls = []

    def run_cell(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return np.ones((1, 2))

    monkeypatch.setattr(sweeps, "run_cell", run_cell)
    result = sweep(ROOT / "scenarios" / "pronoun.yaml", seeds=1, dims=[8, 16])
    assert not result.complete and result.cells[0].seeds == [0] and result.cells[1].margins is None


def test_a_configured_numpy_backend_keeps_its_settings_when_the_sweep_pins_its_loops(monkeypatch):
    """sweep() makes the fused-loop choice once (sweep_jit); a backend the caller configured keeps the rest."""
    from assocmem import sweeps as module
    from assocmem.backends.numpy_backend import NumpyBackend

    used = []
    real = module.run_cell
    monkeypatch.setattr(module, "run_cell", lambda sc, v, seeds, backend, *a: used.append(backend) or real(sc, v, seeds, backend, *a))
    mine = NumpyBackend(threads=1, block_rows=3, chunk_rows=5, stream_block_bytes=1)
    module.sweep("scenarios/pronoun.yaml", seeds=2, backend=mine)
    b = used[0]
    assert b.jit in (True, False) and (b.threads, b.block_rows, b.chunk_rows, b.stream_block_bytes) == (1, 3, 5, 1)
