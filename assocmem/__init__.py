"""assocmem: a transformer wired by hand from one primitive, the associative-memory read mem(q, K, V, temp)."""
from assocmem.runs import run
from assocmem.scenario import load_scenario
from assocmem.sweeps import sweep

__all__ = ["run", "sweep", "load_scenario"]
