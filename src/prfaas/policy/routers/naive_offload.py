"""`naive-offload`: the paper's naive heterogeneous baseline. Every prefill runs on PrfaaS, with no
length routing (reason ALL_OFFLOAD); the node is still picked by affinity and load. No threshold.

When PrfaaS is unavailable (no PrfaaS prefill node up, or the egress link down) the request falls
back to a PD-P node with PRFAAS_DOWN_LOCAL (DESIGN.md "Failure is a policy"); with no PD-P node
either, routing raises `NoRouteError`.
"""

from __future__ import annotations

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.routers.base import RouterBase, is_prfaas_available
from prfaas.policy.types import ClusterView, RequestInfo, RoutePlan, RouteReason


class NaiveOffloadRouter(RouterBase):
    name = "naive-offload"

    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        if not is_prfaas_available(view):
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.PRFAAS_DOWN_LOCAL, None)
        return self._plan_on(req, view, ClusterKind.PRFAAS, RouteReason.ALL_OFFLOAD, None)
