"""assocmem: a transformer wired by hand from one primitive, the associative-memory read mem(q, K, V, temp)."""
import os
import sys

# OpenBLAS's threads spin for 2^28 cycles (about 0.1 s) after each call before they sleep, holding a core that the
# next stage (a numba loop, another block's thread) needs: on the 2-core machine `assocmem bench`'s feedback10 pass
# took 58 ms with the spin and 43 ms without.  OpenBLAS reads this once, when numpy loads it: so only where numpy is
# not loaded yet, and a value already in the environment wins.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from assocmem.attribution import attribute
from assocmem.patching import patch
from assocmem.runs import run
from assocmem.scenario import load_scenario
from assocmem.sweeps import sweep
from assocmem.traces import load_trace

__all__ = ["run", "sweep", "attribute", "patch", "load_trace", "load_scenario"]
