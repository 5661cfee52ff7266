"""The shipped scenarios, and scenarios written by someone else in the file contract, with no model section."""
import numpy as np
import pytest

from assocmem.engine import estimate_bytes, plan_passes
from assocmem.result import run
from assocmem.scenario import load_scenario
from assocmem.sweep import sweep
from conftest import ROOT, write

SHIPPED = sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_runs_and_checked_expectations_hold(name):
    result = run(ROOT / "scenarios" / name)
    if name != "pronoun_seed.yaml":  # a reproduction; it promises no expectation
        assert result.passed


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
def test_float32_agrees_with_float64_on_shipped_scenarios(name):
    # Stated tolerance: 1e-4 absolute on every logit (cosines in [-1, 1]); float32 carries ~7 digits and
    # 16 layers of reads and norms lose at most one or two of them here.
    r64 = run(ROOT / "scenarios" / name, dtype="float64")
    r32 = run(ROOT / "scenarios" / name, dtype="float32")
    for v64, v32 in zip(r64.variants, r32.variants):
        for p64, p32 in zip(v64.prompts, v32.prompts):
            np.testing.assert_allclose(p32.lens_logits, p64.lens_logits, atol=1e-4)
            assert (p32.expectation is None) or p32.expectation.passed == p64.expectation.passed


def test_a_stream_that_overflows_is_named_not_reported(tmp_path):
    from assocmem.engine import NumericalError
    path = write(tmp_path, "s.yaml", "model:\n  similarity: dot\n  dtype: float32\n  pipeline:\n    - feedback: {repeat: 3000, sign: plus, norm: none}\n"
                                     "prompts:\n  - text: " + " ".join("abcdefghijklmnopqrstuvwxyz0123") + "\n")
    with pytest.raises(NumericalError, match=r"stopped being finite in layer \d+, stage feedback\(x\+mean, no norm\)"):
        run(path)


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


def test_a_sweep_split_by_seeds_and_prompts_gives_the_same_margins():
    sc = load_scenario(ROOT / "scenarios" / "successor.yaml", dim=256)  # 18 prompts
    model = sc.variants[0].model
    tight = estimate_bytes(sc, model, 1, False, prompts=7) + 10
    assert plan_passes(sc, model, 4, False, tight) == (1, 7)
    whole, split = sweep(sc, range(4)), sweep(sc, range(4), max_memory=tight)
    for a, b in zip(whole.cells, split.cells):
        np.testing.assert_allclose(a.margins, b.margins, atol=1e-12)
