"""A graph's structure and crosstalk: fan-in and fan-out, cycles, names nothing uses, the closest rows."""
import numpy as np

from assocmem.crosstalk import concept_vectors, graph_report, report_file
from assocmem.graph import Graph, parse_concept, parse_relation
from assocmem.scenario import load_graph
from conftest import ROOT


def test_structure_of_the_pronoun_graph():
    r = graph_report(load_graph(ROOT / "graphs/pronoun.yaml"), 1000, 0, 0.05)
    assert (r.tokens, r.relations, r.concepts) == (8, 6, 0)
    assert r.fan_out["ОНА"] == 2 and r.fan_in["КАШУ"] == 3
    assert r.only_values == ["КАШУ", "ЧТО"] and r.cycles == [] and r.components == []
    assert r.unused == [] and r.ambiguous == []


def test_cycles_and_crowded_keys_are_reported():
    g = Graph(tuple(parse_relation(t, "g", i) for i, t in enumerate(["a = b", "b = a", "a + x = c", "a + y = d"])))
    r = graph_report(g, 4096, 0, 0.2)
    assert r.cycles == [["a", "b"]] and r.components == [["a", "b"]]
    pairs = {frozenset((a, b)): c for a, b, c in r.key_crosstalk}
    assert abs(pairs[frozenset(("a", "a + x"))] - 2**-0.5) < 0.05  # unit(a + x) . a = 1/sqrt 2
    assert abs(pairs[frozenset(("a + x", "a + y"))] - 0.5) < 0.05  # they share the term a
    assert any("a + x" in w and "a + y" in w for w in r.ambiguous)


def test_names_used_only_in_concepts_or_prompts_are_unused():
    g = Graph((parse_relation("a = b", "g", 1),), (parse_concept("C = a + m", "g", 2),))
    r = graph_report(g, 64, 0, 0.05, extra_names=["p"])
    assert r.unused == ["m"] and r.only_keys == ["a"] and r.only_values == ["b"] and r.tokens == 4  # p: a prompt token


def test_the_calendars_closest_concepts_share_a_term():
    r, g, model = report_file(ROOT / "graphs" / "calendar.yaml")
    assert (r.relations, r.concepts, model.dim) == (12, 19, 1000)
    assert r.unused == ["День", "Месяц"]  # concept terms, never a key or a value
    assert r.cycles == [[str(n) for n in range(1, 13)]]  # from the first-mentioned name, whatever the hash seed
    terms = {c.name: {t.name for t in c.terms} for c in g.concepts}
    assert len(r.concept_crosstalk) == 5
    for a, b, cosine in r.concept_crosstalk:  # unit(4 + Месяц) . unit(4 + День) = 1/2, up to noise
        assert terms[a] & terms[b] and abs(cosine - 0.5) < 0.15
    names, vectors = concept_vectors(g, model)
    assert names == [c.name for c in g.concepts] and vectors.shape == (19, 1000)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_top_pairs_a_block_of_rows_at_a_time_is_the_whole_matrix_s(monkeypatch):
    """The largest cosines come out the same when only a few rows' cosines are held at once (memory bounded)."""
    from assocmem import crosstalk
    from assocmem.mem import unit

    v = np.random.default_rng(4).normal(size=(40, 16))
    v[7] = 2 * v[3]  # a pair at cosine 1, so the top is known
    names = [f"n{i}" for i in range(40)]
    u = unit(v)
    c = u @ u.T
    i, j = np.triu_indices(40, 1)
    order = np.argsort(-c[i, j], kind="stable")[:6]
    whole = [(names[i[k]], names[j[k]], c[i[k], j[k]]) for k in order]
    for block_bytes in (8, 8 * 40 * 3, 2**30):
        monkeypatch.setattr(crosstalk, "PAIRS_BLOCK_BYTES", block_bytes)
        got = crosstalk.top_pairs(names, v, 6)
        assert [g[:2] for g in got] == [w[:2] for w in whole] and got[0][:2] == ("n3", "n7")
        np.testing.assert_allclose([g[2] for g in got], [w[2] for w in whole], atol=1e-12)
