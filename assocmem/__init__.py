"""assocmem: a transformer wired by hand from one primitive, the associative-memory read mem(q, K, V, temp)."""
import os
import sys

# OpenBLAS's threads spin for 2^28 cycles (about 0.1 s) after each call before they sleep, holding a core that the
# next stage (a numba loop, another block's thread) needs: on the 2-core machine `assocmem bench`'s feedback10 pass
# took 58 ms with the spin and 43 ms without.  OpenBLAS reads this once, when numpy loads it: so only where numpy is
# not loaded yet, and a value already in the environment wins.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# The same for numba's OpenMP threads after a parallel loop (the fused scan, the mixtures of backends/span.py): they
# spin where BLAS's threads need the core next (the readout's reads after the mixtures: 16 ms with the spin, 11 ms
# without).  libgomp reads it when numba first loads it, which is later.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _keep_freed_pages() -> None:
    """glibc hands every freed block over 128 KiB back to the system, so the next array of that size faults in each
    of its 4 KiB pages again, and a page fault is dear in a VM: a pass of 1024 prompts through feedback10 makes and
    frees megabyte arrays by the dozen (the readout's chunks, the mixtures' rows), and took 27-29 ms so against
    22-24 ms with blocks up to 32 MiB kept in the heap (mallopt: M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 64 MiB).
    A process holds on to up to 64 MiB it freed.  ASSOCMEM_MALLOC=default leaves glibc as it is."""
    if sys.platform != "linux" or os.environ.get("ASSOCMEM_MALLOC", "").lower() in ("default", "off", "0", "no"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


_keep_freed_pages()

from assocmem.attribution import attribute
from assocmem.patching import patch
from assocmem.runs import run
from assocmem.scenario import load_scenario
from assocmem.sweeps import sweep
from assocmem.traces import load_trace

__all__ = ["run", "sweep", "attribute", "patch", "load_trace", "load_scenario"]
