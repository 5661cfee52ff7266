"""The bench's sweep figure: seed-cells a second of one sweep on a local:2 Dask cluster against one process."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from assocmem.backends import Backend
from assocmem.cluster import connect
from assocmem.errors import InputError
from assocmem.scenario import load_scenario
from assocmem.sweeps import sweep

# The sweep the throughput figure runs: scenarios/pronoun.yaml, inline, so the bench needs no file of the repository.
SWEEP_SCENARIO = """
name: pronoun (bench)
relations: [ОНА = МАША + КАШУ, ВКУСНАЯ = КАШУ, ГОЛОДНАЯ = МАША]
prompts:
  - {text: "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ ОНА ?", expect: КАШУ, candidates: [МАША, КАШУ]}
  - {text: "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ГОЛОДНАЯ ОНА ?", expect: МАША, candidates: [МАША, КАШУ]}
"""


def bench_sweep(backend: Backend, shapes) -> dict:
    """Sweep throughput: the same sweep (sweep_seeds seeds at `dim`) in this process and on a LocalCluster of two
    worker processes (`--scheduler local:2`), in interleaved rounds after a warm-up of each (bench.interleaved);
    the cluster's start-up is timed apart.  The margins of the two are compared with ==."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pronoun.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(SWEEP_SCENARIO)
        scenario = load_scenario(path, dim=shapes.dim)
    from assocmem.bench import interleaved, pair_ratio  # here: bench imports this module for its last part

    seeds, start = shapes.sweep_seeds, time.perf_counter()
    try:
        with connect("local:2") as on:
            started = time.perf_counter() - start
            runs = {}

            def here():
                runs["here"] = sweep(scenario, seeds, backend=backend)

            def there():
                runs["there"] = sweep(scenario, seeds, backend=backend.name, executor=on.executor,
                                      task_threads=on.threads)

            times = interleaved({"one_process": here, "local2": there}, shapes.repeats)
            peaks = on.describe(runs["there"])["peak_memory_mib"]
    except InputError as err:  # no Dask (or a cluster that would not start): the figure is left out, saying why
        return {"ratios": {}, "note": str(err)}
    same = all(np.array_equal(a.margins, b.margins, equal_nan=True)
               for a, b in zip(runs["here"].cells, runs["there"].cells))
    one, two = float(np.median(times["one_process"])), float(np.median(times["local2"]))
    return {"ratios": {"sweep_speedup_local2": pair_ratio(times["one_process"], times["local2"])},
            "seed_cells": seeds, "one_process_s": one, "local2_s": two, "cluster_start_s": started,
            "one_process_cells_per_s": seeds / one, "local2_cells_per_s": seeds / two, "same_margins": same,
            "worker_peak_mib": max(peaks.values()) if peaks else None}
