"""How many cores this process may really use: the affinity, and the CPU quota of its cgroup (v2 or v1)."""
from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath


def usable_cores(root: str | os.PathLike = "/") -> int:
    """The fewest of: the cores the process may run on (os.process_cpu_count() where Python has it, 3.13+, which
    also honours PYTHON_CPU_COUNT; else the affinity, which taskset and cpusets narrow) and the CPU quota of its
    cgroup rounded up (Docker --cpus 1.5 and a Kubernetes limit of 1500m give 2), as loky counts them.  `root` is
    where /proc and /sys are found, so the tests can lay out fake cgroup files.

    >>> usable_cores() >= 1
    True
    """
    counted = getattr(os, "process_cpu_count", None)
    if counted is not None:
        cores = counted() or 1
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows: no affinity to read
            cores = os.cpu_count() or 1
    quota = cgroup_quota(root)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else max(1, cores)


def cgroup_quota(root: str | os.PathLike = "/") -> float | None:
    """The CPUs the process's cgroup may use per period (quota / period), None where there is no limit.

    A limit may sit on any ancestor of the process's own cgroup (a systemd slice, a pod), so every level from its
    own up to the mount's root is read and the smallest quota counts.  Inside a container the path in
    /proc/self/cgroup can name the host's hierarchy, which the container's mount does not have: then the levels
    that exist (the mount's root at least) are read.
    """
    root = Path(root)
    limits = []
    for version, path in _own_cgroups(root):
        if version == 2:
            mount = root / "sys/fs/cgroup"
            if not (mount / "cgroup.controllers").exists():  # a hybrid host keeps v2 at .../unified
                mount = mount / "unified"
            for level in _levels(mount, path):
                limits.append(_read_v2(level / "cpu.max"))
        else:
            for mount in (root / "sys/fs/cgroup/cpu", root / "sys/fs/cgroup/cpu,cpuacct"):
                for level in _levels(mount, path):
                    limits.append(_read_v1(level / "cpu.cfs_quota_us", level / "cpu.cfs_period_us"))
    limits = [q for q in limits if q is not None]
    return min(limits) if limits else None


def _own_cgroups(root: Path) -> list[tuple[int, str]]:
    """(version, path) of the process's cgroups that can limit the CPU: the v2 one (`0::/path`) and the v1 one
    whose controllers include cpu (`4:cpu,cpuacct:/path`)."""
    try:
        text = (root / "proc/self/cgroup").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            out.append((2, path))
        elif "cpu" in controllers.split(","):
            out.append((1, path))
    return out


def _levels(mount: Path, path: str) -> list[Path]:
    """The mount's directories from the process's own cgroup up to the mount's root, those that exist."""
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", "..", ".")]
    levels = [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [level for level in levels if level.is_dir()]


def _read_v2(path: Path) -> float | None:
    """cpu.max holds `QUOTA PERIOD` in microseconds, or `max PERIOD` for no limit."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _read_v1(quota: Path, period: Path) -> float | None:
    """cpu.cfs_quota_us is -1 for no limit."""
    try:
        return _ratio(int(quota.read_text()), int(period.read_text()))
    except (OSError, ValueError):
        return None


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None
