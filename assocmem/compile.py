"""One pass from a scenario, a model and seeds to arrays: codebooks, K/V memories with provenance, token ids."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.graph import Relation
from assocmem.mem import unit
from assocmem.model import Model
from assocmem.vectors import Vocabulary, check_not_zero


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
        value = vocab.sum_of(r.value) - (key if r.kind == "rewrite" else 0)
        check_not_zero(key, sum(abs(t.weight) for t in r.key), vocab.seeds, f"the key of {r.label!r}", r.source)
        check_not_zero(value, sum(abs(t.weight) for t in r.value) + (r.kind == "rewrite"), vocab.seeds,
                       f"the value of {r.label!r}", r.source)
        keys[:, m] = unit(key) if len(r.key) > 1 else key
        values[:, m] = value
    for a in (keys, values):
        a.flags.writeable = False
    return Memory(keys, values, tuple(relations))


def embed(token_ids, lengths, vectors, xp=np):
    """Token vectors for every prompt in every codebook, zero-padded.
    Shapes: token_ids (P, T), lengths (P,), vectors (S, V, d) -> (S, P, T, d).

    >>> embed(np.array([[1, 0], [0, 0]]), np.array([2, 1]), np.eye(2)[None])[0, :, :, 0]
    array([[0., 1.],
           [1., 0.]])
    """
    tokens = xp.take(vectors, token_ids, axis=1)  # fresh and C-ordered (vectors[:, ids] is not); padding zeroed here
    T = token_ids.shape[1]
    tokens[:, xp.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens


@dataclass
class Compiled:
    """A scenario's prompts as arrays, with one codebook and memory per seed."""

    vocab: Vocabulary
    memory: Memory
    token_ids: np.ndarray  # (P, T) int, padded with 0
    lengths: np.ndarray    # (P,) int

    def tokens(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The embedded prompts start..stop of every codebook, cut to their longest: (S, p, T', d), lengths (p,)."""
        lengths = self.lengths[start:stop]
        ids = self.token_ids[start:stop, : lengths.max()]
        return embed(ids, lengths, self.vocab.vectors), lengths


def compile_scenario(scenario, model: Model, seeds=None, fresh=()) -> Compiled:
    """Codebooks for the given seeds (default: the model's seed), the memory compiled in each, prompts as ids.
    fresh: names given another random vector (a concept ablation: Vocabulary.build)."""
    seeds = tuple(seeds) if seeds is not None else (model.seed,)
    vocab = Vocabulary.build(scenario.vocabulary_names(), scenario.graph.concepts, seeds, model.dim,
                             np.dtype(model.dtype), fresh)
    memory = compile_memory(scenario.graph.relations, vocab)
    index = vocab.index
    lengths = np.array([len(p.tokens) for p in scenario.prompts])
    token_ids = np.zeros((len(scenario.prompts), lengths.max()), dtype=np.int64)
    for j, prompt in enumerate(scenario.prompts):
        token_ids[j, : lengths[j]] = [index[t] for t in prompt.tokens]
    return Compiled(vocab, memory, token_ids, lengths)
