"""The stream kept as mixtures of each prompt's own tokens: feedback and last-position context reads on T x T numbers."""
from __future__ import annotations

import numpy as np

from assocmem.backends import fused
from assocmem.layers import RMS_EPS
from assocmem.mem import EPS
from assocmem.model import Stage

# A feedback stage replaces a row by a multiple of itself and the rows before it, x_i <- c (k x_i -/+ sum_{j<i} x_j),
# and a context read at the last position adds a weighted sum of earlier rows or of the tokens.  So through such
# stages every row of a prompt stays a mixture of the prompt's tokens: X = M E, E (T, d) the tokens and M (T, T)
# lower-triangular.  What the stages need of the rows are dot products, x_i . x_j = m_i G m_j with G = E E^T the
# tokens' Gram matrix.  A pass that wants only the logits then costs one Gram matrix (T^2 d / 2 multiply-adds), the
# stages on M (O(T^2) a layer, whatever d is) and one row a prompt, x_last = m_last E, instead of T d work a layer,
# and no stream is written at all (at T = 16, d = 1000 and ten feedback layers: 0.5 of the wavefront's time).
#
# M, G and the rows' squared norms are float64 whatever the tokens are: float32 products are exact in float64, so
# G is exact to float64 rounding, and a row comes out as accurate as its mixture allows.  That is where the catch
# is: a row whose mixture nearly cancels (`a a`: x_1 - x_0 = 0) has a squared norm far below the sum of its parts'
# sizes, (sum_a |m_a| |e_a|)^2, and its value only carries the digits the cancellation leaves.  Every row made is
# checked: where that ratio passes CANCELLATION (float32 tokens: float32's 24 bits less the 6 it may cost; a row
# near that limit comes out within about 7e-7 of float64, the wavefront scan's within 1e-7, and a row of random
# tokens closer than the scan's) or CANCELLATION_64 (float64: a relative error under 1e-10), or its squared norm
# leaves the range the tokens' must be in, the prompt is handed back and runs through the stream as usual.
CANCELLATION = 2.0 ** 6
CANCELLATION_64 = 2.0 ** 20
# Columns of the tokens a Gram pass sums in the tokens' dtype before adding to G in float64: float32 lanes over a
# chunk of 512 (32 products a lane) lose about 1e-7 of |e_a| |e_b|, which CANCELLATION's 2^6 keeps under 1e-5 of a
# row's squared norm.  (Chunks of 256 took 1.3x as long, 64 took 2x: each chunk ends in sixteen lane sums.)
GRAM_CHUNK = 512
# The most positions a prompt may have here: each core's groups hold three T x T float64 matrices (G, M and the
# rows' G-images), 6 MiB at 512, and the Gram matrix's T^2 d work passes the stream's long before that.
MAX_POSITIONS = 512
POSITIONS = {"all": 0, "last": 1, "before_last": 2}  # as fused.POSITIONS


def pays(T: int, d: int, stages) -> bool:
    """Whether the mixtures cost less than the stream, by a fit of one core of the 2-core EPYC (d = 1000, T = 16 to
    128, R = 3 and 10 stages; per prompt and position, in ns): the Gram matrix 0.015 T d, the mixtures 1.3 R T +
    38 R (each row's update is O(T) and one square root), the last row and the rest 0.15 d, against 0.17 R d for
    the stream's wavefront scan.  At d = 1000 they pay from R = 4 at T = 16, and up to T = 41 at R = 10: measured
    0.58 of the scan at (16, 10), 0.86 at (32, 10), 1.38 at (64, 10), 0.92 at (16, 3)."""
    R = len(stages)
    return 0.015 * T * d + 1.3 * R * T + 38 * R + 0.15 * d < 0.17 * R * d


def last_rows(tokens, lengths, stages, temperature: float, sim: str, threads: int = 1):
    """The last row of each prompt after `stages` (feedback, and context reads at the last position that match the
    stream: engine.mixing_stages), and which prompts came out exact enough.
    tokens (S, P, T, d) C-contiguous float32 or float64, lengths (P,) -> rows (S, P, d) in the tokens' dtype,
    ok (S, P) bool: False where a prompt's tokens are not finite or too large or small to square (|e|^2 outside
    2^(+-maxexp/2)), it has no token, or a mixture cancelled (CANCELLATION); its row is then zeros, not to be used.
    threads: the cores to spread the prompts over (1: the serial builds, as in a block of map_blocks)."""
    S, P, T, d = tokens.shape
    n = S * P
    E = tokens.reshape(n, T, d)
    lens = np.ascontiguousarray(np.tile(np.asarray(lengths, dtype=np.int64), S))
    info = np.finfo(tokens.dtype)
    bounds = np.array([2.0 ** (info.minexp // 2), 2.0 ** (info.maxexp // 2),
                       CANCELLATION if tokens.dtype == np.float32 else CANCELLATION_64, EPS])
    out = np.empty((n, d), dtype=tokens.dtype)  # a prompt not done gets a row of zeros
    ok = np.ones(n, dtype=np.bool_)
    groups = min(n, max(1, threads) * 4)  # a few groups a thread, so a slow core does not hold the rest up
    fused.loops(threads)["_mixtures"](E, lens, *program(stages, T, d, temperature, sim), bounds, GRAM_CHUNK, out, ok,
                                      max(groups, 1))
    return out.reshape(S, P, d), ok.reshape(S, P)


def program(stages, T: int, d: int, temperature: float, sim: str):
    """The stages as the loops read them, consecutive equal feedback stages as one run with repeats.
    Returns codes (R, 6) int64: kind (0 feedback, 1 context read), repeats, positions (as POSITIONS), window (0:
    none), RMSnorm (feedback) or values are the stream (context), cosine (context); reals (R, 2): the sign
    (feedback), the scores' factor 1 / temperature (context); tables (R, 3, T): k, the rows averaged at each
    position, sign / k, and eps k^2 d, the guard under RMSnorm's square root (feedback)."""
    runs = []
    for stage in stages:
        if runs and runs[-1][0] == stage and stage.kind == "feedback":
            runs[-1][1] += 1
        else:
            runs.append([stage, 1])
    codes = np.zeros((len(runs), 6), dtype=np.int64)
    reals = np.zeros((len(runs), 2))
    tables = np.zeros((len(runs), 3, T))
    i = np.arange(T)
    for r, (stage, repeats) in enumerate(runs):
        if stage.kind == "feedback":
            k = np.minimum(i, stage.window) if stage.window else i
            sign = -1.0 if stage.sign == "minus" else 1.0
            codes[r] = (0, repeats, POSITIONS[stage.positions], stage.window or 0, stage.norm == "rms", 0)
            reals[r] = (sign, 0.0)
            tables[r] = (k, np.where(k > 0, sign / np.maximum(k, 1), 0.0), RMS_EPS * k * k * d)
        else:
            codes[r] = (1, 1, POSITIONS["last"], 0, stage.values == "stream", sim == "cosine")
            reals[r] = (0.0, 1.0 / (stage.get("temperature") or temperature))
    return codes, reals, tables


def _mixtures(E, lengths, codes, reals, tables, bounds, chunk, out, ok, groups):
    """Each prompt alone, while its tokens are in cache: their Gram matrix, the program's runs on its mixtures, and
    its last row.  E (n, T, d); out (n, d); ok (n,) set False where a prompt is not done (see last_rows)."""
    n, T, d = E.shape
    lo, hi, tau, eps = bounds[0], bounds[1], bounds[2], bounds[3]
    for g in numba_prange(groups):
        G = np.empty((T, T))
        M = np.empty((T, T))
        GM = np.empty((T, T))  # G m_j for each row j: a row's dot products with every token, kept in step with M
        N = np.empty(T)
        root = np.empty(T)  # |e_a|, for the cancellation check
        first = np.empty(T, dtype=np.int64)  # each position's token's column: its first occurrence
        P, GP, u, Gu = np.empty(T), np.empty(T), np.empty(T), np.empty(T)  # a run's sums and the row it makes
        row = np.empty(d)
        for p in range(g * n // groups, (g + 1) * n // groups):
            L = min(lengths[p], T)
            good = L >= 1 and _gram(E[p], L, G, lo, hi, chunk)
            M[:, :] = 0.0
            for a in range(L):
                first[a] = _first(E[p], G, a)
                M[a, first[a]] = 1.0  # a repeated token is one column: `a a` cancels exactly, as in the stream
                GM[a, :] = G[first[a], :]  # G times that column
                N[a] = G[a, a]
                root[a] = np.sqrt(G[a, a])
            for r in range(codes.shape[0]):
                if not good:
                    break
                kind, repeats, positions, window, flag = codes[r, 0], codes[r, 1], codes[r, 2], codes[r, 3], codes[r, 4]
                if kind == 0:
                    good = _feedback(M, GM, N, L, repeats, positions, reals[r, 0], flag == 1, window, tables[r, 0],
                                     tables[r, 1], tables[r, 2], tau, hi, root, P, GP, u, Gu)
                else:
                    good = _read_last(G, M, GM, N, L, reals[r, 1], codes[r, 5] == 1, flag == 1, eps, tau, hi,
                                      root, first, u)
            ok[p] = good
            if good:
                _last_row(E[p], L, M[L - 1], row)
            else:
                row[:] = 0.0
            for j in range(d):
                out[p, j] = row[j]


def _gram(x, L, G, lo, hi, chunk):
    """G = x x^T over the prompt's L rows (float64; products and a chunk's sums in x's dtype), a block of four rows
    against four at a time (sixteen sums a column, which stay in registers).  False where a row's squared norm is
    not finite or nonzero outside [lo, hi], or a padding row (still the stream) is not finite."""
    T, d = x.shape
    zero = x.dtype.type(0)
    G[:, :] = 0.0
    for s in range(0, d, chunk):
        e = min(s + chunk, d)
        for a in range(0, L - L % 4, 4):  # the lower triangle by 4 x 4 blocks, the diagonal blocks whole
            p0, p1, p2, p3 = x[a, s:e], x[a + 1, s:e], x[a + 2, s:e], x[a + 3, s:e]
            for b in range(0, a + 4, 4):
                q0, q1, q2, q3 = x[b, s:e], x[b + 1, s:e], x[b + 2, s:e], x[b + 3, s:e]
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
                s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
                for j in range(e - s):
                    v0, v1, v2, v3, w0, w1, w2, w3 = p0[j], p1[j], p2[j], p3[j], q0[j], q1[j], q2[j], q3[j]
                    s00 += v0 * w0
                    s01 += v0 * w1
                    s02 += v0 * w2
                    s03 += v0 * w3
                    s10 += v1 * w0
                    s11 += v1 * w1
                    s12 += v1 * w2
                    s13 += v1 * w3
                    s20 += v2 * w0
                    s21 += v2 * w1
                    s22 += v2 * w2
                    s23 += v2 * w3
                    s30 += v3 * w0
                    s31 += v3 * w1
                    s32 += v3 * w2
                    s33 += v3 * w3
                for i, (t0, t1, t2, t3) in enumerate(((s00, s01, s02, s03), (s10, s11, s12, s13),
                                                      (s20, s21, s22, s23), (s30, s31, s32, s33))):
                    G[a + i, b] += t0
                    G[a + i, b + 1] += t1
                    G[a + i, b + 2] += t2
                    G[a + i, b + 3] += t3
        for a in range(L - L % 4, L):  # the rows left over, one against each row up to it
            for b in range(a + 1):
                t = zero
                for j in range(s, e):
                    t += x[a, j] * x[b, j]
                G[a, b] += t
    good = True
    for a in range(L):
        for b in range(a + 1, L):
            G[a, b] = G[b, a]
        q = G[a, a]
        if not (q == 0.0 or lo <= q <= hi):  # NaN fails both
            good = False
    check = zero
    for a in range(L, T):
        for j in range(d):
            check += x[a, j] * zero
    return good and check == zero


def _first(x, G, a):
    """The first row of x equal to row a, bit for bit (its Gram row says where to look)."""
    for b in range(a):
        if G[a, b] == G[a, a] and G[b, b] == G[a, a]:
            same = True
            for j in range(x.shape[1]):
                if x[a, j] != x[b, j]:
                    same = False
                    break
            if same:
                return b
    return a


def _feedback(M, GM, N, L, repeats, positions, sign, rms, window, k, factor, guard, tau, high, root, P, GP, u, Gu):
    """`repeats` feedback stages on the mixtures, as fused._wave does them on the rows: x_i <- c (k x_i + sign P)
    under RMSnorm (c = 1 / sqrt(|k x_i + sign P|^2 + eps k^2 d)), else x_i + factor P, P the sum of this stage's
    rows before i (the last `window` of them).  Each row's G-image moves with it (G u = k G m_i + sign G P), so its
    squared norm u G u is one sum, not a quadratic form.  M, GM (T, T) and N (T,) updated in place; False where a
    row cancelled or its squared norm passed `high` (as the tokens' may not: a row of 1e160s squares to inf, and
    inf <= inf would pass the cancellation check)."""
    for _ in range(repeats):
        P[:L] = 0.0
        GP[:L] = 0.0
        for i in range(1, L):
            if window and i > window:  # summed afresh: taking the row that leaves away would cancel digits
                P[:L] = 0.0
                GP[:L] = 0.0
                for j in range(i - window, i):
                    for a in range(L):
                        P[a] += M[j, a]
                        GP[a] += GM[j, a]
            else:
                for a in range(L):
                    P[a] += M[i - 1, a]
                    GP[a] += GM[i - 1, a]
            if not (positions == 0 or (positions == 1 and i == L - 1) or (positions == 2 and i < L - 1)):
                continue
            own, mean = (k[i], sign) if rms else (1.0, factor[i])  # k x_i + sign P (normalised below), or x_i + factor P
            squares, parts = 0.0, 0.0
            for a in range(L):
                u[a] = own * M[i, a] + mean * P[a]
                Gu[a] = own * GM[i, a] + mean * GP[a]
                squares += u[a] * Gu[a]
                parts += abs(u[a]) * root[a]
            floor = guard[i] if rms else 0.0
            if not (parts * parts <= tau * (squares + floor) and squares <= high):  # inf <= inf: bound it too
                return False
            c = 1.0 / np.sqrt(squares + floor) if rms else 1.0
            for a in range(L):
                M[i, a] = c * u[a]
                GM[i, a] = c * Gu[a]
            N[i] = c * c * squares
    return True


def _read_last(G, M, GM, N, L, scale, cosine, stream, eps, tau, high, root, first, w):
    """layers.context_last on the mixtures: the last row's scores against the rows before it (cosine: over their
    norms, each at least eps), their softmax, and the read added to the last row: the weights on the earlier rows'
    mixtures (values: stream) or on the tokens themselves (values: tokens).  False where the new row cancelled or
    its squared norm passed `high`."""
    if L < 2:  # nothing before the last row: the read adds nothing
        return True
    q, Gq = M[L - 1], GM[L - 1]
    q_norm = max(np.sqrt(N[L - 1]), eps)
    for j in range(L - 1):
        t = 0.0
        for a in range(L):
            t += M[j, a] * Gq[a]
        if cosine:
            t = t / (q_norm * max(np.sqrt(N[j]), eps))
        w[j] = t * scale
    top = w[0]
    for j in range(1, L - 1):
        top = max(top, w[j])
    total = 0.0
    for j in range(L - 1):
        w[j] = np.exp(w[j] - top)
        total += w[j]
    for j in range(L - 1):
        weight = w[j] / total
        if stream:  # the earlier row's mixture, and its G-image
            for a in range(L):
                q[a] += weight * M[j, a]
                Gq[a] += weight * GM[j, a]
        else:  # the token itself: its column (its first occurrence's), whose Gram row is its own
            q[first[j]] += weight
            for a in range(L):
                Gq[a] += weight * G[j, a]
    squares, parts = 0.0, 0.0
    for a in range(L):
        squares += q[a] * Gq[a]
        parts += abs(q[a]) * root[a]
    N[L - 1] = squares
    return parts * parts <= tau * squares and squares <= high


def _last_row(x, L, m, row):
    """row = m x over the prompt's L rows, summed in float64."""
    row[:] = 0.0
    for a in range(L):
        c = m[a]
        if c != 0.0:
            for j in range(x.shape[1]):
                row[j] += c * x[a, j]


LOOPS = (_mixtures,)  # compiled with fused.py's loops, by fused._compiled
HELPERS = (_gram, _first, _feedback, _read_last, _last_row)  # what the loops call: compiled first, in their place here
numba_prange = range  # numba.prange once fused._compiled() ran
