"""Processor sharing of a host's cores (`sim.host_share` + the servers' rescale hook)."""

from __future__ import annotations

import pytest
from simkit import FixedStep, LinearPrefill, small_deployment

from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import SimOptions
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.host_share import HostShare, HostSpec, host_shares, share_speed
from prfaas.sim.request import SimRequest
from prfaas.sim.run import simulate
from prfaas.sim.servers import DecodeServer, PrefillServer
from prfaas.workload.arrivals import PoissonArrivals
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.request import WorkloadRequest


def _req(i: int, n: int = 1000, out: int = 10) -> SimRequest:
    return SimRequest(WorkloadRequest(i, 0.0, n, out))


def _prefill(loop: EventLoop, host: HostShare | None, done: dict[int, float]) -> PrefillServer:
    return PrefillServer(loop, LinearPrefill(a=0.0, b=1e-3), lambda r: None, lambda r, d: None,
                         lambda r: done.__setitem__(r.request_id, loop.now_s), host)


def test_share_speed_is_cores_over_busy_beyond_the_cores() -> None:
    assert share_speed(2, 0) == 1.0 and share_speed(2, 2) == 1.0
    assert share_speed(2, 3) == pytest.approx(2 / 3)
    assert share_speed(2, 4) == pytest.approx(0.5)


def test_two_cores_three_prefills_each_run_at_two_thirds() -> None:
    loop = EventLoop()
    host = HostShare(2)
    done: dict[int, float] = {}
    servers = [_prefill(loop, host, done) for _ in range(3)]
    for i, srv in enumerate(servers):
        srv.enqueue(_req(i, 1000))  # 1 s of nominal work each
    assert [s.speed for s in servers] == [pytest.approx(2 / 3)] * 3
    loop.run()
    assert done == {0: pytest.approx(1.5), 1: pytest.approx(1.5), 2: pytest.approx(1.5)}
    assert host.num_busy == 0


def test_a_job_leaving_speeds_the_others_up() -> None:
    # 2 cores; A (1 s) and B (3 s) start at 0, C (1 s) joins at 0.5 s. 0-0.5: 2 busy, speed 1 (A 0.5 left, B 2.5).
    # 0.5-1.25: 3 busy, speed 2/3: A finishes after 0.5 / (2/3) = 0.75 s at 1.25 s; B has 2.0 left, C 0.5 left.
    # from 1.25: 2 busy, speed 1: C at 1.75 s, B at 3.25 s.
    loop = EventLoop()
    host = HostShare(2)
    done: dict[int, float] = {}
    a, b, c = (_prefill(loop, host, done) for _ in range(3))
    a.enqueue(_req(0, 1000))
    b.enqueue(_req(1, 3000))
    loop.schedule(0.5, EventPriority.ARRIVAL, lambda _: c.enqueue(_req(2, 1000)))
    loop.run()
    assert done == {0: pytest.approx(1.25), 1: pytest.approx(3.25), 2: pytest.approx(1.75)}


def test_a_decode_batch_shares_the_host_with_prefills() -> None:
    # 1 core: a decode batch (10 steps of 0.1 s) and a 1 s prefill start together: both at speed 1/2.
    # The prefill ends at 2.0 s (1 s of work at 1/2); the decode has done 10 steps by then, i.e. at 2.0 s too.
    loop = EventLoop()
    host = HostShare(1)
    done: dict[int, float] = {}
    dec = DecodeServer(loop, FixedStep(0.1), max_batch=4, on_join=lambda r: None,
                       on_done=lambda r: done.__setitem__(r.request_id, loop.now_s), host=host)
    pre = _prefill(loop, host, done)
    dec.admit(_req(0, out=20))  # 20 steps: 10 shared (2 s), then 10 alone (1 s)
    pre.enqueue(_req(1, 1000))
    loop.run()
    assert done[1] == pytest.approx(2.0)
    assert done[0] == pytest.approx(3.0)


def test_failing_a_busy_server_frees_its_share() -> None:
    loop = EventLoop()
    host = HostShare(1)
    done: dict[int, float] = {}
    a, b = _prefill(loop, host, done), _prefill(loop, host, done)
    a.enqueue(_req(0, 1000))
    b.enqueue(_req(1, 1000))
    loop.schedule(1.0, EventPriority.ARRIVAL, lambda _: b.fail())  # a did 0.5 s of work by 1.0 s
    loop.run()
    assert done == {0: pytest.approx(1.5)}


def test_host_specs_validate_and_map_instances() -> None:
    with pytest.raises(ValueError, match="cores"):
        HostSpec(0)
    with pytest.raises(ValueError, match="unknown instance"):
        host_shares([HostSpec(2, ("nope",))], ["a", "b"])
    with pytest.raises(ValueError, match="two hosts"):
        host_shares([HostSpec(2, ("a",)), HostSpec(2, ("a", "b"))], ["a", "b"])
    shares = host_shares([HostSpec(2)], ["a", "b"])
    assert shares["a"] is shares["b"] and shares["a"].cores == 2


def _workload() -> list[WorkloadRequest]:
    return synthetic_requests(truncated_lognormal(8.5, 1.0, 128, 40000), 40, PoissonArrivals(5.0), duration_s=60,
                              seed=3)


@pytest.mark.parametrize("policy", ["homogeneous", "prfaas", "prfaas-bandwidth-aware"])
def test_records_are_identical_with_the_option_off_or_enough_cores(policy: str) -> None:
    dep = small_deployment()
    cfg = PolicyConfig(threshold_tokens=4000)
    base = simulate(dep, policy, _workload(), policy_config=cfg).records
    ample = SimOptions(hosts=(HostSpec(cores=len(dep.nodes)),))  # never more busy than cores: speed 1 always
    assert simulate(dep, policy, _workload(), policy_config=cfg, options=ample).records == base
    shared = simulate(dep, policy, _workload(), policy_config=cfg, options=SimOptions(hosts=(HostSpec(cores=1),)))
    mean = lambda recs: sum(r.ttft_s for r in recs) / len(recs)  # noqa: E731
    assert mean(shared.records) > mean(base)  # one core for six nodes: slower


def test_background_tasks_and_the_reference_speed_scale_the_share() -> None:
    # 2 cores, 2 background tasks; costs measured one at a time under the same background: reference 2/3.
    # Two busy servers: 2 / (2 + 2) = 1/2 each, relative to the reference: 3/4. A 1 s prefill takes 4/3 s.
    loop = EventLoop()
    spec = HostSpec(2, background_tasks=2.0, reference_speed=share_speed(2, 1 + 2.0))
    host = host_shares([spec], ["a"])["a"]
    done: dict[int, float] = {}
    a, b = _prefill(loop, host, done), _prefill(loop, host, done)
    a.enqueue(_req(0, 1000))
    assert a.speed == pytest.approx(1.0)  # alone, as measured
    b.enqueue(_req(1, 1000))
    assert a.speed == pytest.approx(0.75) and b.speed == pytest.approx(0.75)
    loop.run()
    assert done == {0: pytest.approx(4 / 3), 1: pytest.approx(4 / 3)}
    with pytest.raises(ValueError, match="background"):
        HostSpec(2, background_tasks=-1.0)


def test_a_background_schedule_rescales_the_running_work_when_it_changes() -> None:
    # 1 core; a 1 s prefill alone (speed 1) until 0.5 s, then one background task: speed 1/2 -> 0.5 s of work
    # left takes 1 s: done at 1.5 s
    loop = EventLoop()
    host = host_shares([HostSpec(1, background_schedule=((0.5, 1.0),))], ["a"], loop)["a"]
    done: dict[int, float] = {}
    _prefill(loop, host, done).enqueue(_req(0, 1000))
    loop.run()
    assert done == {0: pytest.approx(1.5)}
    with pytest.raises(ValueError, match="event loop"):
        host_shares([HostSpec(1, background_schedule=((0.5, 1.0),))], ["a"])
