"""The programs the bench races the engine against, each the feedback10 recipe written plainly: a loop, numpy, torch."""
from __future__ import annotations

import math

import numpy as np

from assocmem.mem import mem, unit

RMS_EPS = 1e-12  # as layers.RMS_EPS


def loop_reference(tokens, keys, values, vectors, temperature: float, feedback_layers: int = 10):
    """The posts' way, for the feedback10 recipe: one prompt, one position at a time, the mean of the earlier rows
    taken afresh at each step.  `feedback_layers` layers of x - mean with RMSnorm, then at the last position a
    read of the earlier rows with the tokens as values, then a read of the memory.
    Shapes: tokens (B, T, d) -> logits (B, V)."""
    d = tokens.shape[-1]

    def read(q, K, V):
        return mem(q[None], K, V, temperature).value[0]

    logits = np.empty((tokens.shape[0], vectors.shape[0]), dtype=tokens.dtype)
    for p, prompt in enumerate(tokens):
        X = prompt.copy()
        for _ in range(feedback_layers):
            for i in range(1, len(X)):
                x = X[i] - X[:i].mean(axis=0)
                X[i] = x / np.sqrt((x * x).mean() + RMS_EPS) / math.sqrt(d)
        X[-1] += read(X[-1], X[:-1], prompt[:-1])
        X[-1] += read(X[-1], keys, values)
        logits[p] = unit(vectors) @ unit(X[-1])
    return logits


def batched_numpy(tokens, keys, values, vectors, temperature: float, feedback_layers: int = 10, block: int = 64):
    """The same recipe as a short batched numpy program, what a careful user would write in an afternoon: blocks of
    `block` prompts (so a block stays in cache across layers), a running sum instead of a mean taken afresh, and
    the two reads at the last position as batched products.  Prompts all have T tokens.
    Shapes: tokens (B, T, d), keys/values (M, d), vectors (V, d) -> logits (B, V)."""
    B, T, d = tokens.shape
    K, W = unit(keys), unit(vectors)
    logits = np.empty((B, len(vectors)), dtype=tokens.dtype)
    for start in range(0, B, block):
        E = tokens[start:start + block]
        X = E.copy()                                                     # (b, T, d)
        for _ in range(feedback_layers):
            total = np.zeros_like(X[:, 0])
            for i in range(1, T):
                total += X[:, i - 1]
                x = X[:, i] - total / i
                X[:, i] = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + RMS_EPS) / math.sqrt(d)
        last = X[:, -1]                                                  # (b, d), a view: reads add in place
        scores = np.einsum("bd,btd->bt", unit(last), unit(X[:, :-1])) / temperature
        last += np.einsum("bt,btd->bd", _softmax(scores), E[:, :-1])
        last += _softmax(unit(last) @ K.T / temperature) @ values
        logits[start:start + block] = unit(last) @ W.T
    return logits


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def torch_eager():
    """batched_torch if torch imports, else None (torch is never a dependency: the bench names it where present)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return None
    return batched_torch


def batched_torch(tokens, keys, values, vectors, temperature: float, feedback_layers: int = 10, block: int = 64):
    """batched_numpy in torch eager, on the CPU, the same blocks.  Arrays in and out are numpy."""
    import torch
    import torch.nn.functional as F

    E_all, V = torch.from_numpy(tokens), torch.from_numpy(values)
    K, W = F.normalize(torch.from_numpy(keys), dim=-1), F.normalize(torch.from_numpy(vectors), dim=-1)
    B, T, d = E_all.shape
    out = torch.empty((B, W.shape[0]), dtype=E_all.dtype)
    with torch.no_grad():
        for start in range(0, B, block):
            E = E_all[start:start + block]
            X = E.clone()
            for _ in range(feedback_layers):
                total = torch.zeros_like(X[:, 0])
                for i in range(1, T):
                    total += X[:, i - 1]
                    x = X[:, i] - total / i
                    X[:, i] = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + RMS_EPS) / math.sqrt(d)
            last = X[:, -1]
            scores = torch.einsum("bd,btd->bt", F.normalize(last, dim=-1), F.normalize(X[:, :-1], dim=-1))
            last += torch.einsum("bt,btd->bd", torch.softmax(scores / temperature, dim=-1), E[:, :-1])
            last += torch.softmax(F.normalize(last, dim=-1) @ K.T / temperature, dim=-1) @ V
            out[start:start + block] = F.normalize(last, dim=-1) @ W.T
    return out.numpy()
