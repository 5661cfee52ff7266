"""Array backends, found by name: numpy (the reference, always importable) and cupy (imported lazily, runs kernels/*.cu)."""
from __future__ import annotations

from functools import cache

import numpy as np

from assocmem import layers
from assocmem.errors import InputError
from assocmem.model import KINDS, Stage

NAMES = ("numpy", "cupy", "auto")


class _Checked:
    """What a stage method returns, when not recording, where it has itself checked that every value it wrote is
    finite (the fused scan, as it goes): the engine then does not read the stream again to look."""

    def __repr__(self):
        return "CHECKED"


CHECKED = _Checked()


class Backend:
    """Runs stages on one batch, written once against the array module `xp`.

    KINDS[kind].method names the stage method that runs a kind: static (assoc, mlp), context or feedback.  Each
    takes (X, inputs, stage, temperature, sim, record), updates X in place and returns the stage's weights,
    (S, P, T, columns), when recording (else None), or (weights, parts) where a stage is made of several reads
    (a prefix read's steps and hops: engine.StageRecord.parts), or CHECKED, not recording, where it checked that what
    it wrote is finite.  A backend with a faster way to do the work (cache-sized blocks, a CUDA kernel) overrides
    read_static, scan_feedback or a stage method, prompts_per_block where a pass should go a block of prompts at
    a time, and last_rows where it can keep rows as mixtures of the tokens (backends/span.py); nothing else.

    Shapes: X (S, P, T, d) on the backend; inputs: layers.Inputs, tokens (S, P, T, d), lengths (P,), keys and
    values (S, M, d).
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

    # ------------------------------------------------------------------ stage methods, named in model.KINDS

    def static(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record):
        """A read of the compiled memory, with the keys and values the kind's table entry names."""
        keys, values = (getattr(inputs, name) for name in KINDS[stage.kind].memory)
        select = layers.selected_positions(stage.positions, inputs.lengths, X.shape[2], self.xp)
        return self.read_static(X, keys, values, select, temperature, sim, record, inputs.kept_rows)

    def context(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record):
        if stage.match == "prefix":
            select = layers.selected_positions(stage.positions, inputs.lengths, X.shape[2], self.xp)
            return layers.context_prefix(X, inputs.tokens, select, stage, temperature, sim, self.xp,
                                         record, inputs.readable)
        if stage.positions == "last":
            return layers.context_last(X, inputs.tokens, inputs.lengths, temperature, sim, stage.values, self.xp, record,
                                       inputs.readable)
        select = layers.selected_positions(stage.positions, inputs.lengths, X.shape[2], self.xp)
        return layers.context_scan(X, inputs.tokens, select, temperature, sim, stage.values, self.xp, record,
                                   inputs.readable)

    def feedback(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record, repeats: int = 1,
                 source=None):
        """`repeats` feedback stages in one call; the weights are the averaging weights the scan used.
        source: the stream before the stage, where X does not hold it yet (engine.forward's first layer)."""
        checked = self.scan_feedback(X, inputs.lengths, stage, repeats, inputs.readable, source)
        if record:
            return layers.feedback_weights(inputs.lengths, stage, X.shape[0], X.shape[2], X.dtype, self.xp,
                                           inputs.readable)
        return CHECKED if checked else None

    def prompts_per_block(self, tokens, pipeline) -> int | None:
        """How many prompts a pass that records nothing takes through the whole pipeline at a time, so that a
        block's stream stays in cache from one stage to the next; None: the whole batch at once."""
        return None

    def last_rows(self, tokens, lengths, stages, temperature, sim):
        """Each prompt's last row after `stages` (every one of engine.mixing_stages's kinds), without the stream, and
        an (S, P) bool of the prompts it did: (rows (S, P, d), done).  None where this backend has no such way, or
        it would not pay; the engine then runs the stream."""
        return None

    def map_blocks(self, run, starts) -> list:
        """[run(start) for start in starts]: the blocks of prompts_per_block, in order (a backend may run them
        side by side)."""
        return [run(start) for start in starts]

    # ------------------------------------------------------------------ the work itself, where backends differ

    def read_static(self, X, keys, values, select, temperature, sim, record, kept=None):
        return layers.static_read(X, keys, values, select, temperature, sim, self.xp, record, self.chunk_rows,
                                  kept=kept)

    def scan_feedback(self, X, lengths, stage: Stage, repeats: int = 1, readable=None, source=None) -> bool | None:
        """readable (S or 1, P, T) or None: the rows a mean may use; backends leave ablated batches to this code.
        source: the stream before the scan, copied into X first (a backend may read it as it goes instead).
        Returns True where it checked that every value it wrote is finite (None: it did not look)."""
        if source is not None:
            X[...] = source
        layers.feedback_scan(X, lengths, stage, repeats, self.xp, readable)
        return None


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
