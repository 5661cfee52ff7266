"""Safe YAML loading that remembers the source line of every value and refuses alias bombs."""
from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from assocmem.errors import InputError

# A scenario has tens to a few thousand nodes; an alias bomb expands to billions. Stop well before.
MAX_NODES = 200_000
MAX_BYTES = 16 * 2**20
# What aliases expand to counts too: a file without aliases has fewer scalar characters than bytes, so this
# never refuses one, while one long string aliased 150,000 times is stopped at 16 Mi characters.
MAX_CHARS = MAX_BYTES
# The deepest a scenario nests is about 7 levels (model, pipeline, layer, stage, options); PyYAML's composer
# recurses once per level, and 500 levels would exhaust Python's stack.
MAX_DEPTH = 64
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
_NAME = re.compile(r"^[^\W\d][\w-]{0,39}$")


def name_or_not(text: str) -> str:
    """A key or word from a file, quoted only when it is a short name, as a typo is: anything else may be a line of
    some other file (`graph: /etc/shadow`), and a file's contents never go into an error message."""
    return repr(text) if _NAME.match(text) else "that is not a name"


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


def _regular_file(path: Path, st) -> None:
    for test, what in _FILE_KINDS:
        if test(st.st_mode):
            raise InputError(f"is {what}, expected a YAML file (only regular files are read)", path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError("is not a regular file, expected a YAML file", path)
    if st.st_size > MAX_BYTES:
        raise InputError(f"file is larger than {MAX_BYTES // 2**20} MiB ({st.st_size:,} bytes), the limit", path)


def read_text(path: Path) -> str:
    """A file's text, or an InputError saying why it cannot be read as UTF-8 YAML.  Only a regular file of at most
    MAX_BYTES is read: what it is and its size are checked before it is opened, and again on the open descriptor
    (opened non-blocking, so a FIFO swapped in between cannot hang the read)."""
    try:
        _regular_file(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"is a symbolic link to {os.readlink(path)!r}, which does not exist", path) from None
        raise InputError(f"file not found (resolved to {path.resolve()})", path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError("is a loop of symbolic links", path) from None
        raise InputError(f"cannot read: {err.strerror}", path) from None
    try:
        with os.fdopen(fd, "rb") as f:
            _regular_file(path, os.fstat(f.fileno()))
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", path) from None
    if len(data) > MAX_BYTES:
        raise InputError(f"file is larger than {MAX_BYTES // 2**20} MiB, the limit", path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[err.start]:02x})", path, line,
                         "save the file as UTF-8") from None


def _check_depth(text: str, path: Path) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing: the event parser is a loop, the composer recurses."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"YAML nests deeper than {MAX_DEPTH} levels, the limit", path,
                                 event.start_mark.line + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load(path: Path | str, text: str | None = None) -> Document:
    path = Path(path)
    if text is None:
        text = read_text(path)
    if "\x00" in text:
        raise InputError("not a text file (contains NUL bytes)", path)
    try:
        _check_depth(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"YAML syntax error: {err.problem or err.context}", path, line) from None
    except yaml.YAMLError as err:
        raise InputError(f"YAML error: {err}", path) from None
    doc = Document(path, None)
    budget = {"nodes": MAX_NODES, "chars": MAX_CHARS, "seen": set(), "aliased": False}
    doc.data = _convert(node, (), doc, budget, 0) if node is not None else None
    return doc


def _spend(node, doc: Document, budget: dict) -> None:
    """Count a node, and a scalar's characters, against the file's limits; an alias counts each time it is read."""
    if id(node) in budget["seen"]:
        budget["aliased"] = True
    budget["seen"].add(id(node))
    budget["nodes"] -= 1
    if isinstance(node, yaml.ScalarNode):
        budget["chars"] -= len(node.value)
    if budget["nodes"] >= 0 and budget["chars"] >= 0:
        return
    what = f"{MAX_NODES} values" if budget["nodes"] < 0 else f"{MAX_CHARS:,} characters"
    if budget["aliased"]:
        raise InputError(f"YAML expands to more than {what} through its aliases (an alias bomb?), the limit",
                         doc.path, node.start_mark.line + 1, "remove the anchors and aliases")
    raise InputError(f"YAML holds more than {what}, the limit for one file", doc.path, node.start_mark.line + 1,
                     "split it into smaller files")


def _text(value, node, doc: Document):
    """A string from the file, refused if it holds a lone surrogate (a \\ud800 escape), which no encoding can write."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputError(f"a lone surrogate \\u{ord(value[err.start]):04x} is not a character", doc.path,
                             node.start_mark.line + 1, "write the character itself, or a pair of escapes") from None
    return value


def _convert(node, where: tuple, doc: Document, budget: dict, depth: int):
    if depth > MAX_DEPTH:  # only an alias can get here (the parse was checked): one that contains itself
        raise InputError(f"YAML nests deeper than {MAX_DEPTH} levels through its aliases (an alias that contains "
                         "itself?), the limit", doc.path, node.start_mark.line + 1, "remove the anchors and aliases")
    _spend(node, doc, budget)
    doc.lines[where] = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        raise InputError("YAML tag is not allowed", doc.path, node.start_mark.line + 1,
                         "use plain strings, numbers, lists and mappings")
    if isinstance(node, yaml.ScalarNode):
        doc.raw[where] = _text(node.value, node, doc)
        try:
            return yaml.SafeLoader("").construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise InputError(f"bad value: not a valid {kind}", doc.path, node.start_mark.line + 1,
                             "quote it to make it a string") from None
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, where + (i,), doc, budget, depth + 1) for i, item in enumerate(node.value)]
    out = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise InputError("mapping keys must be plain words", doc.path, key_node.start_mark.line + 1)
        key = _text(key_node.value, key_node, doc)
        if key in out:
            raise InputError(f"duplicate key {name_or_not(key)}", doc.path, key_node.start_mark.line + 1)
        doc.lines[where + (key,)] = key_node.start_mark.line + 1
        out[key] = _convert(value_node, where + (key,), doc, budget, depth + 1)
        doc.lines[where + (key,)] = key_node.start_mark.line + 1
    return out
