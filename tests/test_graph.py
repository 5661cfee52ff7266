"""Relation and concept lines -> records that keep their source line; concept order; the networkx view."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem.errors import InputError
from assocmem.graph import Graph, Term, concept_order, parse_concept, parse_relation


def test_relation_with_weights_and_signs():
    r = parse_relation("ОНА = МАША + 0.5 * КАШУ - 2*ЕСТ", "g.yaml", 3)
    assert r.key == (Term("ОНА"),)
    assert r.value == (Term("МАША"), Term("КАШУ", 0.5), Term("ЕСТ", -2.0))
    assert r.kind == "assoc" and str(r.source) == "g.yaml:3"


def test_rewrite_relation():
    r = parse_relation("4 -> 5", "g", 1)
    assert r.kind == "rewrite" and r.label == "4 -> 5"


def test_numbers_are_names():
    assert parse_relation("1964 = год", "g", 1).key == (Term("1964"),)


@pytest.mark.parametrize("text, message", [
    ("ОНА == МАША", "wrong operator '=='"),
    ("= МАША", "missing key"),
    ("ОНА =", "missing value"),
    ("ОНА МАША", "no = or ->"),
    ("А = Б = В", "more than one"),
    ("А = Б В", "expected + or -"),
    ("А = Б +", "ends with '+'"),
    ("А -> Б + В", "a rewrite moves one name"),
])
def test_bad_relations_say_what_is_wrong(text, message):
    with pytest.raises(InputError) as err:
        parse_relation(text, "g.yaml", 7)
    assert message in str(err.value) and str(err.value).startswith("g.yaml:7: ")


def test_concept_cycle_is_named():
    cs = [parse_concept("A = B + x", "g", 1), parse_concept("B = A + y", "g", 2)]
    with pytest.raises(InputError, match="concept cycle (A -> B -> A|B -> A -> B)"):
        concept_order(cs)


def test_concepts_sorted_so_terms_come_first():
    cs = [parse_concept("C = B + z", "g", 1), parse_concept("B = a + b", "g", 2)]
    assert [c.name for c in concept_order(cs)] == ["B", "C"]


def test_networkx_view_has_relation_and_concept_edges():
    g = Graph((parse_relation("ОНА = МАША + КАШУ", "g", 1),), (parse_concept("Апрель = 4 + Месяц", "g", 2),))
    nxg = g.to_networkx()
    kinds = {(u, v): d["kind"] for u, v, d in nxg.edges(data=True)}
    assert kinds == {("ОНА", "МАША"): "assoc", ("ОНА", "КАШУ"): "assoc", ("4", "Апрель"): "concept",
                     ("Месяц", "Апрель"): "concept"}


names = st.text(alphabet="АБВГДЕЖЗabc0123456789_", min_size=1, max_size=6)
words = st.one_of(names, st.sampled_from(["=", "==", "->", "+", "-", "*", "0.5*", "=>", ":", "2", "0.5"]))
relation_lines = st.lists(words, min_size=0, max_size=8).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(line=relation_lines)
def test_relation_parser_never_raises_anything_else(line):
    for parse in (parse_relation, parse_concept):
        try:
            record = parse(line, "g.yaml", 1)
        except InputError:
            continue
        assert record.source.text == line
