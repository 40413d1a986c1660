"""The incremental link model against the O(flows) water-fill it replaced (tests/sim/reference_link.py):
random operation sequences compared event by event, and whole simulations compared record by record."""

from __future__ import annotations

import dataclasses
import random

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


def _drive(link_cls: type, seed: int) -> tuple[list[tuple[int, float]], list[tuple[float, float, float, int]]]:
    """Random starts (capped and not), releases, aborts and capacity changes; returns deliveries and, after
    every operation, (goodput, rtt, bytes in flight, transfers in flight)."""
    rng = random.Random(seed)
    loop = EventLoop()
    link = link_cls(loop, "l", capacity_gbps=rng.choice([1.0, 8.0, 40.0]), latency_s=0.003)
    delivered: list[tuple[int, float]] = []
    probes: list[tuple[float, float, float, int]] = []
    flows: list[object] = []

    def probe() -> None:
        snap = link.snapshot()
        probes.append((snap.goodput_gbps, snap.rtt_ms or 0.0, float(snap.bytes_in_flight), snap.transfers_in_flight))

    def op(kind: str, arg: float) -> None:
        if kind == "start":
            capped = rng.random() < 0.6
            size = rng.uniform(1e6, 3e9)
            release = size / rng.uniform(0.2, 4.0) if capped else None
            flow = link.start(size, lambda f: delivered.append((f.transfer_id, loop.now_s)), release)
            flows.append(flow)
            if capped:
                loop.schedule(loop.now_s + size / release, EventPriority.COMPLETION, lambda _: link.release_all(flow))
        elif kind == "abort" and flows:
            link.abort(flows[int(arg * len(flows))])
        elif kind == "capacity":
            link.set_capacity(arg)
        probe()

    t = 0.0
    for _ in range(120):
        t += rng.expovariate(2.0)
        kind = rng.choices(["start", "abort", "capacity"], [0.85, 0.07, 0.08])[0]
        arg = rng.choice([0.0, 0.5, 2.0, 10.0, 50.0]) if kind == "capacity" else rng.random()
        loop.schedule(t, EventPriority.ARRIVAL, lambda a, k=kind: op(k, a), arg)
    loop.schedule(t + 1.0, EventPriority.ARRIVAL, lambda _: op("capacity", 20.0), None)
    loop.run(until_s=t + 500.0)
    return delivered, probes


@pytest.mark.parametrize("seed", range(12))
def test_random_operations_match_the_reference_event_by_event(seed: int) -> None:
    new_delivered, new_probes = _drive(SimLink, seed)
    old_delivered, old_probes = _drive(reference_link.SimLink, seed)
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
