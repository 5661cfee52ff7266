"""Hypervectors drawn from (seed, name) alone, concept sums, and the vocabulary that holds them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from assocmem.errors import InputError
from assocmem.graph import CANCELLED, concept_order
from assocmem.mem import norms, unit


def token_vector(name: str, seed: int, dim: int) -> np.ndarray:
    """A random unit vector that depends only on (seed, name, dim): adding a token never moves another.

    The name and seed are hashed (BLAKE2b) into the generator's seed, instead of drawing vectors
    in the order tokens were met, as most libraries do.  Shapes: -> (dim,) float64.
    """
    digest = hashlib.blake2b(f"{seed}\x1f{name}".encode(), digest_size=16).digest()
    v = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(dim)
    return v / np.linalg.norm(v)


FRESH = "\x1fablated\x1f"  # prefixed to a name to draw its fresh vector: control characters, so unlike any written token


def check_not_zero(rows, weight: float, seeds, what: str, source) -> None:
    """Refuse a sum of unit vectors whose length is under CANCELLED x its total weight in some codebook: its terms
    cancel (concepts that are the same vector, `Z = X - Y`), and a row of zeros reads nothing and matches nothing.
    Shapes: rows (S, d), one per seed."""
    lengths = norms(rows)[:, 0]
    short = np.nonzero(~(lengths >= CANCELLED * weight))[0]
    if short.size:
        raise InputError(f"{what} sums to (near) zero at seed {seeds[short[0]]}: its terms cancel", source.file,
                         source.line, "a row of zeros reads nothing and matches nothing")


@dataclass(frozen=True)
class Vocabulary:
    """Names and their vectors, one codebook per seed.

    `vectors` is read-only, shape (S, V, d): S seeds (one codebook each), V names, d dimensions.
    A concept's row is the unit sum of its terms' rows; every other row is its token_vector.
    """

    names: tuple[str, ...]
    seeds: tuple[int, ...]
    vectors: np.ndarray

    @classmethod
    def build(cls, names, concepts, seeds, dim: int, dtype=np.float64, fresh=()) -> "Vocabulary":
        """fresh: names whose vector is replaced by another random one (a concept ablation), drawn as
        token_vector(FRESH + name); a concept built from such a name is built from its new vector."""
        ordered = concept_order(concepts)
        all_names = list(dict.fromkeys(list(names) + [t.name for c in ordered for t in c.terms] + [c.name for c in ordered]))
        index = {n: i for i, n in enumerate(all_names)}
        composite = {c.name for c in ordered}
        vectors = np.zeros((len(seeds), len(all_names), dim))
        for s, seed in enumerate(seeds):
            for n in all_names:
                if n not in composite or n in fresh:
                    vectors[s, index[n]] = token_vector(FRESH + n if n in fresh else n, seed, dim)
        for c in ordered:  # topological order: a concept's terms are ready before it
            if c.name in fresh:
                continue
            total = sum(t.weight * vectors[:, index[t.name]] for t in c.terms)
            check_not_zero(total, sum(abs(t.weight) for t in c.terms), seeds, f"concept {c.name!r}", c.source)
            vectors[:, index[c.name]] = unit(total)
        vectors = vectors.astype(dtype)
        vectors.flags.writeable = False
        return cls(tuple(all_names), tuple(seeds), vectors)

    @cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def vector(self, name: str, seed_index: int = 0) -> np.ndarray:
        return self.vectors[seed_index, self.index[name]]

    def sum_of(self, terms) -> np.ndarray:
        """sum of weight * vec(term) in every codebook.  Shapes: -> (S, d)."""
        index = self.index
        return sum(t.weight * self.vectors[:, index[t.name]] for t in terms)
