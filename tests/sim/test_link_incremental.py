"""The incremental link model against the O(flows) water-fill it replaced (tests/sim/reference_link.py):
random operation sequences (with and without release pauses, `set_release`) compared event by event, and whole
simulations compared record by record."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
import reference_link
from simkit import requests, small_deployment

import prfaas.sim.link as link_module
import prfaas.sim.simulator as simulator_module
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.link import SimLink
from prfaas.sim.run import simulate
from prfaas.workload.request import WorkloadRequest

HORIZON_S = 200.0


def _drive(link_cls: type, seed: int, *, pauses: bool = False
           ) -> tuple[list[tuple[int, float]], list[tuple[float, float, float, int]]]:
    """Random starts (capped and not), releases, aborts and capacity changes; returns deliveries and, after
    every operation, (goodput, rtt, bytes in flight, transfers in flight). `pauses`: also pauses of a capped flow's
    release (`set_release(flow, 0)`), each resumed later at the rate that releases the rest by its producer's new
    end (its remaining compute x a random factor, as a host-speed change would), where `release_all` moves to."""
    rng = random.Random(seed)
    loop = EventLoop()
    link = link_cls(loop, "l", capacity_gbps=rng.choice([1.0, 8.0, 40.0]), latency_s=0.003)
    delivered: list[tuple[int, float]] = []
    probes: list[tuple[float, float, float, int]] = []
    flows: list[Any] = []
    release_end_s: dict[int, float] = {}  # capped flow -> when its producer ends (its release_all)
    version: dict[int, int] = {}  # capped flow -> the valid release_all / resume event
    held: set[int] = set()  # aborted or paused: not paused (again)

    def probe() -> None:
        snap = link.snapshot()
        probes.append((snap.goodput_gbps, snap.rtt_ms or 0.0, float(snap.bytes_in_flight), snap.transfers_in_flight))

    def release_all(args: tuple[Any, int]) -> None:
        flow, v = args
        if version[flow.transfer_id] == v:
            link.release_all(flow)

    def resume(args: tuple[Any, float, float]) -> None:
        flow, left_bytes, left_s = args
        if flow.release_rate_bytes_per_s is not None and id(flow) in held:
            held.discard(id(flow))
            release_end_s[flow.transfer_id] = loop.now_s + left_s
            link.set_release(flow, left_bytes / left_s)
            loop.schedule(loop.now_s + left_s, EventPriority.COMPLETION, release_all,
                          (flow, version[flow.transfer_id]))
        probe()

    def pause(arg: float) -> None:
        pause_s, factor = rng.uniform(0.05, 3.0), rng.uniform(0.3, 3.0)
        capped = [f for f in flows if f.release_rate_bytes_per_s is not None and id(f) not in held]
        if not capped:
            return
        flow = capped[int(arg * len(capped))]
        left_s = release_end_s[flow.transfer_id] - loop.now_s
        left_bytes = flow.release_rate_bytes_per_s * left_s
        link.set_release(flow, 0.0)
        held.add(id(flow))
        version[flow.transfer_id] += 1
        loop.schedule(loop.now_s + pause_s, EventPriority.COMPLETION, resume, (flow, left_bytes, left_s * factor))

    def op(kind: str, arg: float) -> None:
        if kind == "start":
            capped = rng.random() < 0.6
            size = rng.uniform(1e6, 3e9)
            release = size / rng.uniform(0.2, 4.0) if capped else None
            flow = link.start(size, lambda f: delivered.append((f.transfer_id, loop.now_s)), release)
            flows.append(flow)
            if release is not None:
                release_end_s[flow.transfer_id], version[flow.transfer_id] = loop.now_s + size / release, 0
                loop.schedule(loop.now_s + size / release, EventPriority.COMPLETION, release_all, (flow, 0))
        elif kind == "abort" and flows:
            flow = flows[int(arg * len(flows))]
            link.abort(flow)
            held.add(id(flow))
        elif kind == "capacity":
            link.set_capacity(arg)
        elif kind == "pause":
            pause(arg)
        probe()

    kinds, weights = ["start", "abort", "capacity"], [0.85, 0.07, 0.08]
    if pauses:
        kinds, weights = [*kinds, "pause"], [0.6, 0.05, 0.07, 0.28]
    t = 0.0
    for _ in range(120):
        t += rng.expovariate(2.0)
        kind = rng.choices(kinds, weights)[0]
        arg = rng.choice([0.0, 0.5, 2.0, 10.0, 50.0]) if kind == "capacity" else rng.random()
        loop.schedule(t, EventPriority.ARRIVAL, lambda a, k=kind: op(k, a), arg)
    loop.schedule(t + 1.0, EventPriority.ARRIVAL, lambda _: op("capacity", 20.0), None)
    loop.run(until_s=t + 500.0)
    return delivered, probes


@pytest.mark.parametrize(("seed", "pauses"), [*((seed, False) for seed in range(12)),
                                               *((seed, True) for seed in range(12))])
def test_random_operations_match_the_reference_event_by_event(seed: int, pauses: bool) -> None:
    new_delivered, new_probes = _drive(SimLink, seed, pauses=pauses)
    old_delivered, old_probes = _drive(reference_link.SimLink, seed, pauses=pauses)
    assert [i for i, _ in new_delivered] == [i for i, _ in old_delivered]
    for (_, t_new), (_, t_old) in zip(new_delivered, old_delivered, strict=True):
        assert t_new == pytest.approx(t_old, rel=1e-9, abs=1e-9)
    assert len(new_probes) == len(old_probes)
    for new, old in zip(new_probes, old_probes, strict=True):
        assert new[0] == pytest.approx(old[0], rel=1e-6, abs=1e-6)  # goodput
        assert new[1] == pytest.approx(old[1], rel=1e-6, abs=1e-6)  # rtt
        assert new[2] == pytest.approx(old[2], rel=1e-9, abs=2.0)  # bytes in flight (int-truncated)
        assert new[3] == old[3]


def _records(monkeypatch: pytest.MonkeyPatch, module: object, capacity: float, seed: int) -> list[tuple]:
    monkeypatch.setattr(simulator_module, "SimLink", module.SimLink)  # type: ignore[attr-defined]
    monkeypatch.setattr(simulator_module, "Transfer", module.Transfer)  # type: ignore[attr-defined]
    rng = random.Random(seed)
    reqs = [WorkloadRequest(i, i * 0.05 + rng.random() * 0.05, rng.randint(200, 40_000), rng.randint(1, 30))
            for i in range(300)]
    script = [ScriptedEvent(5.0, ScriptKind.LINK_CAPACITY, link_id="prfaas->pd", capacity_gbps=capacity / 10),
              ScriptedEvent(9.0, ScriptKind.NODE_FAIL, instance_id="prfaas-0"),
              ScriptedEvent(12.0, ScriptKind.LINK_CAPACITY, link_id="prfaas->pd", capacity_gbps=capacity)]
    run = simulate(small_deployment(capacity_gbps=capacity), "prfaas-bandwidth-aware", reqs,
                   policy_config=PolicyConfig(threshold_tokens=8_000), script=script,
                   options=SimOptions(horizon_s=HORIZON_S))
    return [dataclasses.astuple(r) for r in run.records]


@pytest.mark.parametrize(("capacity", "seed"), [(0.5, 0), (2.0, 1), (10.0, 2)])
def test_whole_simulation_gives_the_same_records(monkeypatch: pytest.MonkeyPatch, capacity: float,
                                                 seed: int) -> None:
    new = _records(monkeypatch, link_module, capacity, seed)
    old = _records(monkeypatch, reference_link, capacity, seed)
    assert len(new) == len(old) == 300
    for a, b in zip(new, old, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float):
                assert x == pytest.approx(y, rel=1e-7, abs=1e-7)
            else:
                assert x == y


def test_requests_helper_still_used() -> None:  # keep simkit's helper exercised with the new link
    run = simulate(small_deployment(), "prfaas", requests([30_000, 500, 30_000]),
                   policy_config=PolicyConfig(threshold_tokens=8_000))
    assert all(r.is_ok for r in run.records)
