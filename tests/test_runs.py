"""run(): the shipped scenarios and their published margins, each prompt's named trace against the oracle,
scenarios written by someone else, and a result's repr and JSON."""
import json

import numpy as np
import pytest

import oracle
from assocmem import run
from assocmem.compile import compile_scenario
from assocmem.scenario import load_scenario
from cases import RUN_MARGINS
from conftest import ROOT, write

SHIPPED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_gives_its_published_margins(name):
    result = run(ROOT / "scenarios" / f"{name}.yaml")
    if name != "pronoun_seed":  # a reproduction; it promises no expectation
        assert result.passed
    for v in result.variants:
        got = [p.expectation.margin for p in v.prompts]
        np.testing.assert_allclose(got, RUN_MARGINS[name, v.variant.name], atol=1e-6, err_msg=v.variant.name)
        for p, margin in zip(v.prompts, got):
            assert p.expectation.passed == (margin > 0)
            candidates = p.prompt.candidates or v.names
            assert p.expectation.winner in candidates
            assert (p.expectation.winner == p.prompt.expect) == p.expectation.passed


def test_every_shipped_variant_has_a_pinned_margin():
    names = {(n, v.name) for n in SHIPPED for v in load_scenario(ROOT / "scenarios" / f"{n}.yaml").variants}
    assert names == set(RUN_MARGINS)


RAGGED = """
name: ragged
relations:
  - a = b + c
  - b -> d
  - c + d = a
prompts:
  - {text: a b c d a, expect: b, candidates: [b, c]}
  - {text: d c, expect: a}
  - {text: b}
  - {text: c a b, expect: d, candidates: [a, d]}
model:
  dim: 32
  temperature: 0.2
  pipeline:
    - feedback: {window: 2}
    - layer: [context, {assoc: {positions: before_last}}, {mlp: {temperature: 0.5}}]
    - layer: [{context: {positions: last, values: tokens}}, {feedback: {positions: last, sign: plus, norm: none}}]
"""


@pytest.mark.parametrize("sim", ["cosine", "dot"])
def test_each_prompts_trace_is_the_oracles(tmp_path, sim):
    """What a user reads of each prompt of a ragged run: weights with their columns cut to the prompt, the
    lens, the logits and the margin against its candidates."""
    sc = load_scenario(write(tmp_path, "s.yaml", RAGGED), similarity=sim)
    model = sc.model
    compiled = compile_scenario(sc, model)
    vocab = compiled.vocab
    result = run(sc)
    for p, prompt in zip(result.variants[0].prompts, sc.prompts):
        ids = [vocab.index[t] for t in prompt.tokens]
        want = oracle.trace_prompt(vocab.vectors[0, ids], compiled.memory.keys[0], compiled.memory.values[0],
                                   vocab.vectors[0], model.pipeline, model.temperature, sim)
        np.testing.assert_allclose(p.logits, want.logits, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.lens_logits, want.lens_logits, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.lens_similarity, want.lens_similarity, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.stream, want.stream, rtol=1e-9, atol=1e-12)
        assert [(a.layer, a.index, a.kind) for a in p.attention] == [w[:3] for w in want.weights]
        for a, (*_, weights) in zip(p.attention, want.weights):
            assert a.weights.shape == weights.shape, a.stage.label
            np.testing.assert_allclose(a.weights, weights, rtol=1e-9, atol=1e-12, err_msg=a.stage.label)
            if a.column_kind == "memory":
                assert [c.name for c in a.columns] == ["a = b + c", "b -> d", "c + d = a"]
                assert [c.source for c in a.columns] == [f"{sc.path}:{i}" for i in (4, 5, 6)]
            else:
                assert [(c.name, c.position) for c in a.columns] == [(t, i) for i, t in enumerate(prompt.tokens)]
        if prompt.expect is None:
            assert p.expectation is None
            continue
        candidates = [vocab.index[c] for c in (prompt.candidates or vocab.names)]
        margin, winner = oracle.margin(want.logits, vocab.index[prompt.expect], candidates)
        assert p.expectation.margin == pytest.approx(margin, rel=1e-9, abs=1e-12)
        assert p.expectation.winner == vocab.names[winner]


def test_to_dict_is_the_trace(tmp_path):
    result = run(write(tmp_path, "s.yaml", RAGGED))
    v, data = result.variants[0], result.to_dict()["variants"][0]
    json.dumps(data)
    for p, d in zip(v.prompts, data["prompts"]):
        assert d["margin"] == (p.expectation.margin if p.expectation else None)
        assert list(d["logits"].values()) == p.logits.tolist()
        assert list(d["embedding_logits_last"].values()) == p.lens_logits[0].tolist()
        for layer in d["layers"]:
            n = layer["layer"]
            assert list(layer["logits_last"].values()) == p.lens_logits[n].tolist()
            assert layer["similarity_last_to_positions"] == p.lens_similarity[n].tolist()
            for a, stage in zip(p.layer(n), layer["stages"], strict=True):
                assert stage["attention"] == a.weights.tolist() and stage["columns"] == [c.name for c in a.columns]
                assert (stage["kind"], stage["label"], stage["columns_are"]) == (a.kind, a.stage.label, a.what)


def test_repr_is_a_short_summary():
    result = run(ROOT / "scenarios" / "successor.yaml")
    text = repr(result)
    assert len(text) < 400 and text.startswith("<Result successor: 1 variant(s) x 18 prompt(s), PASS")
    assert "PASS Февраль +0.391" in text and "12 more" in text
    p = result.variants[0].prompts[0]
    assert repr(p) == "<PromptRun 'Январь': PASS Февраль +0.391>"
    assert repr(p.attention[0]) == "<Attention layer 1.0 assoc(last): attention over the memory rows, (1, 12)>"


@pytest.mark.parametrize("name", SHIPPED)
def test_float32_agrees_with_float64_on_shipped_scenarios(name):
    # Stated tolerance: 1e-4 absolute on every logit (cosines in [-1, 1]); float32 carries ~7 digits and
    # 16 layers of reads and norms lose at most one or two of them here.
    r64 = run(ROOT / "scenarios" / f"{name}.yaml", dtype="float64")
    r32 = run(ROOT / "scenarios" / f"{name}.yaml", dtype="float32")
    for v64, v32 in zip(r64.variants, r32.variants):
        for p64, p32 in zip(v64.prompts, v32.prompts):
            np.testing.assert_allclose(p32.lens_logits, p64.lens_logits, atol=1e-4)
            assert (p32.expectation is None) or p32.expectation.passed == p64.expectation.passed
