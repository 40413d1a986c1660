"""`prfaas-bandwidth-aware`: the threshold rule plus the short-term loop of `policy.bandwidth_aware`.

Per request (l = input_tokens - l_pd as in `prfaas`, t the base threshold, t' = t * scale):

    l <= t                            -> PD-P, SHORT_LOCAL
    PrfaaS unavailable, l > t         -> PD-P, PRFAAS_DOWN_LOCAL
    t < l <= t'                       -> PD-P, LINK_CONGESTED_LOCAL or PRFAAS_QUEUE_LOCAL (by cause)
    l > t'                            -> PrfaaS, LONG_OFFLOAD

The plan's `threshold_tokens` is t' (the one in force). Every routed request's l feeds the controller's
demand window (which sizes link raises with `state_bytes`, S_kv); signals are read from the view only
when an update is due, and on `tick` (the simulator and the gateway call it every `control_interval_s`,
so a raised threshold relaxes while no request arrives). Failed offload transfers reported through
`observe` count as a hot link signal at the controller's next update.
"""

from __future__ import annotations

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.bandwidth_aware import (
    BandwidthAwareConfig,
    BandwidthController,
    CongestionCause,
    read_signals,
)
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.node_select import NodeSelectConfig
from prfaas.policy.routers.base import StateBytesFn, is_prfaas_available
from prfaas.policy.routers.prfaas import PrfaasRouter
from prfaas.policy.types import ClusterView, FailureKind, Outcome, RequestInfo, RoutePlan, RouteReason

_LINK_FAILURES = frozenset({FailureKind.TRANSFER_FAILED, FailureKind.TRANSFER_TIMEOUT, FailureKind.LINK_DOWN})


class BandwidthAwareRouter(PrfaasRouter):
    name = "prfaas-bandwidth-aware"

    def __init__(
        self,
        *,
        threshold_tokens: int,
        bandwidth: BandwidthAwareConfig | None = None,
        node_select: NodeSelectConfig | None = None,
        kv_index: GlobalKvIndex | None = None,
        state_bytes: StateBytesFn | None = None,
    ) -> None:
        super().__init__(threshold_tokens=threshold_tokens, node_select=node_select, kv_index=kv_index,
                         state_bytes=state_bytes)
        self.controller = BandwidthController(bandwidth, state_bytes)

    def effective_threshold(self) -> int:
        return self.controller.effective_threshold(self._base_threshold())

    @property
    def tick_interval_s(self) -> float | None:
        return self.controller.config.control_interval_s or None

    def tick(self, view: ClusterView, now_s: float) -> None:
        """The short-term loop runs between arrivals too: a raised threshold relaxes on a quiet link."""
        if self.controller.is_due(now_s):
            self.controller.update(read_signals(view), now_s, self._base_threshold())

    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        base = self._base_threshold()
        controller = self.controller
        self.tick(view, now_s)
        state = controller.state
        effective = controller.effective_threshold(base)
        uncached = self.uncached_tokens(req, view)
        controller.record_request(now_s, uncached, req.input_tokens)  # an offload ships the whole prompt's state
        if uncached <= base:
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.SHORT_LOCAL, effective)
        if not is_prfaas_available(view):
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.PRFAAS_DOWN_LOCAL, effective)
        if uncached <= effective:
            reason = (RouteReason.PRFAAS_QUEUE_LOCAL if state.cause is CongestionCause.QUEUE
                      else RouteReason.LINK_CONGESTED_LOCAL)
            return self._plan_on(req, view, ClusterKind.PD, reason, effective)
        return self._plan_on(req, view, ClusterKind.PRFAAS, RouteReason.LONG_OFFLOAD, effective)

    def _on_outcome(self, outcome: Outcome, now_s: float) -> None:
        if outcome.route.is_offloaded and outcome.failure in _LINK_FAILURES:
            self.controller.note_transfer_failure()
