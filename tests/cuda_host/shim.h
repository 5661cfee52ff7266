// Runs the CUDA kernels of kernels/ on the CPU, so CI (no GPU) checks their arithmetic against numpy.
// A launch runs its blocks one after another; a block is blockDim.x real threads, so __syncthreads is a
// barrier and __shfl_down_sync an exchange through memory between barriers, as on a GPU.  It checks the
// algorithm, the indexing and the reductions; it says nothing of speed or of memory-model subtleties.
#pragma once
#include <barrier>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __shared__ static

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;
inline double lane_exchange[1024];

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

template <typename F>
F __shfl_down_sync(unsigned, F v, int offset) {
    const unsigned t = threadIdx.x;
    __syncthreads();
    lane_exchange[t] = static_cast<double>(v);
    __syncthreads();
    const F out = ((t & 31) + offset < 32 && t + offset < blockDim.x) ? static_cast<F>(lane_exchange[t + offset]) : v;
    __syncthreads();
    return out;
}

inline void launch(unsigned grid, unsigned block, const std::function<void()>& kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t) threads.emplace_back([&, t] { threadIdx.x = t; kernel(); });
        for (auto& th : threads) th.join();
    }
}
