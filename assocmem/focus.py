"""What a view shows of a long row or prompt: the top-k of a weight row, and the positions that matter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHOWN = 0.005  # a weight below this is never listed by itself: it goes into the summed rest


@dataclass(frozen=True)
class TopK:
    """The largest entries of one row of weights, largest first, and what the rest adds up to."""

    columns: tuple[int, ...]    # indices into the row, by weight descending (ties: the earlier column first)
    others: int                 # how many other entries are non-zero
    rest: float                 # their sum


def top_k(row, k: int) -> TopK:
    """The k largest weights of `row` that are at least SHOWN; every other non-zero weight is counted and summed.

    >>> t = top_k(np.array([0.1, 0.0, 0.6, 0.2, 0.1]), 2)
    >>> t.columns, t.others, round(t.rest, 6)
    ((2, 3), 2, 0.2)
    """
    row = np.asarray(row, dtype=float)
    order = np.argsort(-row, kind="stable")
    shown = tuple(int(c) for c in order[:k] if row[c] >= SHOWN)
    rest = np.ones(row.shape, bool)
    rest[list(shown)] = False
    rest &= row != 0
    return TopK(shown, int(rest.sum()), float(row[rest].sum()))


@dataclass(frozen=True)
class Window:
    """The positions a bounded picture shows, in order, and why: always the last few, then the ones with weight
    and the expected token's, up to a budget; the labels (token@i) say where positions were skipped."""

    positions: tuple[int, ...]
    total: int

    @property
    def cut(self) -> bool:
        return len(self.positions) < self.total

    def labels(self, tokens) -> list[str]:
        """token@i for each shown position."""
        return [f"{tokens[i]}@{i}" for i in self.positions]

    def caption(self) -> str:
        if not self.cut:
            return ""
        return f"{len(self.positions)} of {self.total} positions: the last, the expected token's, the most weighted"


def window(total: int, weight=None, marked=(), last: int = 10, budget: int = 32) -> Window:
    """Up to `budget` of `total` positions: the `last` ones, every position in `marked` (the expected token's),
    then the most weighted by `weight` (T,), a score such as the largest attention a position got in any row.
    A prompt that fits is shown whole.

    >>> window(100, weight=np.eye(100)[3] + 0.5 * np.eye(100)[50], marked=[7], last=3, budget=6).positions
    (3, 7, 50, 97, 98, 99)
    """
    if total <= budget:
        return Window(tuple(range(total)), total)
    chosen = list(range(total - last, total))
    chosen += [int(m) for m in marked if 0 <= m < total and m not in chosen][:max(budget - len(chosen), 0)]
    if weight is not None and len(chosen) < budget:
        weight = np.asarray(weight, dtype=float)
        for i in np.argsort(-weight, kind="stable"):
            if len(chosen) >= budget or weight[i] <= 0:
                break
            if int(i) not in chosen:
                chosen.append(int(i))
    return Window(tuple(sorted(set(chosen))), total)
