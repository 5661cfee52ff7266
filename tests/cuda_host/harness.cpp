// One host entry point for tests: host_launch(name, grid, block, args, sizes) runs a kernel of kernels/
// through shim.h, taking its arguments as cupy's RawKernel call does (a tuple of arrays and numpy scalars).
// Each argument's size is checked against the kernel's C signature, so a Python int where the kernel takes
// an int32 (which cupy would pass as 8 bytes) fails here as it would mislead there.
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "shim.h"
#include "feedback_scan.cu"
#include "context_scan.cu"
#include "softmax_rows.cu"

using Launcher = std::function<int(unsigned, unsigned, void**, const long long*, int)>;

template <typename... A, std::size_t... I>
void invoke(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <typename... A>
Launcher host(void (*kernel)(A...)) {
    return [kernel](unsigned grid, unsigned block, void** args, const long long* sizes, int n) {
        if (n != static_cast<int>(sizeof...(A))) return 1;
        const long long expected[] = {static_cast<long long>(sizeof(A))...};
        for (int i = 0; i < n; ++i)
            if (sizes[i] != expected[i]) return 2 + i;
        launch(grid, block, [&] { invoke(kernel, args, std::index_sequence_for<A...>{}); });
        return 0;
    };
}

static const std::map<std::string, Launcher> kernels = {
    {"feedback_scan_f32", host(feedback_scan_f32)}, {"feedback_scan_f64", host(feedback_scan_f64)},
    {"context_scan_f32", host(context_scan_f32)},   {"context_scan_f64", host(context_scan_f64)},
    {"softmax_rows_f32", host(softmax_rows_f32)},   {"softmax_rows_f64", host(softmax_rows_f64)},
};

// 0 on success; -1 for an unknown kernel, 1 for a wrong argument count, 2 + i for a wrong size of argument i.
extern "C" int host_launch(const char* name, unsigned grid, unsigned block, void** args, const long long* sizes, int n) {
    const auto found = kernels.find(name);
    return found == kernels.end() ? -1 : found->second(grid, block, args, sizes, n);
}
