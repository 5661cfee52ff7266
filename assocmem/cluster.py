"""Sweeps on a Dask cluster: a LocalCluster of N worker processes on loopback, or a running scheduler's address."""
from __future__ import annotations

import logging
import re
import resource
import signal
import sys
import threading
import time
from concurrent.futures import CancelledError, Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator

from assocmem.cores import usable_cores
from assocmem.errors import InputError

# local:N may start at most this many worker processes (each imports numpy and holds a pass of the sweep).
MAX_LOCAL_WORKERS = 256
# Seconds to reach a scheduler, start a local cluster, or close either, before saying so in one line.
CONNECT_S, CLOSE_S = 30, 20
INSTALL = "pip install 'assocmem[dask]'"


@dataclass(frozen=True)
class Scheduler:
    """What --scheduler names: workers > 0 for a LocalCluster of that many processes, else a scheduler's address."""

    text: str
    workers: int = 0
    address: str | None = None


def parse_scheduler(text: str) -> Scheduler:
    """`local:N` or an address (`tcp://host:port`, `host:port`, `tls://...`); anything else is an InputError.

    >>> parse_scheduler("local:4").workers, parse_scheduler("tcp://10.0.0.5:8786").address
    (4, 'tcp://10.0.0.5:8786')
    """
    text = text.strip()
    if text.startswith("local"):
        match = re.fullmatch(r"local:(\d{1,6})", text)
        if not match or not 1 <= int(match[1]) <= MAX_LOCAL_WORKERS:
            raise InputError(f"--scheduler {text!r}: local:N needs N from 1 to {MAX_LOCAL_WORKERS}",
                             hint="e.g. local:4 for four worker processes on this machine")
        return Scheduler(text, workers=int(match[1]))
    # tcp:// only: tls:// needs certificates assocmem has no option for, ucx:// and inproc:// other packages or
    # this very process.  The host is a name, an IPv4 address or a bracketed IPv6 one; the port 1 to 65535.
    match = re.fullmatch(r"(?:tcp://)?([\w.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})", text)
    if not match or not 1 <= int(match[2]) <= 65535:
        raise InputError(f"--scheduler {text!r} is neither local:N nor a scheduler address (tcp://HOST:PORT)",
                         hint="e.g. local:4, or tcp://HOST:8786 as printed by `dask scheduler`")
    return Scheduler(text, address=text if text.startswith("tcp://") else f"tcp://{text}")


def dask_setup(worker) -> None:
    """Run in every worker process as it starts (a preload, so a restarted worker too): Ctrl-C in the terminal
    reaches the whole process group, and it is the sweep's to handle (cancel, report, close the cluster), not each
    worker's to die of with a traceback."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to set here
        pass


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a local cluster starts.  The worker processes it spawns inherit the ignoring (Python then
    leaves SIGINT ignored for good), so the terminal's Ctrl-C, which reaches the whole process group, cannot kill a
    worker mid-import with a traceback; dask_setup() covers workers restarted later.  A Ctrl-C in these few seconds
    is lost: blocking it instead would not keep it pending, since BLAS's own threads, started before with SIGINT
    unblocked, would take it and drop it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def threads_here(by_host: dict) -> int:
    """In a task: the numpy backend's threads on this worker's machine, from by_host (see Cluster.threads)."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    return by_host.get(get_address_host(get_worker().address), 1)


def peak_memory() -> int:
    """This process's peak resident memory in bytes: VmHWM of /proc/self/status where there is one, which starts
    afresh when a worker process execs (ru_maxrss does not on Linux: a worker spawned by a large process would
    report its parent's size); else ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class TaskExecutor(Executor):
    """A concurrent.futures.Executor on a Dask client whose futures can be cancelled quietly.  Dask's own
    (client.get_executor()) later tries to set the result of a future cancelled from this side, which logs an
    InvalidStateError traceback for every task a Ctrl-C cancels.  pure=False: every task runs, none is taken for
    another by a hash of its arguments."""

    def __init__(self, client):
        self.client = client

    def submit(self, fn, /, *args, **kwargs) -> Future:
        task = self.client.submit(fn, *args, pure=False, **kwargs)
        future = Future()
        future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        task.add_done_callback(partial(_settle, future))
        return future


def _settle(future: Future, task) -> None:
    """Hand a finished Dask task's outcome to its concurrent.futures twin, unless that was cancelled meanwhile."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(task.result())
    except BaseException as err:  # noqa: BLE001 - the task's own error, raised where the sweep waits; also a task
        future.set_exception(err)  # the cluster cancelled (a closed client, a restart), so the sweep does not wait on


@dataclass
class Cluster:
    """A connected client, its cluster where we started one, and how many threads a task may use."""

    scheduler: Scheduler
    client: object
    local: object = None
    threads: int | partial = 1
    ready: float = field(default_factory=time.perf_counter)  # when the cluster was up

    @property
    def executor(self) -> "TaskExecutor":
        return TaskExecutor(self.client)

    def workers(self) -> dict:
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def describe(self, result) -> dict:
        """What the JSON says about a sweep run here: the scheduler, the workers, the seed-cells finished a second
        since the cluster was ready (its start-up left out), and each worker's peak memory (a restarted worker's
        counts from its restart)."""
        seconds = time.perf_counter() - self.ready
        done = sum(len(c.seeds) for c in result.cells)
        workers = self.workers()
        try:
            peaks = self.client.run(peak_memory, on_error="return")
        except Exception:  # noqa: BLE001 - a figure we add, not one the sweep needs
            peaks = {}
        return {"address": self.scheduler.text, "workers": len(workers),
                "threads_per_worker": sorted({w["nthreads"] for w in workers.values()}),
                "task_threads": self.threads if isinstance(self.threads, int) else "usable cores / worker threads, per machine",
                "seconds": round(seconds, 3), "seed_cells_per_s": round(done / seconds, 1) if seconds > 0 else None,
                "peak_memory_mib": {a: round(p / 2**20, 1) for a, p in sorted(peaks.items()) if isinstance(p, int)}}


def _dask():
    try:
        import dask
        import distributed
    except ImportError as err:
        raise InputError(f"--scheduler needs Dask, which is not installed ({err.name} is missing)", hint=INSTALL) from None
    return dask, distributed


@contextmanager
def connect(text: str) -> Iterator[Cluster]:
    """A Cluster for --scheduler TEXT, closed on the way out (a local one with its worker processes).

    local:N: N worker processes of one thread each on 127.0.0.1, no dashboard; each task's numpy backend and each
    worker's BLAS get usable_cores() // N threads (at least 1), so they do not multiply.  An address: the cluster's
    own workers; a task's numpy backend gets its machine's usable cores over the threads all workers there run
    (BLAS keeps what the workers were started with: Dask's nanny sets 1).
    """
    scheduler = parse_scheduler(text)
    dask, distributed = _dask()
    # What the user needs comes back through the tasks (their errors, KilledWorker) and our one-line errors; Dask's own
    # logs would add a restarted worker's warning, or a heartbeat's traceback from a worker while the cluster closes.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    local = client = None
    try:
        if scheduler.workers:
            threads = max(1, usable_cores() // scheduler.workers)
            blas = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": blas}), _sigint_ignored():
                local = distributed.LocalCluster(n_workers=scheduler.workers, threads_per_worker=1, processes=True,
                                                 host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                                 silence_logs=logging.CRITICAL, preload=["assocmem.cluster"],
                                                 timeout=CONNECT_S)
            client = distributed.Client(local, timeout=CONNECT_S)
        else:
            client = distributed.Client(scheduler.address, timeout=CONNECT_S)
            threads = partial(threads_here, _threads_by_host(client))
    except BaseException as err:  # refused, timed out, a worker that would not start, or Ctrl-C held till it started
        for part in (client, local):
            if part is not None:
                part.close(timeout=CLOSE_S)
        if not isinstance(err, (OSError, TimeoutError, RuntimeError, ValueError)):
            raise
        where = f"the Dask scheduler at {scheduler.address}" if scheduler.address else "a local Dask cluster"
        raise InputError(f"cannot reach {where} within {CONNECT_S} s ({' '.join(str(err).split())[:200]})",
                         hint="is `dask scheduler` running there, and its port open?" if scheduler.address
                         else "lower N in local:N") from None
    cluster = Cluster(scheduler, client, local, threads)
    try:
        yield cluster
    except CancelledError as err:  # not ours: ours are cancelled only once the sweep stopped waiting on them
        raise InputError(f"the cluster cancelled a task of the sweep ({' '.join(str(err).split())[:200]})",
                         hint="was the scheduler restarted or closed meanwhile?") from None
    except distributed.KilledWorker as err:
        raise InputError(f"a task of the sweep lost its worker {dask.config.get('distributed.scheduler.allowed-failures') + 1} "
                         f"times ({' '.join(str(err).split())[:200]})",
                         hint="most often memory: lower --max-memory, or give the workers more") from None
    finally:
        client.close(timeout=CLOSE_S)
        if local is not None:
            local.close(timeout=CLOSE_S)


def _threads_by_host(client) -> dict:
    """Per machine of the cluster: its usable cores (the fewest any worker there reports) over the threads its
    workers run in all, at least 1."""
    from distributed.comm import get_address_host

    cores = client.run(usable_cores, on_error="return")
    hosts: dict = {}
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        host = get_address_host(address)
        have, threads = hosts.get(host, (None, 0))
        mine = cores.get(address)
        mine = mine if isinstance(mine, int) else 1
        hosts[host] = (mine if have is None else min(have, mine), threads + info["nthreads"])
    return {host: max(1, have // threads) for host, (have, threads) in hosts.items()}
