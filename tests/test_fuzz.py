"""Property-based: whatever text, YAML structure or relation line comes in, the loader returns a valid
scenario or raises the project's own InputError, never another exception."""
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assocmem.errors import InputError
from assocmem.graph import parse_concept, parse_relation
from assocmem.scenario import SCENARIO_KEYS, Scenario, load_scenario

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.text(alphabet="АБВГДЕЖЗabc0123456789_", min_size=1, max_size=6)
words = st.one_of(names, st.sampled_from(["=", "==", "->", "+", "-", "*", "0.5*", "=>", ":", "2", "0.5"]))
relation_lines = st.lists(words, min_size=0, max_size=8).map(" ".join)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True), names,
                    st.text(max_size=20), relation_lines)
structures = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(SCENARIO_KEYS + ("text", "expect", "dim", "pipeline", "layer",
                                                               "feedback", "context", "repeat")), names),
                    inner, max_size=5)), max_leaves=25)


def load_text(tmp_path, text: str):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        return load_scenario(path)
    except InputError as err:
        assert "\n" not in str(err)
        return err


@FUZZ
@given(text=st.text(alphabet=string.printable + "АБВ-:[]{}&*!|>'\"#", max_size=200))
def test_random_text(tmp_path, text):
    assert isinstance(load_text(tmp_path, text), (Scenario, InputError))


@FUZZ
@given(data=structures)
def test_random_yaml_structures(tmp_path, data):
    text = yaml.safe_dump(data, allow_unicode=True)
    assert isinstance(load_text(tmp_path, text), (Scenario, InputError))


@FUZZ
@given(data=st.dictionaries(st.sampled_from(["relations", "concepts"]), st.lists(relation_lines, max_size=4)),
       prompt=st.lists(names, min_size=1, max_size=5).map(" ".join))
def test_random_relation_lines_in_a_scenario(tmp_path, data, prompt):
    data["prompts"] = [{"text": prompt}]
    out = load_text(tmp_path, yaml.safe_dump(data, allow_unicode=True))
    assert isinstance(out, (Scenario, InputError))


@FUZZ
@given(line=relation_lines)
def test_relation_parser_never_raises_anything_else(line):
    for parse in (parse_relation, parse_concept):
        try:
            record = parse(line, "g.yaml", 1)
        except InputError:
            continue
        assert record.source.text == line
