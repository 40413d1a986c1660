"""prfaas-bandwidth-aware: raises t under link/queue pressure, relaxes after recovery, with hysteresis."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from policy_helpers import failed_outcome, link, make_view, ok_outcome, req

from prfaas.core.lifecycle import ClusterKind
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.policy.bandwidth_aware import (
    BandwidthAwareConfig,
    BandwidthController,
    BandwidthSignals,
    CongestionCause,
    ControlMode,
    PdPressure,
)
from prfaas.policy.offload_demand import StateBytesFn
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.policy.routers.prfaas import PrfaasRouter
from prfaas.policy.types import ClusterView, FailureKind, RoutePlan, RouteReason

T = 10_000
CFG = BandwidthAwareConfig(control_interval_s=1.0, hot_updates=1)  # raise on the first HOT update: the
# transitions below are easier to read; the default dwell (hot_updates=3) has its own test


class Driver:
    """Routes one request per control interval through the router and records every plan."""

    def __init__(self, config: BandwidthAwareConfig = CFG, state_bytes: StateBytesFn | None = None) -> None:
        self.router = BandwidthAwareRouter(threshold_tokens=T, bandwidth=config, state_bytes=state_bytes)
        self.now_s = 0.0
        self.next_id = 0
        self.plans: list[RoutePlan] = []

    def route(self, input_tokens: int, view: ClusterView) -> RoutePlan:
        plan = self.router.route(req(self.next_id, input_tokens), view, self.now_s)
        self.plans.append(plan)
        self.next_id += 1
        self.now_s += CFG.control_interval_s
        return plan

    def scale(self) -> float:
        return self.router.controller.state.threshold_scale

    def finish(self) -> None:
        for plan in self.plans:
            self.router.observe(ok_outcome(plan), self.now_s)
        assert self.router.pending_request_ids == ()


def queue_view(per_instance: int) -> ClusterView:
    queued = {"queued_requests": per_instance}
    return make_view(overrides={"pf0": queued, "pf1": queued})


def test_cool_link_offloads_long_requests_at_base_threshold() -> None:
    d = Driver()
    plan = d.route(T + 1, make_view(egress=link(0.2)))
    assert plan.reason is RouteReason.LONG_OFFLOAD and plan.threshold_tokens == T
    assert d.router.controller.state.mode is ControlMode.NORMAL
    d.finish()


def test_high_utilisation_raises_threshold() -> None:
    d = Driver()
    hot = make_view(egress=link(0.9))
    plan = d.route(12_000, hot)  # first update: scale 1.25 -> t' = 12500
    assert plan.reason is RouteReason.LINK_CONGESTED_LOCAL and plan.prefill_cluster is ClusterKind.PD
    assert plan.threshold_tokens == 12_500
    plan = d.route(16_000, hot)  # second update: t' = 15625
    assert plan.reason is RouteReason.LONG_OFFLOAD and plan.threshold_tokens == 15_625
    short = d.route(T, hot)
    assert short.reason is RouteReason.SHORT_LOCAL
    d.finish()


def test_updates_are_rate_limited_to_the_control_interval() -> None:
    router = BandwidthAwareRouter(threshold_tokens=T, bandwidth=CFG)
    hot = make_view(egress=link(0.9))
    plans = [router.route(req(i, 100), hot, 5.0 + i * 0.1) for i in range(5)]  # 0.4 s < 1 s
    assert router.controller.state.threshold_scale == pytest.approx(1.25)
    for plan in plans:
        router.observe(ok_outcome(plan), 6.0)
    assert router.pending_request_ids == ()


@pytest.mark.parametrize(
    ("view", "reason"),
    [(make_view(egress=link(0.2, rtt_ms=25.0)), RouteReason.LINK_CONGESTED_LOCAL),
     (make_view(egress=link(0.2, retransmit_rate=0.02)), RouteReason.LINK_CONGESTED_LOCAL),
     (queue_view(5), RouteReason.PRFAAS_QUEUE_LOCAL)],
    ids=["rtt", "retransmits", "queue"],
)
def test_rtt_retransmits_and_queue_raise_threshold(view: ClusterView, reason: RouteReason) -> None:
    d = Driver()
    d.route(100, make_view(egress=link(0.2, rtt_ms=10.0)))  # learns the 10 ms baseline, cool
    assert d.scale() == 1.0
    plan = d.route(12_000, view)
    assert d.scale() == pytest.approx(1.25)
    assert plan.reason is reason
    d.finish()


def state_bytes(tokens: float) -> float:
    """A toy S_kv: 1,000 fixed bytes plus 10 per token."""
    return 1_000.0 + 10.0 * tokens


def offload_rate(lengths: list[int], threshold: int, span_s: float) -> float:
    return sum(state_bytes(n) for n in lengths if n > threshold) / span_s


def fill_demand(d: Driver, lengths: list[int]) -> None:
    """Route one request per control interval through a cool link (records the demand window)."""
    for n in lengths:
        d.route(n, make_view(egress=link(0.1, capacity_gbps=0.001)))


def test_link_raise_is_sized_so_the_offloaded_byte_rate_fits_the_link() -> None:
    cfg = BandwidthAwareConfig(control_interval_s=1.0, max_threshold_scale=4.0, hot_updates=1)
    d = Driver(cfg, state_bytes=state_bytes)
    lengths = [11_000 + 1_000 * i for i in range(20)]  # one per second, t = 0..19
    fill_demand(d, lengths)
    assert d.scale() == 1.0
    # hot at 95% of a 0.001 Gbps link (125,000 B/s); budget 0.8 x 125,000 B/s over the 20 s observed
    plan = d.route(100, make_view(egress=link(0.95, capacity_gbps=0.001)))
    budget = cfg.target_link_util * gbps_to_bytes_per_s(0.001)
    raised = plan.threshold_tokens
    assert raised is not None and raised > T
    assert offload_rate(lengths, raised, 20.0) <= budget  # what still offloads fits the link ...
    below = max(n for n in lengths if n < raised)
    assert offload_rate(lengths, below, 20.0) > budget  # ... and it is the smallest threshold that does
    assert d.router.controller.state.available_gbps == pytest.approx(0.001)
    # one long request above t' offloads; one between t and t' stays local for the link
    assert d.route(raised + 1, make_view(egress=link(0.95, capacity_gbps=0.001))).is_offloaded
    plan = d.route(raised, make_view(egress=link(0.95, capacity_gbps=0.001)))
    assert plan.reason is RouteReason.LINK_CONGESTED_LOCAL
    d.finish()


def test_congested_link_is_sized_from_measured_goodput_not_capacity() -> None:
    cfg = BandwidthAwareConfig(control_interval_s=1.0, max_threshold_scale=4.0, hot_updates=1)
    d = Driver(cfg, state_bytes=state_bytes)
    d.route(100, make_view(egress=link(0.1, capacity_gbps=100.0, rtt_ms=10.0)))  # learns a 10 ms RTT
    fill_demand(d, [30_000] * 10)
    # provisioned 100 Gbps, but the link queues (RTT x5) while delivering 0.0005 Gbps: B is the goodput
    congested = make_view(egress=link(0.000005, capacity_gbps=100.0, rtt_ms=50.0))
    d.route(100, congested)
    assert d.router.controller.state.available_gbps == pytest.approx(0.0005)
    # 30K-token requests at ~300 KB each every second cannot fit 50 KB/s: t' = 30K keeps them local
    assert d.router.effective_threshold() == 30_000
    d.finish()


def test_saturated_link_never_forces_every_long_request_local() -> None:
    d = Driver(state_bytes=state_bytes)
    fill_demand(d, [50_000] * 5)
    for _ in range(5):
        d.route(100, make_view(egress=link(5.0, capacity_gbps=0.001)))
    assert d.scale() == CFG.max_threshold_scale
    beyond = d.route(round(T * CFG.max_threshold_scale) + 1, make_view(egress=link(5.0, capacity_gbps=0.001)))
    assert beyond.is_offloaded and beyond.reason is RouteReason.LONG_OFFLOAD
    d.finish()


def pd_queue_view(util: float, pd_tokens: int) -> ClusterView:
    queued = {"queued_tokens": pd_tokens}
    return make_view(egress=link(util), overrides={"pdp0": queued, "pdp1": queued})


def test_pd_prefill_queue_holds_then_backs_off_a_raise() -> None:
    d = Driver()
    d.route(100, pd_queue_view(0.95, 0))
    assert d.scale() == pytest.approx(1.25)
    for _ in range(3):  # hot link, but PD-P is at the hold mark: no further raise
        d.route(100, pd_queue_view(0.95, int(CFG.pd_queue_hold_tokens)))
    assert d.scale() == pytest.approx(1.25)
    assert d.router.controller.state.pd_pressure is PdPressure.HOLD
    d.route(100, pd_queue_view(0.95, int(CFG.pd_queue_backoff_tokens)))  # back-off mark: lower even while hot
    assert d.scale() == pytest.approx(1.25 * CFG.relax_factor)
    for _ in range(5):
        d.route(100, pd_queue_view(0.95, int(CFG.pd_queue_backoff_tokens)))
    assert d.scale() == 1.0 and d.router.controller.state.mode is ControlMode.NORMAL  # never below t
    d.route(100, pd_queue_view(0.95, 0))  # PD-P drained: the link raises again
    assert d.scale() == pytest.approx(1.25)
    d.finish()


def test_relaxes_after_recovery_with_dwell_then_returns_to_normal() -> None:
    d = Driver()
    for _ in range(3):
        d.route(100, make_view(egress=link(0.9)))
    raised = d.scale()
    assert raised == pytest.approx(1.25**3)
    cool = make_view(egress=link(0.1))
    scales = []
    for _ in range(40):
        d.route(100, cool)
        scales.append(d.scale())
    dwell = CFG.recover_updates - 1
    assert scales[:dwell] == [raised] * dwell  # no relaxation before the dwell
    assert scales[dwell] == pytest.approx(raised * CFG.relax_factor)
    assert all(b <= a for a, b in itertools.pairwise(scales))  # monotone relaxation
    assert scales[-1] == 1.0
    assert d.router.controller.state.mode is ControlMode.NORMAL
    assert d.router.controller.state.cause is CongestionCause.NONE
    d.finish()


def test_ticks_relax_a_raised_threshold_while_nothing_arrives() -> None:
    d = Driver()
    for _ in range(3):
        d.route(100, make_view(egress=link(0.9)))
    assert d.scale() == pytest.approx(1.25**3)
    assert d.router.tick_interval_s == CFG.control_interval_s
    cool = make_view(egress=link(0.0))  # the link is idle: no request was offloaded, none arrives
    for k in range(40):
        d.router.tick(cool, d.now_s + k * CFG.control_interval_s)
    assert d.scale() == 1.0 and d.router.controller.state.mode is ControlMode.NORMAL
    d.now_s += 40 * CFG.control_interval_s
    plan = d.route(T + 1, cool)  # the first request after the quiet spell goes by the base threshold
    assert plan.reason is RouteReason.LONG_OFFLOAD and plan.threshold_tokens == T
    d.finish()


def test_ticks_respect_the_control_interval_and_stateless_policies_need_none() -> None:
    d = Driver()
    hot = make_view(egress=link(0.9))
    for k in range(5):
        d.router.tick(hot, 10.0 + 0.1 * k)  # 0.4 s < control_interval_s: one update
    assert d.scale() == pytest.approx(1.25)
    assert PrfaasRouter(threshold_tokens=T).tick_interval_s is None


def test_no_flapping_for_signals_inside_the_band() -> None:
    d = Driver()
    band_utils = [0.61, 0.84, 0.7, 0.65, 0.8, 0.62, 0.84]
    for u in band_utils:  # from NORMAL, the band never raises t
        d.route(12_000, make_view(egress=link(u)))
    assert d.scale() == 1.0
    assert {p.reason for p in d.plans} == {RouteReason.LONG_OFFLOAD}
    d.route(100, make_view(egress=link(0.9)))
    for u in band_utils * 3:  # once raised, the band never relaxes it either
        d.route(100, make_view(egress=link(u)))
    assert d.scale() == pytest.approx(1.25)
    # a cool blip shorter than the dwell, then band again: still held
    for u in (0.1, 0.1, 0.7, 0.1, 0.7):
        d.route(100, make_view(egress=link(u)))
    assert d.scale() == pytest.approx(1.25)
    d.finish()


def test_threshold_scale_is_capped() -> None:
    d = Driver()
    for _ in range(30):
        d.route(100, make_view(egress=link(0.9)))
    assert d.scale() == CFG.max_threshold_scale
    assert d.router.effective_threshold() == T * CFG.max_threshold_scale
    d.finish()


def test_offload_transfer_failure_counts_as_hot_once() -> None:
    d = Driver()
    plan = d.route(50_000, make_view())
    assert plan.is_offloaded
    d.router.observe(failed_outcome(plan, FailureKind.TRANSFER_FAILED), d.now_s)
    d.plans.remove(plan)
    d.route(100, make_view())
    assert d.scale() == pytest.approx(1.25)
    d.route(100, make_view())
    assert d.scale() == pytest.approx(1.25)  # consumed: the next cool update does not raise again
    d.finish()


def test_default_dwell_ignores_short_bursts_but_not_a_failed_transfer() -> None:
    cfg = BandwidthAwareConfig()
    ctl = BandwidthController(cfg)
    hot, cool = BandwidthSignals(utilisation=0.95), BandwidthSignals(utilisation=0.1)
    now = 0.0
    for _ in range(cfg.hot_updates - 1):  # a burst shorter than the dwell moves nothing
        assert ctl.update(hot, now).threshold_scale == 1.0
        now += cfg.control_interval_s
    ctl.update(cool, now)
    now += cfg.control_interval_s
    scales = []
    for _ in range(cfg.hot_updates + 1):  # a sustained hot link: raised at the dwell's end, then every update
        scales.append(ctl.update(hot, now).threshold_scale)
        now += cfg.control_interval_s
    assert scales[:-2] == [1.0] * (cfg.hot_updates - 1)
    assert scales[-2] == pytest.approx(cfg.raise_factor) and scales[-1] == pytest.approx(cfg.raise_factor**2)
    fresh = BandwidthController(cfg)
    fresh.note_transfer_failure()  # a failed offload transfer is not a burst: it raises at once
    assert fresh.update(cool, 0.0).threshold_scale == pytest.approx(cfg.raise_factor)


def test_prfaas_down_routes_locally_with_reason() -> None:
    d = Driver()
    plan = d.route(50_000, make_view(n_prfaas=0))
    assert plan.reason is RouteReason.PRFAAS_DOWN_LOCAL and plan.prefill_cluster is ClusterKind.PD
    plan = d.route(50_000, make_view(egress=link(0.1, is_up=False)))
    assert plan.reason is RouteReason.PRFAAS_DOWN_LOCAL
    d.finish()


def test_controller_missing_signals_count_as_cool() -> None:
    ctl = BandwidthController(CFG)
    state = ctl.update(BandwidthSignals(utilisation=None, rtt_ms=None), 0.0)
    assert state.mode is ControlMode.NORMAL and state.threshold_scale == 1.0
    # configured baseline: 30 ms RTT against 10 ms is hot from the first update
    ctl = BandwidthController(BandwidthAwareConfig(rtt_baseline_ms=10.0, hot_updates=1))
    assert ctl.update(BandwidthSignals(rtt_ms=30.0), 0.0).threshold_scale == pytest.approx(1.25)


@pytest.mark.parametrize(
    "kwargs",
    [{"util_low": 0.9, "util_high": 0.85}, {"target_link_util": 0.0}, {"raise_factor": 1.0},
     {"pd_queue_hold_tokens": 9.0, "pd_queue_backoff_tokens": 5.0}, {"demand_window_s": 0.0},
     {"relax_factor": 1.0}, {"recover_updates": 0}, {"queue_high_per_instance": 0.5},
     {"max_threshold_scale": 0.5}, {"rtt_baseline_ms": 0.0}, {"control_interval_s": -1.0},
     {"hot_updates": 0}],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BandwidthAwareConfig(**kwargs)


def test_demand_prices_the_shipped_state_not_the_uncached_tail() -> None:
    """A prefix hit shrinks the prefill, not what an offload ships: the whole prompt's state crosses (unless the
    decode side holds the prefix), so the offered egress counts S_kv(input), compared on the uncached length."""
    from prfaas.policy.offload_demand import OffloadDemand

    def state_bytes(n: float) -> float:
        return 1000.0 * n

    tail_only, whole = OffloadDemand(10.0), OffloadDemand(10.0)
    for i in range(5):
        tail_only.record(float(i), 2000)
        whole.record(float(i), 2000, shipped_tokens=8000)
    assert whole.byte_rate(1000, state_bytes, 4.0) == 4 * tail_only.byte_rate(1000, state_bytes, 4.0)
    assert whole.byte_rate(2000, state_bytes, 4.0) == 0.0  # the threshold still compares the uncached length
    budget = 2.5 * 8000 * 1000 / 4.0  # two whole states fit the window's budget, not five
    assert whole.fit_threshold(budget, 1000, 100_000, state_bytes, 4.0) == 2000
    assert tail_only.fit_threshold(budget, 1000, 100_000, state_bytes, 4.0) == 1000
