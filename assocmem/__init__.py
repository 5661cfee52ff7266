"""assocmem: a transformer wired by hand from one primitive, the associative-memory read mem(q, K, V, temp)."""
from assocmem.attribution import attribute
from assocmem.patching import patch
from assocmem.runs import run
from assocmem.scenario import load_scenario
from assocmem.sweeps import sweep
from assocmem.traces import load_trace

__all__ = ["run", "sweep", "attribute", "patch", "load_trace", "load_scenario"]
