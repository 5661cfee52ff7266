"""assocmem bench: the loop reference computes what the engine computes, timings are the fastest after a warm-up,
and the figures come out of the command."""
import json
import math

import numpy as np

from assocmem import bench
from assocmem.bench import QUICK, best_time, loop_reference, workload
from assocmem.engine import run_pipeline
from assocmem.model import feedback10_pipeline
from conftest import cli


def test_loop_reference_matches_the_engine_on_the_bench_workload():
    tokens, lengths, keys, values, vectors = workload(B=12, T=9, d=128, V=40, dtype=np.float64, seed=3)
    engine = run_pipeline(tokens, lengths, keys, values, vectors, feedback10_pipeline(), 0.05, "cosine",
                          record=False).logits[0]
    loop = loop_reference(tokens[0], keys[0], values[0], vectors[0], 0.05)
    np.testing.assert_allclose(loop, engine, atol=1e-10)


def test_best_time_is_the_fastest_run_after_an_untimed_warm_up(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 21.5])  # three timed runs of 5, 2 and 1.5 seconds
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    runs, synced = [], []
    assert best_time(lambda: runs.append(1), 3, lambda: synced.append(1)) == 1.5
    assert len(runs) == 4 and len(synced) == 4  # the warm-up runs and waits too, untimed


def test_bench_json_has_the_figures_at_top_level():
    r = cli("bench", "--quick", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("speedup_vs_loop", "gemm_fraction", "scan_bandwidth_fraction"):
        assert out[key] > 0 and math.isfinite(out[key]) and key in out["targets"] and key in out["meets_targets"]
    assert out["backend"] == "numpy" and out["machine"]["cores"] >= 1 and out["shapes"]["prompts"] == QUICK.prompts
    pipeline = out["details"]["pipeline"]
    assert pipeline["max_logit_difference"] < 1e-4 and pipeline["same_winners"] == 1.0  # float32 on both sides
    sweep = out["details"]["sweep"]  # in one process and on a real local:2 cluster: the same margins, compared with ==
    assert sweep["same_margins"] is True and sweep["seed_cells"] == QUICK.sweep_seeds and sweep["worker_peak_mib"] > 10
    assert out["sweep_speedup_local2"] == sweep["one_process_s"] / sweep["local2_s"] > 0
    assert "sweep_speedup_local2" not in out["meets_targets"]  # measured and reported, with no target to meet


def test_bench_table_and_bad_repeats():
    r = cli("bench", "--quick", "--repeats", "1")
    assert r.returncode == 0 and "speedup_vs_loop" in r.stdout and "machine:" in r.stdout
    assert "sweep_speedup_local2" in r.stdout and "local2_cells_per_s" in r.stdout
    r = cli("bench", "--repeats", "0")
    assert r.returncode == 2 and "--repeats must be 1 or more" in r.stderr
