"""Safe YAML: the line of every value, UTF-8 only, no alias bombs."""
import time

import pytest

from assocmem import yamldoc
from assocmem.errors import InputError
from cases import BILLION_LAUGHS
from conftest import write


def test_every_value_keeps_its_line_and_raw_text(tmp_path):
    doc = yamldoc.load(write(tmp_path, "s.yaml", "a:\n  - x\n  - 1964\nb: yes\n"))
    assert doc.data == {"a": ["x", 1964], "b": True}
    assert (doc.line(("a", 1)), doc.line(("b",)), doc.line(("a", 7))) == (3, 4, 1)
    assert doc.raw[("a", 1)] == "1964" and doc.raw[("b",)] == "yes"


def test_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes("prompts:\n  - text: МАША\n".encode("cp1251"))
    with pytest.raises(InputError, match=r"s.yaml:2: not UTF-8"):
        yamldoc.load(path)


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = write(tmp_path, "s.yaml", BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(InputError, match="alias bomb"):
        yamldoc.load(path)
    assert time.perf_counter() - start < 5


def test_many_plain_values_are_not_called_an_alias_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(yamldoc, "MAX_NODES", 50)
    with pytest.raises(InputError, match="more than 50 values, the limit for one file") as err:
        yamldoc.load(write(tmp_path, "s.yaml", "prompts: [" + ", ".join(["a"] * 60) + "]\n"))
    assert "alias" not in str(err.value)


def test_nesting_within_the_limit_reads(tmp_path):
    deep = "[" * yamldoc.MAX_DEPTH + "]" * yamldoc.MAX_DEPTH
    assert yamldoc.load(write(tmp_path, "s.yaml", f"{deep[1:-1]}\n")).data is not None
    with pytest.raises(InputError, match="nests deeper"):
        yamldoc.load(write(tmp_path, "s.yaml", f"[{deep}]\n"))
