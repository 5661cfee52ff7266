"""The CUDA kernels of kernels/ built for the CPU (tests/cuda_host), launched as cupy launches them."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@cache
def library() -> ctypes.CDLL:
    """tests/cuda_host/harness.cpp and every kernel, compiled by g++ once a session."""
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("g++ is not installed")
    out = Path(tempfile.mkdtemp(prefix="assocmem-kernels-")) / "harness.so"
    subprocess.run([compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", f"-I{ROOT / 'kernels'}",
                    f"-I{ROOT / 'tests' / 'cuda_host'}", "-o", str(out), str(ROOT / "tests" / "cuda_host" / "harness.cpp")],
                   check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(out))
    lib.host_launch.restype = ctypes.c_int
    lib.host_launch.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p),
                                ctypes.POINTER(ctypes.c_longlong), ctypes.c_int]
    return lib


class HostKernel:
    """kernel((grid,), (block,), args) as with cupy.RawKernel; args are C-contiguous arrays or numpy scalars."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, grid, block, args):
        keep, pointers, sizes = [], [], []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: argument {i} is not C-contiguous")
                holder = ctypes.c_void_p(a.ctypes.data)
                keep.append(holder)
                pointers.append(ctypes.addressof(holder))
                sizes.append(ctypes.sizeof(ctypes.c_void_p))
            elif isinstance(a, np.generic):
                box = np.array(a)
                keep.append(box)
                pointers.append(box.ctypes.data)
                sizes.append(box.itemsize)
            else:  # cupy would pass a Python int as 8 bytes and a float as a double, whatever the kernel takes
                raise TypeError(f"{self.name}: argument {i} is a Python {type(a).__name__}; pass a numpy scalar")
        (g,), (b,) = grid, block
        assert 1 <= b <= 1024 and b % 32 == 0, f"{self.name}: block of {b} threads"
        n = len(args)
        status = library().host_launch(self.name.encode(), g, b, (ctypes.c_void_p * n)(*pointers),
                                       (ctypes.c_longlong * n)(*sizes), n)
        if status != 0:
            raise TypeError(f"{self.name}: host_launch returned {status} (-1 unknown kernel, 1 argument count, "
                            f"2 + i a wrong size for argument i)")


def host_backend():
    from assocmem.backends.cupy_backend import KernelBackend

    library()
    return KernelBackend(np, HostKernel, name="kernels-on-cpu")
