"""--ablate specs: each kind resolved and refused in one line; run and sweep with ablations against the oracle doing
each the slow way (the memory rebuilt without the row, a fresh vector drawn, the stage not run, the position unread)."""
import numpy as np
import pytest

import scenario_oracle
from assocmem import run, sweep
from assocmem.ablations import parse, parse_all
from assocmem.errors import InputError
from assocmem.scenario import load_scenario
from conftest import ROOT, write

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"

CONCEPTS = """
name: concepts
relations:
  - Апрель -> Май
  - Май = весна
concepts:
  - Апрель = 4 + Месяц
  - Май = 5 + Месяц
model:
  dim: 256
  pipeline:
    - {context: {positions: last, values: tokens}}
    - {assoc: {positions: last}}
    - {feedback: {window: 2}}
prompts:
  - {text: "Месяц после Апрель ?", expect: Май, candidates: [Май, Апрель, весна]}
  - {text: "4 Месяц ?", expect: Апрель, candidates: [Май, Апрель]}
"""


def slow(sc, prompt, seed, ablations):
    """The oracle's margin with every ablation applied together, the slow way."""
    model = sc.model
    stages = [(l + 1, s) for l, layer in enumerate(model.pipeline) for s in range(len(layer.stages))]
    j = sc.prompts.index(prompt)
    return scenario_oracle.margin(
        sc, model, prompt, seed, left_out={m for a in ablations for m in a.rows},
        unread={i for a in ablations for i in (a.positions[j] if a.positions else ())},
        skip={stages[k] for a in ablations for k in a.stages}, fresh={n for a in ablations for n in a.names})[0]


SETS = [["rule:graphs/pronoun.yaml:4"], ["rule:ГОЛОДНАЯ = МАША"], ["layer:1"], ["layer:2.1"], ["position:6"],
        ["position:ОНА"], ["concept:КАШУ"], ["rule:pronoun.yaml:3", "position:7", "concept:ВКУСНАЯ"]]


@pytest.mark.parametrize("specs", SETS, ids=lambda s: "+".join(s))
def test_run_with_ablations_matches_the_oracle_and_keeps_the_unablated_margin(specs, backend):
    sc = load_scenario(PRONOUN)
    result = run(sc, backend, ablate=specs)
    plain = run(sc, backend)
    ablations = parse_all(specs, sc, sc.model)
    assert result.variants[0].ablations == ablations
    for p, q in zip(result.variants[0].prompts, plain.variants[0].prompts):
        np.testing.assert_allclose(p.expectation.margin, slow(sc, p.prompt, 0, ablations), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.expectation.unablated, q.expectation.margin, rtol=1e-12, atol=1e-15)
    data = result.to_dict()["variants"][0]
    assert [a["spec"] for a in data["ablated"]] == specs
    assert data["prompts"][0]["margin_unablated"] == result.variants[0].prompts[0].expectation.unablated


def test_a_concept_ablation_rebuilds_what_is_made_of_it(tmp_path, backend):
    sc = load_scenario(write(tmp_path, "c.yaml", CONCEPTS))
    for specs in (["concept:Месяц"], ["concept:Апрель"], ["concept:весна", "layer:3"], ["position:Месяц"]):
        ablations = parse_all(specs, sc, sc.model)
        result = run(sc, backend, ablate=specs)
        for p in result.variants[0].prompts:
            np.testing.assert_allclose(p.expectation.margin, slow(sc, p.prompt, 0, ablations), rtol=1e-9, atol=1e-12,
                                       err_msg=str(specs))


def test_sweep_with_ablations_matches_the_oracle_seed_by_seed():
    sc = load_scenario(PRONOUN)
    specs = ["rule:ВКУСНАЯ = КАШУ", "position:5"]
    result = sweep(sc, seeds=[3, 4, 5], ablate=specs, max_memory=4_000_000)  # one seed a pass
    plain = sweep(sc, seeds=[3, 4, 5])
    ablations = parse_all(specs, sc, sc.model)
    cell = result.cells[0]
    np.testing.assert_allclose(cell.unablated, plain.cells[0].margins, rtol=1e-12, atol=1e-15)
    for s, seed in enumerate([3, 4, 5]):
        for j, p in enumerate(sc.prompts):
            np.testing.assert_allclose(cell.margins[s, j], slow(sc, p, seed, ablations), rtol=1e-9, atol=1e-12)
    data = result.to_dict()
    assert data["ablated"][0]["kind"] == "rule" and "accuracy_unablated" in data["cells"][0]


BAD = [
    ("rule:graphs/pronoun.yaml:99", "no relation on line 99 of", "lines 3, 4, 5"),
    ("rule:nowhere.yaml:3", "no relation comes from 'nowhere.yaml'", "relations come from"),
    ("rule:ВКУСНАЯ = КАША", "no relation reads", "did you mean 'ВКУСНАЯ = КАШУ'"),
    ("layer:0", "there is no layer 0", "layers 1 to 2"),
    ("layer:99", "there is no layer 99", "layers 1 to 2"),
    ("layer:" + "9" * 900, "there is no layer", "layers 1 to 2"),
    ("layer:1.2", "layer 1 has no stage 2", "stages are 1 to 1"),
    ("layer:x", "expected layer:N or layer:N.S", "layers 1 to 2"),
    ("position:8", "position 8 is not before the last position of any prompt", "0 to 7"),
    ("position:99999999999999999999", "is not before the last position", "0 to 7"),
    ("position:-1", "positions count from 0", None),
    ("position:?", "no prompt has the token '?' before its last position", None),
    ("position:ЗЮЗЯ", "no prompt has the token 'ЗЮЗЯ'", None),
    ("concept:Каша", "no name 'Каша'", None),
    ("neuron:3", "expected KIND:WHAT", "rule:FILE:LINE"),
    ("rule", "expected KIND:WHAT", None),
    ("rule:", "nothing after rule:", None),
    ("position:" + "A" * 2000, "too long", None),
    ("rule:[red]x[/red]\x1b[31m", "no relation reads", None),
]


@pytest.mark.parametrize("spec, message, hint", BAD, ids=[b[0][:30] for b in BAD])
def test_a_bad_spec_is_one_clear_error(spec, message, hint):
    sc = load_scenario(PRONOUN)
    with pytest.raises(InputError) as err:
        parse(spec, sc, sc.model)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert hint is None or hint in text


def test_a_rule_is_found_by_its_file_in_any_spelling_and_a_token_at_every_position():
    sc = load_scenario(PRONOUN)
    for spec in ("rule:graphs/pronoun.yaml:4", "rule:pronoun.yaml:4", f"rule:{ROOT / 'graphs' / 'pronoun.yaml'}:4",
                 "rule:  ВКУСНАЯ   =  КАШУ "):
        assert parse(spec, sc, sc.model).rows == (1,)
    assert parse("position:ОНА", sc, sc.model).positions == ((5, 7), (5, 7))
    assert parse("layer:1", sc, sc.model).stages == (0,) and parse("layer:2.1", sc, sc.model).stages == (1,)
