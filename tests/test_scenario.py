"""Scenario YAML -> validated dataclasses: every mistake one line naming file and line, whatever comes in."""
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assocmem.errors import InputError
from assocmem.model import Stage
from assocmem.scenario import SCENARIO_KEYS, Scenario, load_graph_or_scenario, load_scenario
from cases import BAD_SCENARIOS
from conftest import ROOT, write


@pytest.mark.parametrize("case, text, message, line", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
def test_bad_scenario_names_file_line_and_problem(tmp_path, case, text, message, line):
    path = write(tmp_path, "s.yaml", text)
    with pytest.raises(InputError) as err:
        load_scenario(path)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert text.startswith(prefix), text


def test_yaml_scalars_are_tokens_as_written(tmp_path):
    path = write(tmp_path, "s.yaml", "relations:\n  - Мишель = 1964\nprompts:\n  - text: Мишель\n    expect: 1964\n"
                                    "    candidates: [1964, yes]\n  - text: yes 0x10\n")
    sc = load_scenario(path)
    assert sc.prompts[0].expect == "1964" and sc.prompts[0].candidates == ("1964", "yes")


def test_scenario_without_model_takes_the_default_recipe(tmp_path):
    sc = load_scenario(write(tmp_path, "s.yaml", "prompts: [a b a]\n"))
    assert sc.model.dim == 1000 and len(sc.model.pipeline) == 2
    assert [[s.kind for s in layer.stages] for layer in sc.model.pipeline] == [["context"], ["assoc"]]


def test_a_pipeline_may_name_a_built_in_recipe(tmp_path):
    sc = load_scenario(write(tmp_path, "s.yaml", "model: {pipeline: feedback10}\nprompts: ['a b ?']\n"))
    assert len(sc.model.pipeline) == 11
    with pytest.raises(InputError, match="no built-in pipeline named 'feedbak10'.*feedback10"):
        load_scenario(write(tmp_path, "t.yaml", "model: {pipeline: feedbak10}\nprompts: ['a b ?']\n"))


@pytest.mark.parametrize("stage, message", [
    ("{context: {steps: 2}}", "steps only applies with match: prefix"),
    ("{context: {match: prefix, fallback: previous}}", "fallback only applies with a threshold"),
    ("{context: {match: prefix, decay: 1.5}}", "decay must be at most 1"),
    ("{context: {match: prefix, steps: 0}}", "steps must be a positive number"),
])
def test_prefix_options_are_checked_with_their_line(tmp_path, stage, message):
    with pytest.raises(InputError, match=message) as err:
        load_scenario(write(tmp_path, "s.yaml", f"model:\n  pipeline:\n    - {stage}\nprompts: ['a b ?']\n"))
    assert err.value.line == 3


def test_expecting_the_last_token_without_candidates_is_refused(tmp_path):
    with pytest.raises(InputError, match="is the prompt's last token") as err:
        load_scenario(write(tmp_path, "s.yaml", "prompts:\n  - {text: a b a, expect: a}\n"))
    assert err.value.line == 2
    load_scenario(write(tmp_path, "t.yaml", "prompts:\n  - {text: a b a, expect: a, candidates: [a, b]}\n"))


def test_overrides_replace_model_values():
    sc = load_scenario(ROOT / "scenarios/pronoun.yaml", dim=64, seed=5, temperature=0.2)
    assert (sc.model.dim, sc.model.seed, sc.model.temperature) == (64, 5, 0.2)


def test_variants_inherit_the_model():
    sc = load_scenario(ROOT / "scenarios/induction.yaml")
    assert [v.name for v in sc.variants] == ["minus+rmsnorm", "minus", "plus"]
    assert all(v.model.dim == 1000 for v in sc.variants)
    assert [v.check for v in sc.variants] == [True, False, False]
    assert sc.variants[2].model.pipeline[0].stages[0].sign == "plus"


def test_pipeline_repeat_and_layer_blocks():
    sc = load_scenario(ROOT / "scenarios/pronoun_seed.yaml")
    labels = [l.label for l in sc.model.pipeline]
    assert len(labels) == 3 and labels[0] == labels[1]
    assert labels[2] == "assoc(last) → context(last) → mlp(last)"


def test_stage_options_are_validated_from_the_table(tmp_path):
    path = write(tmp_path, "s.yaml", "model:\n  pipeline:\n    - feedback: {window: 2, positions: last}\n"
                                     "    - context: {values: tokens, temperature: 0.5}\nprompts: [a b]\n")
    assert [l.stages[0] for l in load_scenario(path).model.pipeline] == [
        Stage("feedback", window=2, positions="last"), Stage("context", values="tokens", temperature=0.5)]
    for options, message in (("{window: 0}", "window must be a positive number"), ("{window: 1.5}", "an integer"),
                             ("{norm: rsm}", "did you mean 'rms'"), ("{temperature: 1}", "unknown key 'temperature'")):
        path = write(tmp_path, "s.yaml", f"model:\n  pipeline:\n    - feedback: {options}\nprompts: [a b]\n")
        with pytest.raises(InputError, match=message):
            load_scenario(path)


def test_a_graph_file_or_a_scenario_for_the_graph_command(tmp_path):
    graph, model, extra = load_graph_or_scenario(ROOT / "graphs" / "pronoun.yaml", dim=64)
    assert len(graph.relations) == 6 and (model.dim, model.seed, extra) == (64, 0, [])
    graph, model, extra = load_graph_or_scenario(ROOT / "scenarios" / "multihop.yaml", seed=3)
    assert (model.dim, model.seed) == (4096, 3) and "?" in extra
    for overrides, message in (({"dim": 0}, "dim must be between 1 and"), ({"temperature": 0.0}, "temperature must be"),
                               ({"seed": -1}, "seed must be 0 or more")):
        for path in (ROOT / "graphs" / "pronoun.yaml", ROOT / "scenarios" / "pronoun.yaml"):
            with pytest.raises(InputError, match=message):
                load_graph_or_scenario(path, **overrides)


# ----------------------------------------------------------------------------- property-based: the loader returns
# a valid scenario or raises the project's own InputError, never another exception, whatever comes in.

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




@pytest.mark.parametrize("written, value", [("1e-3", 0.001), ("2E-2", 0.02), ("1.5e-1", 0.15)])
def test_an_exponent_without_a_dot_is_a_number(tmp_path, written, value):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string; a temperature written so is the number it says."""
    sc = load_scenario(write(tmp_path, "s.yaml", f"model:\n  temperature: {written}\nprompts: [a b]\n"))
    assert sc.model.temperature == value


hostile_characters = st.characters(categories=["Cs", "Cc", "Cf", "Co", "Zl", "Zp", "Lu", "Ll", "Sm", "Ps", "Pe"])
hostile_text = st.text(alphabet=st.one_of(hostile_characters, st.sampled_from("[]/$\\^_{}*&!?\u202e\u200b\x1b")),
                       min_size=1, max_size=30)


@FUZZ
@given(token=hostile_text, name=hostile_text)
def test_surrogates_controls_bidi_and_markup_in_a_scenario(tmp_path, token, name):
    """Written as YAML escapes (\\ud800 included): a scenario, or one line naming the file; and whatever is loaded
    is shown with every hidden character as an escape."""
    from assocmem.report import HIDDEN, token_label, visible
    import json
    import unicodedata

    text = f"name: {json.dumps(name)}\nprompts:\n  - text: {json.dumps('a ' + token + ' ?')}\n"
    out = load_text(tmp_path, text)
    assert isinstance(out, (Scenario, InputError))
    if isinstance(out, Scenario):
        for shown in [visible(out.name)] + [token_label(t) for t in out.prompts[0].tokens]:
            assert not any(unicodedata.category(c) in HIDDEN for c in shown), shown


@FUZZ
@given(depth=st.integers(1, 400), alias=st.booleans())
def test_any_nesting_is_a_scenario_or_one_line(tmp_path, depth, alias):
    text = "prompts: " + "[" * depth + "a" + "]" * depth + "\n"
    if alias:
        text = f"x: &x {'[' * depth}*x{']' * depth}\n" + text
    assert isinstance(load_text(tmp_path, text), (Scenario, InputError))


@FUZZ
@given(weight=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e-6, 1e6, 1e-7, 1e7, 0.0]))
def test_any_weight_is_in_range_or_refused_with_its_line(tmp_path, weight):
    from assocmem.graph import MAX_WEIGHT, MIN_WEIGHT

    out = load_text(tmp_path, f"concepts:\n  - Z = {abs(weight)!r}*A + B\nprompts: [a b]\n")
    if isinstance(out, Scenario):
        assert MIN_WEIGHT <= out.graph.concepts[0].terms[0].weight <= MAX_WEIGHT
    else:
        assert "fuzz.yaml:2:" in str(out)
