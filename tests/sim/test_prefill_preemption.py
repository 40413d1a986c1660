"""Prefill preemption in the simulator (`sim.servers.PrefillServer` with `sim.multisite_queue.FairPrefillQueue`,
`preempt=True`), as the live node does it (`serve.worker`): another region's queued job whose fair start tag is
below the running job's virtual finish tag, and whose region is less backlogged than the running job's
(`FairQueue.preempts`), pauses it at once, runs (itself pausable, at most `MAX_NESTED_JOBS` stacked), and the
paused job resumes with its remaining work; its state's layer-wise release pauses with it
(`SimLink.set_release`). Then a burst in one region, measured on a quiet region's offloaded TTFT."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

import msgspec
import numpy as np
import pytest
from multisite_kit import SCENARIOS
from simkit import FixedStep, LinearPrefill

from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology
from prfaas.policy.config import PolicyConfig
from prfaas.policy.fair_queue import MAX_NESTED_JOBS, FairQueue
from prfaas.sim.config import load_config
from prfaas.sim.deployment import ScriptedEvent, ScriptKind
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.host_share import HostShare
from prfaas.sim.link import SimLink
from prfaas.sim.multisite import MultiSiteSimulator
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_deployment import MultiSiteDeployment, MultiSiteRecord
from prfaas.sim.multisite_queue import FairPrefillQueue
from prfaas.sim.multisite_run import merge_regions, simulate_multisite
from prfaas.sim.request import SimRequest
from prfaas.sim.servers import PrefillServer
from prfaas.workload.request import WorkloadRequest

COST = LinearPrefill(a=0.0, b=1e-3)  # 1,000 tokens = 1 s


class Bench:
    """One prefill server whose queue is a fair queue over the regions in `region_of` (ids -> region).
    `preempt`: the queue's flag; `asks`: the server is given the queue as its `Preemption` (default: `preempt`)."""

    def __init__(self, *, preempt: bool = True, asks: bool | None = None, host: HostShare | None = None,
                 loop: EventLoop | None = None) -> None:
        self.loop = loop or EventLoop()
        self.region_of: dict[int, str] = {}
        self.done: dict[int, float] = {}
        self.events: list[tuple[str, int, float, float]] = []  # (kind, request, time, remaining s)
        self.queue = FairPrefillQueue(lambda r: self.region_of[r.request_id],
                                      lambda r: COST.t_prefill_s(r.uncached_tokens), preempt=preempt)
        self.srv = PrefillServer(self.loop, COST, lambda r: None, lambda r, d: None, self._on_done, host)
        self.srv.set_queue(self.queue, self.queue if (preempt if asks is None else asks) else None)
        self.srv.on_pause = lambda r: self.events.append(("pause", r.request_id, self.loop.now_s, 0.0))
        self.srv.on_resume = lambda r, left: self.events.append(("resume", r.request_id, self.loop.now_s, left))
        self.reqs: dict[int, SimRequest] = {}

    def _on_done(self, req: SimRequest) -> None:
        self.done[req.request_id] = self.loop.now_s

    def submit(self, at_s: float, request_id: int, region: str, seconds: float) -> None:
        req = SimRequest(WorkloadRequest(request_id, at_s, int(seconds * 1000), 1))
        self.region_of[request_id] = region
        self.reqs[request_id] = req
        self.loop.schedule(at_s, EventPriority.ARRIVAL, self.srv.enqueue, req)

    def run(self, until_s: float | None = None) -> None:
        self.loop.run(until_s=until_s)

    def assert_no_leak(self) -> None:
        assert self.srv.is_idle and self.srv.num_queued == 0 and self.srv.queued_tokens == 0
        assert not self.srv.paused and not self.queue._started and len(self.queue) == 0


def test_a_short_job_of_another_region_runs_at_once_and_the_long_one_resumes() -> None:
    b = Bench()
    b.submit(0.0, 0, "A", 10.0)
    b.submit(0.5, 2, "A", 1.0)  # A has a backlog behind its running job; B has none
    b.submit(2.0, 1, "B", 1.0)
    b.run(until_s=2.5)
    srv = b.srv
    assert srv.current is b.reqs[1] and srv.busy_until_s == pytest.approx(3.0)
    assert srv.num_queued == 2 and srv.queued_tokens == 11_000 and not srv.is_idle  # A is paused, not lost
    assert [(r.request_id, left) for r, left in srv.paused] == [(0, pytest.approx(8.0))]
    b.run()
    # B at arrival + cost; A at 10 + B's cost; A's next after it
    assert b.done == {1: pytest.approx(3.0), 0: pytest.approx(11.0), 2: pytest.approx(12.0)}
    assert b.reqs[1].prefill_start_s == pytest.approx(2.0) and b.reqs[0].prefill_start_s == 0.0
    assert b.events == [("pause", 0, 2.0, 0.0), ("resume", 0, pytest.approx(3.0), pytest.approx(8.0))]
    assert srv.preemptions_total == 1
    assert srv.busy_time_s(b.loop.now_s) == pytest.approx(12.0)
    b.assert_no_leak()


@pytest.mark.parametrize("second_region", ["A", "B"])
def test_a_region_never_preempts_itself_nor_a_region_without_a_backlog(second_region: str) -> None:
    """A: A's own next job waits (submission order). B: calm regions, A's lone job runs to its end although B's
    job would start first in the fair order (B is no less backlogged than A, which has nothing queued, and
    neither used the server before)."""
    b = Bench()
    b.submit(0.0, 0, "A", 10.0)
    b.submit(2.0, 1, second_region, 1.0)
    b.run()
    assert b.done == {0: pytest.approx(10.0), 1: pytest.approx(11.0)}
    assert b.events == [] and b.srv.preemptions_total == 0
    b.assert_no_leak()


def test_preemption_nests_and_unwinds_in_order() -> None:
    b = Bench()
    b.submit(0.0, 0, "A", 10.0)
    b.submit(0.5, 5, "A", 1.0)  # A's backlog
    b.submit(1.0, 1, "B", 4.0)  # pauses A
    b.submit(1.5, 3, "B", 1.0)  # B is on the stack: waits; it is B's backlog
    b.submit(2.0, 2, "C", 1.0)  # pauses B (C is in neither A's nor B's region, and has no backlog)
    b.run()
    assert b.done == {2: pytest.approx(3.0), 1: pytest.approx(6.0), 3: pytest.approx(7.0), 0: pytest.approx(16.0),
                      5: pytest.approx(17.0)}
    # when B's first job ends, A (paused) would resume, but B's second job's turn (start tag 4) comes before A's
    # finish tag (10): it runs nested in A's stack, then A resumes
    assert [e[:2] for e in b.events] == [("pause", 0), ("pause", 1), ("resume", 1), ("resume", 0)]
    assert b.reqs[3].prefill_start_s == pytest.approx(6.0)
    assert b.srv.preemptions_total == 3
    b.assert_no_leak()


def test_at_most_max_nested_jobs_are_stacked_then_the_next_runs_when_one_ends() -> None:
    b = Bench()
    b.submit(0.0, 0, "r0", 100.0)
    for k in range(MAX_NESTED_JOBS):  # each region a backlog: a 1 s job queued behind its first
        b.submit(k + 0.5, 100 + k, f"r{k}", 1.0)
    for k in range(1, MAX_NESTED_JOBS + 1):  # each of another region, each due before the running one ends
        b.submit(float(k), k, f"r{k}", 10.0)
    b.run(until_s=MAX_NESTED_JOBS + 0.5)
    assert len(b.srv.paused) == MAX_NESTED_JOBS - 1  # the stack is full: the last one waits in the queue
    assert len(b.queue) == 1 + MAX_NESTED_JOBS  # it and the backlogs
    b.run()
    last = MAX_NESTED_JOBS
    assert b.done[last - 1] == pytest.approx(last - 1 + 10.0)
    # when the top job ends the next paused one would resume, but the waiting job's turn comes first: nested
    assert b.reqs[last].prefill_start_s == pytest.approx(last - 1 + 10.0)
    assert b.done[last] == pytest.approx(last - 1 + 20.0)
    # all the work, nothing lost or redone: r0's own, every region's first job, and (nested in r0, whose
    # finish tag 100 comes after their start tags 10) the backlogs of r1..r7
    assert b.done[0] == pytest.approx(100.0 + 10.0 * MAX_NESTED_JOBS + (MAX_NESTED_JOBS - 1))
    assert b.done[100] == pytest.approx(b.done[0] + 1.0)  # r0's own backlog after r0
    assert b.srv.preemptions_total == 2 * MAX_NESTED_JOBS - 1
    b.assert_no_leak()


def test_no_preemption_when_the_start_tag_is_not_below_the_running_finish_tag() -> None:
    b = Bench()
    b.submit(0.0, 0, "B", 10.0)  # B used 10 s of virtual time: its next start tag is 10
    b.submit(10.0, 1, "A", 4.0)  # starts on an idle server at tag 0, finish tag 4
    b.submit(11.0, 2, "B", 1.0)  # start tag 10 >= 4: B is behind, it waits
    b.run()
    assert b.done == {0: pytest.approx(10.0), 1: pytest.approx(14.0), 2: pytest.approx(15.0)}
    assert b.srv.preemptions_total == 0
    b.assert_no_leak()


def test_fail_while_paused_returns_every_request() -> None:
    b = Bench()
    b.submit(0.0, 0, "A", 10.0)
    b.submit(0.5, 2, "A", 2.0)  # queued: A's backlog
    b.submit(1.0, 1, "B", 4.0)  # pauses A
    b.run(until_s=2.0)
    lost = b.srv.fail()
    assert [r.request_id for r in lost] == [1, 0, 2]  # running, paused, queued
    b.run()  # no stale completion fires
    assert b.done == {}
    b.assert_no_leak()


def test_pausing_respects_the_host_share_speed() -> None:
    """One core shared by this server and another (FCFS, no preemption): work accrues at the shared speed up to
    the pause, the preempting job runs at it, and the paused job resumes with exactly the work it had left."""
    loop = EventLoop()
    host = HostShare(1.0)
    b = Bench(host=host, loop=loop)
    other_done: dict[int, float] = {}
    other = PrefillServer(loop, COST, lambda r: None, lambda r, d: None,
                          lambda r: other_done.__setitem__(r.request_id, loop.now_s), host)
    b.submit(0.0, 0, "A", 10.0)  # alone at speed 1 until t=2: 2 s of work
    b.submit(0.5, 5, "A", 1.0)  # A's backlog (so that B may pause A's job)
    loop.schedule(2.0, EventPriority.ARRIVAL, other.enqueue, SimRequest(WorkloadRequest(9, 2.0, 4000, 1)))
    b.submit(4.0, 1, "B", 1.0)  # t=2..4 at speed 1/2: A has done 3 s, 7 s left
    b.run()
    # B: 1 s of work at 1/2 -> ends at 6; the other job: 1 s done by 4, 3 s left at 1/2 -> ends at 10;
    # A resumes at 6 at 1/2 (4 s wall left of the other job: 2 s of work), 5 s left at speed 1 -> ends at 15
    assert b.done == {1: pytest.approx(6.0), 0: pytest.approx(15.0), 5: pytest.approx(16.0)}
    assert other_done == {9: pytest.approx(10.0)}
    assert b.events[0] == ("pause", 0, 4.0, 0.0)
    assert b.events[1] == ("resume", 0, pytest.approx(6.0), pytest.approx(14.0))  # 7 s of work at speed 1/2
    assert host.num_busy == 0
    b.assert_no_leak()


def _schedule(jobs: Iterable[tuple[float, int, str, float]], preempt: bool, asks: bool) -> dict[int, float]:
    b = Bench(preempt=preempt, asks=asks)
    for at_s, rid, region, seconds in jobs:
        b.submit(at_s, rid, region, seconds)
    b.run()
    b.assert_no_leak()
    return b.done


def _fair_order_run_to_completion(jobs: list[tuple[float, int, str, float]]) -> dict[int, float]:
    """The reference: one server that, whenever it is free, starts the fair queue's next job and runs it to its end
    (an arrival at the instant a job ends is queued after that end, as the event loop orders them)."""
    fair: FairQueue[int] = FairQueue()
    seconds = {rid: COST.t_prefill_s(int(sec * 1000)) for _, rid, _, sec in jobs}
    done: dict[int, float] = {}
    now_s, i = 0.0, 0
    while i < len(jobs) or fair:
        if not fair:  # idle: the next arrival starts at once
            at_s, rid, region, _ = jobs[i]
            fair.push(rid, region, seconds[rid])
            now_s, i = max(now_s, at_s), i + 1
        rid, _ = fair.pop()
        now_s += seconds[rid]
        done[rid] = now_s
        while i < len(jobs) and jobs[i][0] < now_s:
            _, arrived, region, _ = jobs[i]
            fair.push(arrived, region, seconds[arrived])
            i += 1
    return done


def test_without_preemption_the_server_runs_the_fair_order_to_completion() -> None:
    rng = np.random.default_rng(7)
    jobs = [(float(t), k, f"r{rng.integers(3)}", float(rng.integers(1, 8)))
            for k, t in enumerate(np.sort(rng.uniform(0, 60, 40)).round(3))]
    off = _schedule(jobs, preempt=False, asks=False)
    assert off == _schedule(jobs, preempt=False, asks=True)  # a queue with preempt=False never says yield
    want = _fair_order_run_to_completion(jobs)
    assert off == {k: pytest.approx(v) for k, v in want.items()}
    on = _schedule(jobs, preempt=True, asks=True)
    assert on != off  # the case bites: with preemption the order changes
    assert max(on.values()) == pytest.approx(max(off.values()))  # the same work, no idle time added


# --- the link: a paused prefill releases no layer ---------------------------------------------------------------
def test_a_paused_release_sends_nothing_more_and_resumes_to_end_with_the_compute() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0, latency_s=0.0)  # 1e9 bytes/s
    delivered: dict[int, float] = {}
    flow = link.start(4e8, lambda f: delivered.__setitem__(f.transfer_id, loop.now_s), release_rate_bytes_per_s=1e8)
    probes: dict[str, tuple[float, float]] = {}

    def probe(name: str) -> None:
        probes[name] = (flow.sent_bytes, flow.released_bytes)

    loop.schedule(1.0, EventPriority.COMPLETION, lambda _: (probe("pause"), link.set_release(flow, 0.0)))
    loop.schedule(2.5, EventPriority.COMPLETION, lambda _: probe("paused"))
    # resume at 3 with 3 s of compute left: the rest (3e8) at 1e8 bytes/s; the producer ends at 6
    loop.schedule(3.0, EventPriority.COMPLETION,
                  lambda _: link.set_release(flow, (flow.total_bytes - flow.released_bytes) / 3.0))
    loop.schedule(6.0, EventPriority.COMPLETION, lambda _: link.release_all(flow))
    loop.run()
    assert probes["pause"] == (pytest.approx(1e8), pytest.approx(1e8))
    assert probes["paused"] == probes["pause"]  # nothing produced, nothing sent beyond what was released
    assert flow.last_byte_s == pytest.approx(6.0) and delivered == {flow.transfer_id: pytest.approx(6.0)}
    assert link.bytes_sent_total == pytest.approx(4e8)
    with pytest.raises(ValueError, match="already fully released"):
        link.set_release(flow, 0.0)


def test_a_flow_slowed_by_sharing_sends_no_more_than_it_released_while_paused() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0)  # 1e9 bytes/s shared by two flows
    slow = link.start(4e9, lambda f: None, release_rate_bytes_per_s=8e8)  # wants 0.8e9, gets 0.5e9
    other = link.start(4e9, lambda f: None)
    seen: list[tuple[float, float]] = []
    loop.schedule(1.0, EventPriority.COMPLETION, lambda _: link.set_release(slow, 0.0))
    for t in (1.0, 2.0):
        loop.schedule(t, EventPriority.ARRIVAL, lambda _: seen.append((slow.sent_bytes, slow.released_bytes)))
    loop.run(until_s=2.0)
    assert seen[0] == (pytest.approx(5e8), pytest.approx(8e8)) and seen[1] == seen[0]
    assert other.rate_bytes_per_s == pytest.approx(1e9)  # the paused flow's share goes to the other
    with pytest.raises(ValueError, match="finite and >= 0"):
        link.set_release(slow, -1.0)


# --- in the multi-site simulator -------------------------------------------------------------------------------
def _two_regions_one_instance(capacity_gbps: float = 400.0) -> MultiSiteDeployment:
    topo = check_topology(SiteTopology(
        prfaas=[PrfaasSite(name="P", instances=1)],
        pd=[PdSite(name=n, instances=2, prefill_instances=1, traffic_rps=1.0) for n in ("a", "b")],
        links=[SiteLink(prfaas="P", pd=n, capacity_gbps=capacity_gbps, latency_s=0.01) for n in ("a", "b")]))
    return MultiSiteDeployment(topo, LinearPrefill(a=0.0, b=1e-4, name="fast"), LinearPrefill(b=1e-3, name="slow"),
                               FixedStep(0.01), bs_max=4, cache_blocks=0)


class _Probe(MultiSiteSimulator):
    """Records, at each pause and resume, the request's state transfer: (what, time, sent, released bytes)."""

    log: ClassVar[list[tuple[str, int, float, float, float]]] = []

    def _on_prefill_pause(self, req: SimRequest) -> None:
        self._log("pause", req)
        super()._on_prefill_pause(req)

    def _on_prefill_resume(self, req: SimRequest, remaining_s: float) -> None:
        self._log("resume", req)
        super()._on_prefill_resume(req, remaining_s)

    def _log(self, what: str, req: SimRequest) -> None:
        flow = req.flow
        assert flow is not None and not isinstance(flow, bool)
        _Probe.log.append((what, req.request_id, self.loop.now_s, flow.sent_bytes, flow.released_bytes))


def _run_pair(monkeypatch: pytest.MonkeyPatch, preempt: bool) -> dict[int, MultiSiteRecord]:
    import prfaas.sim.multisite_run as run_module

    monkeypatch.setattr(run_module, "MultiSiteSimulator", _Probe)
    _Probe.log = []
    reqs, region_of = merge_regions({"a": [WorkloadRequest(0, 0.0, 40_000, 2), WorkloadRequest(1, 0.5, 20_000, 2)],
                                     "b": [WorkloadRequest(0, 1.0, 10_000, 2)]})
    result = simulate_multisite(_two_regions_one_instance(), "prfaas", reqs, region_of, selector=None,
                                policy_config=PolicyConfig(threshold_tokens=8_000), prefill_queue="node",
                                preempt_prefill=preempt)
    return {r.request_id: r for r in result.records}


def test_the_simulator_pauses_the_state_release_with_the_prefill(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _run_pair(monkeypatch, preempt=True)
    a, b = recs[0], recs[2]  # a's second request (1, queued behind a's first) is a's backlog
    assert a.is_offloaded and b.is_offloaded and a.prfaas_site == b.prfaas_site == "P"
    assert b.arrival_s == 1.0 and b.prefill_queue_s == pytest.approx(0.0) and b.prefill_s == pytest.approx(1.0)
    assert a.prefill_queue_s == pytest.approx(0.0) and a.prefill_s == pytest.approx(5.0)  # 4 s of work + b's 1 s
    (pause, rid_p, t_p, sent_p, rel_p), (resume, rid_r, t_r, sent_r, rel_r) = _Probe.log
    assert (pause, rid_p, resume, rid_r) == ("pause", 0, "resume", 0)
    assert (t_p, t_r) == (pytest.approx(1.0), pytest.approx(2.0))
    size = a.transfer_bytes
    assert rel_p == pytest.approx(size / 4) and sent_p == pytest.approx(rel_p)  # one of four seconds released
    assert sent_r == pytest.approx(sent_p) and rel_r == pytest.approx(rel_p)  # nothing produced, nothing sent
    # the rest is released over the remaining 3 s: the last byte leaves at the prefill's new end (+ latency)
    assert a.ttft_s == pytest.approx(5.0 + 0.01, abs=1e-6)


def test_without_preemption_the_simulator_runs_each_prefill_to_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _run_pair(monkeypatch, preempt=False)
    assert recs[0].prefill_s == pytest.approx(4.0)
    assert recs[2].prefill_queue_s == pytest.approx(3.0) and recs[2].prefill_s == pytest.approx(1.0)
    assert _Probe.log == []


def test_a_node_failure_while_a_prefill_is_paused_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import prfaas.sim.multisite_run as run_module

    monkeypatch.setattr(run_module, "MultiSiteSimulator", _Probe)
    _Probe.log = []
    reqs, region_of = merge_regions({"a": [WorkloadRequest(0, 0.0, 40_000, 2), WorkloadRequest(1, 0.5, 20_000, 2)],
                                     "b": [WorkloadRequest(0, 1.0, 10_000, 2)]})
    script = [ScriptedEvent(1.5, ScriptKind.NODE_FAIL, instance_id="P-0")]  # b running, a paused, a's next queued
    result = simulate_multisite(_two_regions_one_instance(), "prfaas", reqs, region_of, selector=None,
                                policy_config=PolicyConfig(threshold_tokens=8_000), prefill_queue="node",
                                script=script)
    assert [e[:2] for e in _Probe.log] == [("pause", 0)]
    assert [(r.is_ok, r.attempts, r.prfaas_site) for r in result.records] == [(True, 2, "")] * 3
    assert all(lk.transfers == 0 for lk in result.links.values())  # both state streams were aborted


# --- a burst in one region, a quiet region's offloads ----------------------------------------------------------
SEEDS = range(4)
WINDOW_S = (60.0, 840.0)  # x's burst


def _y_offloaded_ttfts(scenario: str, preempt: bool) -> list[float]:
    out: list[float] = []
    for seed in SEEDS:
        cfg = msgspec.structs.replace(load_config(SCENARIOS / scenario), seed=seed)
        inp = build_multisite_inputs(cfg)
        result = simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of,
                                    selector=inp.selector, selector_config=inp.selector_config,
                                    policy_config=inp.policy_config, script=inp.script, options=inp.options,
                                    prefill_queue=cfg.sites.prefill_queue, preempt_prefill=preempt)
        out += [r.ttft_s for r in result.records if r.region == "y" and r.prfaas_site and r.ttft_s is not None
                and WINDOW_S[0] <= r.arrival_s < WINDOW_S[1]]
    return out


def test_preemption_keeps_a_quiet_regions_offloaded_ttft_through_anothers_burst() -> None:
    """One PrfaaS instance, x bursts 5x, y stays at 0.3 req/s (tests/sim/scenarios/multisite_burst_one_instance*):
    without preemption y's offloaded TTFT P90 rises well above its no-burst value; with it, it stays close to its
    no-burst value (the same system without the burst), and its median drops. Numbers (P90 of y's offloaded TTFT,
    four seeds pooled) in docs/multisite-sim.md."""
    p90: Callable[[list[float]], float] = lambda v: float(np.percentile(v, 90))  # noqa: E731
    calm_off = _y_offloaded_ttfts("multisite_burst_one_instance_none.toml", preempt=False)
    calm_on = _y_offloaded_ttfts("multisite_burst_one_instance_none.toml", preempt=True)
    burst_off = _y_offloaded_ttfts("multisite_burst_one_instance.toml", preempt=False)
    burst_on = _y_offloaded_ttfts("multisite_burst_one_instance.toml", preempt=True)
    assert min(len(calm_off), len(calm_on), len(burst_off), len(burst_on)) > 250
    assert p90(burst_off) >= 1.12 * p90(calm_off)  # the burst hurts y without preemption
    assert p90(burst_on) <= p90(calm_on)  # with it (and the regions' load stamps) y is not worse than with no burst
    assert p90(calm_on) <= 1.08 * p90(calm_off)  # and calm regions barely pause each other
    assert p90(burst_on) < p90(burst_off) and np.median(burst_on) < 0.9 * np.median(burst_off)


def test_each_offload_carries_its_regions_offered_load_as_the_live_gateway_stamps_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator meters each region's arrivals as a region gateway does (`policy.region_load`) and stamps the
    ratio on each offload queued at an instance (in the event that routed it); the instance's fair queue takes it.
    In x's 5x burst x's stamps are BURST_RATIO times y's and more; before it both are about 1."""
    import prfaas.sim.multisite_run as run_module
    from prfaas.policy.region_load import BURST_RATIO

    kept: list[MultiSiteSimulator] = []
    stamped: list[dict[int, float]] = []

    class Keep(MultiSiteSimulator):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            kept.append(self)
            stamped.append({})

        def _load_of_req(self, req: SimRequest) -> float:
            ratio = super()._load_of_req(req)
            stamped[kept.index(self)][req.request_id] = ratio
            return ratio

    monkeypatch.setattr(run_module, "MultiSiteSimulator", Keep)
    cfg = msgspec.structs.replace(load_config(SCENARIOS / "multisite_burst_one_instance.toml"), seed=0)
    inp = build_multisite_inputs(cfg)
    result = simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of, selector=inp.selector,
                                selector_config=inp.selector_config, policy_config=inp.policy_config,
                                script=inp.script, options=inp.options, prefill_queue="node", preempt_prefill=True)
    (stamps,) = stamped
    arrival = {r.request_id: (r.region, r.arrival_s) for r in result.records}

    def median_stamp(region: str, lo_s: float, hi_s: float) -> float:
        return float(np.median([v for rid, v in stamps.items()
                                if arrival[rid][0] == region and lo_s <= arrival[rid][1] < hi_s]))

    assert 0.6 < median_stamp("x", 20.0, 60.0) < 1.6 and 0.6 < median_stamp("y", 20.0, 60.0) < 1.6
    assert median_stamp("x", 100.0, 800.0) > BURST_RATIO * median_stamp("y", 100.0, 800.0)
    off = build_multisite_inputs(cfg)
    simulate_multisite(off.deployment, cfg.policy.name, off.requests, off.region_of, selector=off.selector,
                       selector_config=off.selector_config, policy_config=off.policy_config, script=off.script,
                       options=off.options, prefill_queue="node", preempt_prefill=False)
    assert stamped[1] == {}  # nothing to stamp for without preemption


@pytest.mark.parametrize("setting", [None, "true", "false"])
def test_the_sites_prefill_preemption_knob_reaches_the_simulator(setting: str | None, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`[sites] prefill_preemption` (default on, as the live `[policy] prefill_preemption`) is what
    `prfaas simulate --config` passes as `preempt_prefill`."""
    import prfaas.sim.multisite_report as report_module

    text = (SCENARIOS / "multisite_burst_one_instance.toml").read_text()
    if setting is not None:
        text = text.replace('prefill_queue = "node"\n', f'prefill_queue = "node"\nprefill_preemption = {setting}\n')
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.sites.prefill_preemption is (setting != "false")
    seen: list[tuple[str, bool]] = []
    monkeypatch.setattr(report_module, "simulate_multisite",
                        lambda *args, **kwargs: seen.append((kwargs["prefill_queue"], kwargs["preempt_prefill"])))
    report_module.run_config(cfg)
    assert seen == [("node", setting != "false")]


def _first_stamps(monkeypatch: pytest.MonkeyPatch, load_history: dict[str, list[float]] | None,
                  count: int) -> dict[str, list[float]]:
    """The offered-load stamps of each region's first `count` offloads (by arrival) in the one-instance burst
    scenario, with `load_history` given to the simulator."""
    import prfaas.sim.multisite_run as run_module

    stamped: dict[int, float] = {}

    class Keep(MultiSiteSimulator):
        def _load_of_req(self, req: SimRequest) -> float:
            ratio = super()._load_of_req(req)
            stamped.setdefault(req.request_id, ratio)
            return ratio

    monkeypatch.setattr(run_module, "MultiSiteSimulator", Keep)
    cfg = msgspec.structs.replace(load_config(SCENARIOS / "multisite_burst_one_instance.toml"), seed=0,
                                  duration_s=120.0)
    inp = build_multisite_inputs(cfg)
    result = simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of, selector=inp.selector,
                                selector_config=inp.selector_config, policy_config=inp.policy_config,
                                options=inp.options, prefill_queue="node", preempt_prefill=True,
                                load_history=load_history)
    order = sorted((r.arrival_s, r.request_id, r.region) for r in result.records if r.request_id in stamped)
    return {region: [stamped[rid] for _, rid, reg in order if reg == region][:count] for region in ("x", "y")}


def test_arrivals_a_gateway_saw_before_the_run_warm_its_regions_meter(monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_history`: the arrivals a region gateway's meter counted before the run's requests (a live run's path
    probes) are observed first, as live. Cold, a meter is neutral (1.0) until it has seen 16 arrivals; x's 16
    arrivals in the second before the run make x's first offload carry x's measured ratio (far above 1: 16 in a
    second against 0.3 req/s expected), while y, without history, stays neutral."""
    from prfaas.policy.region_load import BURST_RATIO, NEUTRAL_RATIO

    cold = _first_stamps(monkeypatch, None, 3)
    assert cold["x"] == cold["y"] == [NEUTRAL_RATIO] * 3
    warm = _first_stamps(monkeypatch, {"x": [-1.0 + k / 16 for k in range(16)]}, 3)
    assert warm["y"] == [NEUTRAL_RATIO] * 3
    assert all(ratio > BURST_RATIO for ratio in warm["x"])
    with pytest.raises(ValueError, match="not a PD region"):
        _first_stamps(monkeypatch, {"nowhere": [-1.0]}, 1)
