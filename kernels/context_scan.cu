// The in-place causal context memory with keys equal to values: for i = 1.. in order,
//     x_i += softmax(sim(x_i, X[:i]) / temperature) @ X[:i]
// (layers.context_scan with values="stream"), a chunk of C positions at a time, as layers.context_chunks does.
// One block per row of prompts; thread t owns the elements j = t + k * blockDim.x of every row it holds.  A
// position's query is its own row, which nothing before its step changes, so a chunk's C queries sit in registers
// from its start, and each settled row before the chunk is read once for all C of them, their C dot products
// reduced together (one pair of barriers, not C).  An online softmax (a running max m and denominator l, the sum
// rescaled by exp(m_old - m_new)) lets a row's score and its share of the sum be taken in the same pass.  Then,
// in order, each position of the chunk reads the chunk's rows before it, which have settled by then.
// norms (rows, T) is scratch for |x_j|, kept as rows settle.
#include "common.cuh"

template <typename F>
struct Chunk { static constexpr int C = sizeof(F) == 4 ? 8 : 4; };  // registers: 2 C ROW_SLOTS values a thread

template <typename F>
__device__ __forceinline__ void online(F score, const F* v, F& m, F& l, F* acc) {
    const F top = max_(m, score);
    const F rescale = exp_(m - top), weight = exp_(score - top);
    l = l * rescale + weight;
    for (int k = 0; k < ROW_SLOTS; ++k) acc[k] = acc[k] * rescale + weight * v[k];
    m = top;
}

template <typename F>
__device__ void context_scan(F* X, const long long* lengths, F* norms, int prompts, int T, int d, int positions,
                             int cosine, F inv_temperature) {
    constexpr int C = Chunk<F>::C;
    F* x = X + (offset_t)blockIdx.x * T * d;
    F* norm = norms + (offset_t)blockIdx.x * T;
    const int L = (int)lengths[blockIdx.x % prompts];
    F q[C][ROW_SLOTS], acc[C][ROW_SLOTS], v[ROW_SLOTS], m[C], l[C], dots[C];
    F squares = 0;
    for (int k = 0; k < ROW_SLOTS; ++k) {
        const int j = threadIdx.x + k * blockDim.x;
        const F e = j < d ? x[j] : F(0);
        squares += e * e;
    }
    const F first = block_sum(squares);
    if (threadIdx.x == 0) norm[0] = max_(sqrt_(first), F(NORM_EPS));
    for (int a = 1; a < L; a += C) {
#pragma unroll
        for (int t = 0; t < C; ++t) {  // the chunk's queries, as they stand before any of them is updated
            const int i = a + t;
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                q[t][k] = (j < d && i < L) ? x[(offset_t)i * d + j] : F(0);
                acc[t][k] = 0;
            }
            m[t] = -INFINITY;
            l[t] = 0;
        }
#pragma unroll
        for (int t = 0; t < C; ++t) {
            dots[t] = 0;
            for (int k = 0; k < ROW_SLOTS; ++k) dots[t] += q[t][k] * q[t][k];
        }
        block_sum_many(dots);
        F q_norm[C];
#pragma unroll
        for (int t = 0; t < C; ++t) q_norm[t] = max_(sqrt_(dots[t]), F(NORM_EPS));
        for (int r = 0; r < a; ++r) {  // settled rows: each read once for the whole chunk
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                v[k] = j < d ? x[(offset_t)r * d + j] : F(0);
            }
#pragma unroll
            for (int t = 0; t < C; ++t) {
                dots[t] = 0;
                for (int k = 0; k < ROW_SLOTS; ++k) dots[t] += q[t][k] * v[k];
            }
            block_sum_many(dots);  // norm[r] was written by thread 0 before an earlier reduction's barrier
#pragma unroll
            for (int t = 0; t < C; ++t)
                online((cosine ? dots[t] / (q_norm[t] * norm[r]) : dots[t]) * inv_temperature, v, m[t], l[t], acc[t]);
        }
#pragma unroll  // t known at compile time: the chunk's arrays stay in registers, not on the stack
        for (int t = 0; t < C; ++t) {  // in order: the chunk's rows before i have settled
            const int i = a + t;
            if (i >= L) break;
            for (int r = a; r < i; ++r) {
                F dot = 0;
                for (int k = 0; k < ROW_SLOTS; ++k) {
                    const int j = threadIdx.x + k * blockDim.x;
                    v[k] = j < d ? x[(offset_t)r * d + j] : F(0);
                    dot += q[t][k] * v[k];
                }
                dot = block_sum(dot);
                online((cosine ? dot / (q_norm[t] * norm[r]) : dot) * inv_temperature, v, m[t], l[t], acc[t]);
            }
            const bool active = positions == POSITIONS_ALL || i < L - 1;  // all, or before_last
            squares = 0;
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                if (active) q[t][k] += acc[t][k] / l[t];
                if (active && j < d) x[(offset_t)i * d + j] = q[t][k];
                squares += q[t][k] * q[t][k];
            }
            const F settled = block_sum(squares);
            if (threadIdx.x == 0) norm[i] = max_(sqrt_(settled), F(NORM_EPS));
        }
    }
}

// A thread holds a chunk's queries and reads in registers (253 of them for float32 on sm_90), so a block has at
// most CONTEXT_MAX_THREADS threads (65536 registers a block): d <= 2048; wider rows take the batched code.
extern "C" __global__ void __launch_bounds__(CONTEXT_MAX_THREADS) context_scan_f32(float* X, const long long* lengths, float* norms, int prompts, int T,
                                            int d, int positions, int cosine, float inv_temperature) {
    context_scan<float>(X, lengths, norms, prompts, T, d, positions, cosine, inv_temperature);
}

extern "C" __global__ void __launch_bounds__(CONTEXT_MAX_THREADS) context_scan_f64(double* X, const long long* lengths, double* norms, int prompts, int T,
                                            int d, int positions, int cosine, double inv_temperature) {
    context_scan<double>(X, lengths, norms, prompts, T, d, positions, cosine, inv_temperature);
}
