"""Array backends, found by name: numpy (the reference, always importable) and cupy (imported lazily, runs kernels/*.cu)."""
from __future__ import annotations

from functools import cache

import numpy as np

from assocmem import layers
from assocmem.errors import InputError

NAMES = ("numpy", "cupy", "auto")


class Backend:
    """Each stage kind, on one batch, written once against the array module `xp`.  A backend that has a
    faster way to run a kind (cache-sized chunks, a CUDA kernel) overrides that method and nothing else.

    Shapes: X, tokens (S, P, T, d) on the backend, updated in place; lengths (P,); keys, values (S, M, d).
    """

    name = "reference"
    xp = np
    note: str | None = None  # why this backend was picked, shown to the user (auto's fallback)
    chunk_rows: int | None = None  # queries a static read scores at once (None: layers.CHUNK_ROWS)

    def asarray(self, a):
        return self.xp.asarray(a)

    def to_numpy(self, a):
        return a

    def synchronize(self) -> None:
        """Wait until queued work is done, so a timer around it measures the work (a no-op on the CPU)."""

    def feedback(self, X, lengths, stage: layers.Stage, repeats: int = 1) -> None:
        layers.feedback_scan(X, lengths, stage, repeats, self.xp)

    def context(self, X, tokens, lengths, stage: layers.Stage, temperature, sim, record):
        T = X.shape[2]
        if stage.positions == "last":
            return layers.context_last(X, tokens, lengths, temperature, sim, stage.values, self.xp, record)
        select = layers.selected_positions(stage.positions, lengths, T, self.xp)
        return layers.context_scan(X, tokens, select, temperature, sim, stage.values, self.xp, record)

    def static(self, X, keys, values, select, temperature, sim, record):
        return layers.static_read(X, keys, values, select, temperature, sim, self.xp, record, self.chunk_rows)


@cache
def get_backend(name: str = "numpy") -> Backend:
    """One instance a name, kept: numpy, cupy (a one-line InputError where CuPy or a GPU is missing), or auto (cupy if it works, else
    numpy with a note that says why)."""
    from assocmem.backends.numpy_backend import NumpyBackend

    if name == "numpy":
        return NumpyBackend()
    if name == "cupy":
        from assocmem.backends.cupy_backend import CupyBackend
        return CupyBackend.load()
    if name == "auto":
        from assocmem.backends.cupy_backend import CupyBackend
        try:
            return CupyBackend.load()
        except InputError as err:
            backend = NumpyBackend()
            backend.note = f"running on numpy: {err.message}"
            return backend
    raise InputError(f"unknown backend {name!r}", hint=f"use one of {', '.join(NAMES)}")
