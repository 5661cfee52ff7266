"""The memory budget: the estimate reads the kinds' table, and a run split into passes gives the same numbers."""
import numpy as np
import pytest

from assocmem import run, sweep
from assocmem.budget import STREAM_COPIES, estimate_bytes, plan_passes
from assocmem.errors import InputError
from assocmem.model import Layer, Model, Stage
from assocmem.scenario import load_scenario
from conftest import ROOT, write


def test_the_estimate_counts_each_recorded_stage_by_what_its_columns_are(tmp_path):
    sc = load_scenario(write(tmp_path, "s.yaml", "relations: [a = b, b = c, c = a]\nprompts: [a b c d e, a]\n"))
    P, T, M, V, d = 2, 5, 3, 5, 10
    base = Model(dim=d, pipeline=(Layer((Stage("assoc"),)),))
    fast = estimate_bytes(sc, base, 1, False)
    assert fast == 8 * (STREAM_COPIES * P * T * d + P * T * T + P * T * M + 2 * (V + M) * d)
    for stage, columns in ((Stage("assoc"), M), (Stage("mlp"), M), (Stage("context"), T), (Stage("feedback"), T)):
        model = Model(dim=d, pipeline=(Layer((stage,)),))
        assert estimate_bytes(sc, model, 1, True) - fast == 8 * (P * T * columns + P * (V + T)), stage.kind
    assert estimate_bytes(sc, base, 3, False) == 3 * fast
    assert estimate_bytes(sc, Model(dim=d, dtype="float32", pipeline=base.pipeline), 1, False) == fast // 2


def test_plan_passes_splits_seeds_then_prompts_and_refuses_one_prompt_too_many():
    sc = load_scenario(ROOT / "scenarios" / "successor.yaml", dim=256)
    model = sc.model
    one_seed = estimate_bytes(sc, model, 1, False)
    assert plan_passes(sc, model, 10, False, 10 * one_seed) == (10, 18)
    assert plan_passes(sc, model, 10, False, 3 * one_seed + 1) == (3, 18)
    assert plan_passes(sc, model, 10, False, estimate_bytes(sc, model, 1, False, prompts=7)) == (1, 7)
    with pytest.raises(InputError, match="one prompt of this run would need about"):
        plan_passes(sc, model, 1, False, estimate_bytes(sc, model, 1, False, prompts=1) - 1)


def test_a_small_memory_budget_runs_in_passes_with_the_same_numbers():
    sc = load_scenario(ROOT / "scenarios" / "long_context.yaml")  # 6 prompts of different lengths, 2 variants
    model = sc.variants[0].model
    tight = estimate_bytes(sc, model, 1, True, prompts=2) + 10
    assert plan_passes(sc, model, 1, True, tight) == (1, 2)
    whole, passes = run(sc), run(sc, max_memory=tight)
    for a, b in zip(whole.variants, passes.variants):
        for pa, pb in zip(a.prompts, b.prompts):
            np.testing.assert_allclose(pa.logits, pb.logits, atol=1e-12)
            np.testing.assert_allclose(pa.stream, pb.stream, atol=1e-12)
            for wa, wb in zip(pa.attention, pb.attention, strict=True):
                np.testing.assert_allclose(wa.weights, wb.weights, atol=1e-12)


def test_a_sweep_split_by_seeds_and_prompts_gives_the_same_margins():
    sc = load_scenario(ROOT / "scenarios" / "successor.yaml", dim=256)  # 18 prompts
    model = sc.variants[0].model
    tight = estimate_bytes(sc, model, 1, False, prompts=7) + 10
    assert plan_passes(sc, model, 4, False, tight) == (1, 7)
    whole, split = sweep(sc, range(4)), sweep(sc, range(4), max_memory=tight)
    for a, b in zip(whole.cells, split.cells):
        np.testing.assert_allclose(a.margins, b.margins, atol=1e-12)
