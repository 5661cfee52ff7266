"""The cupy backend: kernels/*.cu, built by cupy.RawModule, for the feedback scan, the causal context memory and
the softmax of static reads; cupy's arrays and cuBLAS GEMMs for the rest."""
from __future__ import annotations

from importlib import resources

import numpy as np

from assocmem import layers
from assocmem.backends import Backend
from assocmem.errors import InputError
from assocmem.model import Stage

KERNEL_FILES = ("feedback_scan.cu", "context_scan.cu", "softmax_rows.cu")
# As in kernels/common.cuh: a thread holds ROW_SLOTS elements of a row, so one block of at most 1024 threads
# covers d <= 8192; wider streams fall back to the batched cupy code of layers.py.
ROW_SLOTS = 8
MAX_THREADS = 1024
CONTEXT_MAX_THREADS = 256  # the chunked context scan holds a chunk in registers: d <= 2048 (kernels/common.cuh)
POSITIONS = {"all": 0, "last": 1, "before_last": 2}
SOFTMAX_THREADS = 256  # a row of M = 10000 scores: 40 elements a thread, two passes
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def threads_for(d: int) -> int:
    """Threads for a block that holds a row of d: ceil(d / ROW_SLOTS), rounded up to whole warps."""
    return max(32, (-(-d // ROW_SLOTS) + 31) // 32 * 32)


class KernelBackend(Backend):
    """Runs the kernels of kernels/ with any array module and any way of launching them:
    function(name)(grid, block, args), as cupy.RawKernel is called.  The tests launch them on the CPU."""

    name = "kernels"

    def __init__(self, xp, function, name: str | None = None):
        self.xp = xp
        self.function = function
        self.name = name or self.name

    def _fits(self, X) -> bool:
        return X.dtype in SUFFIX and X.flags.c_contiguous and threads_for(X.shape[-1]) <= MAX_THREADS

    def _launch(self, base: str, dtype, grid: int, block: int, *args) -> None:
        self.function(f"{base}_{SUFFIX[np.dtype(dtype)]}")((grid,), (block,), args)

    def scan_feedback(self, X, lengths, stage: Stage, repeats: int = 1, readable=None, source=None) -> bool | None:
        if source is not None:
            X[...] = source
        if not self._fits(X) or readable is not None:  # the kernel averages every row: ablations take layers.py
            return super().scan_feedback(X, lengths, stage, repeats, readable)
        S, P, T, d = X.shape
        real = X.dtype.type
        self._launch("feedback_scan", X.dtype, S * P, threads_for(d), X, self._lengths(lengths), np.int32(P),
                     np.int32(T), np.int32(d), np.int32(repeats), np.int32(POSITIONS[stage.positions]),
                     real(-1.0 if stage.sign == "minus" else 1.0), np.int32(stage.norm == "rms"),
                     np.int32(stage.window or 0), real(layers.RMS_EPS))
        return None  # not looked at: the engine checks what it wrote

    def context(self, X, inputs: layers.Inputs, stage: Stage, temperature, sim, record):
        if (record or stage.values != "stream" or stage.match != "stream" or stage.positions == "last"
                or not self._fits(X) or threads_for(X.shape[-1]) > CONTEXT_MAX_THREADS or inputs.readable is not None):
            return super().context(X, inputs, stage, temperature, sim, record)
        S, P, T, d = X.shape
        norms = self.xp.empty((S * P, T), dtype=X.dtype)
        self._launch("context_scan", X.dtype, S * P, threads_for(d), X, self._lengths(inputs.lengths), norms, np.int32(P),
                     np.int32(T), np.int32(d), np.int32(POSITIONS[stage.positions]), np.int32(sim == "cosine"),
                     X.dtype.type(1.0 / temperature))
        return None

    def read_static(self, X, keys, values, select, temperature, sim, record, kept=None):
        fused = self._softmax_rows if X.dtype in SUFFIX else None
        return layers.static_read(X, keys, values, select, temperature, sim, self.xp, record, self.chunk_rows, fused,
                                  kept)

    def _softmax_rows(self, scores):
        n, M = scores.shape
        sums = self.xp.empty((n, 1), dtype=scores.dtype)
        self._launch("softmax_rows", scores.dtype, n, SOFTMAX_THREADS, scores, sums, np.int32(M))
        return sums

    def _lengths(self, lengths):
        return self.xp.ascontiguousarray(self.xp.asarray(lengths, dtype=self.xp.int64))


class CupyBackend(KernelBackend):
    name = "cupy"

    @classmethod
    def load(cls) -> "CupyBackend":
        """CuPy, a GPU and the kernels built for it, or a one-line InputError that says which is missing."""
        try:
            import cupy
        except ImportError as err:
            if err.name == "cupy":
                raise InputError("the cupy backend needs CuPy, which is not installed",
                                 hint="pip install 'assocmem[gpu]', or use --backend numpy") from None
            raise InputError(f"CuPy is installed but does not import: {_first_line(err)}",
                             hint="reinstall it with pip install 'assocmem[gpu]', or use --backend numpy") from None
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
        except Exception as err:  # CUDARuntimeError, a driver too old, no libcuda: all mean the same here
            raise InputError(f"the cupy backend found no usable GPU: {_first_line(err)}",
                             hint="use --backend numpy, or auto to fall back by itself") from None
        functions = {}
        with resources.as_file(resources.files("assocmem.kernels")) as folder:
            for file in KERNEL_FILES:
                try:
                    module = cupy.RawModule(code=(folder / file).read_text(), options=("-std=c++17", f"-I{folder}"))
                    for suffix in SUFFIX.values():
                        name = f"{file.removesuffix('.cu')}_{suffix}"
                        functions[name] = module.get_function(name)
                except cupy.cuda.compiler.CompileException as err:
                    raise InputError(f"kernels/{file} did not build on this GPU: {_first_line(err)}",
                                     hint="use --backend numpy") from None
        return cls(cupy, functions.__getitem__)

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
