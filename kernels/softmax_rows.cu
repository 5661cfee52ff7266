// The softmax between the two GEMMs of a static read (layers.read_rows): each row of scores (n, M) becomes
// exp(score - row max) in place, and its sum goes to sums (n).  Two passes over a row instead of the four of
// max, subtract, exp and sum; the division by the sum is left to the (n, d) result, which is smaller.
// One block per row.
#include "common.cuh"

template <typename F>
__device__ void softmax_rows(F* scores, F* sums, int M) {
    F* s = scores + (offset_t)blockIdx.x * M;
    F top = -INFINITY;
    for (int j = threadIdx.x; j < M; j += blockDim.x) top = max_(top, s[j]);
    top = block_max(top);
    F total = 0;
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        const F e = exp_(s[j] - top);
        s[j] = e;
        total += e;
    }
    total = block_sum(total);
    if (threadIdx.x == 0) sums[blockIdx.x] = total;
}

extern "C" __global__ void softmax_rows_f32(float* scores, float* sums, int M) { softmax_rows<float>(scores, sums, M); }
extern "C" __global__ void softmax_rows_f64(double* scores, double* sums, int M) { softmax_rows<double>(scores, sums, M); }
