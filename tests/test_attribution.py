"""attribute(): every Δmargin against the oracle removing each memory row, layer, stage and position the slow way;
the pronoun test's dependencies; seeds; passes split by the memory budget; the JSON."""
import json

import numpy as np
import pytest

import scenario_oracle
from assocmem.attribution import attribute
from assocmem.scenario import load_scenario
from conftest import ROOT, write

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"

STAGES = """
name: stages
relations: [a = b, c = d + e, b -> f]
concepts: [K = a + 0.5*c]
model:
  dim: 64
  temperature: 0.2
  pipeline:
    - layer: [{assoc: {positions: before_last}}, {context: {values: tokens}}]
    - layer: [{feedback: {window: 2}}, {mlp: {positions: last}}]
    - {context: {match: prefix, positions: last, values: tokens, steps: 2, threshold: 0.5, fallback: previous}}
prompts:
  - {text: "a c K b ?", expect: f, candidates: [b, d, f]}
  - {text: "c a ?", expect: d, candidates: [d, b]}
  - {text: "c b", name: no expectation}
"""


def units_by_oracle(sc, variant, prompt, seed, unit):
    """The margin with one unit removed, the slow way."""
    model = variant.model
    stages = [(l + 1, s) for l, layer in enumerate(model.pipeline) for s in range(len(layer.stages))]
    if unit.kind == "rule":  # several relations may share a line (a flow list): the label tells them apart
        m = [(str(r.source), r.label) for r in sc.graph.relations].index((unit.where, unit.label))
        return scenario_oracle.margin(sc, model, prompt, seed, left_out=(m,))[0]
    if unit.kind == "position":
        return scenario_oracle.margin(sc, model, prompt, seed, unread=(int(unit.where),))[0]
    if unit.kind == "layer":
        return scenario_oracle.margin(sc, model, prompt, seed, skip=[s for s in stages if s[0] == int(unit.where)])[0]
    n, s = map(int, unit.where.split("."))
    return scenario_oracle.margin(sc, model, prompt, seed, skip=[(n, s - 1)])[0]


@pytest.mark.parametrize("path", ["pronoun", "stages"])
def test_every_delta_matches_the_oracle_removing_it_the_slow_way(path, tmp_path, backend):
    file = PRONOUN if path == "pronoun" else write(tmp_path, "stages.yaml", STAGES)
    sc = load_scenario(file)
    result = attribute(sc, seeds=2, backend=backend)
    v = result.variants[0]
    assert v.skipped == (["no expectation"] if path == "stages" else [])
    for p in v.prompts:
        kinds = {u.kind for u in p.units}
        assert {"rule", "layer", "position"} <= kinds and (path == "pronoun" or "stage" in kinds)
        assert len([u for u in p.units if u.kind == "position"]) == len(p.prompt.tokens) - 1
        for s, seed in enumerate(result.seeds):
            want, _ = scenario_oracle.margin(sc, sc.model, p.prompt, seed)
            np.testing.assert_allclose(p.margins[s], want, rtol=1e-9, atol=1e-12)
            for k, unit in enumerate(p.units):
                np.testing.assert_allclose(p.ablated[s, k], units_by_oracle(sc, v.variant, p.prompt, seed, unit),
                                           rtol=1e-9, atol=1e-12, err_msg=f"{unit} at seed {seed}")


def test_the_pronoun_answer_depends_on_its_adjective_rule_and_position_and_flips_without_them():
    result = attribute(PRONOUN)
    tasty, hungry = result.variants[0].prompts

    def unit(p, kind, where):
        return next(k for k, u in enumerate(p.units) if u.kind == kind and (u.where == where or u.where.endswith("/" + where)))

    for p, rule in ((tasty, "graphs/pronoun.yaml:4"), (hungry, "graphs/pronoun.yaml:5")):
        assert p.margins[0] > 0.4
        assert p.delta[0, unit(p, "rule", rule)] < -0.45      # ВКУСНАЯ = КАШУ / ГОЛОДНАЯ = МАША
        assert p.delta[0, unit(p, "position", "6")] < -0.45   # the earlier adjective
    # at the model's seed, the first prompt flips without its rule, and without the adjective's position
    assert tasty.ablated[0, unit(tasty, "rule", "graphs/pronoun.yaml:4")] < 0
    assert tasty.ablated[0, unit(tasty, "position", "6")] < 0
    assert tasty.flips[unit(tasty, "rule", "graphs/pronoun.yaml:4")] == 1
    # the other adjective's rule moves it by softmax tails only
    assert abs(tasty.delta[0, unit(tasty, "rule", "graphs/pronoun.yaml:5")]) < 1e-5


def test_a_rule_the_answer_does_not_depend_on_leaves_the_margin_unchanged_to_1e_9(tmp_path):
    """At assoc temperature 0.01 a row that matches nothing has weight e^-87 against the matching one: removing
    МАША = ЕСТ or ПОТОМУ = ЧТО changes nothing a float64 can hold, removing ВКУСНАЯ = КАШУ flips the answer."""
    text = PRONOUN.read_text(encoding="utf-8").replace("graph: ../graphs/pronoun.yaml",
                                                       f"graph: {ROOT / 'graphs' / 'pronoun.yaml'}")
    text += "model:\n  pipeline:\n    - {context: {positions: last, values: tokens, match: prefix, decay: 0.5, " \
            "steps: 3, hops: 3, threshold: 0.55, fallback: previous, temperature: 0.012}}\n" \
            "    - {assoc: {positions: last, temperature: 0.01}}\n"
    result = attribute(write(tmp_path, "cold.yaml", text))
    tasty = result.variants[0].prompts[0]
    by = {u.label: k for k, u in enumerate(tasty.units) if u.kind == "rule"}
    for label in ("МАША = ЕСТ", "ПОТОМУ = ЧТО", "ЕСТ = КАШУ", "ГОЛОДНАЯ = МАША"):
        assert abs(tasty.delta[0, by[label]]) < 1e-9, label
    assert tasty.ablated[0, by["ВКУСНАЯ = КАШУ"]] < 0 < tasty.margins[0]


def test_seeds_give_mean_and_spread_and_the_first_is_the_model_seed():
    one = attribute(PRONOUN, seeds=1)
    many = attribute(PRONOUN, seeds=5)
    assert many.seeds == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(many.variants[0].prompts[0].ablated[0], one.variants[0].prompts[0].ablated[0])
    d = many.to_dict()["variants"][0]["prompts"][0]["units"]
    assert all(u["delta_min"] <= u["delta_mean"] <= u["delta_max"] and u["delta_std"] >= 0 for u in d)
    assert abs(d[0]["delta_mean"]) >= abs(d[-1]["delta_mean"])  # ranked


def test_a_small_memory_budget_splits_the_batch_and_changes_nothing():
    whole = attribute(PRONOUN, seeds=3)
    split = attribute(PRONOUN, seeds=3, max_memory=3_000_000)  # one seed and a few rows a pass
    for a, b in zip(whole.variants[0].prompts, split.variants[0].prompts):
        np.testing.assert_allclose(a.ablated, b.ablated, rtol=1e-12, atol=1e-15)
    assert json.loads(json.dumps(split.to_dict()))["seeds"] == [0, 1, 2]


SINGLE = """
name: single
relations: [x = x]
prompts:
  - {text: "x ?", name: listed, expect: x, candidates: [x]}
  - {text: "x ?", name: vocabulary, expect: x}
  - {text: "x ?", name: two, expect: x, candidates: [x, "?"]}
"""


def test_a_single_candidate_prompt_has_no_margin_so_nothing_attributed_and_no_warning(tmp_path):
    """One candidate listed, or the vocabulary less the last token one name: an infinite margin, so no Δmargin
    (inf - inf is NaN, and numpy warned of it); the prompt is named as having no margin, not shown as NaN rows."""
    import warnings

    from assocmem.runs import NO_MARGIN

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = attribute(write(tmp_path, "s.yaml", SINGLE), seeds=2)
    v = result.variants[0]
    assert [p.prompt.name for p in v.prompts] == ["two"] and v.alone == ["listed", "vocabulary"]
    assert np.isfinite(v.prompts[0].delta).all()
    data = json.loads(json.dumps(result.to_dict()), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["variants"][0]["single_candidate"] == ["listed", "vocabulary"]
    assert data["variants"][0]["single_candidate_note"] == NO_MARGIN
    assert "nan" not in repr(result)
