"""The feedback scan fused by numba: every repeat and position of one prompt while its rows stay in L1/L2."""
from __future__ import annotations

import os
from functools import cache

import numpy as np

from assocmem.layers import RMS_EPS
from assocmem.model import Stage

POSITIONS = {"all": 0, "last": 1, "before_last": 2}  # as kernels/common.cuh numbers them
# When the fused scan pays, in element updates (prompts x positions x d x repeats).  Measured on the 2-core EPYC
# (shared, loaded): the numpy scan does 0.27-0.69 G updates/s, the fused one 3x (T = 16) to 5.6x (T = 1024) that
# at 1.6e8 updates and 1.2x at 1e7.  But a process's first fused call imports numba and loads the compiled scan
# from numba's cache, 1.2 s in all (a cold compile, once per machine and numba version, takes 6 s a dtype): that
# pays only where the numpy scan would take about 2 s, 1e9 updates.  Once loaded, it wins from 1e7 updates.
FIRST_CALL_UPDATES = 1_000_000_000
MIN_UPDATES = 10_000_000
OFF = ("0", "off", "no", "false")


@cache
def _compiled():
    """The numba scan, or None where numba is missing, fails to import, or ASSOCMEM_JIT says off."""
    if os.environ.get("ASSOCMEM_JIT", "").lower() in OFF:
        return None
    try:
        import numba
    except Exception:  # not installed, or an llvmlite that does not load: the numpy scan is the fallback
        return None
    # reassoc lets the sum of squares vectorise; contract allows fused multiply-adds.  Not nnan/ninf: the engine
    # checks what a stage wrote for NaN and infinity, and those flags would let LLVM assume they never occur.
    jit = numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"}, nogil=True)
    globals()["numba_prange"] = numba.prange  # _scan's loop over groups, parallel once compiled
    return numba, jit(_scan)


def available() -> bool:
    """Whether numba is there (imports it, and loads or compiles the scan on first use)."""
    return _compiled() is not None


def load() -> None:
    """Import numba and load (or compile) the float32 and float64 scans now, so no later call pays for it."""
    if available():
        for dtype in (np.float32, np.float64):
            scan_feedback(np.zeros((1, 1, 2, 4), dtype=dtype), np.array([2]), Stage("feedback"), 1, 1)


def worth_it(X, repeats: int) -> bool:
    """Whether the fused scan is expected to beat the numpy one, a first call's load time included (that
    check imports nothing)."""
    S, P, T, d = X.shape
    updates = S * P * T * d * repeats
    if _compiled.cache_info().currsize == 0:
        return updates >= FIRST_CALL_UPDATES and available()
    return updates >= MIN_UPDATES and available()


def fits(X) -> bool:
    return X.dtype in (np.float32, np.float64) and X.flags.c_contiguous and X.ndim == 4


def scan_feedback(X, lengths, stage: Stage, repeats: int, threads: int) -> None:
    """layers.feedback_scan, fused: X (S, P, T, d) C-contiguous float32/float64, updated in place; lengths (P,)."""
    numba, scan = _compiled()
    S, P, T, d = X.shape
    rows = X.reshape(S * P, T, d)
    lens = np.ascontiguousarray(np.tile(np.asarray(lengths, dtype=np.int64), S))
    real = X.dtype.type
    i = np.arange(T)
    k = np.minimum(i, stage.window) if stage.window else i  # rows averaged at position i, as feedback_positions
    sign = -1.0 if stage.sign == "minus" else 1.0
    factor = np.where(k > 0, sign / np.maximum(k, 1), 0).astype(X.dtype)  # x + sign * total / k (no norm)
    guard = (RMS_EPS * k * k * d).astype(X.dtype)                           # eps k^2 d under the square root
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    groups = min(S * P, max(1, threads) * 4)  # a few groups a thread, so a slow core does not hold the rest up
    scan(rows, lens, repeats, POSITIONS[stage.positions], real(sign), stage.norm == "rms", stage.window or 0,
         k.astype(X.dtype), factor, guard, real(0), groups)


def _scan(X, lengths, repeats, positions, sign, rms, window, k, factor, guard, zero, groups):
    """The scan of feedback_positions, one prompt at a time, per group of prompts on a thread.

    X (n, T, d): prompt p's rows are X[p], T x d contiguous (64 KB at T = 16, d = 1000 float32), so all its
    repeats run in L1/L2.  total (d,) is the running sum of the updated rows before i.  k, factor, guard (T,) in
    X's dtype: the rows averaged, sign / k, and RMS_EPS k^2 d, so no int or float64 promotes the arithmetic.
    """
    n, T, d = X.shape
    for g in numba_prange(groups):
        total = np.empty(d, dtype=X.dtype)
        for p in range(g * n // groups, (g + 1) * n // groups):
            L = min(lengths[p], T)
            x = X[p]
            for _ in range(repeats):
                total[:] = zero
                for i in range(1, L):
                    for j in range(d):
                        total[j] += x[i - 1, j]
                    if window > 0 and i > window:
                        for j in range(d):
                            total[j] -= x[i - 1 - window, j]
                    if not (positions == 0 or (positions == 1 and i == L - 1) or (positions == 2 and i < L - 1)):
                        continue
                    if rms:
                        squares = zero
                        for j in range(d):
                            v = k[i] * x[i, j] + sign * total[j]
                            x[i, j] = v
                            squares += v * v
                        norm = np.sqrt(squares + guard[i])
                        for j in range(d):
                            x[i, j] = x[i, j] / norm
                    else:
                        for j in range(d):
                            x[i, j] += factor[i] * total[j]


numba_prange = range  # numba.prange once _compiled() ran: the scan reads as plain Python until then
