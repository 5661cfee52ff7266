"""The four layer kinds, each on a whole batch: stream X of shape (S, P, T, d) = codebooks x prompts x positions x dims.

Positions are updated in order and in place, so position i sees the already-updated positions before it,
as in the reference posts.  assoc and mlp read each position on its own, so one batched GEMM does all of
them; context and feedback are scans over positions (one Python step per position, never per prompt).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.mem import mem, unit

KINDS = ("assoc", "context", "mlp", "feedback")
POSITIONS = ("all", "last", "before_last")
# RMSnorm's gain: the stream keeps the codebook's scale (unit vectors, rms 1/sqrt(d)) so that a
# memory read of unit vectors added to a normalised row is neither drowned out nor dominant.
RMS_EPS = 1e-12


@dataclass(frozen=True)
class Stage:
    """One read of one kind.  `temperature` None means the model's temperature."""

    kind: str
    positions: str = "all"        # which positions are updated: all, the last, or all but the last
    temperature: float | None = None
    values: str = "stream"        # context: values are the stream rows, or the tokens' own vectors
    sign: str = "minus"           # feedback: x_i - mean(X[:i]) (error feedback) or x_i + mean (averaging)
    norm: str = "rms"             # feedback: RMSnorm after the update, or none
    window: int | None = None     # feedback: mean over the last `window` rows instead of all of X[:i]

    @property
    def label(self) -> str:
        opts = []
        if self.kind == "context" and self.values != "stream":
            opts.append(f"values={self.values}")
        if self.kind == "feedback":
            opts.append("x-mean" if self.sign == "minus" else "x+mean")
            if self.norm == "none":
                opts.append("no norm")
            if self.window:
                opts.append(f"window={self.window}")
        if self.positions != "all":
            opts.append(self.positions.replace("_", " "))
        if self.temperature is not None:
            opts.append(f"T={self.temperature:g}")
        return self.kind + (f"({', '.join(opts)})" if opts else "")


@dataclass(frozen=True)
class Layer:
    """Stages applied one after the other; the logit lens looks after every layer."""

    stages: tuple[Stage, ...]

    @property
    def label(self) -> str:
        return " → ".join(s.label for s in self.stages)


def selected_positions(positions: str, lengths, T: int, xp=np):
    """Which (prompt, position) cells a stage updates.  Shapes: lengths (P,) -> (P, T) bool."""
    j = xp.arange(T)[None, :]
    L = lengths[:, None]
    return {"all": j < L, "last": j == L - 1, "before_last": j < L - 1}[positions]


def rms_norm(x, xp=np):
    """x / rms(x), scaled by 1/sqrt(d) so a normalised row has unit length.  Shapes: (..., d) -> (..., d)."""
    d = x.shape[-1]
    return x / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + RMS_EPS) / np.sqrt(d)


def static_read(X, keys, values, select, temperature, sim, xp=np, record=True):
    """assoc (keys, values) and mlp (values, keys): x_i += mem(x_i, K, V) at the selected positions.

    Shapes: X (S, P, T, d) updated in place, keys/values (S, M, d) -> weights (S, P, T, M) or None.
    """
    S, P, T, d = X.shape
    M = keys.shape[1]
    if M == 0:
        return xp.zeros((S, P, T, 0), dtype=X.dtype) if record else None
    if bool((select.sum(axis=1) <= 1).all()):  # at most one position a prompt (`last`): read only those
        p, t = xp.nonzero(select)
        read = mem(X[:, p, t], keys, values, temperature, sim, xp=xp)  # (S, n, d)
        X[:, p, t] += read.value
        if not record:
            return None
        weights = xp.zeros((S, P, T, M), dtype=X.dtype)
        weights[:, p, t] = read.weights
        return weights
    read = mem(X.reshape(S, P * T, d), keys, values, temperature, sim, xp=xp)  # one GEMM per codebook
    X += xp.where(select[None, :, :, None], read.value.reshape(S, P, T, d), 0)
    return xp.where(select[None, :, :, None], read.weights.reshape(S, P, T, M), 0) if record else None


def context_scan(X, tokens, select, temperature, sim, values="stream", xp=np, record=True):
    """x_i += mem(x_i, X[:i], V[:i]) for i in order, V = the stream (keys equal values) or the token vectors.

    Shapes: X, tokens (S, P, T, d); select (P, T) -> weights (S, P, T, T) (row i: attention of position i).
    """
    S, P, T, d = X.shape
    weights = xp.zeros((S, P, T, T), dtype=X.dtype) if record else None
    norm = (lambda v: unit(v, xp)) if sim == "cosine" else (lambda v: v)
    keys = norm(X)  # kept in step with X as rows change
    for i in range(1, T):
        active = select[:, i]
        if not bool(active.any()):
            continue
        vals = X[:, :, :i] if values == "stream" else tokens[:, :, :i]
        read = mem(norm(X[:, :, i:i + 1]), keys[:, :, :i], vals, temperature, "dot", xp=xp)
        X[:, :, i] += xp.where(active[None, :, None], read.value[:, :, 0], 0)
        keys[:, :, i] = norm(X[:, :, i])
        if record:
            weights[:, :, i, :i] = xp.where(active[None, :, None], read.weights[:, :, 0], 0)
    return weights


def context_last(X, tokens, lengths, temperature, sim, values="stream", xp=np, record=True):
    """context at the last position only: one masked read a prompt, no scan."""
    S, P, T, d = X.shape
    p, last = xp.arange(P), lengths - 1
    earlier = xp.arange(T)[None, :] < last[:, None]  # (P, T)
    vals = X if values == "stream" else tokens
    read = mem(X[:, p, last][:, :, None], X, vals, temperature, sim, mask=earlier[None, :, None, :], xp=xp)
    X[:, p, last] += read.value[:, :, 0]
    if not record:
        return None
    weights = xp.zeros((S, P, T, T), dtype=X.dtype)
    weights[:, p, last] = read.weights[:, :, 0]
    return weights


def feedback_scan(X, select, sign="minus", norm="rms", window=None, xp=np):
    """x_i = RMSnorm(x_i -/+ mean(X[:i])) for i = 1.. in order; position 0 has no past and stays.
    With a window w the mean is over X[i-w:i], so the previous token weighs 1/w however long the past.

    The running sum of the already-updated rows is carried along, so each step costs O(d), not O(i d).
    Shapes: X (S, P, T, d) updated in place; select (P, T).
    """
    S, P, T, d = X.shape
    total = xp.zeros((S, P, d), dtype=X.dtype)
    s = -1.0 if sign == "minus" else 1.0
    for i in range(1, T):
        total += X[:, :, i - 1]
        if window and i > window:
            total -= X[:, :, i - 1 - window]
        new = X[:, :, i] + (s / min(i, window or i)) * total
        if norm == "rms":
            new = rms_norm(new, xp)
        X[:, :, i] = xp.where(select[None, :, i, None], new, X[:, :, i])


def apply_stage(stage: Stage, X, tokens, lengths, keys, values, temperature, sim, xp=np, record=True):
    """Run one stage on the batch in place; returns its attention weights (or None)."""
    T = X.shape[2]
    temperature = stage.temperature or temperature
    select = selected_positions(stage.positions, lengths, T, xp)
    if stage.kind == "assoc":
        return static_read(X, keys, values, select, temperature, sim, xp, record)
    if stage.kind == "mlp":
        return static_read(X, values, keys, select, temperature, sim, xp, record)
    if stage.kind == "context":
        if stage.positions == "last":
            return context_last(X, tokens, lengths, temperature, sim, stage.values, xp, record)
        return context_scan(X, tokens, select, temperature, sim, stage.values, xp, record)
    if stage.kind == "feedback":
        feedback_scan(X, select, stage.sign, stage.norm, stage.window, xp)
        return None
    raise ValueError(f"unknown layer kind {stage.kind!r}")
