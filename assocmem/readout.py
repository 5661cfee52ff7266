"""The readout: logits of the last position, the logit lens, and margins against the candidates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.mem import similarity


def last_rows(X, lengths, xp=np):
    """The last position of every prompt.  Shapes: X (S, P, T, d), lengths (P,) -> (S, P, d)."""
    return X[:, xp.arange(X.shape[1]), lengths - 1]


def logits(X, lengths, vectors, sim: str, xp=np):
    """Similarity of each prompt's last position with every vocabulary vector.
    Shapes: X (S, P, T, d), lengths (P,), vectors (S, V, d) -> (S, P, V)."""
    return row_logits(last_rows(X, lengths, xp), vectors, sim, xp)


def row_logits(rows, vectors, sim: str, xp=np):
    """logits of rows that are already each prompt's last (engine.through_mixtures): nothing gathered.
    Shapes: rows (S, P, d), vectors (S, V, d) -> (S, P, V)."""
    return similarity(rows, vectors, sim, xp)


def lens_similarity(X, lengths, sim: str, xp=np):
    """Similarity of each prompt's last position with every position (padding scores 0).
    Shapes: X (S, P, T, d), lengths (P,) -> (S, P, T)."""
    return similarity(last_rows(X, lengths, xp)[:, :, None], X, sim, xp)[:, :, 0]


def holds(margins):
    """Whether an expectation holds: its logit beats every other candidate's, strictly (a tie fails).

    >>> holds(np.array([0.2, 0.0, -0.1]))
    array([ True, False, False])
    """
    return margins > 0


def share_held(margins) -> float:
    """The share of expectations that hold, NaN (prompts that expect nothing) left out; NaN if none is left.

    >>> share_held(np.array([[0.3, np.nan], [0.0, -0.2]]))
    0.3333333333333333
    """
    held = np.asarray(margins, dtype=float)
    held = held[~np.isnan(held)]
    return float(holds(held).mean()) if held.size else float("nan")


@dataclass
class Expectation:
    """Did `expect` take the top logit among the candidates, and by how much."""

    expect: str
    winner: str
    margin: float   # logit(expect) - best other candidate's logit; > 0 means PASS
    unablated: float | None = None  # the margin without the run's ablations, where it has some

    @property
    def passed(self) -> bool:
        return bool(holds(self.margin))


def margins(logits, expect, candidates):
    """Margins and winners from arrays.  expect[j]: the expected column of prompt j, or None; candidates[j]: the
    columns that compete (the expected one among them).  The winner is the first best candidate.

    Shapes: logits (S, P, V) -> margins (S, P) float (NaN where a prompt expects nothing), winners (S, P) int.

    >>> margins(np.array([[[0.1, 0.5, 0.3]]]), [2], [[0, 2]])
    (array([[0.2]]), array([[2]]))
    """
    S, P, V = logits.shape
    out = np.full((S, P), np.nan)
    winners = np.zeros((S, P), dtype=int)
    for j in range(P):
        cand = list(candidates[j])
        scores = logits[:, j, cand]
        winners[:, j] = np.asarray(cand)[scores.argmax(axis=1)]
        if expect[j] is None:
            continue
        e = cand.index(expect[j])
        others = np.delete(scores, e, axis=1)
        best_other = others.max(axis=1) if others.shape[1] else np.full(S, -np.inf)
        out[:, j] = scores[:, e] - best_other
    return out, winners


def competing(prompt, names) -> list[str]:
    """The names that compete for a prompt's answer: its `candidates`, or else the whole vocabulary less the
    prompt's last token.  The readout predicts what belongs at the last position (the cloze `?`, or the E of
    `ABCE`); the token already standing there is in the stream from the start, and would otherwise win a copy.

    >>> from types import SimpleNamespace as P
    >>> competing(P(candidates=None, tokens=("a", "b", "?")), ["a", "b", "?", "c"])
    ['a', 'b', 'c']
    >>> competing(P(candidates=("?", "a"), tokens=("a", "?")), ["a", "?"])
    ['?', 'a']
    """
    if prompt.candidates:
        return list(prompt.candidates)
    return [n for n in names if n != prompt.tokens[-1]]


def expectation_margins(logits, prompts, vocab):
    """margins() for scenario prompts: their `expect` against the names competing() for each, by name."""
    index = vocab.index
    expect = [None if p.expect is None else index[p.expect] for p in prompts]
    candidates = [[index[c] for c in competing(p, vocab.names)] for p in prompts]
    return margins(logits, expect, candidates)
