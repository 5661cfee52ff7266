"""The project's own error for bad input: one line, naming the file, the line and a fix."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path


@dataclass
class InputError(Exception):
    """Bad input from the user. The CLI prints `str(err)` as one line and exits with status 2."""

    message: str
    file: Path | str | None = None
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}".replace("\n", " ")


def did_you_mean(word: str, choices, n: int = 3) -> str | None:
    """A hint naming the closest valid choices, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
