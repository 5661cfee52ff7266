"""Relation records -> key/value memory matrices, one row per relation, each row keeping its source."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.graph import Relation
from assocmem.mem import unit
from assocmem.vectors import Vocabulary


@dataclass(frozen=True)
class Memory:
    """A static associative memory.  keys, values: (S, M, d), one pair of matrices per codebook.

    Row m was compiled from rows[m]; its label and source line travel with every trace.
    """

    keys: np.ndarray
    values: np.ndarray
    rows: tuple[Relation, ...]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.rows]


def compile_memory(relations, vocab: Vocabulary) -> Memory:
    """Key row: vec(KEY) (the unit sum when the key is a sum).  Value row: sum of weight * vec(term),
    or vec(VALUE) - vec(KEY) for a rewrite `KEY -> VALUE`."""
    S, _, d = vocab.vectors.shape
    keys = np.zeros((S, len(relations), d), dtype=vocab.vectors.dtype)
    values = np.zeros_like(keys)
    for m, r in enumerate(relations):
        key = vocab.sum_of(r.key)
        keys[:, m] = unit(key) if len(r.key) > 1 else key
        values[:, m] = vocab.sum_of(r.value) - (key if r.kind == "rewrite" else 0)
    for a in (keys, values):
        a.flags.writeable = False
    return Memory(keys, values, tuple(relations))
