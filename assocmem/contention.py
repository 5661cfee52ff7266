"""When a measurement was made on a busy machine: its pairs spread, or other processes took CPU time meanwhile."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

# A pair ratio's spread shows a machine whose speed changed from round to round; a job that loads one core for the
# whole measurement slows every round alike and can move a ratio by a third with a spread of a few per cent, so the
# CPU time every other process (and the hypervisor, as steal) took is read from /proc/stat (Linux; elsewhere None).
#
# Pair ratios whose interquartile range exceeds this share of their median: the machine's speed changed from round to
# round, and the figure is flagged.  On the quiet 2-core VM (other processes under 1 % of the machine) the two-thread
# recipe's pairs spread 8-21 %: its blocks on both cores jitter.  A job beside the bench, which slows every round
# alike, is seen directly instead (BUSY_OTHERS).
BUSY_SPREAD = 0.25
# A measurement during which other processes took more than this share of the machine's CPU time was made on a busy
# machine, whatever its spread (a job on one core of two, beside a two-thread measurement: 0.3; a quiet machine: 0.003).
BUSY_OTHERS = 0.05
# /proc/stat counts in clock ticks (10 ms): a reading over less than this many seconds is too coarse to tell.
MIN_SECONDS = 1.0
# /proc/stat's first line: cpu user nice system idle iowait irq softirq steal guest guest_nice (in clock ticks;
# guest time is already counted in user).  Busy is all of it but idle and iowait.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def machine_busy_seconds() -> float | None:
    """CPU seconds every CPU of the machine has been busy since boot (all processes, the kernel, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        ticks = [int(x) for x in fields[1:]]
        return sum(ticks[i] for i in BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def own_seconds() -> float:
    """CPU seconds of this process (all its threads) and of the children it has reaped (a Dask cluster closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Contention:
    """`with Contention() as c:` around a measurement; then c.others is the share of the machine's CPU time that
    something other than this process took meanwhile (0: nothing else ran; 0.5 on two cores: one core's worth),
    or None where /proc/stat cannot be read or the measurement took under MIN_SECONDS."""

    others: float | None = None

    def __enter__(self) -> "Contention":
        self._start = (machine_busy_seconds(), own_seconds(), time.monotonic())
        return self

    def __exit__(self, *exc) -> None:
        busy, own, wall = machine_busy_seconds(), own_seconds(), time.monotonic()
        busy0, own0, wall0 = self._start
        cores = os.cpu_count() or 1  # /proc/stat counts every CPU of the machine, not only those this process may use
        if busy is None or busy0 is None or wall - wall0 < MIN_SECONDS:
            return
        self.others = max(0.0, min(1.0, ((busy - busy0) - (own - own0)) / ((wall - wall0) * cores)))
