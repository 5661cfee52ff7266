"""The one primitive: mem(q, K, V, temp) = softmax(sim(q, K) / temp) @ V, written once for numpy or cupy."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SIMILARITIES = ("cosine", "dot")
# Guards a zero vector (an empty stream row, a cancelled sum) against division by zero.
EPS = 1e-12


class Read(NamedTuple):
    """What a memory read returns: the read itself and the attention weights that produced it."""

    value: object    # (..., n, d_v)
    weights: object  # (..., n, m)


def sum_squares(x, xp=np, out=None):
    """|x|^2 along the last axis, into `out` if given: one pass with numpy's vecdot, (x * x).sum elsewhere.
    Shapes: (..., d) -> (...)."""
    if xp is np:
        return np.vecdot(x, x, out=out)
    if out is None:
        return (x * x).sum(axis=-1)
    out[...] = (x * x).sum(axis=-1)
    return out


def norms(x, xp=np):
    """|x| along the last axis.  Shapes: (..., d) -> (..., 1)."""
    return xp.sqrt(sum_squares(x, xp))[..., None]


def unit(x, xp=np):
    """x scaled to unit length along the last axis; zero rows stay zero.  Shapes: (..., d) -> (..., d)."""
    return x / xp.maximum(norms(x, xp), EPS)


def similarity(q, K, kind: str = "cosine", xp=np):
    """Scores of every query against every key.  Shapes: q (..., n, d), K (..., m, d) -> (..., n, m).
    Cosine divides the dot products by the norms, rather than normalising copies of q and K first."""
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")
    scores = q @ xp.swapaxes(K, -1, -2)
    if kind == "cosine":
        scores /= xp.maximum(norms(q, xp), EPS) * xp.swapaxes(xp.maximum(norms(K, xp), EPS), -1, -2)
    return scores


def softmax(scores, mask=None, xp=np):
    """Max-subtracted softmax over the last axis.  Masked-out entries get weight 0; a row with no
    allowed entry (an empty memory) gets all zeros, so reading it adds nothing."""
    if mask is not None:
        scores = xp.where(mask, scores, -xp.inf)
    top = scores.max(axis=-1, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)
    e = xp.exp(scores - top)
    total = e.sum(axis=-1, keepdims=True)
    return e / xp.where(total > 0, total, 1.0)


def mem(q, K, V, temperature: float, sim: str = "cosine", mask=None, xp=np) -> Read:
    """Read an associative memory: softmax(sim(q, K) / temperature) @ V.

    Shapes: q (..., n, d), K (..., m, d), V (..., m, d_v), mask (..., n, m) bool or None
    -> Read(value (..., n, d_v), weights (..., n, m)).  Leading dimensions broadcast.

    >>> K = V = np.eye(3)
    >>> mem(np.array([[1.0, 0, 0]]), K, V, temperature=0.01).weights.round(3)
    array([[1., 0., 0.]])
    """
    if K.shape[-2] == 0:
        shape = np.broadcast_shapes(q.shape[:-1], K.shape[:-2] + (q.shape[-2],))
        return Read(xp.zeros(shape + (V.shape[-1],), dtype=q.dtype), xp.zeros(shape + (0,), dtype=q.dtype))
    weights = softmax(similarity(q, K, sim, xp) / temperature, mask, xp)
    return Read(weights @ V, weights)
