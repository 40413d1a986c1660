"""Shared machinery of every router: forced routes, node choice, decode choice, pending bookkeeping.

A concrete router implements `_decide(req, view, now_s) -> RoutePlan`, usually via `_plan_on(...)`.
`route()` handles a forced cluster first, then delegates, then records the plan as pending until
`observe()` reports its outcome; `pending_request_ids` is the leak check (empty once every routed
request was observed). Routing the same request id again (a retry) replaces its pending plan.

Prefix lookups go through the optional `GlobalKvIndex`; without one every prompt is uncached.
`state_bytes` is S_kv(l) in bytes (e.g. a perf `PrefillCostModel.s_kv_bytes`); it sizes decode-node
memory checks and cache-transfer estimates, and may be None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.kv_index import GlobalKvIndex, cached_tokens_for
from prfaas.policy.node_select import NodeChoice, NodeSelectConfig, select_decode_node, select_prefill_node
from prfaas.policy.types import (
    CacheTransferPlan,
    ClusterView,
    InstanceView,
    NoRouteError,
    Outcome,
    RequestInfo,
    RoutePlan,
    RouteReason,
)

StateBytesFn = Callable[[float], float]
"""S_kv(l): bytes of a request's transferable state after a prompt of l tokens."""

PrefillTimeFn = Callable[[ClusterKind, float, float], float]
"""T(cluster, uncached_tokens, cached_tokens): seconds one node of `cluster` takes for that prefill
(e.g. the cluster's perf `PrefillCostModel.t_prefill_s`)."""

PREFILL_ROLE: Mapping[ClusterKind, Role] = {
    ClusterKind.PRFAAS: Role.PRFAAS_PREFILL,
    ClusterKind.PD: Role.PD_PREFILL,
}


def prefill_candidates(view: ClusterView, cluster: ClusterKind) -> tuple[InstanceView, ...]:
    """Instances of `cluster` that can take a new prefill now."""
    return view.up_instances(cluster, PREFILL_ROLE[cluster])


def is_prfaas_available(view: ClusterView) -> bool:
    """At least one PrfaaS prefill node is up and the egress link (if reported) is up."""
    link = view.egress_link
    if link is not None and not link.is_up:
        return False
    return view.has_up_instances(ClusterKind.PRFAAS, PREFILL_ROLE[ClusterKind.PRFAAS])


class RouterBase:
    """Common behaviour; subclasses set `name` and implement `_decide`."""

    name: ClassVar[str] = "base"

    def __init__(
        self,
        *,
        threshold_tokens: int | None = None,
        node_select: NodeSelectConfig | None = None,
        kv_index: GlobalKvIndex | None = None,
        state_bytes: StateBytesFn | None = None,
    ) -> None:
        if threshold_tokens is not None and threshold_tokens < 0:
            raise ValueError("threshold_tokens must be >= 0")
        self._threshold_tokens = threshold_tokens
        self.node_select = node_select or NodeSelectConfig()
        self.kv_index = kv_index
        self.state_bytes = state_bytes
        self._pending: dict[int, RoutePlan] = {}

    # --- Router protocol ---------------------------------------------------------------------------
    @property
    def threshold_tokens(self) -> int | None:
        """The base threshold t (None for policies without one)."""
        return self._threshold_tokens

    def set_threshold(self, threshold_tokens: int) -> None:
        if threshold_tokens < 0:
            raise ValueError("threshold_tokens must be >= 0")
        if self._threshold_tokens is not None:
            self._threshold_tokens = int(threshold_tokens)

    @property
    def tick_interval_s(self) -> float | None:
        return None

    def tick(self, view: ClusterView, now_s: float) -> None:
        """Stateless policies have nothing to update between arrivals."""

    def route(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        plan = self._forced(req, view) if req.forced_cluster is not None else self._decide(req, view, now_s)
        self._pending[req.request_id] = plan
        return plan

    def observe(self, outcome: Outcome, now_s: float) -> None:
        if self._pending.pop(outcome.request_id, None) is None:
            raise ValueError(f"{self.name}: outcome for request {outcome.request_id}, which is not pending")
        self._on_outcome(outcome, now_s)

    @property
    def pending_request_ids(self) -> tuple[int, ...]:
        """Routed requests whose outcome has not been observed yet (sorted)."""
        return tuple(sorted(self._pending))

    # --- hooks -------------------------------------------------------------------------------------
    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        raise NotImplementedError

    def _on_outcome(self, outcome: Outcome, now_s: float) -> None:
        """Subclasses that learn from outcomes override this; the default ignores them."""

    # --- helpers for subclasses --------------------------------------------------------------------
    def _forced(self, req: RequestInfo, view: ClusterView) -> RoutePlan:
        cluster = req.forced_cluster
        assert cluster is not None
        if cluster is ClusterKind.PRFAAS and not is_prfaas_available(view):
            raise NoRouteError(f"request {req.request_id} is forced to PrfaaS, but PrfaaS is unavailable")
        return self._plan_on(req, view, cluster, RouteReason.FORCED, self._threshold_tokens)

    def _prefix_blocks(self, cluster: ClusterKind, nodes: Sequence[InstanceView], req: RequestInfo
                       ) -> dict[str, int]:
        """Cached prefix blocks of `req` on each of `nodes` (all 0 without an index)."""
        if self.kv_index is None or not req.block_hashes:
            return {}
        index = self.kv_index
        holders = index.holders(req.block_hashes[0])  # nodes without the first block have no prefix
        if not holders:
            return {}
        return {n.instance_id: index.node_prefix_blocks(n.instance_id, req.block_hashes)
                for n in nodes if n.instance_id in holders}

    def _cluster_cached_tokens(self, req: RequestInfo, view: ClusterView, cluster: ClusterKind) -> int:
        """Longest cached prefix, in tokens, on a node of `cluster` that could prefill `req` now."""
        if self.kv_index is None or not req.block_hashes:
            return 0  # what the lookup below gives without an index or hashes, without listing the nodes
        blocks = self._prefix_blocks(cluster, prefill_candidates(view, cluster), req)
        best = max(blocks.values(), default=0)
        return cached_tokens_for(best, req.input_tokens, self.node_select.block_tokens)

    def _choose_prefill(self, req: RequestInfo, view: ClusterView, cluster: ClusterKind) -> NodeChoice:
        candidates = view.ranked(cluster, PREFILL_ROLE[cluster])
        blocks = self._prefix_blocks(cluster, candidates, req)
        choice = select_prefill_node(candidates, blocks, req.input_tokens, self.node_select, ranked=True)
        if choice is None:
            raise NoRouteError(f"request {req.request_id}: no {cluster.value} prefill node is up")
        return choice

    def _choose_decode(self, req: RequestInfo, view: ClusterView) -> str:
        candidates = view.ranked(ClusterKind.PD, Role.PD_DECODE)
        # Ranked, the first node wins when its free memory is unknown whatever the state's size: skip S_kv then.
        known_memory = bool(candidates) and candidates[0].free_kv_bytes is not None
        state = self.state_bytes(req.input_tokens) if self.state_bytes is not None and known_memory else None
        decode_id = select_decode_node(candidates, state, ranked=True)
        if decode_id is None:
            raise NoRouteError(f"request {req.request_id}: no PD decode node is up")
        return decode_id

    def _plan_on(
        self,
        req: RequestInfo,
        view: ClusterView,
        cluster: ClusterKind,
        reason: RouteReason,
        threshold_tokens: int | None,
        *,
        choice: NodeChoice | None = None,
        cache_transfer: CacheTransferPlan | None = None,
        cached_tokens: int | None = None,
    ) -> RoutePlan:
        """A plan prefilling on `cluster` (node by affinity and load unless `choice` is given)."""
        decode_id = self._choose_decode(req, view)
        node = choice if choice is not None else self._choose_prefill(req, view, cluster)
        cached = node.cached_tokens if cached_tokens is None else cached_tokens
        return RoutePlan(
            request_id=req.request_id,
            prefill_instance_id=node.instance_id,
            prefill_cluster=cluster,
            decode_instance_id=decode_id,
            uncached_tokens=req.input_tokens - cached,
            cached_tokens=cached,
            reason=reason,
            threshold_tokens=threshold_tokens,
            cache_transfer=cache_transfer,
        )
