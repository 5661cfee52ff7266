"""A tiny, obviously correct float64 model: loops over prompts, positions and memory rows.  Everything is checked
against it: the stream, every stage's weights, the logit lens, the lens similarity, the logits and the margins."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def cos(a, b):
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


def sim(a, b, kind):
    return cos(a, b) if kind == "cosine" else float(a @ b)


def read(q, keys, values, temperature, kind):
    """softmax(sim(q, k_j) / T) @ V, one row at a time; returns the read and the weights."""
    if len(keys) == 0:
        return np.zeros_like(q), np.zeros(0)
    scores = [sim(q, k, kind) / temperature for k in keys]
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    w = [x / sum(e) for x in e]
    out = np.zeros(len(values[0]))
    for wj, v in zip(w, values):
        out += wj * v
    return out, w


def softmax_left(scores):
    """softmax over the scores that are not None (left-out entries get weight 0; none left: all 0)."""
    kept = [x for x in scores if x is not None]
    if not kept:
        return [0.0] * len(scores)
    top = max(kept)
    total = sum(math.exp(x - top) for x in kept)
    return [0.0 if x is None else math.exp(x - top) / total for x in scores]


def prefix_read(rows, vals, st, temperature, kind, parts=None, unread=frozenset()):
    """context with match: prefix at position i = len(rows), the slow way: every prefix summed afresh,
    p_j = sum over k >= 1 of decay^(k-1) * roll^(k-1)(x_{j-k}); each step scores its query against p_0..p_{i-1}
    (and a null slot scoring `threshold`), reads, and moves its query one position on.  Returns the read and
    the weight each earlier position's value got, summed over steps.  `parts` gets each step's and each live
    hop's weights (a hop is shown while its chain's matched mass is at least 1/2).  Positions in `unread` are
    never matched nor read (an ablated position)."""
    parts = [] if parts is None else parts
    i, d = len(rows), len(vals[0])

    def prefix(j):
        return sum((st.decay ** (k - 1) * np.roll(rows[j - k], k - 1) for k in range(1, j + 1)), np.zeros(d))

    def before(j):  # the squared length the rows before the prompt would add: unit rows that match nothing
        return st.decay ** (2 * j) / (1 - st.decay ** 2) if st.decay < 1 else 0.0

    keys = [prefix(j) for j in range(i)]
    q = rows[i - 1] + st.decay * np.roll(prefix(i - 1), 1)  # p_i, built the same way
    q_tail = before(i)
    W = np.zeros(i)
    for step in range(st.steps):
        scores = [None if j in unread else tailed_sim(q, q_tail, k, before(j), kind) / temperature
                  for j, k in enumerate(keys)]
        if st.threshold is not None:
            scores.append(st.threshold / temperature)
        w = softmax_left(scores)
        found = sum((w[j] * vals[j] for j in range(i)), np.zeros(d))
        W += st.decay ** step * np.array(w[:i])
        parts.append((f"step {step + 1}", np.array(w[:i])))
        if step == 0 and st.fallback == "previous" and i - 1 not in unread:
            W[i - 1] += w[i]
        q, q_tail = found + st.decay * np.roll(q, 1), st.decay ** 2 * q_tail
    W += chains(rows, keys, vals, st, temperature, kind, parts, before, unread)
    return sum((W[j] * vals[j] for j in range(i)), np.zeros(d)), W


def tailed_sim(q, q_tail, k, k_tail, kind):
    """sim, with squared lengths added to each side's under cosine (rows orthogonal to everything)."""
    if kind != "cosine":
        return float(q @ k)
    nq, nk = math.sqrt(float(q @ q) + q_tail), math.sqrt(float(k @ k) + k_tail)
    return float(q @ k) / (nq * nk) if nq > 0 and nk > 0 else 0.0


def chains(rows, keys, vals, st, temperature, kind, parts, before, unread=frozenset()):
    """The multi-hop chains of a prefix read at position i = len(rows), one hop at a time: for m = 2..hops with
    m + 1 rows before i, v = rows[i-m-1], then for t = 1..m a read with the query rows[i-m-1+t] + decay roll(v);
    a hop with a next row leaves out the positions whose value is like it (score minus the cosine); a null slot
    at the hop threshold; the chain's last weights, times the product of its matched mass."""
    i = len(rows)
    g = st.decay
    null = 0.5 * (math.sqrt((1 - g * g) / (1 + g * g)) + math.sqrt(1 - g ** 4))
    W = np.zeros(i)
    for m in range(2, st.hops + 1):
        if i - m - 1 < 0:
            parts.extend((f"hop {m}.{t}", np.zeros(i)) for t in range(1, m + 1))
            continue
        v, matched = rows[i - m - 1], 1.0
        for t in range(1, m + 1):
            q = rows[i - m - 1 + t] + g * np.roll(v, 1)
            scores = [None if j in unread else
                      (tailed_sim(q, 0.0, keys[j], before(j), kind) - (cos(rows[i - m + t], vals[j]) if t < m else 0.0))
                      / temperature for j in range(i)]
            w = softmax_left(scores + [null / temperature])
            v = sum((w[j] * vals[j] for j in range(i)), np.zeros(len(v)))
            matched *= 1 - w[i]
            parts.append((f"hop {m}.{t}", np.array(w[:i]) if matched >= 0.5 else np.zeros(i)))
        W += matched * np.array(w[:i])
    return W


def rms_norm(x):
    d = len(x)
    return x / math.sqrt(float(x @ x) / d + 1e-12) / math.sqrt(d)


def selected(positions, i, n):
    return {"all": True, "last": i == n - 1, "before_last": i < n - 1}[positions]


@dataclass
class Trace:
    """One prompt.  weights[k]: (layer, stage index, kind, (n, columns) array), every stage in order."""

    stream: np.ndarray          # (n, d)
    weights: list
    lens_logits: np.ndarray     # (layers + 1, V)
    lens_similarity: np.ndarray  # (layers + 1, n)
    logits: np.ndarray          # (V,)
    parts: dict = None          # (layer, stage index) -> [(name, (n,) weights)]: a last-position prefix read's reads
    streams: list = None        # the stream before each layer, and after the last: (layers + 1) x (n, d)


def trace_prompt(tokens, keys, values, vectors, pipeline, temperature, kind, unread=frozenset(), skip=frozenset(),
                 patch=None) -> Trace:
    """tokens (n, d), keys and values (M, d), vectors (V, d): the whole model on one prompt.  Interventions, the
    slow way: `unread` positions are left out of every context read and feedback mean; a (layer, stage index) in
    `skip` is not run (its weights stay 0); patch {layer index l (0-based): {position: row}} sets those rows of
    the stream before layer l (before layer 1, the token vectors too: the stream there is the tokens).  A memory row is ablated by the caller, who passes keys and values without it."""
    X = [np.array(t, dtype=np.float64) for t in tokens]
    E = [np.array(t, dtype=np.float64) for t in tokens]
    n, M = len(X), len(keys)
    keys, values = list(keys), list(values)

    def lens():
        return [sim(X[-1], v, kind) for v in vectors], [sim(X[-1], x, kind) for x in X]

    weights, lens_logits, lens_sim, parts, streams = [], [lens()[0]], [lens()[1]], {}, []
    for l, layer in enumerate(pipeline):
        for position, row in (patch or {}).get(l, {}).items():
            X[position] = np.array(row, dtype=np.float64)
            if l == 0:
                E[position] = np.array(row, dtype=np.float64)
        streams.append(np.array(X))
        for s, st in enumerate(layer.stages):
            T = st.get("temperature") or temperature
            W = np.zeros((n, M if st.kind in ("assoc", "mlp") else n))
            for i in range(n):
                if not selected(st.positions, i, n) or (l + 1, s) in skip:
                    continue
                if st.kind == "assoc":
                    r, W[i] = read(X[i], keys, values, T, kind)
                    X[i] = X[i] + r
                elif st.kind == "mlp":
                    r, W[i] = read(X[i], values, keys, T, kind)
                    X[i] = X[i] + r
                elif st.kind == "context" and i > 0:
                    vals = X[:i] if st.values == "stream" else E[:i]
                    if st.match == "prefix":
                        found = parts.setdefault((l + 1, s), []) if st.positions == "last" else []
                        r, W[i, :i] = prefix_read(X[:i], vals, st, T, kind, found, unread)
                    else:
                        read_from = [j for j in range(i) if j not in unread]
                        r, w = read(X[i], [X[j] for j in read_from], [vals[j] for j in read_from], T, kind)
                        W[i, read_from] = w
                    X[i] = X[i] + r
                elif st.kind == "feedback" and i > 0:
                    first = max(0, i - st.window) if st.window else 0
                    used = [j for j in range(first, i) if j not in unread]
                    if not used:  # nothing left to average: the row stays, as position 0's does
                        continue
                    past = [X[j] for j in used]
                    W[i, used] = 1 / len(past)
                    mean = sum(past) / len(past)
                    x = X[i] - mean if st.sign == "minus" else X[i] + mean
                    X[i] = rms_norm(x) if st.norm == "rms" else x
            weights.append((l + 1, s, st.kind, W))
        logit_row, sim_row = lens()
        lens_logits.append(logit_row)
        lens_sim.append(sim_row)
    streams.append(np.array(X))
    return Trace(np.array(X), weights, np.array(lens_logits), np.array(lens_sim), np.array(lens_logits[-1]), parts,
                 streams)


def run_prompt(tokens, keys, values, pipeline, temperature, kind):
    """The final stream alone.  tokens (n, d) -> (n, d)."""
    return trace_prompt(tokens, keys, values, np.zeros((0, len(tokens[0]))), pipeline, temperature, kind).stream


def margin(logits, expect: int, candidates) -> tuple[float, int]:
    """logits[expect] minus the best other candidate's logit, and the winner: the first best candidate."""
    winner = candidates[0]
    for c in candidates:
        if logits[c] > logits[winner]:
            winner = c
    others = [logits[c] for c in candidates if c != expect]
    return (logits[expect] - max(others) if others else math.inf), winner


def check_feedback_scan(X, tokens, lengths, stage, repeats: int) -> None:
    """Assert that X, the tokens (S, P, T, d) after a backend's scan of `repeats` feedback stages, is what as many
    layers of the loop above give for every prompt, and still zero past each prompt's length."""
    from assocmem.model import Layer

    d = tokens.shape[-1]
    pipeline = (Layer((stage,)),) * repeats
    for s in range(tokens.shape[0]):
        for p, L in enumerate(lengths):
            want = run_prompt(tokens[s, p, :L], np.zeros((0, d)), np.zeros((0, d)), pipeline, 1.0, "cosine")
            np.testing.assert_allclose(X[s, p, :L], want, rtol=1e-9, atol=1e-9)
            assert not X[s, p, L:].any()
