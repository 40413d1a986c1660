"""`prfaas`: the paper's length-threshold rule (arXiv 2604.15039, selective offloading).

    l = input_tokens - l_pd        (uncached length against the local PD cluster's longest prefix;
                                    l = input_tokens without a KV index)
    l <= t  -> PD-P, SHORT_LOCAL   (the boundary stays local)
    l >  t  -> PrfaaS, LONG_OFFLOAD

If PrfaaS is unavailable a long request goes to PD-P with PRFAAS_DOWN_LOCAL. The plan's
`uncached_tokens` is what the chosen node computes (its own prefix hit decides `cached_tokens`).
"""

from __future__ import annotations

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.node_select import NodeSelectConfig
from prfaas.policy.routers.base import RouterBase, StateBytesFn, is_prfaas_available
from prfaas.policy.types import ClusterView, RequestInfo, RoutePlan, RouteReason


class PrfaasRouter(RouterBase):
    name = "prfaas"

    def __init__(
        self,
        *,
        threshold_tokens: int,
        node_select: NodeSelectConfig | None = None,
        kv_index: GlobalKvIndex | None = None,
        state_bytes: StateBytesFn | None = None,
    ) -> None:
        super().__init__(threshold_tokens=threshold_tokens, node_select=node_select, kv_index=kv_index,
                         state_bytes=state_bytes)

    def _base_threshold(self) -> int:
        assert self._threshold_tokens is not None
        return self._threshold_tokens

    def uncached_tokens(self, req: RequestInfo, view: ClusterView) -> int:
        """l: the prompt minus the PD cluster's longest cached prefix."""
        return req.input_tokens - self._cluster_cached_tokens(req, view, ClusterKind.PD)

    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        threshold = self._base_threshold()
        if self.uncached_tokens(req, view) <= threshold:
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.SHORT_LOCAL, threshold)
        if not is_prfaas_available(view):
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.PRFAAS_DOWN_LOCAL, threshold)
        return self._plan_on(req, view, ClusterKind.PRFAAS, RouteReason.LONG_OFFLOAD, threshold)
