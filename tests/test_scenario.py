import time

import pytest

from assocmem.errors import InputError
from assocmem.scenario import load_scenario
from cases import BAD_SCENARIOS, BILLION_LAUGHS
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


def test_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes("prompts:\n  - text: МАША\n".encode("cp1251"))
    with pytest.raises(InputError, match=r"s.yaml:2: not UTF-8"):
        load_scenario(path)


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = write(tmp_path, "s.yaml", BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(InputError, match="alias bomb"):
        load_scenario(path)
    assert time.perf_counter() - start < 5


def test_yaml_scalars_are_tokens_as_written(tmp_path):
    path = write(tmp_path, "s.yaml", "relations:\n  - Мишель = 1964\nprompts:\n  - text: Мишель\n    expect: 1964\n"
                                    "    candidates: [1964, yes]\n  - text: yes 0x10\n")
    sc = load_scenario(path)
    assert sc.prompts[0].expect == "1964" and sc.prompts[0].candidates == ("1964", "yes")


def test_scenario_without_model_takes_the_default_recipe(tmp_path):
    sc = load_scenario(write(tmp_path, "s.yaml", "prompts: [a b a]\n"))
    assert sc.model.dim == 1000 and len(sc.model.pipeline) == 11
    assert [s.kind for s in sc.model.pipeline[-1].stages] == ["context", "assoc"]


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
