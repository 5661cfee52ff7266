"""Sweeps through executors and on a real Dask LocalCluster (worker processes on loopback): the same margins bit for
bit, whatever the chunking and order; a killed worker loses nothing; Ctrl-C cancels and keeps what finished."""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

import assocmem.sweeps as sweeps
from assocmem import cluster
from assocmem.errors import InputError
from assocmem.scenario import load_scenario
from assocmem.sweeps import run_cell, sweep
from conftest import ROOT, cli_in_process

distributed = pytest.importorskip("distributed")  # in the test extra: CI runs all of this

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"
INDUCTION = ROOT / "scenarios" / "induction.yaml"  # three variants, one a check: false
WAIT_S = 120  # the most any one test waits on the cluster, on a loaded 2-core machine


def same(a, b) -> bool:
    """Equal bit for bit (NaN where a prompt expects nothing on both sides), not close."""
    return a.shape == b.shape and bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def same_cells(got, want) -> bool:
    return [(c.variant, c.dim, c.temperature, c.seeds) for c in got.cells] == \
        [(c.variant, c.dim, c.temperature, c.seeds) for c in want.cells] and \
        all(same(g.margins, w.margins) for g, w in zip(got.cells, want.cells))


def bounded(fn, seconds=WAIT_S):
    """fn() in a thread, failing the test instead of hanging if it takes longer than `seconds`."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return out["value"]


@pytest.fixture
def small_blocks(monkeypatch):
    """Passes of 3 seeds, so a short sweep has many blocks, a ragged last one, and tasks of several."""
    monkeypatch.setattr(sweeps, "SEED_BLOCK", 3)


# ---------------------------------------------------------------------------------------------------- no cluster

def test_a_seeds_margins_do_not_depend_on_the_passes_it_shares():
    """float32, where BLAS would be most likely to sum a row differently in a batch of another shape: one pass of
    twelve seeds, passes of one, and passes of five give the same margins, compared with ==."""
    sc = load_scenario(INDUCTION, dtype="float32", dim=128)
    for variant in sc.variants:
        seeds = list(range(12))
        whole = run_cell(sc, variant, seeds)
        ones = np.concatenate([run_cell(sc, variant, [s]) for s in seeds])
        fives = np.concatenate([run_cell(sc, variant, seeds[i:i + 5]) for i in range(0, 12, 5)])
        assert same(whole, ones) and same(whole, fives), variant.name


def test_passes_are_blocks_of_at_most_seed_block_seeds_whatever_the_count():
    sc = load_scenario(PRONOUN)
    blocks, per_pass = sweeps.seed_blocks(sc, sc.variants[0], list(range(150)), 2**31)
    assert [len(b) for b in blocks] == [64, 64, 22] and per_pass == len(sc.prompts)
    assert sum(blocks, []) == list(range(150))
    blocks, _ = sweeps.seed_blocks(sc, sc.variants[0], list(range(150)), 40 * 2**20)  # the budget cuts them smaller
    assert 1 <= len(blocks[0]) < 64 and sum(blocks, []) == list(range(150))


@pytest.mark.parametrize("blocks_per_task", [1, 2, 5])
def test_an_executor_sweep_is_the_local_sweep_bit_for_bit_whatever_the_chunking(small_blocks, blocks_per_task):
    local = sweep(INDUCTION, seeds=range(4, 15), dims=[32, 64])
    with ThreadPoolExecutor(3) as pool:
        steps = []
        got = sweep(INDUCTION, seeds=range(4, 15), dims=[32, 64], executor=pool, blocks_per_task=blocks_per_task,
                    on_step=steps.append)
    assert got.complete and same_cells(got, local)
    assert sum(steps) == 11 * len(local.cells) and max(steps) <= 3 * blocks_per_task
    assert json.dumps(got.to_dict()) == json.dumps(local.to_dict())


class Backwards(Executor):
    """Runs nothing until all `expected` tasks are in, then finishes them last first (only the last `finish` of
    them, if given): results come back in the reverse of the order they were asked for."""

    def __init__(self, expected: int, finish: int | None = None):
        self.expected, self.finish, self.jobs = expected, finish, []

    def submit(self, fn, *args, **kwargs):
        future = Future()
        self.jobs.append((future, fn, args, kwargs))
        if len(self.jobs) == self.expected:
            threading.Thread(target=self._finish, daemon=True).start()
        return future

    def _finish(self):
        for future, fn, args, kwargs in list(reversed(self.jobs))[:self.finish]:
            if future.set_running_or_notify_cancel():  # False: cancelled while it waited
                future.set_result(fn(*args, **kwargs))


def test_results_finishing_in_reverse_order_land_in_seed_order(small_blocks):
    local = sweep(PRONOUN, seeds=10, dims=[16, 32])
    got = bounded(lambda: sweep(PRONOUN, seeds=10, dims=[16, 32], executor=Backwards(2 * 4)))
    assert same_cells(got, local)


def test_a_tasks_error_reaches_the_caller_and_cancels_the_rest(small_blocks):
    sc = load_scenario(PRONOUN)
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(InputError, match="over the budget"):  # every pass is over a budget of 1 byte
            sweep(sc, seeds=10, max_memory=1, executor=pool)


def test_interrupted_executor_sweep_keeps_the_finished_tasks_with_their_seeds(small_blocks):
    def stop(n):
        raise KeyboardInterrupt

    got = bounded(lambda: sweep(PRONOUN, seeds=10, dims=[16], executor=Backwards(4, finish=1), on_step=stop))
    (cell,) = got.cells
    assert not got.complete and cell.seeds == [9]  # the last block finished first, alone
    assert same(cell.margins, sweep(PRONOUN, seeds=[9], dims=[16]).cells[0].margins)
    assert got.to_dict()["cells"][0]["seeds"] == [9, 9]


def test_seed_runs_name_the_gaps_an_interrupted_cell_has():
    assert sweeps._runs([0, 1, 2, 6, 7, 9]) == {"seed_runs": [[0, 2], [6, 7], [9, 9]]}
    assert sweeps._runs(list(range(5))) == {}


def test_peak_memory_is_this_process_own_high_water_mark():
    code = ("import numpy as np; from assocmem.cluster import peak_memory; before = peak_memory(); "
            "x = np.ones(2**24); print(before, peak_memory())")
    before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                            timeout=60, check=True).stdout.split())
    assert after - before >= 120 * 2**20  # the 128 MiB it touched, counted in bytes


@pytest.mark.parametrize("text, why", [("local:0", "local:N needs N from 1"), ("local:-2", "local:N needs N"),
                                       ("local:99999", "local:N needs N"), ("local", "local:N needs N"),
                                       ("local:two", "local:N needs N"), ("nonsense", "neither local:N nor"),
                                       ("tcp://host", "neither local:N nor"), ("host:8786; rm -rf /", "neither"),
                                       ("\x1b[31mred:1", "neither"), ("tcp://[::1", "neither"),
                                       ("tls://127.0.0.1:1", "neither"), ("ucx://127.0.0.1:1", "neither"),
                                       ("tcp://127.0.0.1:99999", "neither"), ("tcp://127.0.0.1:0", "neither")])
def test_bad_scheduler_is_one_line_and_exit_2(text, why):
    r = cli_in_process("sweep", PRONOUN, "--seeds", "2", "--scheduler", text)
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "\x1b" not in r.stderr.replace("\\x1b", "")


def test_without_dask_the_scheduler_option_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an environment without the extra has
    r = cli_in_process("sweep", PRONOUN, "--seeds", "2", "--scheduler", "local:2")
    assert r.returncode == 2 and "pip install 'assocmem[dask]'" in r.stderr and len(r.stderr.splitlines()) == 1
    assert cli_in_process("sweep", PRONOUN, "--seeds", "2").returncode == 0  # the local sweep needs no Dask


def test_an_unreachable_scheduler_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_S", 2)
    start = time.monotonic()
    r = cli_in_process("sweep", PRONOUN, "--seeds", "2", "--scheduler", "tcp://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and time.monotonic() - start < 30


def test_an_unknown_backend_with_a_scheduler_is_refused_before_connecting():
    r = cli_in_process("sweep", PRONOUN, "--seeds", "2", "--scheduler", "tcp://127.0.0.1:9", "--backend", "nmupy")
    assert r.returncode == 2 and "unknown backend 'nmupy'" in r.stderr


# ---------------------------------------------------------------------------------------------------- a real cluster

@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes of one thread on 127.0.0.1 (the dashboard too, on a free port), as `--scheduler local:2` starts them."""
    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address="127.0.0.1:0", preload=["assocmem.cluster"], timeout=60)
    client = distributed.Client(local, timeout=60)
    yield local, client
    client.close(timeout=30)
    local.close(timeout=30)


def test_on_dask_the_margins_are_the_local_sweeps_bit_for_bit(dask_cluster, small_blocks):
    _, client = dask_cluster
    local = sweep(INDUCTION, seeds=range(3, 17), dims=[32, 64])
    # ours, and Dask's own concurrent.futures executor: sweep() takes any
    for blocks_per_task, executor in ((1, cluster.TaskExecutor(client)), (4, client.get_executor(pure=False))):
        got = bounded(lambda: sweep(INDUCTION, seeds=range(3, 17), dims=[32, 64], blocks_per_task=blocks_per_task,
                                    executor=executor))
        assert got.complete and same_cells(got, local), blocks_per_task
    workers = client.run(os.getpid)
    assert len(set(workers.values()) | {os.getpid()}) == 3  # it really ran in two other processes


def test_on_dask_the_cupy_backend_gives_the_local_cupy_sweeps_margins(dask_cluster, small_blocks):
    """The GPU variant (one worker per GPU is dask-cuda's job; here both workers share one): where a GPU is lent."""
    try:
        from assocmem.backends.cupy_backend import CupyBackend
        CupyBackend.load()
    except Exception as err:  # no CuPy, no GPU
        pytest.skip(f"cupy backend: {err}")
    _, client = dask_cluster
    local = sweep(INDUCTION, seeds=10, dims=[64], backend="cupy")
    got = bounded(lambda: sweep(INDUCTION, seeds=10, dims=[64], backend="cupy", executor=cluster.TaskExecutor(client)))
    assert same_cells(got, local)


def test_connect_to_an_address_gives_each_task_the_cores_over_the_threads_its_machine_runs(dask_cluster):
    local, _ = dask_cluster
    with cluster.connect(local.scheduler_address) as c:
        assert c.local is None and c.threads.func is cluster.threads_here
        assert c.threads.args[0] == {"127.0.0.1": max(1, cluster.usable_cores() // 2)}
        got = bounded(lambda: sweep(PRONOUN, seeds=5, dims=[16], executor=c.executor, task_threads=c.threads))
        about = c.describe(got)
    assert same_cells(got, sweep(PRONOUN, seeds=5, dims=[16]))
    assert about["workers"] == 2 and about["threads_per_worker"] == [1] and len(about["peak_memory_mib"]) == 2
    assert all(m > 10 for m in about["peak_memory_mib"].values()) and about["seed_cells_per_s"] > 0


def test_a_task_that_keeps_killing_its_worker_is_one_line(dask_cluster):
    local, _ = dask_cluster
    with pytest.raises(InputError, match="lost its worker 4 times.*lower --max-memory"):
        with cluster.connect(local.scheduler_address):
            raise distributed.KilledWorker("task", SimpleNamespace(address="tcp://127.0.0.1:1"), allowed_failures=3)


def test_a_worker_killed_mid_sweep_loses_no_result(small_blocks):
    """SIGKILL a worker that holds tasks; the scheduler gives them to the other (and the nanny restarts it)."""
    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address="127.0.0.1:0", preload=["assocmem.cluster"], timeout=60)
    client = distributed.Client(local, timeout=60)
    try:
        killed = []

        def kill_one(n):
            if killed:
                return
            held = client.processing()
            victim = max(held, key=lambda a: len(held[a]))  # the worker holding the most tasks
            pid = client.run(os.getpid, workers=[victim])[victim]
            holding = len(client.processing().get(victim, ()))  # counted before the kill: after it, the scheduler
            os.kill(pid, signal.SIGKILL)                        # may already have handed them on
            killed.append((victim, pid, holding))

        want = sweep(PRONOUN, seeds=60, dims=[256])
        got = bounded(lambda: sweep(PRONOUN, seeds=60, dims=[256], executor=cluster.TaskExecutor(client),
                                    on_step=kill_one))
        (victim, pid, held), = killed
        assert held >= 1  # it died holding work
        assert got.complete and same_cells(got, want)
        client.wait_for_workers(2, timeout=WAIT_S)
        assert pid not in client.run(os.getpid).values()
    finally:
        client.close(timeout=30)
        local.close(timeout=30)


def test_interrupting_a_dask_sweep_cancels_what_is_left_and_keeps_what_finished(dask_cluster, small_blocks, caplog):
    _, client = dask_cluster
    steps = []

    def stop(n):
        steps.append(n)
        raise KeyboardInterrupt

    got = bounded(lambda: sweep(PRONOUN, seeds=90, dims=[256, 512], executor=cluster.TaskExecutor(client),
                                on_step=stop))
    kept = [c for c in got.cells if c.margins is not None]
    assert not got.complete and steps == [3] and 3 <= sum(len(c.seeds) for c in kept) < 180
    for c in kept:  # whatever finished in the same moment is kept too, each block whole and exact
        assert len(c.seeds) % 3 == 0 and same(c.margins, sweep(PRONOUN, seeds=c.seeds, dims=[c.dim]).cells[0].margins)
    deadline = time.monotonic() + 30  # the rest are cancelled, not run: the cluster goes idle
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(client.processing().values())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # and quietly: no traceback logged


def test_cli_with_scheduler_gives_the_same_json_and_says_where_it_ran():
    args = ["sweep", INDUCTION, "--seeds", "70", "--dims", "32,64", "--json"]
    local = cli_in_process(*args)
    dask = cli_in_process(*args, "--scheduler", "local:2")
    assert local.returncode == dask.returncode == 0, dask.stderr
    got = json.loads(dask.stdout)
    about = got.pop("scheduler")
    assert got == json.loads(local.stdout)
    assert about["address"] == "local:2" and about["workers"] == 2 and about["threads_per_worker"] == [1]
    assert about["task_threads"] == max(1, cluster.usable_cores() // 2) and len(about["peak_memory_mib"]) == 2


def test_ctrl_c_in_the_terminal_stops_a_dask_sweep_and_reports_what_finished():
    """SIGINT to the whole process group, as a terminal sends it: the worker processes get it too and ignore it;
    the sweep cancels, closes its cluster, prints what finished and exits 130, without a traceback."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "assocmem.cli", "sweep", str(PRONOUN), "--seeds", "100000",
                             "--dims", "64", "--scheduler", "local:2", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _cpu_seconds(_children(proc.pid)) < 8 and time.monotonic() < deadline:  # the workers are at work:
            time.sleep(0.2)  # starting takes each about a second of CPU, the rest is tasks of about 0.05 s
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; reporting the seeds finished so far" in err
    data = json.loads(out)
    assert data["complete"] is False and 0 < data["cells"][0]["accuracy"] <= 1


def _cpu_seconds(pids) -> float:
    """The CPU time the processes have used so far (user and system)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children(pid: int) -> list[int]:
    """The processes `pid` started, from any of its threads (the cluster's start its workers from another)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out
