"""`prfaas-cache-aware`: the paper's prefix-aware routing in two bandwidth regimes (arXiv 2604.15039).

A cluster's cached prefix is the longest one held by a node of it that could prefill now (PD-P nodes
of the PD cluster, PrfaaS prefill nodes). With L the prompt, t the threshold:

    SCARCE     l = L - l_pd                 l <= t -> PD-P, else PrfaaS (which reuses its own prefix)
    ABUNDANT   l = L - max(l_prfaas, l_pd)  l <= t -> PD-P, else PrfaaS; when the other cluster holds a
               longer prefix than the chosen node, a `CacheTransferPlan` moves the missing blocks
               (only the increment) from the other cluster's best node to the chosen node first

A transfer is considered only when the other cluster's prefix is at least `min_transfer_blocks` longer
than the compute cluster's own best one. Then nodes are scored as if they already held the
transferable prefix, so the transfer lands on the least-loaded node rather than chasing a small local
hit; it must add at least `min_transfer_blocks` blocks to the chosen node and moves at most
`max_transfer_blocks`. Its byte estimate, with S the
router's `state_bytes`, is S(end) - S(start) + S(0): the full-attention KV of the new tokens plus the
fixed linear state, which must come with the exact prefix it belongs to.

Minimum benefit (ABUNDANT only): a transfer ships at least S(0) (the whole linear state, e.g. 172 MiB for
the paper's model) however few blocks it adds, and it runs before the prefill, so it must pay for
itself. Let plan A be the ABUNDANT plan (with the transfer) and plan B what the SCARCE rule decides for
the same request (no transfer; possibly the other cluster, which then reuses its own prefix). With
T(cluster, uncached, cached) the router's `prefill_time_s` model, each plan's time to first token on
its prefill node is estimated as

    time(plan) = T(cluster, queued_tokens of the chosen node, 0) + T(cluster, uncached, cached)

(the first term: the node's waiting work, as one prefill) and A is kept only when

    time(B) - time(A) >= min_transfer_benefit * bytes_estimate / free bandwidth of the carrying link

the free bandwidth being capacity - goodput of the link the transfer takes ("pd->prfaas" when
reported, else the egress link's figures); otherwise B is returned. A link that is down or of unknown
capacity rejects transfers; without a `prefill_time_s` model or a byte estimate the check is skipped
(every planned transfer is kept).

PD-P headroom (ABUNDANT only): a plan A that pulls a prefill from PrfaaS to PD-P (plan B runs it on
PrfaaS) is dropped for B while the PD-P utilisation, the prefill seconds of PD-P outcomes observed in
the last `pd_util_window_s` over that window times the up PD-P nodes, exceeds `pull_max_pd_util`.
Measured on the Mooncake trace at the planner's optimum (t = 3,587, 1 PD-P / 7 PD-D): without it
cache-aware's TTFT mean was 16% above `prfaas` (1.84 s against 1.58 s); with it, within 1%.

Reasons: PD-P with a prefix hit CACHE_HIT_LOCAL, without SHORT_LOCAL; PrfaaS with a hit
CACHE_HIT_REMOTE, without LONG_OFFLOAD; l > t with PrfaaS unavailable PRFAAS_DOWN_LOCAL.
The regime is chosen by `policy.cache_regime.RegimeDetector`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from prfaas.core.lifecycle import ClusterKind
from prfaas.core.link import LinkSnapshot
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.policy.cache_regime import CacheAwareConfig, CacheRegime, RegimeDetector
from prfaas.policy.kv_index import GlobalKvIndex, cached_tokens_for
from prfaas.policy.node_select import NodeChoice, NodeSelectConfig, select_prefill_node
from prfaas.policy.routers.base import (
    PREFILL_ROLE,
    PrefillTimeFn,
    RouterBase,
    StateBytesFn,
    is_prfaas_available,
    prefill_candidates,
)
from prfaas.policy.types import (
    PD_TO_PRFAAS_LINK_ID,
    CacheTransferPlan,
    ClusterView,
    NoRouteError,
    Outcome,
    RequestInfo,
    RoutePlan,
    RouteReason,
)


@dataclass(frozen=True, slots=True)
class _ClusterHits:
    """Per-node prefix blocks of one cluster's prefill candidates, and its best node."""

    cluster: ClusterKind
    blocks_by_node: dict[str, int]
    best_node: str | None
    best_blocks: int


class CacheAwareRouter(RouterBase):
    name = "prfaas-cache-aware"

    def __init__(
        self,
        *,
        threshold_tokens: int,
        cache: CacheAwareConfig | None = None,
        node_select: NodeSelectConfig | None = None,
        kv_index: GlobalKvIndex | None = None,
        state_bytes: StateBytesFn | None = None,
        prefill_time_s: PrefillTimeFn | None = None,
    ) -> None:
        super().__init__(threshold_tokens=threshold_tokens, node_select=node_select, kv_index=kv_index,
                         state_bytes=state_bytes)
        self.prefill_time_s = prefill_time_s
        self._pd_busy: deque[tuple[float, float]] = deque()  # (observed at, PD-P prefill seconds)
        self.cache_config = cache or CacheAwareConfig()
        self.regime_detector = RegimeDetector(self.cache_config)

    @property
    def regime(self) -> CacheRegime:
        return self.regime_detector.regime

    def _decide(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        assert self._threshold_tokens is not None
        threshold = self._threshold_tokens
        regime = self.regime_detector.update(view.egress_link)
        has_prfaas = is_prfaas_available(view)
        hits = {c: self._hits(req, view, c) for c in ClusterKind}
        if not has_prfaas:
            hits[ClusterKind.PRFAAS] = _ClusterHits(ClusterKind.PRFAAS, {}, None, 0)
        scarce = self._regime_plan(req, view, hits, threshold, has_prfaas, abundant=False)
        if regime is not CacheRegime.ABUNDANT:
            return scarce
        plan = self._regime_plan(req, view, hits, threshold, has_prfaas, abundant=True)
        if plan.cache_transfer is None:
            return plan
        pulls = plan.prefill_cluster is ClusterKind.PD and scarce.prefill_cluster is ClusterKind.PRFAAS
        if pulls and self.pd_prefill_utilisation(view, now_s) > self.cache_config.pull_max_pd_util:
            return scarce
        return plan if self._transfer_pays(plan, scarce, plan.cache_transfer, view) else scarce

    def pd_prefill_utilisation(self, view: ClusterView, now_s: float) -> float:
        """PD-P busy fraction over the last `pd_util_window_s`, from observed outcomes."""
        window = self.cache_config.pd_util_window_s
        busy = self._pd_busy
        while busy and busy[0][0] < now_s - window:
            busy.popleft()
        nodes = len(prefill_candidates(view, ClusterKind.PD))
        return sum(seconds for _, seconds in busy) / (window * max(nodes, 1))

    def _on_outcome(self, outcome: Outcome, now_s: float) -> None:
        if outcome.ok and outcome.route.prefill_cluster is ClusterKind.PD and outcome.prefill_s:
            self._pd_busy.append((now_s, outcome.prefill_s))

    def _regime_plan(self, req: RequestInfo, view: ClusterView, hits: dict[ClusterKind, _ClusterHits],
                     threshold: int, has_prfaas: bool, *, abundant: bool) -> RoutePlan:
        prefix_blocks = hits[ClusterKind.PD].best_blocks
        if abundant:
            prefix_blocks = max(prefix_blocks, hits[ClusterKind.PRFAAS].best_blocks)
        uncached = req.input_tokens - cached_tokens_for(prefix_blocks, req.input_tokens,
                                                        self.node_select.block_tokens)
        if uncached <= threshold:
            cluster = ClusterKind.PD
        elif has_prfaas:
            cluster = ClusterKind.PRFAAS
        else:
            return self._plan_on(req, view, ClusterKind.PD, RouteReason.PRFAAS_DOWN_LOCAL, threshold)
        other = ClusterKind.PRFAAS if cluster is ClusterKind.PD else ClusterKind.PD
        source = hits[other] if abundant else None
        return self._plan_with_cache(req, view, hits[cluster], source, threshold)

    def _transfer_pays(self, plan: RoutePlan, alternative: RoutePlan, transfer: CacheTransferPlan,
                       view: ClusterView) -> bool:
        """The minimum-benefit rule of the module docstring."""
        factor = self.cache_config.min_transfer_benefit
        if factor == 0 or self.prefill_time_s is None or transfer.bytes_estimate is None:
            return True
        free = _free_bytes_per_s(_carrying_link(view, transfer))
        if free is None or free <= 0:
            return False
        saved_s = self._time_on_node(alternative, view) - self._time_on_node(plan, view)
        return saved_s >= factor * transfer.bytes_estimate / free

    def _time_on_node(self, plan: RoutePlan, view: ClusterView) -> float:
        """Estimated wait plus prefill of `plan` on its node (module docstring)."""
        t = self.prefill_time_s
        assert t is not None
        cluster = plan.prefill_cluster
        queued = next((n.queued_tokens for n in prefill_candidates(view, cluster)
                       if n.instance_id == plan.prefill_instance_id), 0)
        wait_s = t(cluster, queued, 0) if queued > 0 else 0.0
        return wait_s + t(cluster, plan.uncached_tokens, plan.cached_tokens)

    def _hits(self, req: RequestInfo, view: ClusterView, cluster: ClusterKind) -> _ClusterHits:
        blocks = self._prefix_blocks(cluster, prefill_candidates(view, cluster), req)
        best = min(blocks, key=lambda i: (-blocks[i], i), default=None)
        return _ClusterHits(cluster, blocks, best, blocks[best] if best is not None else 0)

    def _transfer_blocks(self, own_blocks: int, source_blocks: int) -> int:
        """Blocks a transfer would add on top of `own_blocks` (0 when not worth it)."""
        gain = source_blocks - own_blocks
        cap = self.cache_config.max_transfer_blocks
        if cap is not None:
            gain = min(gain, cap)
        return gain if gain >= self.cache_config.min_transfer_blocks else 0

    def _plan_with_cache(self, req: RequestInfo, view: ClusterView, dest: _ClusterHits,
                         source: _ClusterHits | None, threshold: int) -> RoutePlan:
        candidates = view.ranked(dest.cluster, PREFILL_ROLE[dest.cluster])
        source_blocks = source.best_blocks if source is not None else 0
        if source_blocks - dest.best_blocks < self.cache_config.min_transfer_blocks:
            source_blocks = 0  # the compute cluster's own prefix is (about) as long: move nothing
        effective = {node_id: own + self._transfer_blocks(own, source_blocks)
                     for node_id, own in dest.blocks_by_node.items()}
        choice = select_prefill_node(candidates, effective, req.input_tokens, self.node_select, ranked=True,
                                     default_blocks=self._transfer_blocks(0, source_blocks))
        if choice is None:
            raise NoRouteError(f"request {req.request_id}: no {dest.cluster.value} prefill node is up")
        own = dest.blocks_by_node.get(choice.instance_id, 0)
        transfer = None
        if source is not None and source.best_node is not None and choice.cached_blocks > own:
            transfer = self._transfer_plan(req, source, source.best_node, choice, own)
        return self._plan_on(req, view, dest.cluster, _reason(dest.cluster, choice.cached_tokens), threshold,
                             choice=choice, cache_transfer=transfer)

    def _transfer_plan(self, req: RequestInfo, source: _ClusterHits, source_node: str, dest: NodeChoice,
                       own_blocks: int) -> CacheTransferPlan:
        block_tokens = self.node_select.block_tokens
        start_tokens = cached_tokens_for(own_blocks, req.input_tokens, block_tokens)
        num_tokens = dest.cached_tokens - start_tokens
        bytes_estimate = None
        if self.state_bytes is not None:
            s = self.state_bytes
            bytes_estimate = round(s(dest.cached_tokens) - s(start_tokens) + s(0))
        return CacheTransferPlan(
            source_cluster=source.cluster,
            source_instance_id=source_node,
            dest_cluster=ClusterKind.PD if source.cluster is ClusterKind.PRFAAS else ClusterKind.PRFAAS,
            dest_instance_id=dest.instance_id,
            num_blocks=dest.cached_blocks - own_blocks,
            num_tokens=num_tokens,
            bytes_estimate=bytes_estimate,
            start_block=own_blocks,
        )


def _carrying_link(view: ClusterView, transfer: CacheTransferPlan) -> LinkSnapshot | None:
    if transfer.source_cluster is ClusterKind.PD:
        return view.links.get(PD_TO_PRFAAS_LINK_ID) or view.egress_link
    return view.egress_link


def _free_bytes_per_s(link: LinkSnapshot | None) -> float | None:
    """Capacity minus goodput, in bytes/s; None when the link is down or its capacity unknown."""
    if link is None or not link.is_up or link.capacity_gbps is None or link.capacity_gbps <= 0:
        return None
    return gbps_to_bytes_per_s(max(link.capacity_gbps - link.goodput_gbps, 0.0))


def _reason(cluster: ClusterKind, cached_tokens: int) -> RouteReason:
    if cluster is ClusterKind.PD:
        return RouteReason.CACHE_HIT_LOCAL if cached_tokens > 0 else RouteReason.SHORT_LOCAL
    return RouteReason.CACHE_HIT_REMOTE if cached_tokens > 0 else RouteReason.LONG_OFFLOAD
