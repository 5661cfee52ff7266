"""The layer kinds, each on a whole batch: stream X of shape (S, P, T, d) = codebooks x prompts x positions x dims.

Positions are updated in order and in place, so position i sees the already-updated positions before it,
as in the reference posts.  assoc and mlp read each position on its own, so one batched GEMM does all of
them; context and feedback are scans over positions (one Python step per position, never per prompt).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from assocmem.mem import EPS, mem, norms, softmax, sum_squares, unit
from assocmem.model import Stage

# RMSnorm's gain: the stream keeps the codebook's scale (unit vectors, rms 1/sqrt(d)) so that a
# memory read of unit vectors added to a normalised row is neither drowned out nor dominant.
RMS_EPS = 1e-12


class Inputs(NamedTuple):
    """What a stage reads besides the stream.  Shapes: tokens (S, P, T, d), lengths (P,), keys/values (S, M, d)."""

    tokens: object    # the embedded prompts, as they were before any layer
    lengths: object
    keys: object      # the compiled memory (compile.Memory)
    values: object
    kept_rows: object = None  # (S or 1, P, M) bool: the memory rows a batch row may read (None: all); an ablated rule is False
    readable: object = None   # (S or 1, P, T) bool: the positions context reads and feedback means may use (None: all)


def selected_positions(positions: str, lengths, T: int, xp=np):
    """Which (prompt, position) cells a stage updates.  Shapes: lengths (P,) -> (P, T) bool.

    >>> selected_positions("before_last", np.array([3, 1]), 4).astype(int)
    array([[1, 1, 0, 0],
           [0, 0, 0, 0]])
    """
    j = xp.arange(T)[None, :]
    L = lengths[:, None]
    return {"all": j < L, "last": j == L - 1, "before_last": j < L - 1}[positions]


def static_read(X, keys, values, select, temperature, sim, xp=np, record=True, chunk_rows=None, softmax_rows=None,
                kept=None):
    """assoc (keys, values) and mlp (values, keys): x_i += mem(x_i, K, V) at the selected positions.

    Recording keeps every weight; otherwise the selected rows are read `chunk_rows` at a time, so the
    score matrix stays small (see read_rows).  kept (S or 1, P, M) bool: the rows each batch row may read; a
    row left out gets no weight, as if the memory had been compiled without it (ablations).
    Shapes: X (S, P, T, d) updated in place, keys/values (S, M, d) -> weights (S, P, T, M) or None.
    """
    S, P, T, d = X.shape
    M = keys.shape[1]
    if M == 0:
        return xp.zeros((S, P, T, 0), dtype=X.dtype) if record else None
    if not record:  # a chunk of rows at a time, so the gathered rows and their read stay small
        p, t = xp.nonzero(select)
        chunk = chunk_rows or CHUNK_ROWS
        whole = T == 1 and len(p) == P  # each prompt's one row (engine.through_mixtures): slices, nothing gathered
        for s in range(S):
            K = unit(keys[s], xp) if sim == "cosine" else keys[s]  # once, not once a chunk
            for start in range(0, len(p), chunk):
                pc, tc = p[start:start + chunk], t[start:start + chunk]
                at = (s, slice(start, start + chunk), 0) if whole else (s, pc, tc)
                rows = X[at]
                scale = 1.0 / temperature  # the queries, normalised and divided by the temperature in one pass
                Q = rows * (scale / xp.maximum(norms(rows, xp), EPS) if sim == "cosine" else scale)
                kept_rows = None if kept is None else kept[min(s, kept.shape[0] - 1), pc]
                X[at] += read_rows(Q, K, values[s], xp, softmax_rows, kept_rows)  # (in place where `at` slices)
        return None
    if bool((select.sum(axis=1) <= 1).all()):  # at most one position a prompt (`last`): read only those
        p, t = xp.nonzero(select)
        mask = None if kept is None else kept[:, p]
        read = mem(X[:, p, t], keys, values, temperature, sim, mask, xp)  # (S, n, d)
        X[:, p, t] += read.value
        weights = xp.zeros((S, P, T, M), dtype=X.dtype)
        weights[:, p, t] = read.weights
        return weights
    mask = None if kept is None else xp.broadcast_to(kept[:, :, None, :], (kept.shape[0], P, T, M)).reshape(-1, P * T, M)
    read = mem(X.reshape(S, P * T, d), keys, values, temperature, sim, mask, xp)  # one GEMM per codebook
    X += xp.where(select[None, :, :, None], read.value.reshape(S, P, T, d), 0)
    return xp.where(select[None, :, :, None], read.weights.reshape(S, P, T, M), 0)


# Rows of queries a static read scores at once: 1024 x M = 10000 float32 scores are 40 MB, which keeps
# the two GEMMs near their full rate (measured: 0.87 of one unchunked GEMM pair at 1024, 0.81 at 256).
CHUNK_ROWS = 1024


def softmax_in_place(scores, xp=np):
    """Unnormalised softmax of each row, in place; returns the row sums.  Shapes: (n, M) -> (n, 1)."""
    scores -= scores.max(axis=1, keepdims=True)
    xp.exp(scores, out=scores)
    return scores.sum(axis=1, keepdims=True)


def read_rows(Q, keys, values, xp=np, softmax_rows=None, kept=None):
    """mem(Q, K, V) without keeping the weights, for queries already normalised (cosine) and divided by the
    temperature, as static_read makes them a chunk at a time: one GEMM for the scores, the softmax in place, one
    GEMM for the values, and a division by the row sums of whichever is narrower, the (n, M) weights or the (n, d)
    read (M = 256 against d = 1000: 0.06 ms against 0.19 for 1024 queries).

    softmax_rows(scores) -> row sums replaces the numpy softmax (the cupy backend fuses it into one kernel).
    kept (n, M) bool: the rows each query may read (ablations); those queries take mem.softmax, which reads
    nothing where no row is left.
    Shapes: Q (n, d), keys (M, d), values (M, d_v) -> (n, d_v).
    """
    scores = xp.matmul(Q, keys.T)
    if kept is not None:
        return xp.matmul(softmax(scores, kept, xp), values)
    sums = softmax_rows(scores) if softmax_rows else softmax_in_place(scores, xp)
    if scores.shape[1] < values.shape[1]:  # the weights are the narrower array: normalise them, not the read
        scores /= sums
        return xp.matmul(scores, values)
    read = xp.matmul(scores, values)
    read /= sums
    return read


def context_scan(X, tokens, select, temperature, sim, values="stream", xp=np, record=True, readable=None):
    """x_i += mem(x_i, X[:i], V[:i]) for i in order, V = the stream (keys equal values) or the token vectors.
    Without recording, context_chunks does the same a chunk of positions at a time.
    readable (S or 1, P, T) bool: the positions that may be read (an ablated position is False).

    Shapes: X, tokens (S, P, T, d); select (P, T) -> weights (S, P, T, T) (row i: attention of position i).
    """
    if not record and readable is None and (sim == "dot" or moderate_norms(X, xp)):
        return context_chunks(X, tokens, select, temperature, sim, values, xp)
    S, P, T, d = X.shape
    weights = xp.zeros((S, P, T, T), dtype=X.dtype) if record else None
    norm = (lambda v: unit(v, xp)) if sim == "cosine" else (lambda v: v)
    keys = norm(X)  # kept in step with X as rows change
    for i in range(1, T):
        active = select[:, i]
        if not bool(active.any()):
            continue
        vals = X[:, :, :i] if values == "stream" else tokens[:, :, :i]
        mask = None if readable is None else readable[:, :, None, :i]
        read = mem(norm(X[:, :, i:i + 1]), keys[:, :, :i], vals, temperature, "dot", mask, xp)
        X[:, :, i] += xp.where(active[None, :, None], read.value[:, :, 0], 0)
        keys[:, :, i] = norm(X[:, :, i])
        if record:
            weights[:, :, i, :i] = xp.where(active[None, :, None], read.weights[:, :, 0], 0)
    return weights


# Positions a chunked context scan scores in one GEMM.  Inside a chunk, position i reads the chunk's rows before it
# one by one (they change as the chunk goes), about CHUNK/2 rows a position against i/2 for the plain scan.
# 128: 2.7 s for B = 16, n = 1024, d = 1000 float32 on one BLAS thread (64: 3.1 s, 32: 3.3 s; the plain scan 15.4 s).
CONTEXT_CHUNK = 128


def moderate_norms(X, xp=np) -> bool:
    """Whether every nonzero row's norm lies within 2^(+-maxexp/4), where a dot product of raw rows neither
    overflows nor underflows (as mem.similarity decides); beyond that the scan normalises copies instead."""
    n = norms(X, xp)
    bound = 2.0 ** (xp.finfo(X.dtype).maxexp // 4)
    return bool(((n == 0) | ((n <= bound) & (n >= 1 / bound))).all())


def context_chunks(X, tokens, select, temperature, sim, values="stream", xp=np, chunk=None):
    """context_scan, a chunk of positions [a, b) at a time, exactly.  Position i's query is its own row, which
    nothing before step i changes, so the chunk's queries are known when it starts and their scores against every
    settled row before a are one GEMM, their softmax-weighted values a second one.  Then, in order, each i scores
    the rows a..i-1 of the chunk (settled by now) and merges them into that partial softmax (an online softmax:
    running max m, sum l, the partial read rescaled by exp(m_old - m)).  Cosine divides by norms kept in step with
    the rows instead of normalising a copy of the stream.

    Shapes: X, tokens (S, P, T, d), updated in place; select (P, T).  Returns None (no weights).
    """
    S, P, T, d = X.shape
    c = chunk or CONTEXT_CHUNK
    V = X if values == "stream" else tokens
    cosine = sim == "cosine"
    lengths = xp.maximum(norms(X, xp)[..., 0], EPS) if cosine else None  # (S, P, T), kept in step with X
    scale = 1.0 / temperature
    for a in range(0, T, c):
        b = min(a + c, T)
        if not bool(select[:, max(a, 1):b].any()):
            continue
        Q = X[:, :, a:b] * scale                                                   # (S, P, c, d): the queries
        if cosine:
            Q /= lengths[:, :, a:b, None]
        if a > 0:
            scores = Q @ xp.swapaxes(X[:, :, :a], -1, -2)                          # (S, P, c, a)
            if cosine:
                scores /= lengths[:, :, None, :a]
            top = scores.max(axis=-1)                                              # (S, P, c)
            xp.exp(scores - top[..., None], out=scores)
            total = scores.sum(axis=-1)
            partial = scores @ V[:, :, :a]                                         # (S, P, c, d)
        for i in range(max(a, 1), b):
            active = select[:, i]
            if not bool(active.any()):
                continue
            t = i - a
            near = (X[:, :, a:i] @ Q[:, :, t, :, None])[..., 0]                    # (S, P, i - a)
            if cosine:
                near /= lengths[:, :, a:i]
            if a == 0:
                m = near.max(axis=-1)
                weights = xp.exp(near - m[..., None])
                l, read = weights.sum(axis=-1), (weights[:, :, None, :] @ V[:, :, a:i])[:, :, 0]
            else:
                m = xp.maximum(top[:, :, t], near.max(axis=-1)) if i > a else top[:, :, t]
                old = xp.exp(top[:, :, t] - m)                                     # (S, P)
                weights = xp.exp(near - m[..., None])
                l = total[:, :, t] * old + weights.sum(axis=-1)
                read = partial[:, :, t] * old[..., None] + (weights[:, :, None, :] @ V[:, :, a:i])[:, :, 0]
            X[:, :, i] += xp.where(active[None, :, None], read / l[..., None], 0)
            if cosine:
                lengths[:, :, i] = xp.maximum(norms(X[:, :, i], xp)[..., 0], EPS)
    return None


def context_last(X, tokens, lengths, temperature, sim, values="stream", xp=np, record=True, readable=None):
    """context at the last position only: one masked read a prompt, no scan (readable: as for context_scan)."""
    S, P, T, d = X.shape
    p, last = xp.arange(P), lengths - 1
    earlier = xp.arange(T)[None, :] < last[:, None]  # (P, T)
    earlier = earlier[None] if readable is None else earlier[None] & readable
    vals = X if values == "stream" else tokens
    read = mem(X[:, p, last][:, :, None], X, vals, temperature, sim, mask=earlier[:, :, None, :], xp=xp)
    X[:, p, last] += read.value[:, :, 0]
    if not record:
        return None
    weights = xp.zeros((S, P, T, T), dtype=X.dtype)
    weights[:, p, last] = read.weights[:, :, 0]
    return weights


def next_prefix(row, prefix, decay: float, xp=np):
    """The prefix of the position after `row`: row + decay * roll(prefix), the older rows one step further back
    and bound by one more roll.  Shapes: row, prefix (..., d) -> (..., d)."""
    return row + decay * xp.roll(prefix, 1, axis=-1)


def prefixes(X, decay: float, xp=np):
    """p_i = x_{i-1} + decay * roll(p_{i-1}), p_0 = 0: the rows before each position, the nearer the heavier, each
    step back bound by one more roll (a permutation of the d axis, as vector-symbolic sequences are encoded), so
    `a a` and `a` differ and `b a` does not match `a b`.  Shapes: X (..., T, d) -> (..., T, d).

    >>> p = prefixes(np.eye(3)[None], 0.5)[0]
    >>> p[2]   # x_1 + 0.5 * roll(x_0) = e1 + 0.5 e1
    array([0. , 1.5, 0. ])
    """
    P = xp.zeros_like(X)
    for i in range(1, X.shape[-2]):
        P[..., i, :] = next_prefix(X[..., i - 1, :], P[..., i - 1, :], decay, xp)
    return P


def prefix_read(query, keys, values, earlier, previous, stage: Stage, temperature, sim, xp=np, rows=None,
                parts=None, tails=None, query_tail=0):
    """The reads of one position under `match: prefix`, batched over (S, P).

    Step k scores the query against the earlier positions' prefixes, with a null slot that scores `threshold`
    (when set) and reads nothing; its weights w_k read the values, and the stream gains decay^k times that read.
    The next step's query is what was found followed by the old query, bound one roll further:
        q_{k+1} = read_k + decay * roll(q_k)
    the prefix the position after the found one would have, so step k+1 reads what followed it.  With `fallback:
    previous`, step 0's null-slot weight reads the position before instead (`X ?` asks the memory about X).

    Shapes: query (S, P, d); keys, values (S, P, T, d); earlier (S or 1, P, T) bool, the positions it may read;
    previous (P,) int, the position before; rows: the rows before it, for chain_reads (with hops > 1)
    -> (added (S, P, d), weights (S, P, T): what each position contributed).  A list `parts` gets each read's
    own weights, (name, (S, P, T)): "step k", and "hop m.t" for chain_reads.  tails (T,), query_tail (P,) or a
    number: the squared lengths from before the prompt (tail()); each step's query carries its tail one further.
    """
    S, P, T, d = keys.shape
    weights = xp.zeros((S, P, T), dtype=keys.dtype)
    score = scorer(keys, sim, xp, tails)
    q, q_tail = query, query_tail
    for k in range(stage.steps):
        scores = score(q, q_tail) / temperature                                            # (S, P, T)
        scores = xp.where(earlier, scores, -xp.inf)
        if stage.threshold is not None:
            null = xp.full((S, P, 1), stage.threshold / temperature, dtype=keys.dtype)
            w = softmax(xp.concatenate([scores, null], axis=-1), xp=xp)
            w, missed = w[..., :T], w[..., T]
        else:
            w, missed = softmax(scores, xp=xp), None
        found = (w[:, :, None, :] @ values)[:, :, 0]                                       # (S, P, d)
        weights += stage.decay ** k * w
        if parts is not None:
            parts.append((f"step {k + 1}", w))
        if k == 0 and stage.fallback == "previous":
            ok = previous >= 0
            missed = missed * earlier[:, xp.arange(P), xp.maximum(previous, 0)]  # an ablated position reads nothing
            weights[:, xp.arange(P)[ok], previous[ok]] += missed[:, ok]
        q, q_tail = next_prefix(found, q, stage.decay, xp), stage.decay ** 2 * q_tail
    if stage.hops > 1:
        weights += chain_reads(rows, score, values, earlier, previous + 1, stage, temperature, xp, parts)
    added = (weights[:, :, None, :] @ values)[:, :, 0]
    return added, weights


def scorer(keys, sim, xp=np, tails=None):
    """score(q, tail=0) = sim(q, keys) for queries (S, P, d) against keys (S, P, T, d) -> (S, P, T), with the keys'
    norms taken once, however many reads score against them.  Under cosine, `tails` (T,) and `tail` (scalar or
    (S, P)) are squared lengths added to the keys' and the query's: rows before the prompt's start, orthogonal to
    everything (see tail()), so a prefix near the start is not a shorter, closer vector than one further on."""
    if sim != "cosine":
        return lambda q, tail=0: (keys @ q[..., None])[..., 0]
    length = norms(keys, xp)[..., 0] ** 2 + (0 if tails is None else tails)
    K = keys / xp.maximum(xp.sqrt(length), EPS)[..., None]
    return lambda q, tail=0: ((K @ q[..., None])[..., 0]
                              / xp.maximum(xp.sqrt(norms(q, xp)[..., 0] ** 2 + tail), EPS)[..., None])


def tail(position, decay: float, xp=np):
    """The squared length the prefix of `position` would have from the rows before the prompt, were they unit rows
    that match nothing: sum over k >= position of decay^(2k) = decay^(2 position) / (1 - decay^2) (0 at decay 1,
    where the sum has no limit: no tail).

    >>> tail(np.arange(3), 0.5).round(4)
    array([1.3333, 0.3333, 0.0833])
    """
    if decay >= 1:
        return 0 * position
    return decay ** (2 * position) / (1 - decay * decay)


def rows_before(X, i, hops: int, xp=np):
    """x_{i-1}, ..., x_{i-hops-1} of each prompt (zeros before position 0).
    Shapes: X (S, P, T, d), i (P,) int -> (S, P, hops + 1, d)."""
    S, P, T, d = X.shape
    k = i[:, None] - 1 - xp.arange(hops + 1)[None, :]            # (P, hops + 1)
    rows = X[:, xp.arange(P)[:, None], xp.maximum(k, 0)]
    return xp.where((k >= 0)[None, :, :, None], rows, 0)


def hop_threshold(decay: float) -> float:
    """The null slot of a hop: halfway between the cosine of a one-token match of two prefixes,
    sqrt((1 - decay^2) / (1 + decay^2)), and of a two-token match, sqrt(1 - decay^4) (0.77 and 0.97 at decay
    0.5), so a hop reads only where both the subject and the relation match.

    >>> round(hop_threshold(0.5), 3)
    0.871
    """
    return 0.5 * (((1 - decay**2) / (1 + decay**2)) ** 0.5 + (1 - decay**4) ** 0.5)


def chain_reads(rows, score, values, earlier, valid, stage: Stage, temperature, xp=np, parts=None):
    """Multi-hop in the context, at one position i: for m = 2..hops, start from the row m + 1 places back and
    walk forward through the rows before i, each hop reading what the context says followed (what was found,
    then the next row): v = x_{i-m-1}; for t = 1..m: v = read(x_{i-m-1+t} + decay * roll(v)).  In
    `Барак жена родилась ?` the hops read Мишель after `Барак жена`, then 1964 after `Мишель родилась`.
    A hop that has a next row in the question leaves out the positions whose value is that row (it looks
    for what the facts say, not for the question itself, and a copy of the text gives it nothing), and every
    hop has a null slot at hop_threshold().  A chain adds its last read weighted by the product of its hops'
    matched mass, so a chain that found nothing adds nothing.

    Shapes: rows (S, P, hops + 1, d), rows[:, :, k - 1] = x_{i-k}; score: scorer() of the prefixes; values
    (S, P, T, d); earlier (S or 1, P, T); valid (P,) int, the rows before i -> weights (S, P, T): what each position's
    value adds.
    """
    S, P, T, d = values.shape
    out = xp.zeros((S, P, T), dtype=values.dtype)
    null = xp.full((S, P, 1), hop_threshold(stage.decay) / temperature, dtype=values.dtype)
    like = scorer(values, "cosine", xp)
    for m in range(2, stage.hops + 1):
        v, matched = rows[:, :, m], xp.ones((S, P), dtype=values.dtype)
        for t in range(1, m + 1):
            q = next_prefix(rows[:, :, m - t], v, stage.decay, xp)
            scores = score(q)
            if t < m:  # leave out what the question itself says comes next
                scores = scores - like(rows[:, :, m - t - 1])
            scores = xp.where(earlier, scores / temperature, -xp.inf)
            w = softmax(xp.concatenate([scores, null], axis=-1), xp=xp)
            w, missed = w[..., :T], w[..., T]
            v = (w[:, :, None, :] @ values)[:, :, 0]
            matched = matched * (1 - missed)
            if parts is not None:  # a hop is shown while its chain still holds (its hops matched at least 1/2)
                live = (valid >= m + 1)[None, :] & (matched >= 0.5)
                parts.append((f"hop {m}.{t}", xp.where(live[:, :, None], w, 0)))
        out += xp.where((valid >= m + 1)[None, :, None], matched[:, :, None] * w, 0)
    return out


# The prompts a last-position prefix read takes at once hold at most this many bytes of stream: its reads keep
# about eight arrays of that size (the prefixes, their unit copies, the values, ...), so a big batch costs a few
# hundred MB more instead of eight times the stream (measured 8.9x at B = 4096 before grouping).
PREFIX_GROUP_BYTES = 16 * 2**20


def context_prefix(X, tokens, select, stage: Stage, temperature, sim, xp=np, record=True, readable=None):
    """context with `match: prefix`: each selected position i reads what stood where the rows before it match its
    own rows before (prefixes()), in order and in place.  Values are the tokens or the stream, as for context.

    Shapes: X, tokens (S, P, T, d); select (P, T) -> weights (S, P, T, T) (row i: what position i read).  Recording
    one position a prompt (`last`), it returns (weights, parts): each step's and hop's own weights at that
    position, (name, (S, P, T)), so a report can show every hop.  readable: as for context_scan; a left-out
    position is neither matched nor read (its row still stands in the prefixes of the positions after it).
    """
    S, P, T, d = X.shape
    weights = xp.zeros((S, P, T, T), dtype=X.dtype) if record else None
    positions = xp.arange(T)
    rows = xp.nonzero(select.any(axis=0))[0]
    if len(rows) == 0:
        return weights
    if bool((select.sum(axis=1) <= 1).all()):  # one position a prompt (`last`): batched reads, a group at a time
        chosen = xp.arange(P)[select.any(axis=1)]
        found = [] if record else None
        group = max(1, PREFIX_GROUP_BYTES // (S * T * d * X.itemsize))
        for start in range(0, len(chosen), group):
            p = chosen[start:start + group]
            i = select[p].argmax(axis=1)
            keys = prefixes(X[:, p], stage.decay, xp)
            values = (X if stage.values == "stream" else tokens)[:, p]
            earlier = (positions[None, :] < i[:, None])[None]
            earlier = earlier if readable is None else earlier & readable[:, p]
            parts = [] if record else None
            added, w = prefix_read(keys[:, xp.arange(len(p)), i], keys, values, earlier, i - 1, stage, temperature,
                                   sim, xp, rows_before(X[:, p], i, stage.hops, xp), parts,
                                   tail(positions, stage.decay, xp), tail(i, stage.decay, xp))
            X[:, p, i] += added
            if record:
                weights[:, p, i] = w
                found.append((p, parts))
        if not record:
            return None
        names = [name for name, _ in found[0][1]] if found else []
        parts = []
        for n, name in enumerate(names):
            full = xp.zeros((S, P, T), dtype=X.dtype)
            for p, group_parts in found:
                full[:, p] = group_parts[n][1]
            parts.append((name, full))
        return weights, tuple(parts)
    keys = xp.zeros_like(X)  # p_i, built as the scan goes: it needs the rows before i as they are once updated
    last_row = int(rows.max())
    for i in range(1, last_row + 1):
        keys[:, :, i] = next_prefix(X[:, :, i - 1], keys[:, :, i - 1], stage.decay, xp)
        active = select[:, i]
        if not bool(active.any()):
            continue
        values = (X if stage.values == "stream" else tokens)[:, :, :i]
        earlier = xp.ones((1, P, i), dtype=bool) if readable is None else readable[:, :, :i]
        added, w = prefix_read(keys[:, :, i], keys[:, :, :i], values, earlier, xp.full(P, i - 1), stage, temperature,
                               sim, xp, rows_before(X, xp.full(P, i), stage.hops, xp), None,
                               tail(positions[:i], stage.decay, xp), tail(i, stage.decay, xp))
        X[:, :, i] += xp.where(active[None, :, None], added, 0)
        if record:
            weights[:, :, i, :i] = xp.where(active[None, :, None], w, 0)
    return weights


def feedback_scan(X, lengths, stage: Stage, repeats: int = 1, xp=np, readable=None):
    """`repeats` feedback stages on the whole batch, in place.  Shapes: X (S, P, T, d), lengths (P,), readable
    (S or 1, P, T) bool or None: the rows a mean may use (feedback_readable).

    Works on a position-major copy, where each position's rows are contiguous (see feedback_positions).
    """
    S, P, T, d = X.shape
    Y = xp.ascontiguousarray(X.reshape(S * P, T, d).transpose(1, 0, 2))
    if readable is not None:
        rows = xp.broadcast_to(readable, (S, P, T)).reshape(S * P, T).T
        feedback_readable(Y, xp.tile(lengths, S), stage, rows, repeats, xp)
        X[...] = Y.transpose(1, 0, 2).reshape(S, P, T, d)
        return
    feedback_positions(Y, xp.tile(lengths, S), stage, repeats, xp)
    X[...] = Y.transpose(1, 0, 2).reshape(S, P, T, d)


def feedback_positions(Y, lengths, stage: Stage, repeats: int = 1, xp=np):
    """x_i = RMSnorm(x_i -/+ mean(X[:i])) for i = 1.. in order, `repeats` times; position 0 has no past and stays.
    With a window w the mean is over X[i-w:i], so the previous token weighs 1/w however long the past.

    Y is position-major, (T, n, d), updated in place; lengths (n,).  A running sum of the updated rows is
    carried, so a step costs O(n d), not O(i n d).  RMSnorm is scale-invariant, so with k past rows
        RMSnorm(x - total/k) = RMSnorm(k x - total) = (k x - total) / sqrt(|k x - total|^2 + eps k^2 d),
    which needs no division of the sum (eps is RMS_EPS, as in rms_norm).  Where every row of a position
    is updated, the arithmetic runs in place on Y[i]; a position that some rows skip (padding, `last`)
    goes through a buffer and is copied back where selected.  Strided (n, T, d) rows would be 2.4x slower
    here: rows T*d apart collide in the cache.
    """
    T, n, d = Y.shape
    active = selected_positions(stage.positions, lengths, T, xp).T  # (T, n)
    every = [bool(a) for a in active.all(axis=1)]
    sign = -1.0 if stage.sign == "minus" else 1.0
    total = xp.empty((n, d), dtype=Y.dtype)
    work = xp.empty((n, d), dtype=Y.dtype)
    norms = xp.empty((n, 1), dtype=Y.dtype)
    for _ in range(repeats):
        total[...] = 0
        for i in range(1, T):
            total += Y[i - 1]
            if stage.window and i > stage.window:
                total -= Y[i - 1 - stage.window]
            k = min(i, stage.window or i)
            row = Y[i] if every[i] else work
            if stage.norm == "rms":
                xp.multiply(Y[i], k, out=row)
                (xp.subtract if sign < 0 else xp.add)(row, total, out=row)
                sum_squares(row, xp, out=norms[:, 0])
                norms += RMS_EPS * k * k * d
                xp.sqrt(norms, out=norms)
                xp.divide(row, norms, out=row)
            else:
                xp.multiply(total, sign / k, out=work)
                xp.add(Y[i], work, out=row)
            if not every[i]:
                xp.copyto(Y[i], row, where=active[i][:, None])


def feedback_readable(Y, lengths, stage: Stage, readable, repeats: int = 1, xp=np):
    """feedback_positions where some rows may not be averaged (ablated positions): the mean at i is over the
    readable rows of X[i-w:i], k of them, and a position with none left keeps its row, as position 0 does.
    The same running sum, each row weighted by its readability (0 or 1), so counts stay exact.
    Shapes: Y (T, n, d) position-major, updated in place; lengths (n,); readable (T, n) bool."""
    T, n, d = Y.shape
    active = selected_positions(stage.positions, lengths, T, xp).T  # (T, n)
    r = readable.astype(Y.dtype)[:, :, None]                         # (T, n, 1)
    sign = 1.0 if stage.sign == "plus" else -1.0
    for _ in range(repeats):
        total = xp.zeros((n, d), dtype=Y.dtype)
        k = xp.zeros((n, 1), dtype=Y.dtype)
        for i in range(1, T):
            total += r[i - 1] * Y[i - 1]
            k += r[i - 1]
            drop = i - 1 - stage.window if stage.window else -1  # the row that leaves the window
            if drop >= 0:
                total -= r[drop] * Y[drop]
                k -= r[drop]
            if stage.norm == "rms":  # RMSnorm(x -/+ total / k) = (k x -/+ total) / sqrt(|k x -/+ total|^2 + eps k^2 d)
                row = k * Y[i] + sign * total
                row = row / (xp.sqrt(sum_squares(row, xp)[:, None] + RMS_EPS * k * k * d) + (k == 0))  # k = 0: kept
            else:
                row = Y[i] + sign * total / xp.maximum(k, 1)
            update = active[i] & (k[:, 0] > 0)
            Y[i] = xp.where(update[:, None], row, Y[i])


def feedback_weights(lengths, stage: Stage, S: int, T: int, dtype, xp=np, readable=None):
    """The averaging weights feedback_positions uses: row i holds 1/k on the k rows it averages, X[i-k:i] with
    k = min(i, window), and zeros where position i is not updated (position 0 has no past).
    Shapes: lengths (P,) -> (S, P, T, T), a read-only view shared by the S codebooks.

    >>> feedback_weights(np.array([3]), Stage("feedback"), 1, 3, float)[0, 0]
    array([[0. , 0. , 0. ],
           [1. , 0. , 0. ],
           [0.5, 0.5, 0. ]])
    >>> feedback_weights(np.array([3]), Stage("feedback", window=1), 1, 3, float)[0, 0, 2]
    array([0., 1., 0.])
    >>> feedback_weights(np.array([3]), Stage("feedback"), 1, 3, float, readable=np.array([[[False, True, True]]]))[0, 0, 2]
    array([0., 1., 0.])
    """
    if readable is not None:  # 1/k on the readable rows of each window (feedback_readable)
        plain = feedback_weights(lengths, stage, 1, T, dtype, xp)[0] > 0      # (P, T, T)
        used = plain[None] & readable[:, :, None, :]                          # (S or 1, P, T, T)
        k = used.sum(axis=-1, keepdims=True)
        return xp.broadcast_to(xp.where(used, 1.0 / xp.maximum(k, 1), 0.0).astype(dtype), (S, len(lengths), T, T))
    i, j = xp.arange(T)[:, None], xp.arange(T)[None, :]
    k = xp.minimum(i, stage.window) if stage.window else i  # as `k` in feedback_positions
    weights = xp.where((j < i) & (j >= i - k), 1.0 / xp.maximum(k, 1), 0.0).astype(dtype)  # (T, T)
    active = selected_positions(stage.positions, lengths, T, xp)  # (P, T)
    return xp.broadcast_to(xp.where(active[:, :, None], weights[None], 0), (S, len(lengths), T, T))
