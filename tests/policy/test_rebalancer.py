"""Long-term loop: converts toward the bound stage, drains first, conversion time, cooldown, minimums, t."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from policy_helpers import make_view

from prfaas.core.lifecycle import Role
from prfaas.policy.rebalancer import PdRebalancer, RebalancerConfig
from prfaas.policy.types import ClusterView, RebalancePlan, RebalanceReason, WindowStats
from prfaas.workload.distribution import DiscreteLengthDistribution

WINDOW_S = 60.0
CFG = RebalancerConfig(conversion_s=30.0, cooldown_s=120.0, min_windows=2, min_length_samples=4)


class FakePlanner:
    """t = 10000 + 2000 * n_p; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, DiscreteLengthDistribution | None]] = []

    def __call__(self, n_p: int, n_d: int, lengths: DiscreteLengthDistribution | None) -> int:
        self.calls.append((n_p, n_d, lengths))
        return 10_000 + 2_000 * n_p


def window(end_s: float, *, pf: float = 0.5, p: float = 0.5, d: float = 0.5, q_pf: int = 0, q_p: int = 0,
           q_d: int = 0, samples: tuple[int, ...] = ()) -> WindowStats:
    return WindowStats(start_s=end_s - WINDOW_S, end_s=end_s, prfaas_prefill_util=pf, pd_prefill_util=p,
                       pd_decode_util=d, prfaas_queue_requests=q_pf, pd_prefill_queue_requests=q_p,
                       pd_decode_queue_requests=q_d, num_arrivals=len(samples),
                       uncached_token_samples=samples)


def pd_view(n_p: int = 3, n_d: int = 5,
            overrides: Mapping[str, Mapping[str, Any]] | None = None) -> ClusterView:
    return make_view(n_prfaas=2, n_pd_p=n_p, n_pd_d=n_d, overrides=overrides)


def run(reb: PdRebalancer, view: ClusterView, windows: list[WindowStats]) -> list[RebalancePlan]:
    return [reb.step(w, view, w.end_s) for w in windows]


PREFILL_HOT: dict[str, Any] = {"p": 0.95, "d": 0.4}
DECODE_HOT: dict[str, Any] = {"p": 0.4, "d": 0.95}


def test_prefill_bound_converts_a_decode_node_after_warm_up() -> None:
    planner = FakePlanner()
    reb = PdRebalancer(CFG, reoptimise=planner, threshold_tokens=16_000)
    view = pd_view(overrides={"pdd0": {"running_batch": 9}, "pdd1": {"running_batch": 3},
                              "pdd2": {"running_batch": 3, "busy_until_s": 150.0},
                              "pdd3": {"running_batch": 8}, "pdd4": {"queued_requests": 8}})
    first = reb.step(window(60.0, **PREFILL_HOT), view, 60.0)
    assert first.reason is RebalanceReason.WARMING_UP and first.role_changes == ()
    assert planner.calls == []  # no re-optimisation while warming up
    second = reb.step(window(120.0, **PREFILL_HOT), view, 120.0)
    assert second.reason is RebalanceReason.PREFILL_BOUND
    (change,) = second.role_changes
    # least busy decode node, ties by id; drains first, ready after drain + conversion time
    assert (change.instance_id, change.from_role, change.to_role) == ("pdd1", Role.PD_DECODE, Role.PD_PREFILL)
    assert change.drain_first and change.conversion_s == 30.0 and change.ready_at_s == 120.0 + 30.0
    assert (second.num_pd_prefill_target, second.num_pd_decode_target) == (4, 4)
    assert planner.calls[-1][:2] == (4, 4)  # t re-optimised for the new counts
    assert second.new_threshold_tokens == 18_000 and reb.threshold_tokens == 18_000


def test_decode_bound_converts_the_prefill_node_with_least_queue() -> None:
    reb = PdRebalancer(CFG, reoptimise=FakePlanner(), threshold_tokens=16_000)
    view = pd_view(overrides={"pdp0": {"queued_tokens": 5000}, "pdp2": {"queued_tokens": 100},
                              "pdp1": {"queued_tokens": 900}})
    plan = run(reb, view, [window(60.0, **DECODE_HOT), window(120.0, **DECODE_HOT)])[-1]
    assert plan.reason is RebalanceReason.DECODE_BOUND
    (change,) = plan.role_changes
    assert (change.instance_id, change.to_role) == ("pdp2", Role.PD_DECODE)
    assert plan.new_threshold_tokens == 10_000 + 2_000 * 2


def test_drain_estimate_uses_busy_until() -> None:
    reb = PdRebalancer(CFG)
    view = pd_view(n_d=1, overrides={"pdp0": {"busy_until_s": 500.0}, "pdp1": {"busy_until_s": 600.0},
                                     "pdp2": {"busy_until_s": 400.0}})
    plan = run(reb, view, [window(60.0, **DECODE_HOT), window(120.0, **DECODE_HOT)])[-1]
    (change,) = plan.role_changes
    assert change.instance_id == "pdp0"  # equal queues: smallest id
    assert change.ready_at_s == 500.0 + CFG.conversion_s
    assert plan.new_threshold_tokens is None  # no planner injected


def test_conversion_in_progress_then_cooldown_then_convert_again() -> None:
    planner = FakePlanner()
    reb = PdRebalancer(CFG, reoptimise=planner, threshold_tokens=16_000)
    plans = run(reb, pd_view(), [window(60.0, **PREFILL_HOT), window(120.0, **PREFILL_HOT)])
    (change,) = plans[-1].role_changes
    assert change.instance_id == "pdd0"
    draining = pd_view(overrides={"pdd0": {"role": Role.DRAINING, "pending_role": Role.PD_PREFILL}})
    in_progress = reb.step(window(180.0, **PREFILL_HOT), draining, 180.0)
    assert in_progress.reason is RebalanceReason.CONVERSION_IN_PROGRESS and in_progress.role_changes == ()
    assert in_progress.new_threshold_tokens is None
    assert reb.pending_changes == (change,)
    # the switch completed: pdd0 now serves as PD-P (4 P / 4 D)
    converted = ClusterView(instances=tuple(
        i if i.instance_id != "pdd0" else type(i)(instance_id="pdd0", cluster=i.cluster, role=Role.PD_PREFILL)
        for i in draining.instances), links=draining.links)
    assert converted.count_role(Role.PD_PREFILL) == 4
    ready_s = change.ready_at_s  # 150
    steps = run(reb, converted, [window(ready_s + dt, p=0.95, d=0.3) for dt in (50.0, 110.0)])
    assert reb.pending_changes == ()  # leak check: the finished conversion is forgotten
    assert [s.reason for s in steps] == [RebalanceReason.WARMING_UP, RebalanceReason.COOLDOWN]
    # still hot after the cooldown: convert another decode node
    late = reb.step(window(ready_s + CFG.cooldown_s, p=0.95, d=0.3), converted, ready_s + CFG.cooldown_s)
    assert late.reason is RebalanceReason.PREFILL_BOUND
    assert late.role_changes[0].instance_id == "pdd1"
    assert (late.num_pd_prefill_target, late.num_pd_decode_target) == (5, 3)


def test_a_foreign_conversion_blocks_new_ones() -> None:
    reb = PdRebalancer(CFG)
    view = pd_view(overrides={"pdp0": {"pending_role": Role.PD_DECODE}})
    plans = run(reb, view, [window(60.0 * k, **DECODE_HOT) for k in (1, 2, 3)])
    assert {p.reason for p in plans} == {RebalanceReason.CONVERSION_IN_PROGRESS}
    assert reb.pending_changes == ()


@pytest.mark.parametrize(("n_p", "n_d", "hot"), [(1, 4, DECODE_HOT), (4, 1, PREFILL_HOT)])
def test_never_converts_the_last_prefill_or_decode_node(n_p: int, n_d: int, hot: dict[str, Any]) -> None:
    reb = PdRebalancer(CFG)
    plans = run(reb, pd_view(n_p, n_d), [window(60.0 * k, **hot) for k in (1, 2, 3, 4)])
    assert plans[-1].reason is RebalanceReason.AT_MINIMUM
    assert all(p.role_changes == () for p in plans)


def test_configured_minimums_are_honoured() -> None:
    reb = PdRebalancer(RebalancerConfig(min_pd_decode=4, min_windows=1))
    plan = reb.step(window(60.0, **PREFILL_HOT), pd_view(3, 4), 60.0)
    assert plan.reason is RebalanceReason.AT_MINIMUM


def test_no_conversion_that_would_just_move_the_bottleneck() -> None:
    reb = PdRebalancer(CFG)
    # decode at 0.7 on 2 nodes would be 1.4 on one: keep it
    plans = run(reb, pd_view(3, 2), [window(60.0, p=0.95, d=0.7), window(120.0, p=0.95, d=0.7)])
    assert plans[-1].reason is RebalanceReason.BALANCED and plans[-1].role_changes == ()


def test_queue_depth_alone_marks_a_stage_hot_and_prfaas_counts_as_prefill() -> None:
    reb = PdRebalancer(CFG)
    # 12 decode requests waiting on 5 PD-D nodes = 2.4 per node >= 2
    plan = run(reb, pd_view(), [window(60.0, p=0.3, d=0.5, q_d=12), window(120.0, p=0.3, d=0.5, q_d=12)])[-1]
    assert plan.reason is RebalanceReason.DECODE_BOUND
    reb = PdRebalancer(CFG)
    prfaas_hot: dict[str, Any] = {"pf": 0.97, "p": 0.5, "d": 0.4}
    plan = run(reb, pd_view(), [window(60.0, **prfaas_hot), window(120.0, **prfaas_hot)])[-1]
    assert plan.reason is RebalanceReason.PREFILL_BOUND


def test_smoothing_ignores_a_single_hot_window() -> None:
    reb = PdRebalancer(CFG)
    plans = run(reb, pd_view(), [window(60.0, p=0.5, d=0.5), window(120.0, p=0.5, d=0.5),
                                 window(180.0, p=0.99, d=0.5), window(240.0, p=0.5, d=0.5)])
    assert [p.reason for p in plans] == [RebalanceReason.WARMING_UP] + [RebalanceReason.BALANCED] * 3
    averages = reb.averages
    assert averages is not None and averages.pd_prefill_util == pytest.approx(0.5 * 0.5 + 0.5 * 0.745)


def test_threshold_only_requires_a_material_change_and_uses_samples() -> None:
    planner = FakePlanner()
    reb = PdRebalancer(CFG, reoptimise=planner, threshold_tokens=15_500)  # planner says 16000: 3% away
    first = run(reb, pd_view(), [window(60.0), window(120.0, samples=(1000, 2000))])[-1]
    assert first.reason is RebalanceReason.BALANCED and first.new_threshold_tokens is None
    assert planner.calls[-1][2] is None  # 2 samples < min_length_samples: planner uses its own lengths
    reb = PdRebalancer(CFG, reoptimise=planner, threshold_tokens=12_000)
    windows = [window(60.0, samples=(1000, 2000)), window(120.0, samples=(3000, 40_000))]
    plan = run(reb, pd_view(), windows)[-1]
    assert plan.reason is RebalanceReason.THRESHOLD_ONLY and plan.new_threshold_tokens == 16_000
    lengths = planner.calls[-1][2]
    assert lengths is not None and lengths.lengths.tolist() == [1000.0, 2000.0, 3000.0, 40_000.0]
    # installed: the same answer next time is no change
    again = reb.step(window(180.0), pd_view(), 180.0)
    assert again.reason is RebalanceReason.BALANCED and again.new_threshold_tokens is None


def test_deterministic() -> None:
    def trace() -> list[RebalancePlan]:
        reb = PdRebalancer(CFG, reoptimise=FakePlanner(), threshold_tokens=9_000)
        ws = [window(60.0 * k, p=0.5 + 0.1 * (k % 5), d=0.9 - 0.1 * (k % 4), samples=(k * 100,) * 3)
              for k in range(1, 12)]
        return run(reb, pd_view(), ws)

    assert trace() == trace()


@pytest.mark.parametrize(
    "kwargs",
    [{"min_pd_prefill": 0}, {"min_pd_decode": 0}, {"ewma_alpha": 0.0}, {"conversion_s": -1.0},
     {"min_windows": 0}, {"hot_util": 0.0}],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RebalancerConfig(**kwargs)
