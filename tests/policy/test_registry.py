"""The router registry: every name builds its router, unknown names list the valid ones."""

from __future__ import annotations

import pytest
from policy_helpers import make_view, ok_outcome, req

from prfaas.core.errors import PrfaasError, UnknownNameError
from prfaas.policy.bandwidth_aware import BandwidthAwareConfig
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.registry import list_routers, make_router
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.policy.routers.cache_aware import CacheAwareRouter
from prfaas.policy.types import Router

NAMES = ("homogeneous", "naive-offload", "prfaas", "prfaas-bandwidth-aware", "prfaas-cache-aware")


def test_list_routers() -> None:
    assert list_routers() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_router_routes_and_observes(name: str) -> None:
    built = make_router(name, kv_index=GlobalKvIndex(), state_bytes=lambda n: 100.0 * n)
    router: Router = built  # satisfies the protocol the drivers use
    assert router.name == name
    plan = router.route(req(1, 30_000), make_view(), 0.0)
    assert plan.request_id == 1 and plan.uncached_tokens == 30_000
    assert built.pending_request_ids == (1,)
    router.observe(ok_outcome(plan), 1.0)
    assert built.pending_request_ids == ()


def test_config_is_narrowed_into_the_router() -> None:
    bw = BandwidthAwareConfig(util_high=0.5, util_low=0.2)
    router = make_router("prfaas-bandwidth-aware", PolicyConfig(threshold_tokens=123, bandwidth=bw))
    assert isinstance(router, BandwidthAwareRouter)
    assert router.threshold_tokens == 123 and router.controller.config is bw
    index = GlobalKvIndex()
    cache_router = make_router("prfaas-cache-aware", kv_index=index)
    assert isinstance(cache_router, CacheAwareRouter) and cache_router.kv_index is index
    assert cache_router.threshold_tokens == 19_400  # the paper's t


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_router("round-robin")
    message = str(info.value)
    assert "round-robin" in message and all(name in message for name in NAMES)
    assert isinstance(info.value, PrfaasError)


def test_bad_config_values() -> None:
    with pytest.raises(ValueError):
        PolicyConfig(threshold_tokens=-1)
    router = make_router("prfaas")
    with pytest.raises(ValueError):
        router.set_threshold(-5)
