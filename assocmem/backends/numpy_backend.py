"""The numpy backend: the feedback scan in cache-sized blocks of prompts on every core, static reads in chunks."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from assocmem import layers
from assocmem.backends import Backend, fused, span
from assocmem.cores import usable_cores
from assocmem.model import KINDS, Stage

# One position of a block, (rows, d), is at most 2 MiB: a step reads that position, the one before it and
# the running sum, and all three stay in cache (1 MiB L2 and 32 MiB L3 on the 2-core EPYC we measured).
# Blocks are also as few as the threads allow, since every ufunc call takes the GIL to start: on that
# machine, B = 1024, d = 1000 float32, 10 layers, two threads reached 0.83-0.97 of copy bandwidth with one
# block of 512 rows each, 0.53-0.62 with blocks of 131 rows and 0.42 with one thread.
BLOCK_BYTES = 2 * 2**20
# A whole block, all T positions, is at most 64 MiB, so long prompts (T in the thousands) get few rows a
# block instead of gigabytes of position-major copy; each thread keeps one such buffer and reuses it.
BLOCK_TOTAL_BYTES = 64 * 2**20
# A pass that records nothing takes at most this much stream through the whole pipeline at a time, a block on each
# core (where every stage runs without a Python step a position: prompts_per_block), so that what one stage wrote
# is still in cache when the next reads it, and the stream of a big batch is never all in memory twice.
STREAM_BLOCK_BYTES = 8 * 2**20


_blas = {"lock": threading.Lock(), "depth": 0, "controller": None, "limits": None}


@contextmanager
def one_blas_thread():
    """BLAS on one thread while any caller is inside: its limit is one setting for the whole process, so it is set
    by the first caller in and put back by the last one out (threadpoolctl's own context, entered from two threads
    at once, could put back the other's limit and leave BLAS on one thread for good).  OpenBLAS (pthreads, as
    numpy's wheels ship it) takes the limit only from the main thread: a pass run from another thread keeps its
    BLAS threads (threadpoolctl#209)."""
    with _blas["lock"]:
        if _blas["depth"] == 0:
            if _blas["controller"] is None:  # finding the BLAS libraries takes 0.3 ms: once
                _blas["controller"] = ThreadpoolController()
            _blas["limits"] = _blas["controller"].limit(limits=1, user_api="blas")
        _blas["depth"] += 1
    try:
        yield
    finally:
        with _blas["lock"]:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                _blas["limits"].restore_original_limits()


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def __init__(self, threads: int | None = None, block_rows: int | None = None, chunk_rows: int | None = None,
                 jit: bool | None = None, stream_block_bytes: int = STREAM_BLOCK_BYTES, mixtures: bool | None = None):
        """jit: the fused numba loops (backends/fused.py) where numba is installed; None (the default) where the
        scan is big enough for it to win, True always, False never (the numpy blocks below).  stream_block_bytes:
        the stream a block of prompts_per_block holds (at least one prompt).  mixtures: where the loops run, a pass
        that wants only the logits keeps rows as mixtures of the tokens (backends/span.py): None where that costs
        less than the stream (span.pays), True wherever the pipeline allows, False never."""
        self.threads = threads or usable_cores()
        self.stream_block_bytes = stream_block_bytes
        self.mixtures = mixtures
        self.jit = jit
        self.block_rows = block_rows
        self.chunk_rows = chunk_rows
        self._pool = None
        # A thread's position-major buffer, kept between blocks and calls; .alone: the thread runs one block of
        # map_blocks, on one core.
        self._scratch = threading.local()

    @property
    def _threads(self) -> int:
        """The threads a stage may use from the calling thread: one inside map_blocks, where each core has a block."""
        return 1 if getattr(self._scratch, "alone", False) else self.threads

    def context(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record):
        """The full causal scan on one BLAS thread: its GEMMs are small and its reads matrix-vector products,
        which OpenBLAS's threads spin on when a core is busy elsewhere (measured: 24-61 s against 3.9 s)."""
        if stage.match == "stream" and stage.positions != "last":
            with one_blas_thread():
                return super().context(X, inputs, stage, temperature, sim, record)
        if (stage.match == "stream" and stage.positions == "last" and not record and inputs.readable is None
                and self._fused(X, 1) and fused.fits(inputs.tokens) and inputs.tokens.dtype == X.dtype):
            values = X if stage.values == "stream" else inputs.tokens
            reads = fused.read_last(X, values, inputs.lengths, temperature, sim, self._threads)
            if reads is not None:
                X[:, np.arange(X.shape[1]), inputs.lengths - 1] += reads
                return None
        return super().context(X, inputs, stage, temperature, sim, record)

    def last_rows(self, tokens, lengths, stages, temperature, sim):
        """backends/span.py, where the fused loops would run (_fused) and, unless `mixtures` says, the mixtures cost
        less than the stream."""
        S, P, T, d = tokens.shape
        if self.mixtures is False or T > span.MAX_POSITIONS or (P and int(np.max(lengths)) > T):
            return None  # (lengths past T: the stream's own error, not the mixtures' guess)
        if not self._fused(tokens, len(stages)):  # numba there (its loops compile span's too), and worth loading
            return None
        if self.mixtures is None and not span.pays(T, d, stages):
            return None
        return span.last_rows(tokens, lengths, stages, temperature, sim, self._threads)

    def _fused(self, X, repeats) -> bool:
        """Whether a stage takes backends/fused.py: numba there, X fit for it, and the scan worth its load (jit None)."""
        return self.jit is not False and fused.fits(X) and (fused.worth_it(X, repeats) if self.jit is None
                                                            else fused.available())

    def prompts_per_block(self, tokens, pipeline) -> int | None:
        """Blocks of STREAM_BLOCK_BYTES where every stage is a feedback scan the fused scan takes, a static read, or
        a read at the last position: stages without a Python step a position, which blocks do not multiply."""
        S, P, T, d = tokens.shape
        stages = [stage for layer in pipeline for stage in layer.stages]
        feedback = sum(stage.kind == "feedback" for stage in stages)
        if not all(stage.kind == "feedback" or stage.positions == "last" or KINDS[stage.kind].memory for stage in stages):
            return None
        if feedback and not self._fused(tokens, feedback):
            return None
        prompt_bytes = S * T * d * tokens.itemsize
        if prompt_bytes == 0:  # no codebooks, positions or dims: nothing to block
            return None
        per = max(1, self.stream_block_bytes // prompt_bytes)
        return per if per < P else None

    def pinned(self, jit: bool) -> "NumpyBackend":
        """This backend with its choice of the fused loops made (jit True or False), every other setting kept."""
        return NumpyBackend(self.threads, self.block_rows, self.chunk_rows, jit, self.stream_block_bytes, self.mixtures)

    def map_blocks(self, run, starts) -> list:
        """run(start) for every block, a block on each of the backend's threads, each alone on its core: one BLAS
        thread and a one-thread fused scan.  No stage then hands work between cores, where a thread spinning in
        OpenBLAS or OpenMP after its part takes the core another thread's next part needs (measured at B = 1024,
        n = 16, d = 1000, feedback10: 39 ms, against 55-110 ms for the same blocks with every stage on both cores)."""
        if self._threads == 1 or len(starts) == 1:
            return [run(start) for start in starts]

        def alone(start):
            self._scratch.alone = True
            try:
                return run(start)
            finally:
                self._scratch.alone = False

        with one_blas_thread():
            return list(self._executor().map(alone, starts))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="assocmem")
        return self._pool

    def scan_feedback(self, X, lengths, stage: Stage, repeats: int = 1, readable=None, source=None) -> bool | None:
        """Blocks of prompts, each copied position-major, run through every repeat while it is in cache, and
        copied back.  Blocks are independent, so they run on a thread each (numpy lets go of the GIL in its loops)."""
        if readable is None and self._fused(X, repeats) and (source is None or fused.fits(source)):
            return fused.scan_feedback(X, lengths, stage, repeats, self._threads, source)
        if source is not None:
            X[...] = source
        if not X.flags.c_contiguous:  # the blocks below write through a reshaped view
            return super().scan_feedback(X, lengths, stage, repeats, readable)
        S, P, T, d = X.shape
        rows = X.reshape(S * P, T, d)
        lens = np.tile(lengths, S)
        readable_rows = None if readable is None else np.broadcast_to(readable, (S, P, T)).reshape(S * P, T)
        row_bytes = d * X.itemsize
        block = self.block_rows or max(1, min(BLOCK_BYTES // row_bytes, BLOCK_TOTAL_BYTES // (T * row_bytes),
                                              -(-S * P // self._threads)))

        def one(start):
            part = rows[start:start + block]
            Y = self._buffer((T, len(part), d), X.dtype)
            np.copyto(Y, part.transpose(1, 0, 2))
            # numpy's error state is a thread's own: the engine's (overflow is caught after the stage and named, not
            # warned about) does not reach the pool's threads
            with np.errstate(over="ignore", invalid="ignore"):
                if readable_rows is None:
                    layers.feedback_positions(Y, lens[start:start + block], stage, repeats, np)
                else:  # ablated positions: the same blocks, the mean over the readable rows (layers.feedback_readable)
                    layers.feedback_readable(Y, lens[start:start + block], stage,
                                             readable_rows[start:start + block].T, repeats, np)
            part[...] = Y.transpose(1, 0, 2)

        starts = range(0, S * P, block)
        if self._threads > 1 and len(starts) > 1:
            list(self._executor().map(one, starts))
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
