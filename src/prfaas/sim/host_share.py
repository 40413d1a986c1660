"""Processor sharing of one host's cores among the simulated instances that run on it (an option, off by default).

    hosts = host_shares(options.hosts, instance_ids)   # instance id -> its HostShare (only shared instances)
    speed = host.set_busy(server, True)                  # the server starts compute work; its speed now
    host.set_busy(server, False)                         # it has nothing to compute any more

A live deployment on one machine runs its nodes as processes on C cores (torch threads 1 each: a busy node keeps
one core busy). While n of a host's servers are compute-busy (a prefill running, or a decode batch that is not
empty), each progresses at speed min(1, C / n): processor sharing, the fluid model of the kernel's fair
scheduler. Costs stay in nominal seconds (the profile's, measured alone): a prefill of cost d started at speed
s is due after d / s if the busy set stays put, and every change of the busy set makes the host call
`rescale(new_speed)` on each other busy server, which first accrues the work done at the old speed up to now
and then reschedules what is left at the new one. With no `HostSpec` every server runs at speed 1.0 and the
servers take exactly their unshared code path (the records are identical, tests/sim/test_host_share.py).

C is a measured input (the cores of the machine that ran live, recorded with the run); which instances share a
host comes from the live deployment (every node on the one machine for `prfaas bench` on one host).

Other work on the host (optional, both measured): `background_tasks` b, the mean runnable tasks of other
processes during the run (`bench.host_load`), competes for the same cores, so n busy servers each get
min(1, C / (n + b)); `reference_speed` is the speed at which the cost profile was measured (1.0 for a
profile measured on a dedicated core; min(1, C / (1 + b_cal)) for costs measured one request at a time on
this host under a background of b_cal). The server's speed is the ratio of the two. `background_schedule`
[(time_s, b), ...] replaces the mean by the measured time series: at each time the busy servers are rescaled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from prfaas.sim.events import EventLoop, EventPriority


@dataclass(frozen=True, slots=True)
class HostSpec:
    """`cores` cores shared by the instances `instance_ids` (None: every instance of the deployment)."""

    cores: float
    instance_ids: tuple[str, ...] | None = None
    name: str = "host"
    background_tasks: float = 0.0  # other processes' runnable tasks on the host (mean, measured)
    reference_speed: float = 1.0  # the speed the cost profile was measured at (see the module docstring)
    background_schedule: tuple[tuple[float, float], ...] = ()  # (time_s, runnable tasks from then), measured

    def __post_init__(self) -> None:
        if not self.cores > 0:
            raise ValueError(f"host {self.name}: cores must be > 0, got {self.cores}")
        if self.background_tasks < 0 or not self.reference_speed > 0:
            raise ValueError(f"host {self.name}: background_tasks must be >= 0 and reference_speed > 0")
        if any(t < 0 or b < 0 for t, b in self.background_schedule):
            raise ValueError(f"host {self.name}: background_schedule needs times and tasks >= 0")
        if self.instance_ids is not None and len(set(self.instance_ids)) != len(self.instance_ids):
            raise ValueError(f"host {self.name}: an instance is listed twice")


class SharedServer(Protocol):
    def rescale(self, speed: float) -> None:
        """Accrue the work done since the last change at the old speed, then continue at `speed`."""


def share_speed(cores: float, num_busy: float) -> float:
    """Each busy task's speed when `num_busy` share `cores` cores (1.0 while they fit)."""
    if num_busy <= cores:
        return 1.0
    return cores / num_busy


class HostShare:
    """The busy servers of one host. Membership changes rescale the others (in the order they became busy)."""

    __slots__ = ("_busy", "background_tasks", "cores", "name", "reference_speed")

    def __init__(self, cores: float, name: str = "host", background_tasks: float = 0.0,
                 reference_speed: float = 1.0) -> None:
        if not cores > 0:
            raise ValueError(f"host {name}: cores must be > 0, got {cores}")
        self.cores = cores
        self.name = name
        self.background_tasks = background_tasks
        self.reference_speed = reference_speed
        self._busy: dict[int, SharedServer] = {}

    @property
    def num_busy(self) -> int:
        return len(self._busy)

    @property
    def speed(self) -> float:
        if self.background_tasks == 0.0 and self.reference_speed == 1.0:
            return share_speed(self.cores, len(self._busy))
        return share_speed(self.cores, len(self._busy) + self.background_tasks) / self.reference_speed

    def set_busy(self, server: SharedServer, busy: bool) -> float:
        """Mark `server` busy or idle; if that changes every busy server's speed, rescale the others. Returns the
        speed `server` runs at now (1.0 when it went idle)."""
        key = id(server)
        if busy == (key in self._busy):
            return self.speed if busy else 1.0
        old = self.speed
        if busy:
            self._busy[key] = server
        else:
            del self._busy[key]
        new = self.speed
        if new != old:
            for other_key, other in list(self._busy.items()):
                if other_key != key:
                    other.rescale(new)
        return new if busy else 1.0

    def set_background(self, background_tasks: float) -> None:
        """Other processes' runnable tasks changed: every busy server continues at the new speed."""
        old = self.speed
        self.background_tasks = background_tasks
        new = self.speed
        if new != old:
            for server in list(self._busy.values()):
                server.rescale(new)


def host_shares(hosts: Iterable[HostSpec], instance_ids: Iterable[str],
                loop: EventLoop | None = None) -> dict[str, HostShare]:
    """Instance id -> the HostShare it runs on, for every instance some `HostSpec` names (or all, for None).
    A background schedule is put on `loop` (scripted events)."""
    ids = list(instance_ids)
    out: dict[str, HostShare] = {}
    for spec in hosts:
        share = HostShare(spec.cores, spec.name, spec.background_tasks, spec.reference_speed)
        if spec.background_schedule:
            if loop is None:
                raise ValueError(f"host {spec.name}: a background schedule needs the event loop")
            for time_s, tasks in spec.background_schedule:
                loop.schedule(time_s, EventPriority.SCRIPTED, share.set_background, tasks)
        members = ids if spec.instance_ids is None else list(spec.instance_ids)
        for instance_id in members:
            if instance_id not in ids:
                raise ValueError(f"host {spec.name}: unknown instance {instance_id!r}")
            if instance_id in out:
                raise ValueError(f"instance {instance_id!r} is on two hosts")
            out[instance_id] = share
    return out
