"""assocmem bench: the loop reference computes what the engine computes, and the figures are the ratios they claim."""
import json
import math

import numpy as np

from assocmem.backends import get_backend
from assocmem.bench import QUICK, loop_reference, run_bench, workload
from assocmem.engine import run_pipeline
from assocmem.scenario import default_pipeline
from conftest import cli


def test_loop_reference_matches_the_engine_on_the_bench_workload():
    tokens, lengths, keys, values, vectors = workload(B=12, T=9, d=128, V=40, dtype=np.float64, seed=3)
    pipeline = default_pipeline()
    engine = run_pipeline(tokens, lengths, keys, values, vectors, pipeline, 0.05, "cosine", record=False).logits[0]
    loop = loop_reference(tokens[0], keys[0], values[0], vectors[0], pipeline, 0.05)
    np.testing.assert_allclose(loop, engine, atol=1e-10)


def test_figures_are_the_ratios_of_the_measurements():
    r = run_bench(get_backend("numpy"), QUICK)
    d = r.details
    assert math.isclose(r.figures["speedup_vs_loop"], d["pipeline"]["loop_s"] / d["pipeline"]["engine_s"])
    assert math.isclose(r.figures["gemm_fraction"], d["static read"]["read_gflops"] / d["static read"]["gemm_gflops"])
    assert math.isclose(r.figures["scan_bandwidth_fraction"], d["feedback scan"]["scan_gb_s"] / d["feedback scan"]["copy_gb_s"])
    assert d["pipeline"]["max_logit_difference"] < 1e-4 and d["pipeline"]["same_winners"] == 1.0  # float32 both


def test_bench_json_has_the_figures_at_top_level():
    r = cli("bench", "--quick", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("speedup_vs_loop", "gemm_fraction", "scan_bandwidth_fraction"):
        assert out[key] > 0 and math.isfinite(out[key]) and key in out["targets"] and key in out["meets_targets"]
    assert out["backend"] == "numpy" and out["machine"]["cores"] >= 1 and out["shapes"]["prompts"] == QUICK.prompts


def test_bench_table_and_bad_repeats():
    r = cli("bench", "--quick", "--repeats", "1")
    assert r.returncode == 0 and "speedup_vs_loop" in r.stdout and "machine:" in r.stdout
    r = cli("bench", "--repeats", "0")
    assert r.returncode == 2 and "--repeats must be 1 or more" in r.stderr
