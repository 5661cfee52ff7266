import json

from assocmem.graph import Graph, parse_relation
from assocmem.inspect import inspect_graph
from assocmem.scenario import load_graph
from conftest import ROOT, cli, write
from test_cli import png_size


def test_structure_of_the_pronoun_graph():
    r = inspect_graph(load_graph(ROOT / "graphs/pronoun.yaml"), 1000, 0, 0.05)
    assert (r.tokens, r.relations, r.concepts) == (8, 6, 0)
    assert r.fan_out["ОНА"] == 2 and r.fan_in["КАШУ"] == 3
    assert r.only_values == ["КАШУ", "ЧТО"] and r.cycles == [] and r.components == []


def test_cycles_and_crowded_keys_are_reported():
    g = Graph(tuple(parse_relation(t, "g", i) for i, t in enumerate(["a = b", "b = a", "a + x = c", "a + y = d"])))
    r = inspect_graph(g, 4096, 0, 0.2)
    assert r.cycles and sorted(r.components[0]) == ["a", "b"]
    pairs = {frozenset((a, b)): c for a, b, c in r.key_crosstalk}
    assert abs(pairs[frozenset(("a", "a + x"))] - 2**-0.5) < 0.05  # unit(a + x) . a = 1/sqrt 2
    assert abs(pairs[frozenset(("a + x", "a + y"))] - 0.5) < 0.05  # they share the term a
    assert any("a + x" in w and "a + y" in w for w in r.ambiguous)


def test_graph_command_report_png_and_heatmap(tmp_path):
    r = cli("graph", "graphs/calendar.yaml", "--png", tmp_path / "g.png", "--heatmap", tmp_path / "h.png", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["relations"] == 12 and data["concepts"] == 19
    assert ["1", "10", "11", "12", "2", "3", "4", "5", "6", "7", "8", "9"] in data["components"]
    assert png_size(tmp_path / "g.png")[0] > 400 and png_size(tmp_path / "h.png")[0] > 400
    months = {tuple(sorted(p[:2])) for p in data["concept_crosstalk"]}
    assert months  # the closest concepts share a term (cosine near 0.5)
    assert all(abs(p[2] - 0.5) < 0.15 for p in data["concept_crosstalk"])


def test_graph_command_on_a_scenario_and_bad_input(tmp_path):
    assert cli("graph", "scenarios/pronoun.yaml").returncode == 0
    bad = write(tmp_path, "g.yaml", "relations:\n  - a => b\n")
    r = cli("graph", bad)
    assert r.returncode == 2 and "g.yaml:2:" in r.stderr and "Traceback" not in r.stderr
