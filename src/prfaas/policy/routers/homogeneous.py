"""`homogeneous`: the paper's homogeneous PD baseline. Every prefill runs on a PD-P node of the local
PD cluster (cache-affine, least loaded), decode on a PD-D node. Reason: ALL_LOCAL. No threshold.
"""

from __future__ import annotations

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.routers.base import RouterBase
from prfaas.policy.types import ClusterView, RequestInfo, RoutePlan, RouteReason


class HomogeneousRouter(RouterBase):
    name = "homogeneous"

    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        return self._plan_on(req, view, ClusterKind.PD, RouteReason.ALL_LOCAL, None)
