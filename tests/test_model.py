"""The model's one home: the kinds' table is complete and consistent, and a Stage holds exactly its kind's options."""
import pytest

from assocmem.backends import Backend
from assocmem.model import COLUMNS, KINDS, MODEL_KEYS, Layer, Model, Stage, default_pipeline, feedback10_pipeline


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_names_a_backend_method_its_columns_and_valid_defaults(name):
    kind = KINDS[name]
    assert kind.name == name and callable(getattr(Backend, kind.method))
    assert kind.columns in COLUMNS and COLUMNS[kind.columns][0] in ("memory", "positions")
    assert (kind.memory is not None) == (kind.columns == "memory")
    for option in kind.options:
        assert option.type in (int, float, str) and option.help
        assert not option.choices or option.default in option.choices
    assert Stage(name).label == name + ("(x-mean)" if name == "feedback" else "")


def test_a_stage_holds_every_option_of_its_kind_and_no_other():
    s = Stage("feedback", window=3, sign="plus")
    assert s.options == (("sign", "plus"), ("norm", "rms"), ("window", 3), ("positions", "all"))
    assert s.window == 3 and s.get("temperature") is None and s.get("temperature", 1.0) == 1.0
    with pytest.raises(AttributeError):
        s.temperature
    with pytest.raises(TypeError, match="feedback has no option temperature"):
        Stage("feedback", temperature=0.1)
    with pytest.raises(ValueError, match="unknown layer kind"):
        Stage("attention")
    assert s == Stage("feedback", sign="plus", window=3) and hash(s) == hash(Stage("feedback", sign="plus", window=3))
    assert s != Stage("feedback", sign="plus", window=2) and Stage("assoc") != Stage("mlp")
    assert repr(s) == "Stage('feedback', sign='plus', window=3)"


@pytest.mark.parametrize("stage, label", [
    (Stage("feedback", norm="none", window=1, positions="before_last"), "feedback(x-mean, no norm, window=1, before last)"),
    (Stage("feedback", sign="plus"), "feedback(x+mean)"),
    (Stage("context", values="tokens", temperature=0.3), "context(values=tokens, T=0.3)"),
    (Stage("mlp", positions="last"), "mlp(last)"),
    (Stage("assoc", temperature=100.0), "assoc(T=100)"),
])
def test_labels_show_what_differs_from_the_defaults(stage, label):
    assert stage.label == label


def test_the_default_recipe_and_model():
    pipeline = default_pipeline()
    assert [layer.label for layer in pipeline] == [
        "context(values=tokens, match=prefix, steps=3, hops=3, threshold=0.55, fallback=previous, last, T=0.012)", "assoc(last)"]
    old = feedback10_pipeline()
    assert len(old) == 11 and set(old[:10]) == {Layer((Stage("feedback"),))}
    assert old[10].label == "context(values=tokens, last) → assoc(last)"
    assert Model().pipeline == pipeline
    assert MODEL_KEYS == ("dim", "seed", "temperature", "similarity", "dtype", "pipeline")
