"""assocmem bench: the peers compute what the engine computes, timings are interleaved pairs, impossible ratios are
invalid, a busy machine is flagged, and the figures come out of the command."""
import json
import math
import os
import time

import numpy as np
import pytest

from assocmem import bench, peers
from assocmem.bench import QUICK, BenchResult, interleaved, loop_reference, pair_ratio, workload
from assocmem.engine import run_pipeline
from assocmem.model import feedback10_pipeline
from conftest import cli, cli_in_process


@pytest.fixture(scope="module")
def recipe():
    tokens, lengths, keys, values, vectors = workload(B=70, T=9, d=128, V=40, dtype=np.float64, seed=3)
    engine = run_pipeline(tokens, lengths, keys, values, vectors, feedback10_pipeline(), 0.05, "cosine",
                          record=False).logits[0]
    return (tokens[0], keys[0], values[0], vectors[0]), engine


def test_loop_reference_matches_the_engine_on_the_bench_workload(recipe):
    args, engine = recipe
    np.testing.assert_allclose(loop_reference(*args, 0.05), engine, atol=1e-10)


@pytest.mark.parametrize("block", [1, 64, 128])
def test_the_batched_numpy_peer_matches_the_engine(recipe, block):
    args, engine = recipe
    np.testing.assert_allclose(peers.batched_numpy(*args, 0.05, block=block), engine, atol=1e-10)


def test_the_torch_peer_matches_the_engine_where_torch_is_installed(recipe):
    torch = peers.torch_eager()
    if torch is None:
        pytest.skip("torch is not installed (it is never a dependency)")
    args, engine = recipe
    np.testing.assert_allclose(torch(*args, 0.05, block=64), engine, atol=1e-10)


def test_interleaved_rounds_alternate_order_after_an_untimed_warm_up(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    order = []
    times = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then A B, B A, A B
    assert times == {"a": [1, 1, 1], "b": [1, 1, 1]}


def test_pair_ratio_is_the_median_of_the_rounds_ratios_with_its_spread():
    median, spread = pair_ratio([2.0, 4.0, 30.0, 6.0, 8.0], [1.0, 1.0, 1.0, 2.0, 2.0])  # ratios 2 4 30 3 4
    assert median == 4.0
    assert spread == pytest.approx((np.percentile([2, 4, 30, 3, 4], 75) - np.percentile([2, 4, 30, 3, 4], 25)) / 4)


def test_a_read_faster_than_its_gemms_is_invalid_not_a_result(monkeypatch):
    monkeypatch.setattr(bench, "bench_recipe", lambda *a, **k: {"ratios": {}})
    monkeypatch.setattr(bench, "bench_scan", lambda *a, **k: {"ratios": {}})
    monkeypatch.setattr(bench, "bench_sweep", lambda *a, **k: {"ratios": {}})
    monkeypatch.setattr(bench, "bench_static_read", lambda *a, **k: {"ratios": {"gemm_fraction": (1.26, 0.3)}})
    from assocmem.backends import get_backend
    result = bench.run_bench(get_backend("numpy"), QUICK)
    assert result.figures["gemm_fraction"] is None and "invalid (1.26 measured)" in result.notes["gemm_fraction"]
    out = result.to_dict()
    assert out["gemm_fraction"] is None and out["meets_targets"]["gemm_fraction"] is False
    assert out["gemm_fraction_spread"] == 0.3 and out["busy"] == ["gemm_fraction"]


def test_busy_is_the_figures_whose_pairs_spread_or_whose_part_had_other_load():
    result = BenchResult("numpy", {}, QUICK, figures={"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},
                         spreads={"a": 0.05, "b": 0.4, "c": 0.2, "d": 0.01},
                         parts={"a": "quiet", "b": "quiet", "c": "quiet", "d": "loaded"},
                         contention={"quiet": 0.01, "loaded": 0.3})
    assert result.busy == ["b", "d"]  # a spread of 40 %; a part where other processes took 30 % of the machine
    result.contention = {"quiet": None, "loaded": None}  # too short, or no /proc/stat: the spread alone decides
    assert result.busy == ["b"]
    assert result.to_dict()["other_load"] == {"quiet": None, "loaded": None}


def test_contention_is_other_processes_share_of_the_machine(monkeypatch):
    from assocmem import contention

    clock = {"busy": 100.0, "own": 10.0, "wall": 50.0}
    monkeypatch.setattr(contention, "machine_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(contention, "own_seconds", lambda: clock["own"])
    monkeypatch.setattr(contention.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(contention.os, "cpu_count", lambda: 2)
    with contention.Contention() as c:
        clock.update(busy=103.0, own=11.0, wall=52.0)  # 3 busy seconds in 2 s on 2 cores, 1 of them ours
    assert c.others == pytest.approx(0.5)
    with contention.Contention() as c:
        clock.update(busy=103.5, own=11.1, wall=52.5)  # half a second: ticks of 10 ms are too coarse
    assert c.others is None
    monkeypatch.setattr(contention, "machine_busy_seconds", lambda: None)  # no /proc/stat
    with contention.Contention() as c:
        clock.update(wall=60.0)
    assert c.others is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_a_job_on_another_core_is_seen():
    """A real busy loop in another process, while this one sleeps: at least half a core's share of the machine."""
    import subprocess
    import sys

    from assocmem.contention import Contention
    job = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        with Contention() as c:
            time.sleep(1.5)
    finally:
        job.kill()
        job.wait()
    assert c.others >= 0.5 / os.cpu_count(), c.others


def test_scaling_fits_the_exponent_of_each_axis(monkeypatch):
    """A clock where the recipe takes B * n^2 * d^0.5 (feedback10) and B^2 (default): the fit gives those powers."""
    def fake(contenders, rounds, synchronize=None):
        size = fake.sizes[-1]
        return {"feedback10": [size["B"] * size["n"] ** 2 * size["d"] ** 0.5] * rounds,
                "default": [size["B"] ** 2 * 1.0] * rounds}

    fake.sizes = []
    real = bench.workload
    monkeypatch.setattr(bench, "workload", lambda B, n, d, V: fake.sizes.append(dict(B=B, n=n, d=d)) or real(2, 2, 4, V))
    monkeypatch.setattr(bench, "interleaved", fake)
    from assocmem.backends import get_backend
    out = bench.scaling(get_backend("numpy"), QUICK)
    e = out["exponents"]
    assert e["B"]["feedback10"] == pytest.approx(1) and e["n"]["feedback10"] == pytest.approx(2)
    assert e["d"]["feedback10"] == pytest.approx(0.5) and e["B"]["default"] == pytest.approx(2)
    assert e["n"]["default"] == pytest.approx(0, abs=1e-9) and len(out["points"]) == 12


def test_bench_json_has_the_figures_and_spreads_at_top_level():
    r = cli("bench", "--quick", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("speedup_vs_loop", "scan_bandwidth_fraction", "speedup_vs_batched_numpy", "floor_fraction",
                "speedup_vs_batched_numpy_long"):
        assert out[key] > 0 and math.isfinite(out[key]) and key in out["targets"] and key in out["meets_targets"]
        assert out[f"{key}_spread"] >= 0
    assert out["gemm_fraction"] is None or 0 < out["gemm_fraction"] <= 1
    assert out["backend"] == "numpy" and out["machine"]["cores"] >= 1 and out["shapes"]["prompts"] == QUICK.prompts
    recipe = out["details"]["recipe"]
    for peer in ("batched_numpy", "loop"):  # float32 on both sides
        assert recipe[f"max_logit_difference_{peer}"] < 1e-4 and recipe[f"same_winners_{peer}"] == 1.0
    assert out["floor_fraction"] == pytest.approx(recipe["floor_s"] / recipe["engine_s"], rel=1.5)
    sweep = out["details"]["sweep"]  # in one process and on a real local:2 cluster: the same margins, compared with ==
    assert sweep["same_margins"] is True and sweep["seed_cells"] == QUICK.sweep_seeds and sweep["worker_peak_mib"] > 10
    assert out["sweep_speedup_local2"] > 0 and out["sweep_speedup_local2_spread"] >= 0
    assert "sweep_speedup_local2" not in out["meets_targets"]  # measured and reported, with no target to meet


def test_bench_table_scaling_and_bad_repeats():
    r = cli("bench", "--quick", "--repeats", "1")
    assert r.returncode == 0 and "speedup_vs_batched_numpy" in r.stdout and "machine:" in r.stdout
    assert "sweep_speedup_local2" in r.stdout
    for bad in ("0", "1001", "99999999999999999999"):  # the last once ran unbounded
        r = cli_in_process("bench", "--repeats", bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (bad, r.stderr)
        assert "--repeats must be 1 to 1000" in r.stderr
    r = cli("bench", "--quick", "--scaling", "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["exponents"]) == {"B", "n", "d"}


def test_the_table_says_what_other_processes_took_and_why_a_figure_is_busy():
    from io import StringIO

    from rich.console import Console

    from assocmem.report import print_bench
    result = BenchResult("numpy", {"cpu": "x", "cores": 2}, QUICK, figures={"floor_fraction": 0.1},
                         spreads={"floor_fraction": 0.02}, parts={"floor_fraction": "recipe"},
                         contention={"recipe": 0.3}, details={"recipe": {"engine_s": 0.04}})
    out = StringIO()
    print_bench(result, Console(file=out, width=300))
    text = out.getvalue()
    assert "other processes 30.0% of the machine" in text
    assert "busy for floor_fraction" in text and "other processes took 30% of the machine during recipe" in text


def test_bench_memory_measures_each_recipe_and_refuses_what_it_cannot():
    """One pass's peak over the stream, from tracemalloc; the same figures in the table and in strict JSON."""
    import math

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    r = cli("bench", "--memory", "2048", "--json")
    assert r.returncode == 0, r.stderr
    out = strict(r.stdout)
    assert out["prompts"] == 2048 and out["stream_bytes"] == 2048 * 16 * 1000 * 4
    for recipe in ("feedback10", "default"):  # both far under the 1.3 streams issue 16 allows
        assert 0 < out[f"{recipe}_peak_over_stream"] < 1.3
        assert math.isclose(out[f"{recipe}_peak_bytes"] / out["stream_bytes"], out[f"{recipe}_peak_over_stream"])
    table = cli("bench", "--memory", "256", "--quick")
    assert table.returncode == 0 and "feedback10 (the caller's tokens)" in table.stdout
    for bad in ("3", "999999999999999999999"):
        r = cli_in_process("bench", "--memory", bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--memory must be 64 to" in r.stderr, r.stderr
