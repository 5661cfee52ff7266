"""The numpy backend: the feedback scan in cache-sized blocks of prompts on every core, static reads in chunks."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from assocmem import layers
from assocmem.backends import Backend, fused
from assocmem.cores import usable_cores
from assocmem.model import Stage

# One position of a block, (rows, d), is at most 2 MiB: a step reads that position, the one before it and
# the running sum, and all three stay in cache (1 MiB L2 and 32 MiB L3 on the 2-core EPYC we measured).
# Blocks are also as few as the threads allow, since every ufunc call takes the GIL to start: on that
# machine, B = 1024, d = 1000 float32, 10 layers, two threads reached 0.83-0.97 of copy bandwidth with one
# block of 512 rows each, 0.53-0.62 with blocks of 131 rows and 0.42 with one thread.
BLOCK_BYTES = 2 * 2**20
# A whole block, all T positions, is at most 64 MiB, so long prompts (T in the thousands) get few rows a
# block instead of gigabytes of position-major copy; each thread keeps one such buffer and reuses it.
BLOCK_TOTAL_BYTES = 64 * 2**20


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def __init__(self, threads: int | None = None, block_rows: int | None = None, chunk_rows: int | None = None,
                 jit: bool | None = None):
        """jit: the fused numba scan (backends/fused.py) where numba is installed; None (the default) where the
        scan is big enough for it to win, True always, False never (the numpy blocks below)."""
        self.threads = threads or usable_cores()
        self.jit = jit
        self.block_rows = block_rows
        self.chunk_rows = chunk_rows
        self._pool = None
        self._scratch = threading.local()  # a thread's position-major buffer, kept between blocks and calls

    def context(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record):
        """The full causal scan on one BLAS thread: its GEMMs are small and its reads matrix-vector products,
        which OpenBLAS's threads spin on when a core is busy elsewhere (measured: 24-61 s against 3.9 s)."""
        if stage.match == "stream" and stage.positions != "last":
            with threadpool_limits(1, user_api="blas"):
                return super().context(X, inputs, stage, temperature, sim, record)
        return super().context(X, inputs, stage, temperature, sim, record)

    def scan_feedback(self, X, lengths, stage: Stage, repeats: int = 1, readable=None) -> None:
        """Blocks of prompts, each copied position-major, run through every repeat while it is in cache, and
        copied back.  Blocks are independent, so they run on a thread each (numpy lets go of the GIL in its loops)."""
        if readable is None and self.jit is not False and fused.fits(X) and (
                fused.worth_it(X, repeats) if self.jit is None else fused.available()):
            return fused.scan_feedback(X, lengths, stage, repeats, self.threads)
        if not X.flags.c_contiguous:  # the blocks below write through a reshaped view
            return super().scan_feedback(X, lengths, stage, repeats, readable)
        S, P, T, d = X.shape
        rows = X.reshape(S * P, T, d)
        lens = np.tile(lengths, S)
        readable_rows = None if readable is None else np.broadcast_to(readable, (S, P, T)).reshape(S * P, T)
        row_bytes = d * X.itemsize
        block = self.block_rows or max(1, min(BLOCK_BYTES // row_bytes, BLOCK_TOTAL_BYTES // (T * row_bytes),
                                              -(-S * P // self.threads)))

        def one(start):
            part = rows[start:start + block]
            Y = self._buffer((T, len(part), d), X.dtype)
            np.copyto(Y, part.transpose(1, 0, 2))
            if readable_rows is None:
                layers.feedback_positions(Y, lens[start:start + block], stage, repeats, np)
            else:  # ablated positions: the same blocks, the mean over the readable rows (layers.feedback_readable)
                layers.feedback_readable(Y, lens[start:start + block], stage, readable_rows[start:start + block].T,
                                         repeats, np)
            part[...] = Y.transpose(1, 0, 2)

        starts = range(0, S * P, block)
        if self.threads > 1 and len(starts) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="assocmem-scan")
            list(self._pool.map(one, starts))
        else:
            for start in starts:
                one(start)

    def _buffer(self, shape, dtype):
        """This thread's scratch as an array of `shape`: fresh pages cost a fault each on first touch."""
        size = int(np.prod(shape))
        buf = getattr(self._scratch, "buf", None)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self._scratch.buf = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)
