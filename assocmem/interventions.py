"""What each row of a batch changes in the model: memory rows left out, positions not read, stages skipped, patches."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Interventions:
    """Per batch row, as arrays the engine reads; None where nothing of that sort is changed.  An ablation set is
    extra rows of one batch, not a loop: row p of the batch may be prompt j with rule m left out.

    Shapes (S' is S, or 1 for the same change in every codebook; P batch rows; M memory rows; T positions;
    K stages of the pipeline in order; L layers):
      kept_rows (S', P, M) bool: the memory rows a batch row may read (an ablated rule is False);
      readable (S', P, T) bool: the positions context reads and feedback means may use;
      skipped (K, S', P) bool: stage k leaves the batch row as it was (a skipped stage or layer);
      patched (L, P, T) bool with source (P,) int: before layer l, position t of batch row p takes row t of batch
        row source[p] (activation patching: the source row runs unpatched in the same batch); before layer 1 the
        stream is the token vectors, so a patch there swaps the token, for `values: tokens` reads too;
      alike (P,) int: the batch rows that start as the same stream (rows of one prompt) name the same row.  The
        engine then runs a stage once for the rows that are still equal and that it changes alike (shared()), so a
        rule ablated in the last layer costs nothing in the layers before it.
    """

    kept_rows: np.ndarray | None = None
    readable: np.ndarray | None = None
    skipped: np.ndarray | None = None
    patched: np.ndarray | None = None
    source: np.ndarray | None = None
    alike: np.ndarray | None = None

    def skips(self, stage: int) -> bool:
        """Whether any batch row skips stage `stage` (0-based, in pipeline order)."""
        return self.skipped is not None and bool(self.skipped[stage].any())

    def patches(self, layer: int) -> bool:
        """Whether any batch row is patched before layer `layer` (0-based)."""
        return self.patched is not None and bool(self.patched[layer].any())

    def on(self, backend) -> "Interventions":
        """The same, with every array on the backend."""
        return Interventions(*(None if a is None else backend.asarray(a) for a in
                               (self.kept_rows, self.readable, self.skipped, self.patched, self.source)), self.alike)

    def shared(self, same: np.ndarray, stage: int, reads: str, host) -> tuple[np.ndarray, np.ndarray]:
        """Which rows a stage must run on.  same (P,): for each row, the first row whose stream equals it now.  Rows
        stay equal through the stage where they are equal now and the stage sees the same change in each: the same
        memory rows kept (reads "memory") or positions readable ("positions"), and the same skip.
        Returns (same after the stage, the rows to run it on: the first of each group that is not skipped).
        host(a): the array on the host (the masks are small)."""
        P = len(same)
        skip = np.zeros(P, bool) if self.skipped is None else host(self.skipped[stage]).reshape(-1, P)[0]
        mask = self.kept_rows if reads == "memory" else self.readable
        mask = None if mask is None else host(mask)
        groups: dict = {}
        after = np.empty(P, dtype=np.int64)
        for r in range(P):
            key = (int(same[r]), bool(skip[r]), b"" if mask is None else mask[:, r].tobytes())
            after[r] = groups.setdefault(key, r)
        first = np.unique(after)
        return after, first[~skip[first]]

    def take(self, rows) -> "Interventions":
        """The interventions of some batch rows (a pass of a batch split to fit the memory budget)."""
        rows = np.asarray(rows)
        cut = lambda a, axis: None if a is None else np.take(a, rows, axis=axis)  # noqa: E731
        if self.source is not None and not np.isin(self.source[rows], rows).all():
            raise ValueError("a pass must hold the rows its patches copy from")
        source = None if self.source is None else np.searchsorted(rows, self.source[rows])
        alike = None
        if self.alike is not None:  # the first row taken of each group of rows that start alike
            _, first, group = np.unique(self.alike[rows], return_index=True, return_inverse=True)
            alike = first[group]
        return Interventions(cut(self.kept_rows, 1), cut(self.readable, 1), cut(self.skipped, 2),
                             cut(self.patched, 1), source, alike)

    def cut_to(self, T: int) -> "Interventions":
        """The same, with the position axes cut to the first T positions (a pass cut to its longest prompt)."""
        return replace(self, readable=None if self.readable is None else self.readable[:, :, :T],
                       patched=None if self.patched is None else self.patched[:, :, :T])
