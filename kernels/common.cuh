// Shared by every kernel: block-wide reductions and the float/double spellings of the math they need.
// A block is a whole number of warps (the launcher rounds up to 32), and every thread of the block calls
// each reduction, so the shuffles below always run on full warps.
#pragma once

// Written for NVRTC, which cupy.RawModule uses and which includes no headers: only builtin math below.
typedef unsigned long long offset_t;  // element offsets past 2^31 (B = 65536 prompts x 16 x 1000 is 2^30)
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

#define ROW_SLOTS 8            // row elements a thread holds in registers: d <= ROW_SLOTS * blockDim.x
#define POSITIONS_ALL 0        // which positions a stage updates, as in layers.selected_positions
#define POSITIONS_LAST 1
#define POSITIONS_BEFORE_LAST 2
#define CONTEXT_MAX_THREADS 256  // the chunked context scan's block (its registers): d <= 256 * ROW_SLOTS
#define NORM_EPS 1e-12         // mem.EPS: a zero row keeps norm EPS, so unit() leaves it zero

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }
__device__ __forceinline__ float max_(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_(double a, double b) { return fmax(a, b); }

struct Sum { template <typename F> __device__ __forceinline__ F operator()(F a, F b) const { return a + b; } };
struct Max { template <typename F> __device__ __forceinline__ F operator()(F a, F b) const { return max_(a, b); } };

template <typename F, typename Op>
__device__ __forceinline__ F warp_reduce(F v, Op op) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

// The reduction of v over the block, returned to every thread.
template <typename F, typename Op>
__device__ F block_reduce(F v, Op op, F identity) {
    __shared__ F partial[32];
    __shared__ F result;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, op);
    __syncthreads();                      // the previous call's readers are done with partial and result
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = warp_reduce(threadIdx.x < warps ? partial[threadIdx.x] : identity, op);  // every warp, so all shuffle
    if (threadIdx.x == 0) result = v;
    __syncthreads();
    return result;
}

template <typename F> __device__ __forceinline__ F block_sum(F v) { return block_reduce(v, Sum(), F(0)); }
template <typename F> __device__ __forceinline__ F block_max(F v) { return block_reduce(v, Max(), F(-INFINITY)); }

// The sums of N values over the block at once, each returned to every thread: one pair of barriers for all N
// (the chunked context scan reduces a chunk's N dot products with one row together).
template <typename F, int N>
__device__ void block_sum_many(F (&v)[N]) {
    __shared__ F partial[N][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int t = 0; t < N; ++t) v[t] = warp_reduce(v[t], Sum());
    __syncthreads();                      // the previous call's readers are done with partial
    if (lane == 0)
        for (int t = 0; t < N; ++t) partial[t][warp] = v[t];
    __syncthreads();
    for (int t = 0; t < N; ++t) {
        F total = 0;
        for (int w = 0; w < warps; ++w) total += partial[t][w];
        v[t] = total;
    }
}
