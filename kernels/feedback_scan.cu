// The feedback scan, x_i = RMSnorm(x_i -/+ mean(X[i-w:i])) for i = 1.. in order, all positions and all
// `repeats` in one launch (layers.feedback_positions is the same arithmetic in numpy).
// One block per row of prompts (codebook s, prompt p): X is (S, P, T, d) contiguous, block b is s * P + p.
// Thread t owns the elements j = t + k * blockDim.x, k < ROW_SLOTS; the running sum and the previous row
// stay in its registers, so each step reads x_i once and writes it once.  With k past rows,
//     RMSnorm(x - sum / k) = (k x - sum) / sqrt(|k x - sum|^2 + eps k^2 d)    (RMSnorm is scale-invariant).
#include "common.cuh"

template <typename F>
__device__ void feedback_scan(F* X, const long long* lengths, int prompts, int T, int d, int repeats,
                              int positions, F sign, int norm, int window, F eps) {
    F* x = X + (offset_t)blockIdx.x * T * d;
    const int L = (int)lengths[blockIdx.x % prompts];
    F total[ROW_SLOTS], prev[ROW_SLOTS];
    for (int r = 0; r < repeats; ++r) {
        for (int k = 0; k < ROW_SLOTS; ++k) {
            const int j = threadIdx.x + k * blockDim.x;
            total[k] = 0;
            prev[k] = j < d ? x[j] : F(0);
        }
        for (int i = 1; i < L; ++i) {  // positions at and after L are padding, never updated
            const bool active = positions == POSITIONS_ALL || (positions == POSITIONS_LAST ? i == L - 1 : i < L - 1);
            const int past = (window > 0 && i > window) ? window : i;
            F cur[ROW_SLOTS];
            F squares = 0;
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                if (j >= d) { cur[k] = 0; continue; }
                total[k] += prev[k];
                if (window > 0 && i > window) total[k] -= x[(offset_t)(i - 1 - window) * d + j];
                const F v = x[(offset_t)i * d + j];
                cur[k] = !active ? v : norm ? F(past) * v + sign * total[k] : v + sign / F(past) * total[k];
                squares += cur[k] * cur[k];
            }
            if (active && norm) {  // block-uniform: every thread of the block takes the same branch
                const F scale = F(1) / sqrt_(block_sum(squares) + eps * F(past) * F(past) * F(d));
                for (int k = 0; k < ROW_SLOTS; ++k) cur[k] *= scale;
            }
            for (int k = 0; k < ROW_SLOTS; ++k) {
                const int j = threadIdx.x + k * blockDim.x;
                if (j < d && active) x[(offset_t)i * d + j] = cur[k];
                prev[k] = cur[k];
            }
        }
    }
}

extern "C" __global__ void feedback_scan_f32(float* X, const long long* lengths, int prompts, int T, int d,
                                             int repeats, int positions, float sign, int norm, int window, float eps) {
    feedback_scan<float>(X, lengths, prompts, T, d, repeats, positions, sign, norm, window, eps);
}

extern "C" __global__ void feedback_scan_f64(double* X, const long long* lengths, int prompts, int T, int d,
                                             int repeats, int positions, double sign, int norm, int window, double eps) {
    feedback_scan<double>(X, lengths, prompts, T, d, repeats, positions, sign, norm, window, eps);
}
