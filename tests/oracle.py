"""A tiny, obviously correct float64 model: loops over prompts, positions and memory rows.  Everything is checked against it."""
from __future__ import annotations

import math

import numpy as np


def cos(a, b):
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


def sim(a, b, kind):
    return cos(a, b) if kind == "cosine" else float(a @ b)


def read(q, keys, values, temperature, kind):
    """softmax(sim(q, k_j) / T) @ V, one row at a time."""
    if len(keys) == 0:
        return np.zeros_like(q), []
    scores = [sim(q, k, kind) / temperature for k in keys]
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    w = [x / sum(e) for x in e]
    out = np.zeros(len(values[0]))
    for wj, v in zip(w, values):
        out += wj * v
    return out, w


def rms_norm(x):
    d = len(x)
    return x / math.sqrt(float(x @ x) / d + 1e-12) / math.sqrt(d)


def selected(positions, i, n):
    return {"all": True, "last": i == n - 1, "before_last": i < n - 1}[positions]


def run_prompt(tokens, keys, values, pipeline, temperature, kind):
    """tokens (n, d) float64 -> final stream (n, d).  keys, values (M, d)."""
    X = [np.array(t, dtype=np.float64) for t in tokens]
    E = [np.array(t, dtype=np.float64) for t in tokens]
    n = len(X)
    for layer in pipeline:
        for st in layer.stages:
            T = st.temperature or temperature
            for i in range(n):
                if not selected(st.positions, i, n):
                    continue
                if st.kind == "assoc":
                    X[i] = X[i] + read(X[i], list(keys), list(values), T, kind)[0]
                elif st.kind == "mlp":
                    X[i] = X[i] + read(X[i], list(values), list(keys), T, kind)[0]
                elif st.kind == "context":
                    vals = X[:i] if st.values == "stream" else E[:i]
                    X[i] = X[i] + read(X[i], X[:i], vals, T, kind)[0]
                elif st.kind == "feedback" and i > 0:
                    past = X[max(0, i - st.window):i] if st.window else X[:i]
                    mean = sum(past) / len(past)
                    x = X[i] - mean if st.sign == "minus" else X[i] + mean
                    X[i] = rms_norm(x) if st.norm == "rms" else x
    return np.array(X)
