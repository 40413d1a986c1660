"""The baseline routers and the paper's threshold rule: targets, reasons, boundary, fallbacks, leaks."""

from __future__ import annotations

import pytest
from policy_helpers import chain, link, make_view, ok_outcome, req

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.registry import make_router
from prfaas.policy.routers.base import RouterBase
from prfaas.policy.routers.prfaas import PrfaasRouter
from prfaas.policy.types import NoRouteError, RouteReason

T = 10_000


def _finish(router: RouterBase, *plans: object) -> None:
    """Leak check: observe every plan, then nothing may stay pending."""
    for plan in plans:
        router.observe(ok_outcome(plan), 100.0)  # type: ignore[arg-type]
    assert router.pending_request_ids == ()


def test_homogeneous_keeps_everything_local() -> None:
    router = make_router("homogeneous")
    view = make_view()
    lengths = (100, 50_000, 131_072)
    plans = [router.route(req(i, n), view, 0.0) for i, n in enumerate(lengths)]
    for plan, n in zip(plans, lengths, strict=True):
        assert plan.prefill_cluster is ClusterKind.PD and plan.reason is RouteReason.ALL_LOCAL
        assert plan.prefill_instance_id.startswith("pdp") and plan.decode_instance_id.startswith("pdd")
        assert plan.threshold_tokens is None and plan.uncached_tokens == n
    assert router.pending_request_ids == (0, 1, 2)
    _finish(router, *plans)


def test_naive_offloads_everything_and_falls_back_when_prfaas_is_down() -> None:
    router = make_router("naive-offload")
    short = router.route(req(1, 100), make_view(), 0.0)
    assert short.prefill_cluster is ClusterKind.PRFAAS and short.reason is RouteReason.ALL_OFFLOAD
    down = router.route(req(2, 100), make_view(egress=link(is_up=False)), 0.0)
    assert down.prefill_cluster is ClusterKind.PD and down.reason is RouteReason.PRFAAS_DOWN_LOCAL
    _finish(router, short, down)


@pytest.mark.parametrize(
    ("input_tokens", "cluster", "reason"),
    [(T - 1, ClusterKind.PD, RouteReason.SHORT_LOCAL),
     (T, ClusterKind.PD, RouteReason.SHORT_LOCAL),  # l == t stays local
     (T + 1, ClusterKind.PRFAAS, RouteReason.LONG_OFFLOAD)],
)
def test_threshold_boundary(input_tokens: int, cluster: ClusterKind, reason: RouteReason) -> None:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=T))
    plan = router.route(req(7, input_tokens), make_view(), 0.0)
    assert (plan.prefill_cluster, plan.reason, plan.threshold_tokens) == (cluster, reason, T)
    assert plan.uncached_tokens == input_tokens and plan.cached_tokens == 0
    _finish(router, plan)


def test_threshold_uses_the_uncached_length_against_the_pd_cluster() -> None:
    index = GlobalKvIndex()
    for node, cluster in (("pdp0", ClusterKind.PD), ("pdp1", ClusterKind.PD), ("pf0", ClusterKind.PRFAAS),
                          ("pf1", ClusterKind.PRFAAS)):
        index.add_node(node, cluster, capacity_blocks=1000)
    hashes = chain(0, 40)  # 20480 tokens
    index.insert("pdp1", hashes[:24])  # 12288 cached on pdp1 -> l = 8192 <= t
    router = PrfaasRouter(threshold_tokens=T, kv_index=index)
    plan = router.route(req(1, 20_480, hashes), make_view(), 0.0)
    assert plan.prefill_cluster is ClusterKind.PD and plan.prefill_instance_id == "pdp1"
    assert (plan.cached_tokens, plan.uncached_tokens) == (12_288, 8_192)
    # the same prefix on PrfaaS does not count in the plain rule: l = 20480 > t
    index.evict("pdp1", hashes)
    index.insert("pf1", hashes[:24])
    plan2 = router.route(req(2, 20_480, hashes), make_view(), 0.0)
    assert plan2.prefill_cluster is ClusterKind.PRFAAS and plan2.prefill_instance_id == "pf1"
    assert plan2.cached_tokens == 12_288  # the PrfaaS node still reuses what it holds
    _finish(router, plan, plan2)


def test_prfaas_down_routes_long_requests_locally() -> None:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=T))
    no_nodes = make_view(overrides={"pf0": {"is_up": False}, "pf1": {"is_up": False}})
    link_down = make_view(egress=link(is_up=False))
    plans = [router.route(req(i, 50_000), v, 0.0) for i, v in enumerate((no_nodes, link_down))]
    for plan in plans:
        assert plan.reason is RouteReason.PRFAAS_DOWN_LOCAL and plan.prefill_cluster is ClusterKind.PD
    _finish(router, *plans)


def test_forced_route_and_its_errors() -> None:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=T))
    plan = router.route(req(1, 100, forced_cluster=ClusterKind.PRFAAS), make_view(), 0.0)
    assert plan.prefill_cluster is ClusterKind.PRFAAS and plan.reason is RouteReason.FORCED
    with pytest.raises(NoRouteError, match="forced to PrfaaS"):
        router.route(req(2, 100, forced_cluster=ClusterKind.PRFAAS), make_view(n_prfaas=0), 0.0)
    _finish(router, plan)


def test_node_choice_skips_down_draining_and_converting_nodes() -> None:
    from prfaas.core.lifecycle import Role

    router = make_router("homogeneous")
    view = make_view(n_pd_p=3, overrides={"pdp0": {"is_up": False}, "pdp1": {"pending_role": Role.PD_DECODE},
                                          "pdd0": {"is_up": False}})
    plan = router.route(req(1, 100), view, 0.0)
    assert (plan.prefill_instance_id, plan.decode_instance_id) == ("pdp2", "pdd1")
    _finish(router, plan)


def test_no_decode_or_prefill_node_raises_no_route() -> None:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=T))
    with pytest.raises(NoRouteError, match="decode"):
        router.route(req(1, 100), make_view(n_pd_d=0), 0.0)
    with pytest.raises(NoRouteError, match="pd prefill"):
        router.route(req(2, 100), make_view(n_pd_p=0), 0.0)
    assert router.pending_request_ids == ()  # a refused request leaves nothing behind


def test_observe_unknown_request_and_set_threshold() -> None:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=T))
    plan = router.route(req(1, 100), make_view(), 0.0)
    router.observe(ok_outcome(plan), 1.0)
    with pytest.raises(ValueError, match="not pending"):
        router.observe(ok_outcome(plan), 1.0)
    router.set_threshold(50)
    assert router.threshold_tokens == 50
    plan2 = router.route(req(2, 100), make_view(), 0.0)
    assert plan2.reason is RouteReason.LONG_OFFLOAD and plan2.threshold_tokens == 50
    homogeneous = make_router("homogeneous")
    homogeneous.set_threshold(50)  # threshold-free policies ignore it
    assert homogeneous.threshold_tokens is None
    _finish(router, plan2)
