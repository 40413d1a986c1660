"""What else runs on the benchmark's host: a sampler of runnable tasks that are not the benchmark's own.

    with HostLoadSampler(interval_s=0.5) as sampler:   # a daemon thread
        ... the live run ...
    sampler.background_mean()   # mean runnable tasks of other processes over the samples

Every `interval_s` it scans the host's tasks (/proc/*/task/*/stat) for runnable ones (state R) that are not this
process's or its descendants' (the deployment it started: gateway, nodes) and sums their CFS weight in nice-0
equivalents (`NICE_WEIGHTS`: a nice -15 task counts ~28 tasks, since the kernel's fair scheduler shares the cores
by weight). The result is the background: other users' work competing for the same cores, recorded with each
run beside the load average (docs/real-fidelity.md). Linux only; elsewhere the sampler records nothing.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
# the kernel's sched_prio_to_weight, nice -20 .. 19 (nice 0 = 1024)
NICE_WEIGHTS = (88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904, 3906,
                3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56,
                45, 36, 29, 23, 18, 15)


def nice_weight(nice: int) -> float:
    """A task's CFS weight in nice-0 tasks."""
    return NICE_WEIGHTS[min(max(nice, -20), 19) + 20] / 1024.0


def parse_stat(stat: str) -> tuple[str, int]:
    """(state, nice) from a /proc/<pid>/task/<tid>/stat line (the comm may hold spaces and parentheses)."""
    rest = stat[stat.rfind(")") + 2:].split()
    return rest[0], int(rest[16])


def runnable_weight(exclude_pids: set[int]) -> float:
    """The summed nice-0 weight of every runnable task on the host outside `exclude_pids`' processes."""
    total = 0.0
    for proc in PROC.glob("[0-9]*"):
        if int(proc.name) in exclude_pids:
            continue
        for task in proc.glob("task/*"):
            try:
                state, nice = parse_stat((task / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
            if state == "R":
                total += nice_weight(nice)
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def own_pids(root_pid: int) -> list[int]:
    """`root_pid` and every descendant."""
    seen, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def runnable_tasks(pid: int) -> int:
    """Threads of `pid` in state R now."""
    count = 0
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:].startswith("R"):
            count += 1
    return count


def procs_running() -> int | None:
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class HostLoadSampler:
    """Samples the background runnable tasks in a daemon thread while it is entered."""

    def __init__(self, interval_s: float = 0.5, root_pid: int | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self.samples: list[float] = []
        self.times_s: list[float] = []  # seconds since the sampler was entered, one per sample
        self._start_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float | None:
        if procs_running() is None:
            return None
        return runnable_weight(set(own_pids(self.root_pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self.sample()
            if value is not None:
                self.times_s.append(time.monotonic() - self._start_s)
                self.samples.append(value)

    def __enter__(self) -> HostLoadSampler:
        self._start_s = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="host-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def background_mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None

    def series(self) -> list[tuple[float, float]]:
        """[(seconds since entered, background runnable tasks)], one per sample."""
        return list(zip(self.times_s, self.samples, strict=True))
