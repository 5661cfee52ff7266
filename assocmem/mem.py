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


def _safe_bounds(dtype, xp=np):
    """Squares of |x| in [lo, hi] neither overflow nor lose digits to underflow: lo = sqrt(tiny), hi = the largest
    finite value.  Outside, a row is rescaled by its largest |x_k| first (as numpy.linalg.norm's BLAS nrm2 does)."""
    info = xp.finfo(dtype)
    return float(info.tiny) ** 0.5, float(info.max)


def norms(x, xp=np):
    """|x| along the last axis, without overflow or underflow: one vecdot pass, and only the rows whose sum of
    squares left [sqrt(tiny), max] (or is 0) recomputed as max|x_k| * |x / max|x_k||, a block of rows at a time.
    On ordinary rows the result is the plain sqrt of the sum of squares, bit for bit.
    Shapes: (..., d) -> (..., 1)."""
    if x.ndim == 1:
        return norms(x[None], xp)[0]
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(float)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # the rows it would warn of are recomputed
        squares = sum_squares(x, xp)
        lo, hi = _safe_bounds(x.dtype, xp)
        out = xp.sqrt(squares)
        unsafe = ~((squares >= lo) & (squares <= hi))  # 0, NaN, inf, tiny or huge: scale first
        if bool(unsafe.any()):
            rows = xp.nonzero(unsafe)
            for start in range(0, int(rows[0].shape[0]), 4096):  # a block at a time: padding rows can be many
                block = tuple(r[start:start + 4096] for r in rows)
                sub = x[block]
                scale = xp.abs(sub).max(axis=-1, keepdims=True)
                finite = xp.isfinite(scale) & (scale > 0)
                scaled = sub / xp.where(finite, scale, 1)
                out[block] = xp.where(finite[..., 0], xp.sqrt(sum_squares(scaled, xp)) * scale[..., 0],
                                      xp.sqrt(sum_squares(sub, xp)))
    return out[..., None]


def unit(x, xp=np):
    """x scaled to unit length along the last axis; zero rows stay zero.  Shapes: (..., d) -> (..., d).

    >>> unit(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    return x / xp.maximum(norms(x, xp), EPS)


def similarity(q, K, kind: str = "cosine", xp=np):
    """Scores of every query against every key.  Shapes: q (..., n, d), K (..., m, d) -> (..., n, m).
    Cosine divides the dot products by the norms, rather than normalising copies of q and K first, where every
    nonzero norm lies within 2^(±maxexp/4) (2^±256 in float64), so no product of entries overflows or underflows;
    beyond that it normalises copies, so a row of 1e300s or of 1e-300s scores as its direction does.

    >>> similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]), "dot")
    array([[2., 1.]])
    >>> similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
    array([[1., 0.]])
    """
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")
    if kind == "dot":
        return q @ xp.swapaxes(K, -1, -2)
    nq, nK = xp.maximum(norms(q, xp), EPS), xp.maximum(norms(K, xp), EPS)
    bound = 2.0 ** (xp.finfo(q.dtype).maxexp // 4)
    if bool(((nq > bound) | (nq < 1 / bound)).any() | ((nK > bound) | (nK < 1 / bound)).any()):
        return (q / nq) @ xp.swapaxes(K / nK, -1, -2)
    scores = q @ xp.swapaxes(K, -1, -2)
    scores /= nq * xp.swapaxes(nK, -1, -2)
    return scores


def softmax(scores, mask=None, xp=np):
    """Max-subtracted softmax over the last axis.  Masked-out entries get weight 0; a row with no
    allowed entry (an empty memory) gets all zeros, so reading it adds nothing.  Shapes: (..., m) -> (..., m).

    >>> softmax(np.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]]), mask=np.array([[True, True, False], [False] * 3]))
    array([[0.5, 0.5, 0. ],
           [0. , 0. , 0. ]])
    """
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
