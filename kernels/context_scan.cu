// The in-place causal context memory with keys equal to values: for i = 1.. in order,
//     x_i += softmax(sim(x_i, X[:i]) / temperature) @ X[:i]
// (layers.context_scan with values="stream").  One block per row of prompts; thread t owns the elements
// j = t + k * blockDim.x of the query and of the running sum.  An online softmax (a running max m and
// denominator l, the sum rescaled by exp(m_old - m_new)) lets each earlier row be read once, for its score
// and its share of the sum together.  norms (rows, T) is scratch for |x_j|, kept as rows settle.
#include "common.cuh"

template <typename F>
__device__ void context_scan(F* X, const long long* lengths, F* norms, int prompts, int T, int d, int positions,
                             int cosine, F inv_temperature) {
    F* x = X + (offset_t)blockIdx.x * T * d;
    F* norm = norms + (offset_t)blockIdx.x * T;
    const int L = (int)lengths[blockIdx.x % prompts];
    F q[ROW_SLOTS], acc[ROW_SLOTS], v[ROW_SLOTS];
    F squares = 0;
    for (int k = 0; k < ROW_SLOTS; ++k) {
        const int j = threadIdx.x + k * blockDim.x;
        const F e = j < d ? x[j] : F(0);
        squares += e * e;
    }
    const F first = block_sum(squares);
    if (threadIdx.x == 0) norm[0] = max_(sqrt_(first), F(NORM_EPS));
    for (int i = 1; i < L; ++i) {
        const bool active = positions == POSITIONS_ALL || i < L - 1;  // all, or before_last
        squares = 0;
        for (int k = 0; k < ROW_SLOTS; ++k) {
            const int j = threadIdx.x + k * blockDim.x;
            q[k] = j < d ? x[(offset_t)i * d + j] : F(0);
            acc[k] = 0;
            squares += q[k] * q[k];
        }
        if (!active) continue;  // the last position of before_last: nothing after it needs its norm
        const F q_norm = max_(sqrt_(block_sum(squares)), F(NORM_EPS));
        F m = -INFINITY, l = 0;
        for (int r = 0; r < i; ++r) {
            F dot = 0;
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                v[k] = j < d ? x[(offset_t)r * d + j] : F(0);
                dot += q[k] * v[k];
            }
            dot = block_sum(dot);  // norm[r] below was written by thread 0 before an earlier block_sum's barrier
            const F score = (cosine ? dot / (q_norm * norm[r]) : dot) * inv_temperature;
            const F top = max_(m, score);
            const F rescale = exp_(m - top), weight = exp_(score - top);
            l = l * rescale + weight;
            for (int k = 0; k < ROW_SLOTS; ++k) acc[k] = acc[k] * rescale + weight * v[k];
            m = top;
        }
        squares = 0;
        for (int k = 0; k < ROW_SLOTS; ++k) {
            const int j = threadIdx.x + k * blockDim.x;
            q[k] += acc[k] / l;
            if (j < d) x[(offset_t)i * d + j] = q[k];
            squares += q[k] * q[k];
        }
        const F settled = block_sum(squares);
        if (threadIdx.x == 0) norm[i] = max_(sqrt_(settled), F(NORM_EPS));
    }
}

extern "C" __global__ void context_scan_f32(float* X, const long long* lengths, float* norms, int prompts, int T,
                                            int d, int positions, int cosine, float inv_temperature) {
    context_scan<float>(X, lengths, norms, prompts, T, d, positions, cosine, inv_temperature);
}

extern "C" __global__ void context_scan_f64(double* X, const long long* lengths, double* norms, int prompts, int T,
                                            int d, int positions, int cosine, double inv_temperature) {
    context_scan<double>(X, lengths, norms, prompts, T, d, positions, cosine, inv_temperature);
}
