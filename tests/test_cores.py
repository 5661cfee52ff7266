"""usable_cores(): the affinity and the cgroup CPU quota (v2 cpu.max, v1 cfs quota), read from fake cgroup trees."""
import os

import pytest

from assocmem import cores
from assocmem.backends.numpy_backend import NumpyBackend


def tree(tmp_path, files: dict):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def many_cores(monkeypatch):
    """A process that may run on 64 cores, whatever this machine has."""
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(cores.os, "process_cpu_count", lambda: 64, raising=False)


V2 = {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cgroup.controllers": "cpu memory\n"}


@pytest.mark.parametrize("cpu_max, want", [("150000 100000\n", 2),   # docker --cpus 1.5: rounded up, as loky does
                                           ("400000 100000\n", 4),
                                           ("50000 100000\n", 1),    # half a core is still one
                                           ("max 100000\n", 64)])    # no limit
def test_cgroup_v2_cpu_max_bounds_the_cores(tmp_path, many_cores, cpu_max, want):
    root = tree(tmp_path, {**V2, "sys/fs/cgroup/cpu.max": cpu_max})
    assert cores.usable_cores(root) == want


def test_a_v2_limit_on_an_ancestor_counts_and_the_smallest_wins(tmp_path, many_cores):
    root = tree(tmp_path, {"proc/self/cgroup": "0::/kubepods.slice/pod1/ctr\n",
                           "sys/fs/cgroup/cgroup.controllers": "cpu\n",
                           "sys/fs/cgroup/kubepods.slice/cpu.max": "800000 100000\n",
                           "sys/fs/cgroup/kubepods.slice/pod1/cpu.max": "300000 100000\n",
                           "sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max": "max 100000\n"})
    assert cores.cgroup_quota(root) == 3.0 and cores.usable_cores(root) == 3


def test_a_hybrid_host_keeps_v2_under_unified(tmp_path, many_cores):
    root = tree(tmp_path, {"proc/self/cgroup": "1:cpu:/\n0::/job\n",
                           "sys/fs/cgroup/unified/job/cpu.max": "200000 100000\n",
                           "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
                           "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert cores.usable_cores(root) == 2


@pytest.mark.parametrize("controllers, mount", [("cpu,cpuacct", "cpu,cpuacct"), ("cpu", "cpu")])
def test_cgroup_v1_cfs_quota_bounds_the_cores(tmp_path, many_cores, controllers, mount):
    root = tree(tmp_path, {"proc/self/cgroup": f"5:memory:/docker/abc\n4:{controllers}:/docker/abc\n",
                           f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_quota_us": "250000\n",
                           f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cores.usable_cores(root) == 3


def test_v1_inside_a_container_whose_mount_lacks_the_host_path_reads_the_mount_root(tmp_path, many_cores):
    root = tree(tmp_path, {"proc/self/cgroup": "4:cpu,cpuacct:/docker/0123abcd\n",
                           "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                           "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cores.usable_cores(root) == 1


@pytest.mark.parametrize("files", [{}, {"proc/self/cgroup": "garbage\n"},
                                   {**V2, "sys/fs/cgroup/cpu.max": "not numbers\n"},
                                   {**V2, "sys/fs/cgroup/cpu.max": "0 0\n"},
                                   {"proc/self/cgroup": "4:cpu:/\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
                                    "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}],
                         ids=["no-cgroup", "garbage", "unreadable-cpu-max", "zero-period", "v1-unlimited"])
def test_no_limit_leaves_the_affinity(tmp_path, many_cores, files):
    assert cores.cgroup_quota(tree(tmp_path, files)) is None
    assert cores.usable_cores(tree(tmp_path, files)) == 64


def test_the_affinity_bounds_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cores.os, "process_cpu_count", lambda: 2, raising=False)
    assert cores.usable_cores(tree(tmp_path, {**V2, "sys/fs/cgroup/cpu.max": "800000 100000\n"})) == 2


def test_the_numpy_backend_starts_as_many_threads_as_usable_cores(monkeypatch):
    monkeypatch.setattr("assocmem.backends.numpy_backend.usable_cores", lambda: 3)
    assert NumpyBackend().threads == 3 and NumpyBackend(threads=1).threads == 1


def test_this_machine_has_at_least_one_usable_core_and_no_more_than_it_has():
    assert 1 <= cores.usable_cores() <= (os.cpu_count() or 1)
