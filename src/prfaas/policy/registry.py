"""One registry of router policies, used by the gateway, the simulator and the planner's what-ifs.

    make_router(name, config=None, *, kv_index=None, state_bytes=None, prefill_time_s=None) -> Router
    list_routers() -> tuple of names

An unknown name raises `UnknownNameError` listing the valid ones. Each factory narrows the
`PolicyConfig` to what its router needs. `state_bytes` (S_kv) and `prefill_time_s` (per-cluster prefill
time) are the deployment's models, optional: routers that use them document what they do without.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from prfaas.core.errors import UnknownNameError
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.policy.routers.base import PrefillTimeFn, RouterBase, StateBytesFn
from prfaas.policy.routers.cache_aware import CacheAwareRouter
from prfaas.policy.routers.homogeneous import HomogeneousRouter
from prfaas.policy.routers.naive_offload import NaiveOffloadRouter
from prfaas.policy.routers.prfaas import PrfaasRouter

RouterFactory = Callable[[PolicyConfig, GlobalKvIndex | None, StateBytesFn | None, PrefillTimeFn | None],
                         RouterBase]


def _homogeneous(c: PolicyConfig, index: GlobalKvIndex | None, s: StateBytesFn | None,
                 _: PrefillTimeFn | None) -> RouterBase:
    return HomogeneousRouter(node_select=c.node_select, kv_index=index, state_bytes=s)


def _naive(c: PolicyConfig, index: GlobalKvIndex | None, s: StateBytesFn | None,
           _: PrefillTimeFn | None) -> RouterBase:
    return NaiveOffloadRouter(node_select=c.node_select, kv_index=index, state_bytes=s)


def _prfaas(c: PolicyConfig, index: GlobalKvIndex | None, s: StateBytesFn | None,
            _: PrefillTimeFn | None) -> RouterBase:
    return PrfaasRouter(threshold_tokens=c.threshold_tokens, node_select=c.node_select, kv_index=index,
                        state_bytes=s)


def _bandwidth(c: PolicyConfig, index: GlobalKvIndex | None, s: StateBytesFn | None,
               _: PrefillTimeFn | None) -> RouterBase:
    return BandwidthAwareRouter(threshold_tokens=c.threshold_tokens, bandwidth=c.bandwidth,
                                node_select=c.node_select, kv_index=index, state_bytes=s)


def _cache(c: PolicyConfig, index: GlobalKvIndex | None, s: StateBytesFn | None,
           t: PrefillTimeFn | None) -> RouterBase:
    return CacheAwareRouter(threshold_tokens=c.threshold_tokens, cache=c.cache, node_select=c.node_select,
                            kv_index=index, state_bytes=s, prefill_time_s=t)


ROUTERS: Mapping[str, RouterFactory] = MappingProxyType({
    HomogeneousRouter.name: _homogeneous,
    NaiveOffloadRouter.name: _naive,
    PrfaasRouter.name: _prfaas,
    BandwidthAwareRouter.name: _bandwidth,
    CacheAwareRouter.name: _cache,
})


def list_routers() -> tuple[str, ...]:
    """Registered router names, in registration order."""
    return tuple(ROUTERS)


def make_router(
    name: str,
    config: PolicyConfig | None = None,
    *,
    kv_index: GlobalKvIndex | None = None,
    state_bytes: StateBytesFn | None = None,
    prefill_time_s: PrefillTimeFn | None = None,
) -> RouterBase:
    """Build the router registered as `name`; `UnknownNameError` (listing valid names) otherwise."""
    try:
        factory = ROUTERS[name]
    except KeyError:
        raise UnknownNameError("policy", name, list(ROUTERS)) from None
    return factory(config or PolicyConfig(), kv_index, state_bytes, prefill_time_s)
