"""prfaas-cache-aware: the two bandwidth regimes, cross-cluster cache transfers, regime hysteresis."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from policy_helpers import chain, link, make_view, ok_outcome, req

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.cache_regime import CacheAwareConfig, CacheRegime, RegimeDetector
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.routers.cache_aware import CacheAwareRouter
from prfaas.policy.types import PD_TO_PRFAAS_LINK_ID, RoutePlan, RouteReason

T = 10_000
PD, PF = ClusterKind.PD, ClusterKind.PRFAAS
HASHES = chain(1000, 60)  # a 30720-token prompt
BYTES_PER_TOKEN, FIXED_BYTES = 100, 7_000


def state_bytes(num_tokens: float) -> float:
    return FIXED_BYTES + BYTES_PER_TOKEN * num_tokens


def _index(held: dict[str, int]) -> GlobalKvIndex:
    index = GlobalKvIndex()
    for node in ("pdp0", "pdp1", "pdd0", "pdd1"):
        index.add_node(node, PD, capacity_blocks=1000)
    for node in ("pf0", "pf1"):
        index.add_node(node, PF, capacity_blocks=1000)
    for node, num_blocks in held.items():
        index.insert(node, HASHES[:num_blocks])
    return index


def _router(held: dict[str, int], regime: CacheRegime, **cache_kw: int) -> CacheAwareRouter:
    return CacheAwareRouter(threshold_tokens=T, cache=CacheAwareConfig(regime=regime, **cache_kw),
                            kv_index=_index(held), state_bytes=state_bytes)


def _route(router: CacheAwareRouter, input_tokens: int = 30_720, **view_kw: Any) -> RoutePlan:
    plan = router.route(req(1, input_tokens, HASHES[: -(-input_tokens // 512)]), make_view(**view_kw), 0.0)
    assert plan.cached_tokens + plan.uncached_tokens == input_tokens
    router.observe(ok_outcome(plan), 1.0)
    assert router.pending_request_ids == ()  # leak check
    return plan


def test_scarce_local_prefix_makes_it_short() -> None:
    plan = _route(_router({"pdp1": 44}, CacheRegime.SCARCE))  # l = 30720 - 22528 = 8192 <= t
    assert (plan.prefill_cluster, plan.prefill_instance_id) == (PD, "pdp1")
    assert plan.reason is RouteReason.CACHE_HIT_LOCAL
    assert plan.cached_tokens == 22_528 and plan.cache_transfer is None


def test_scarce_ignores_the_remote_prefix_for_the_decision() -> None:
    # 20480-token prompt, fully cached on PrfaaS: scarce judges the PD cluster alone -> l = 20480 > t
    plan = _route(_router({"pf0": 44}, CacheRegime.SCARCE), input_tokens=20_480)
    assert (plan.prefill_cluster, plan.prefill_instance_id) == (PF, "pf0")
    assert plan.reason is RouteReason.CACHE_HIT_REMOTE
    assert plan.cached_tokens == 20_479 and plan.cache_transfer is None  # PrfaaS still reuses its own prefix
    no_hit = _route(_router({}, CacheRegime.SCARCE))
    assert no_hit.reason is RouteReason.LONG_OFFLOAD and no_hit.cached_tokens == 0


def test_abundant_remote_prefix_makes_it_short_with_transfer_to_pd() -> None:
    plan = _route(_router({"pf1": 44}, CacheRegime.ABUNDANT), input_tokens=20_480)  # l = 1 <= t
    assert plan.prefill_cluster is PD and plan.reason is RouteReason.CACHE_HIT_LOCAL
    assert (plan.cached_tokens, plan.uncached_tokens) == (20_479, 1)
    transfer = plan.cache_transfer
    assert transfer is not None
    assert (transfer.source_cluster, transfer.source_instance_id) == (PF, "pf1")
    assert (transfer.dest_cluster, transfer.dest_instance_id) == (PD, plan.prefill_instance_id)
    assert (transfer.num_blocks, transfer.num_tokens) == (40, 20_479)
    assert transfer.bytes_estimate == BYTES_PER_TOKEN * 20_479 + FIXED_BYTES


def test_abundant_long_request_pulls_the_pd_prefix_to_prfaas() -> None:
    plan = _route(_router({"pdp0": 30}, CacheRegime.ABUNDANT))  # l = 30720 - 15360 > t
    assert plan.prefill_cluster is PF and plan.reason is RouteReason.CACHE_HIT_REMOTE
    assert plan.cached_tokens == 15_360
    transfer = plan.cache_transfer
    assert transfer is not None and (transfer.source_cluster, transfer.source_instance_id) == (PD, "pdp0")
    assert transfer.dest_cluster is PF and transfer.num_blocks == 30


def test_abundant_moves_only_the_increment_to_a_node_with_a_partial_prefix() -> None:
    plan = _route(_router({"pdp0": 10, "pf0": 44}, CacheRegime.ABUNDANT))  # l = 8192 -> PD
    assert plan.prefill_instance_id == "pdp0"
    transfer = plan.cache_transfer
    assert transfer is not None and transfer.num_blocks == 34 and transfer.num_tokens == 34 * 512
    assert (transfer.start_block, transfer.end_block) == (10, 44)
    assert transfer.bytes_estimate == BYTES_PER_TOKEN * 34 * 512 + FIXED_BYTES
    # a loaded node with a small local hit loses to an idle one: the transfer lands where the load is low
    busy = _route(_router({"pdp0": 10, "pf0": 44}, CacheRegime.ABUNDANT),
                  overrides={"pdp0": {"queued_tokens": 8_000}})
    assert busy.prefill_instance_id == "pdp1"
    assert busy.cache_transfer is not None and busy.cache_transfer.num_blocks == 44


def test_transfer_size_limits() -> None:
    # PrfaaS holds only 3 blocks more than pdp0: reuse the local prefix, move nothing
    small_gain = _route(_router({"pdp0": 40, "pf0": 43}, CacheRegime.ABUNDANT, min_transfer_blocks=5))
    assert small_gain.prefill_instance_id == "pdp0" and small_gain.cache_transfer is None
    assert small_gain.cached_tokens == 40 * 512
    # a larger gain is moved, as an increment on top of pdp0's prefix
    big_gain = _route(_router({"pdp0": 38, "pf0": 43}, CacheRegime.ABUNDANT, min_transfer_blocks=5))
    assert big_gain.prefill_instance_id == "pdp0"
    assert big_gain.cache_transfer is not None and big_gain.cache_transfer.num_blocks == 5
    capped = _route(_router({"pf0": 44}, CacheRegime.ABUNDANT, max_transfer_blocks=20))
    assert capped.cache_transfer is not None and capped.cache_transfer.num_blocks == 20
    assert capped.cached_tokens == 20 * 512


def test_same_cluster_prefix_needs_no_transfer() -> None:
    plan = _route(_router({"pdp1": 44, "pf0": 10}, CacheRegime.ABUNDANT))
    assert plan.prefill_instance_id == "pdp1" and plan.cache_transfer is None


def test_prfaas_down_ignores_its_cache() -> None:
    plan = _route(_router({"pf0": 44}, CacheRegime.ABUNDANT), egress=link(0.1, is_up=False))
    assert plan.prefill_cluster is PD and plan.reason is RouteReason.PRFAAS_DOWN_LOCAL
    assert plan.cache_transfer is None and plan.cached_tokens == 0


def test_without_index_it_is_the_plain_threshold_rule() -> None:
    router = CacheAwareRouter(threshold_tokens=T)
    for n, cluster, reason in ((T, PD, RouteReason.SHORT_LOCAL), (T + 1, PF, RouteReason.LONG_OFFLOAD)):
        plan = router.route(req(n, n), make_view(), 0.0)
        assert (plan.prefill_cluster, plan.reason, plan.cache_transfer) == (cluster, reason, None)
        router.observe(ok_outcome(plan), 1.0)
    assert router.pending_request_ids == ()


def test_auto_regime_follows_the_link_with_hysteresis() -> None:
    detector = RegimeDetector(CacheAwareConfig())
    assert detector.regime is CacheRegime.SCARCE
    sequence = [(0.4, CacheRegime.SCARCE), (0.3, CacheRegime.ABUNDANT), (0.45, CacheRegime.ABUNDANT),
                (None, CacheRegime.ABUNDANT), (0.51, CacheRegime.SCARCE), (0.35, CacheRegime.SCARCE),
                (0.1, CacheRegime.ABUNDANT)]
    for util, expected in sequence:
        assert detector.update(link(util, capacity_gbps=None if util is None else 100.0)) is expected
    assert detector.update(link(0.1, retransmit_rate=0.01)) is CacheRegime.SCARCE
    detector.update(link(0.1))
    assert detector.update(link(0.1, is_up=False)) is CacheRegime.SCARCE
    detector.update(link(0.1))
    assert detector.update(None) is CacheRegime.SCARCE


def test_router_switches_regime_with_the_link() -> None:
    router = _router({"pf0": 44}, CacheRegime.AUTO)
    scarce = _route(router, input_tokens=20_480, egress=link(0.7))
    assert scarce.prefill_cluster is PF and scarce.cache_transfer is None
    abundant = _route(router, input_tokens=20_480, egress=link(0.1))
    assert abundant.prefill_cluster is PD and abundant.cache_transfer is not None
    assert router.regime is CacheRegime.ABUNDANT


def test_regime_by_name() -> None:
    assert CacheAwareConfig(regime="abundant").regime is CacheRegime.ABUNDANT  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known: auto, scarce, abundant"):
        CacheAwareConfig(regime="plenty")  # type: ignore[arg-type]


def test_fixed_regime_ignores_the_link() -> None:
    detector = RegimeDetector(CacheAwareConfig(regime=CacheRegime.ABUNDANT))
    assert detector.update(link(0.99)) is CacheRegime.ABUNDANT


@pytest.mark.parametrize(
    "kwargs",
    [{"abundant_enter_util": 0.6}, {"min_transfer_blocks": 0}, {"max_transfer_blocks": 0},
     {"min_transfer_benefit": -1.0}, {"pull_max_pd_util": -0.1}, {"pd_util_window_s": 0.0},
     {"abundant_max_retransmit": -1.0}],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CacheAwareConfig(**kwargs)


# --- minimum benefit: a transfer must save more prefill time than it spends on the link -------------

SECONDS_PER_TOKEN = 1e-4


def prefill_time(cluster: ClusterKind, uncached: float, cached: float) -> float:
    """Both clusters at 10K tokens/s (the cached prefix is free)."""
    return SECONDS_PER_TOKEN * uncached


def _timed_router(held: dict[str, int]) -> CacheAwareRouter:
    return CacheAwareRouter(threshold_tokens=T, cache=CacheAwareConfig(regime=CacheRegime.ABUNDANT),
                            kv_index=_index(held), state_bytes=state_bytes, prefill_time_s=prefill_time)


def test_transfer_that_saves_more_prefill_than_its_link_time_is_planned() -> None:
    # l = 30720 - 15360 > t: PrfaaS computes 15360 tokens with the PD prefix (1.5 s) instead of 30720
    # (3.1 s); the prefix (1.54 MB) takes ~0.1 ms at 100 Gbps
    plan = _route(_timed_router({"pdp0": 30}), egress=link(0.1, capacity_gbps=100.0))
    assert plan.prefill_cluster is PF and plan.cache_transfer is not None
    assert plan.cached_tokens == 15_360


def test_transfer_slower_on_the_link_than_the_prefill_it_saves_falls_back_to_scarce() -> None:
    # 1.54 MB on a 0.001 Gbps link (125 KB/s) is 12 s, more than the 1.5 s saved: plan as SCARCE
    plan = _route(_timed_router({"pdp0": 30}), egress=link(0.1, capacity_gbps=0.001))
    assert plan.prefill_cluster is PF and plan.cache_transfer is None
    assert plan.reason is RouteReason.LONG_OFFLOAD and plan.cached_tokens == 0
    # a busy link leaves less free bandwidth: 100 Gbps at 99.99999% utilisation rejects it too
    busy = _route(_timed_router({"pdp0": 30}), egress=link(0.9999999, capacity_gbps=100.0))
    assert busy.cache_transfer is None


def test_pull_that_saves_no_prefill_time_is_not_worth_its_bytes() -> None:
    # the prefix lives on pf1: SCARCE sends the request to pf1, which reuses it (1 token to compute);
    # pulling the prefix to PD would compute the same 1 token after a transfer: no gain, plan SCARCE
    plan = _route(_timed_router({"pf1": 44}), input_tokens=20_480, egress=link(0.1, capacity_gbps=100.0))
    assert (plan.prefill_cluster, plan.prefill_instance_id, plan.cache_transfer) == (PF, "pf1", None)
    assert plan.reason is RouteReason.CACHE_HIT_REMOTE


def test_pd_to_prfaas_transfer_is_judged_on_the_reverse_link_and_unknown_capacity_rejects() -> None:
    view = make_view(egress=link(0.1, capacity_gbps=100.0))
    slow_reverse = dataclasses.replace(view, links={**view.links, PD_TO_PRFAAS_LINK_ID: link(
        0.1, capacity_gbps=0.001)})
    router = _timed_router({"pdp0": 30})
    plan = router.route(req(1, 30_720, HASHES), slow_reverse, 0.0)
    assert plan.cache_transfer is None
    router.observe(ok_outcome(plan), 1.0)
    unknown = _route(_timed_router({"pdp0": 30}), egress=link(None, capacity_gbps=None))
    assert unknown.cache_transfer is None
    assert router.pending_request_ids == ()


def test_pull_to_pd_waits_for_pd_prefill_headroom() -> None:
    router = _router({"pf1": 44}, CacheRegime.ABUNDANT)  # no prefill model: only the headroom rule applies
    hashes = HASHES[:40]

    def route(request_id: int, now_s: float) -> RoutePlan:
        plan = router.route(req(request_id, 20_480, hashes), make_view(), now_s)
        router.observe(dataclasses.replace(ok_outcome(plan), prefill_s=100.0), now_s)
        return plan

    first = route(1, 0.0)  # idle PD-P: the prefix is pulled and the prefill runs locally
    assert first.prefill_cluster is PD and first.cache_transfer is not None
    # that outcome says PD-P was busy 100 s in the last 60 s on 2 nodes: utilisation 0.83 > 0.5
    assert router.pd_prefill_utilisation(make_view(), 1.0) == pytest.approx(100.0 / 120.0)
    busy = route(2, 1.0)
    assert (busy.prefill_cluster, busy.prefill_instance_id, busy.cache_transfer) == (PF, "pf1", None)
    later = route(3, 62.0)  # the busy seconds left the window
    assert later.prefill_cluster is PD and later.cache_transfer is not None
    assert router.pending_request_ids == ()
