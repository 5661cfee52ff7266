"""Safe YAML loading that remembers the source line of every value and refuses alias bombs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from assocmem.errors import InputError

# A scenario has tens to a few thousand nodes; an alias bomb expands to billions. Stop well before.
MAX_NODES = 200_000
MAX_BYTES = 16 * 2**20
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}


@dataclass
class Document:
    """Plain Python data from one YAML file, with the line and raw text of every node.

    Paths are tuples of mapping keys and sequence indices, e.g. ("prompts", 0, "text").
    `raw` keeps a scalar's text as written, so `1964` or `yes` stay tokens, not numbers or booleans.
    """

    path: Path
    data: object
    lines: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    def line(self, path: tuple) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def error(self, path: tuple, message: str, hint: str | None = None) -> InputError:
        return InputError(message, self.path, self.line(path), hint)


def read_text(path: Path) -> str:
    """A file's text, or an InputError saying why it cannot be read as UTF-8 YAML."""
    if not path.exists():
        raise InputError(f"file not found (resolved to {path.resolve()})", path)
    if path.is_dir():
        raise InputError("is a directory, expected a YAML file", path)
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"file is larger than {MAX_BYTES // 2**20} MiB", path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[err.start]:02x})", path, line,
                         "save the file as UTF-8") from None


def load(path: Path | str, text: str | None = None) -> Document:
    path = Path(path)
    if text is None:
        text = read_text(path)
    if "\x00" in text:
        raise InputError("not a text file (contains NUL bytes)", path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"YAML syntax error: {err.problem or err.context}", path, line) from None
    except yaml.YAMLError as err:
        raise InputError(f"YAML error: {err}", path) from None
    doc = Document(path, None)
    budget = [MAX_NODES]
    doc.data = _convert(node, (), doc, budget) if node is not None else None
    return doc


def _convert(node, where: tuple, doc: Document, budget: list):
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError(f"YAML expands to more than {MAX_NODES} values (an alias bomb?)",
                         doc.path, node.start_mark.line + 1, "remove the anchors and aliases")
    doc.lines[where] = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        raise InputError(f"YAML tag {node.tag!r} is not allowed", doc.path, node.start_mark.line + 1,
                         "use plain strings, numbers, lists and mappings")
    if isinstance(node, yaml.ScalarNode):
        doc.raw[where] = node.value
        try:
            return yaml.SafeLoader("").construct_object(node)
        except (yaml.YAMLError, ValueError) as err:
            raise InputError(f"bad value {node.value!r}: {err}", doc.path, node.start_mark.line + 1) from None
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, where + (i,), doc, budget) for i, item in enumerate(node.value)]
    out = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise InputError("mapping keys must be plain words", doc.path, key_node.start_mark.line + 1)
        key = key_node.value
        if key in out:
            raise InputError(f"duplicate key {key!r}", doc.path, key_node.start_mark.line + 1)
        doc.lines[where + (key,)] = key_node.start_mark.line + 1
        out[key] = _convert(value_node, where + (key,), doc, budget)
        doc.lines[where + (key,)] = key_node.start_mark.line + 1
    return out
