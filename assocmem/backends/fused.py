"""What numba fuses on the CPU: the feedback scan, a wavefront over each prompt's rows, and the last-position read."""
from __future__ import annotations

import os
import types
from functools import cache

import numpy as np

from assocmem.layers import RMS_EPS
from assocmem.mem import EPS
from assocmem.model import Stage

POSITIONS = {"all": 0, "last": 1, "before_last": 2}  # as kernels/common.cuh numbers them
# When the fused scan pays, in element updates (prompts x positions x d x repeats).  Once loaded it beats the numpy
# scan at every size measured on the 2-core EPYC (3200 updates: 0.023 ms against 0.31; 2e6: 0.29 ms against 3.2),
# but a process's first fused call imports numba and loads the compiled loops from numba's cache, 0.4 s in all (a
# cold compile, once per machine and numba version, takes about 4 s a loop, build and dtype): that pays only where
# the numpy scan would take about 2 s, 1e9 updates.
FIRST_CALL_UPDATES = 1_000_000_000
# Below this many updates the numpy code runs even once numba is loaded.  The fused loops' last bits hang on where
# their arrays sit in memory (how the vectoriser meets their alignment: the same prompt, copied to a new array, came
# out different in float32's last bit in 7 runs of 10), so a seed's margins could differ between a pass of one seed
# and a pass of twelve; small passes, which the tests compare bit for bit, keep the numpy code.  A block of
# prompts_per_block (8 MiB of stream: 1e6 float64 or 2e6 float32 elements) stays above it.
MIN_UPDATES = 1_000_000
OFF = ("0", "off", "no", "false")


@cache
def _compiled():
    """The numba loops, this file's and span.py's, or None where numba is missing, fails to import, or ASSOCMEM_JIT
    says off: (numba, {True: the parallel builds, False: the serial ones}), each a dict by the loop's name."""
    if os.environ.get("ASSOCMEM_JIT", "").lower() in OFF:
        return None
    try:
        import numba
    except Exception:  # not installed, or an llvmlite that does not load: the numpy scan is the fallback
        return None
    from assocmem.backends import span

    # reassoc lets the sum of squares vectorise; contract allows fused multiply-adds.  Not nnan/ninf: the engine
    # checks what a stage wrote for NaN and infinity, and those flags would let LLVM assume they never occur.
    options = dict(cache=True, fastmath={"reassoc", "contract"}, nogil=True)
    parallel, serial = numba.njit(parallel=True, **options), numba.njit(parallel=False, **options)
    for module in (globals(), vars(span)):  # the loops over groups: parallel where compiled so, else a range
        module["numba_prange"] = numba.prange
    for helper in span.HELPERS:  # what span's loops call must be compiled code too
        vars(span)[helper.__name__] = numba.njit(**options)(helper)
    loops = (_wave, _scan, _last_read) + span.LOOPS
    return numba, {True: {f.__name__: parallel(f) for f in loops},
                   False: {f.__name__: serial(_renamed(f, "_serial")) for f in loops}}


def _renamed(fn, suffix: str):
    """fn under another name: numba's cache keys a build by the function's name and line, not by `parallel`, so the
    serial build needs a name of its own."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    return copy


def loops(threads: int) -> dict:
    """The loops by name for `threads`: one thread (a block alone on its core, or threads=1) takes the serial
    builds, which need no threading layer: numba's workqueue layer, where OpenMP and TBB are missing, aborts the
    process when two threads enter parallel code at once, as map_blocks's would."""
    numba, builds = _compiled()
    if threads > 1:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return builds[threads > 1]


def available() -> bool:
    """Whether numba is there (imports it, and loads or compiles the scan on first use)."""
    return _compiled() is not None


def load() -> None:
    """Import numba and load (or compile) the float32 and float64 loops now, so no later call pays for it."""
    from assocmem.backends import span

    if available():
        for dtype in (np.float32, np.float64):
            X = np.zeros((1, 1, 2, 4), dtype=dtype)
            for threads in (1, 2):  # the serial builds and the parallel ones
                for stage in (Stage("feedback"), Stage("feedback", window=1)):  # the wavefront, the windowed scan
                    scan_feedback(X, np.array([2]), stage, 1, threads)
                    scan_feedback(X, np.array([2]), stage, 1, threads, source=X.copy())
                read_last(X, X, np.array([2]), 1.0, "cosine", threads)
                span.last_rows(X, np.array([2]), (Stage("feedback"), Stage("context", positions="last")), 1.0,
                               "cosine", threads)


def worth_it(X, repeats: int) -> bool:
    """Whether a pass takes the fused loops (jit None): before numba is loaded, only one big enough to pay for
    loading it (that check imports nothing); after, from MIN_UPDATES on (see there: small passes keep numpy's bits)."""
    if _compiled.cache_info().currsize == 0:
        return X.size * repeats >= FIRST_CALL_UPDATES and available()
    return X.size * repeats >= MIN_UPDATES and available()


def fits(X) -> bool:
    return X.dtype in (np.float32, np.float64) and X.flags.c_contiguous and X.ndim == 4


def scan_feedback(X, lengths, stage: Stage, repeats: int, threads: int, source=None) -> bool:
    """layers.feedback_scan, fused: X (S, P, T, d) C-contiguous float32/float64, updated in place; lengths (P,).
    source: the stream before the scan, where X does not hold it yet (X is then written whole; the wavefront takes
    each row from source as it reaches it, the windowed scan copies it first); C-contiguous, X's shape and dtype.
    Returns whether the stream it leaves is finite, every row of it (each row's sum of squares, or its values
    under `norm: none` and where left as it was, taken as it goes): False means the caller must look for what is not."""
    wave, scan = (loops(threads)[name] for name in ("_wave", "_scan"))
    S, P, T, d = X.shape
    rows = X.reshape(S * P, T, d)
    lens = np.ascontiguousarray(np.tile(np.asarray(lengths, dtype=np.int64), S))
    real = X.dtype.type
    i = np.arange(T)
    k = np.minimum(i, stage.window) if stage.window else i  # rows averaged at position i, as feedback_positions
    sign = -1.0 if stage.sign == "minus" else 1.0
    factor = np.where(k > 0, sign / np.maximum(k, 1), 0).astype(X.dtype)  # x + sign * total / k (no norm)
    guard = (RMS_EPS * k * k * d).astype(X.dtype)                           # eps k^2 d under the square root
    groups = min(S * P, max(1, threads) * 4)  # a few groups a thread, so a slow core does not hold the rest up
    if stage.window:
        if source is not None:
            np.copyto(X, source)
        return bool(scan(rows, lens, repeats, POSITIONS[stage.positions], real(sign), stage.norm == "rms",
                         stage.window, k.astype(X.dtype), factor, guard, real(0), groups))
    origin = rows if source is None else source.reshape(S * P, T, d)
    return bool(wave(origin, rows, source is not None, lens, repeats, POSITIONS[stage.positions], real(sign),
                     stage.norm == "rms", k.astype(X.dtype), factor, guard, real(0), real(1), groups))


def read_last(X, values, lengths, temperature: float, sim: str, threads: int):
    """layers.context_last without weights: each prompt's last row reads the rows before it, mem(x_last, X[:last],
    V[:last]).  X, values (S, P, T, d) C-contiguous, values X itself or the tokens; lengths (P,).  Returns the reads,
    (S, P, d), or None where a row's norm leaves the range in which cosine divides raw dot products
    (mem.similarity's 2^(+-maxexp/4)): the caller then takes layers.context_last, which normalises copies."""
    last_read = loops(threads)["_last_read"]
    S, P, T, d = X.shape
    real = X.dtype.type
    bound = 2.0 ** (np.finfo(X.dtype).maxexp // 4)
    lens = np.ascontiguousarray(np.tile(np.asarray(lengths, dtype=np.int64), S))
    out = np.empty((S * P, d), dtype=X.dtype)
    groups = min(S * P, max(1, threads) * 4)
    ok = last_read(X.reshape(S * P, T, d), values.reshape(S * P, T, d), lens, real(1.0 / temperature),
                   sim == "cosine", real(EPS), real(bound ** -2), real(bound ** 2), real(0), out, groups)
    return out.reshape(S, P, d) if ok else None


def _last_read(X, V, lengths, scale, cosine, eps, low, high, zero, out, groups):
    """read_last's loop: per prompt, one pass over the rows before the last for their dot products with it (and
    their squares, under cosine), the softmax of the scores, and a pass over the values.  X, V (n, T, d); out (n, d).
    Returns False where a nonzero row's sum of squares is outside [low, high]."""
    n, T, d = X.shape
    ok = np.ones(groups, dtype=np.bool_)
    for g in numba_prange(groups):
        scores = np.empty(T, dtype=X.dtype)
        for p in range(g * n // groups, (g + 1) * n // groups):
            L = min(lengths[p], T)
            o = out[p]
            o[:] = zero
            if L < 2:
                continue
            q = X[p, L - 1]
            qq = zero
            for e in range(d):
                qq += q[e] * q[e]
            if cosine and qq != zero and not (low <= qq <= high):
                ok[g] = False
                continue
            q_norm = max(np.sqrt(qq), eps)
            for j in range(L - 1):
                x = X[p, j]
                dot, kk = zero, zero
                for e in range(d):
                    dot += q[e] * x[e]
                    kk += x[e] * x[e]
                if cosine:
                    if kk != zero and not (low <= kk <= high):
                        ok[g] = False
                    dot = dot / (q_norm * max(np.sqrt(kk), eps))
                scores[j] = dot * scale
            top = scores[0]
            for j in range(1, L - 1):
                top = max(top, scores[j])
            total = zero
            for j in range(L - 1):
                scores[j] = np.exp(scores[j] - top)
                total += scores[j]
            for j in range(L - 1):
                w = scores[j] / total
                v = V[p, j]
                for e in range(d):
                    o[e] += w * v[e]
    return ok.all()


def _wave(source, X, copy, lengths, repeats, positions, sign, rms, k, factor, guard, zero, one, groups):
    """The scan without a window, position by position with every repeat at each: a wavefront.  Repeat r at
    position i needs repeat r - 1's row i and repeat r's running sum of rows 0..i-1, so with one running sum a
    repeat (totals, repeats x d) a prompt's rows are each read and written once, not once a repeat.

    RMSnorm is kept lazy: a row is held unnormalised, u, with its scale c = 1 / sqrt(|u|^2 + eps k^2 d), and
    one pass over it makes repeat r from repeat r - 1 (x = c u, the next u = k x + sign total_r) while it adds
    x to repeat r - 1's running sum.  X (n, T, d) in place; with `copy`, each row is first taken from source (n, T,
    d) as the scan reaches it.  Returns whether every row it leaves is finite.
    """
    n, T, d = X.shape
    bad = np.zeros(groups, dtype=np.bool_)
    for g in numba_prange(groups):
        totals = np.empty((repeats, d), dtype=X.dtype)
        check = zero  # stays 0 while every sum of squares (or value) is finite: inf * 0 and nan * 0 are nan
        for p in range(g * n // groups, (g + 1) * n // groups):
            L = min(lengths[p], T)
            x = X[p]
            for i in range(T):
                if i == 0 or i >= L:  # rows the stage leaves as they are: still the stream, so checked too
                    for j in range(d):
                        v = source[p, i, j]
                        if copy:
                            x[i, j] = v
                        check += v * zero
            for q in range(repeats):
                for j in range(d):
                    totals[q, j] = x[0, j]  # position 0 has no past: it is the same row in every repeat
            for i in range(1, L):
                row = x[i]
                if copy:
                    for j in range(d):
                        v = source[p, i, j]
                        row[j] = v
                        check += v * zero
                if not (positions == 0 or (positions == 1 and i == L - 1) or (positions == 2 and i < L - 1)):
                    for q in range(repeats):  # a row the stage leaves is still in every later mean
                        t = totals[q]
                        for j in range(d):
                            t[j] += row[j]
                    if not copy:  # (a copied row was checked as it came)
                        for j in range(d):
                            check += row[j] * zero
                    continue
                if not rms:
                    for q in range(repeats):
                        t = totals[q]
                        for j in range(d):
                            v = row[j] + factor[i] * t[j]
                            row[j] = v
                            t[j] += v
                            check += v * zero
                    continue
                c = one
                for q in range(repeats):
                    t = totals[q]
                    squares = zero
                    if q == 0:
                        for j in range(d):
                            v = k[i] * row[j] + sign * t[j]
                            row[j] = v
                            squares += v * v
                    else:
                        before, kc = totals[q - 1], k[i] * c
                        for j in range(d):
                            u = row[j]
                            before[j] += c * u
                            v = kc * u + sign * t[j]
                            row[j] = v
                            squares += v * v
                    check += squares * zero
                    c = one / np.sqrt(squares + guard[i])
                last = totals[repeats - 1]
                for j in range(d):
                    v = c * row[j]
                    row[j] = v
                    last[j] += v
        bad[g] = not (check == zero)
    return not bad.any()


def _scan(X, lengths, repeats, positions, sign, rms, window, k, factor, guard, zero, groups):
    """The scan with a window, one prompt at a time and repeat after repeat, per group of prompts on a thread: a
    window drops the row w places back, which the wavefront would have to keep for every repeat.

    X (n, T, d): prompt p's rows are X[p], T x d contiguous (64 KB at T = 16, d = 1000 float32), so all its
    repeats run in L1/L2.  total (d,) is the running sum of the updated rows before i.  k, factor, guard (T,) in
    X's dtype: the rows averaged, sign / k, and RMS_EPS k^2 d, so no int or float64 promotes the arithmetic.
    Returns whether every row it leaves is finite, as _wave.
    """
    n, T, d = X.shape
    bad = np.zeros(groups, dtype=np.bool_)
    for g in numba_prange(groups):
        total = np.empty(d, dtype=X.dtype)
        check = zero
        for p in range(g * n // groups, (g + 1) * n // groups):
            L = min(lengths[p], T)
            x = X[p]
            for _ in range(repeats):
                total[:] = zero
                for i in range(1, L):
                    for j in range(d):
                        total[j] += x[i - 1, j]
                    if i > window:
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
                        check += squares * zero
                        norm = np.sqrt(squares + guard[i])
                        for j in range(d):
                            x[i, j] = x[i, j] / norm
                    else:
                        for j in range(d):
                            v = x[i, j] + factor[i] * total[j]
                            x[i, j] = v
                            check += v * zero
            for i in range(T):  # the rows it left as they are: still the stream, so checked too
                if i == 0 or i >= L or not (positions == 0 or (positions == 1 and i == L - 1)
                                            or (positions == 2 and i < L - 1)):
                    for j in range(d):
                        check += x[i, j] * zero
        bad[g] = not (check == zero)
    return not bad.any()


numba_prange = range  # numba.prange once _compiled() ran: the scan reads as plain Python until then
