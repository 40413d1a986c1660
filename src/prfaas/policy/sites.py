"""Which PrfaaS cluster prefills an offloaded request, when there are several (issue 14). Pure, like every policy.

A PD region's router decides *whether* to offload (its threshold, as in the two-cluster routers); the
`SiteSelector` then decides *where*: one of the PrfaaS clusters with a live link to the region, or none (the
request falls back to local prefill). Per candidate PrfaaS cluster i for a request from region j:

    eligible    cluster i is up with >= 1 instance; link i->j exists, is up and has capacity > 0; the link's own
                bandwidth loop admits the request (below); fair share admits region j at i (below)
    estimate    TTFT_i = wait_i + max(T_prefill_i(uncached_i | cached_i), S_kv(prompt) / B_avail,ij) + latency_ij
                wait_i   = queued prefill work at i / up instances of i (seconds)
                cached_i = the prompt's prefix cached at i (the KV-cache index), so a prefix cached at A makes A
                           cheaper; the whole prompt's state ships (the decode side holds no prefix)
                B_avail  = capacity - goodput of the link (>= min_available_fraction x capacity): bytes stream
                           layer by layer while the prefill runs, so the slower of the two dominates
    choice      the eligible cluster with the smallest estimate (ties: the order of the topology)

Bandwidth loop per link. Each link i->j has its own `BandwidthController` (policy.bandwidth_aware), fed by
`tick` with that link's snapshot and cluster i's queue, and with the requests routed over it (its demand
window); it scales the offload threshold *for that link*: a request is eligible on link i->j only if its
uncached length exceeds base_threshold_j x scale_ij. A hot link so sheds its shortest offloads to the other
clusters first, and only then to local prefill.

Failures. A cluster that is down, or a link that is down (capacity 0 or `is_up` False), is not a candidate:
its region's offloads shift to the other clusters (reason `FAILOVER` when the region's home cluster -- its
lowest-latency link -- is the one lost) and fall back to local prefill only when no cluster is left
(`NO_SITE`).

Fair share (documented, tested). Each PrfaaS cluster divides its queue among the regions that use it in
proportion to their weights w_j (the topology's traffic weights unless configured). While cluster i's
queued work is below `target_queue_s` per instance it admits everyone (work-conserving). Above it, region j
is admitted at i only while its own queued work at i is below its weighted share of that target:

    q_ij < w_j / sum_{k linked to i} w_k * target_queue_s * instances_i

So a region that bursts can fill at most its share of a congested cluster's queue; every other region below
its share is still admitted, and the queue ahead of it holds at most ~target_queue_s per instance of work:
one region's burst cannot starve another's offloads. A region refused by fair share everywhere falls back to
local prefill (`FAIR_SHARE_LOCAL`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prfaas.core.link import LinkSnapshot
from prfaas.core.topology import SiteLink, SiteTopology, link_id
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.policy.bandwidth_aware import BandwidthAwareConfig, BandwidthController, BandwidthSignals

SitePrefillTimeFn = Callable[[str, float, float], float]  # (PrfaaS cluster, uncached tokens, cached tokens) -> s
StateBytesFn = Callable[[float], float]


class SiteReason(enum.Enum):
    BEST = "best"  # the smallest estimated TTFT (the region's home cluster or not)
    PREFIX_LOCALITY = "prefix_locality"  # chosen over a faster-looking cluster thanks to its cached prefix
    FAILOVER = "failover"  # the home cluster or its link is down; another cluster took it
    FAIR_SHARE = "fair_share"  # a better cluster refused the region (over its share there); another took it
    NO_SITE = "no_site_local"  # no PrfaaS cluster reachable: local prefill
    LINK_CONGESTED_LOCAL = "link_congested_local"  # every reachable link's loop refused it: local prefill
    FAIR_SHARE_LOCAL = "fair_share_local"  # every reachable cluster refused it by fair share: local prefill


@dataclass(frozen=True, slots=True)
class PrfaasSiteView:
    """One PrfaaS cluster at one instant (the simulator or the gateway fills it from its nodes)."""

    name: str
    up_instances: int
    queued_work_s: float = 0.0  # prefill seconds waiting or running, all regions
    queued_work_s_by_region: Mapping[str, float] = field(default_factory=dict)
    queued_requests: int = 0

    @property
    def is_up(self) -> bool:
        return self.up_instances > 0


@dataclass(frozen=True, slots=True)
class SitesView:
    sites: Mapping[str, PrfaasSiteView]
    links: Mapping[str, LinkSnapshot]  # by link id ("{prfaas}->{pd}")


@dataclass(frozen=True, slots=True)
class SiteSelectConfig:
    target_queue_s: float = 2.0
    """Queued prefill seconds per instance above which a PrfaaS cluster enforces the fair share."""
    weights: Mapping[str, float] | None = None
    """Fair-share weight per PD region (None: the topology's traffic weights)."""
    min_available_fraction: float = 0.05
    """Floor of the available bandwidth estimate, as a fraction of the link's capacity."""
    bandwidth: BandwidthAwareConfig = field(default_factory=BandwidthAwareConfig)
    """Each link's bandwidth loop."""

    def __post_init__(self) -> None:
        if self.target_queue_s <= 0:
            raise ValueError("target_queue_s must be > 0")
        if not 0.0 < self.min_available_fraction <= 1.0:
            raise ValueError("min_available_fraction must be in (0, 1]")
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ValueError("fair-share weights must be >= 0")


@dataclass(frozen=True, slots=True)
class SiteChoice:
    site: str | None  # None: prefill locally
    reason: SiteReason
    link_id: str | None = None
    estimate_s: float | None = None
    estimates: tuple[tuple[str, float], ...] = ()  # every eligible cluster's estimate (for logs and replay)


class SiteSelector:
    """Chooses the PrfaaS cluster per offloaded request (module docstring). `tick` runs the per-link loops."""

    def __init__(self, topology: SiteTopology, prefill_time_s: SitePrefillTimeFn, state_bytes: StateBytesFn,
                 config: SiteSelectConfig | None = None) -> None:
        self.topology = topology
        self.prefill_time_s = prefill_time_s
        self.state_bytes = state_bytes
        self.config = config or SiteSelectConfig()
        weights = self.config.weights or dict(zip(topology.pd_names, topology.traffic_weights(), strict=True))
        self.weights = {name: float(weights.get(name, 0.0)) for name in topology.pd_names}
        self.loops = {lk.link_id: BandwidthController(self.config.bandwidth, state_bytes) for lk in topology.links}
        self._home = {pd: _home_site(topology, pd) for pd in topology.pd_names}
        self._tables_of: SiteTopology | None = None  # the topology `_tables` answered for
        self._links_to: dict[str, tuple[SiteLink, ...]] = {}
        self._order: dict[str, int] = {}
        self._users: dict[str, list[str]] = {}

    def _tables(self) -> None:
        """The topology's per-decision queries (links to a region, cluster order, a cluster's regions), answered
        once per topology object (a subclass may replace `self.topology`, e.g. `HomeOnlySelector`)."""
        topology = self.topology
        if self._tables_of is topology:
            return
        self._links_to = {pd: topology.links_to(pd) for pd in topology.pd_names}
        self._order = {name: i for i, name in enumerate(topology.prfaas_names)}
        self._users = {name: [lk.pd for lk in topology.links if lk.prfaas == name] for name in topology.prfaas_names}
        self._tables_of = topology

    # --- the per-link bandwidth loops -------------------------------------------------------------
    def tick(self, view: SitesView, now_s: float, region: str | None = None) -> None:
        """Update every link's loop (`region`: only the links to that PD region, whose gateway's `view` this is)
        from its snapshot and its PrfaaS cluster's queue."""
        for lk in self.topology.links:
            if region is not None and lk.pd != region:
                continue
            snap = view.links.get(lk.link_id)
            site = view.sites.get(lk.prfaas)
            queue = site.queued_requests / site.up_instances if site is not None and site.is_up else 0.0
            if snap is None:
                signals = BandwidthSignals(queue_per_instance=queue)
            else:
                signals = BandwidthSignals(snap.utilisation, snap.rtt_ms, snap.retransmit_rate, queue,
                                           snap.capacity_gbps, snap.goodput_gbps)
            self.loops[lk.link_id].update(signals, now_s)

    def link_threshold(self, prfaas: str, pd: str, base_threshold_tokens: int) -> int:
        """The threshold link prfaas->pd applies now (its loop's scale of the region's threshold)."""
        return self.loops[link_id(prfaas, pd)].effective_threshold(base_threshold_tokens)

    def note_transfer_failure(self, prfaas: str, pd: str) -> None:
        self.loops[link_id(prfaas, pd)].note_transfer_failure()

    # --- the choice -------------------------------------------------------------------------------
    def fair_share_s(self, prfaas: str, pd: str, site: PrfaasSiteView) -> float:
        """Region `pd`'s guaranteed queued work at cluster `prfaas` while it is congested (seconds)."""
        self._tables()
        users = self._users[prfaas] if prfaas in self._users else [
            lk.pd for lk in self.topology.links if lk.prfaas == prfaas]
        total = sum(self.weights[p] for p in users)
        share = self.weights[pd] / total if total > 0 else 0.0
        return share * self.config.target_queue_s * site.up_instances

    def admits(self, prfaas: str, pd: str, site: PrfaasSiteView) -> bool:
        """Fair share: work-conserving below the target, each region within its share above it."""
        if site.queued_work_s < self.config.target_queue_s * site.up_instances:
            return True
        return site.queued_work_s_by_region.get(pd, 0.0) < self.fair_share_s(prfaas, pd, site)

    def choose(self, pd: str, prompt_tokens: int, cached_tokens_by_site: Mapping[str, int], view: SitesView,
               now_s: float, base_threshold_tokens: int = 0) -> SiteChoice:
        """The PrfaaS cluster for an offloaded request of `prompt_tokens` from region `pd` (or local)."""
        reachable: list[str] = []
        refused_by_loop: list[str] = []
        refused_by_share: list[tuple[str, float]] = []
        estimates: list[tuple[str, float]] = []
        self._tables()
        for lk in self._links_to[pd] if pd in self._links_to else self.topology.links_to(pd):
            site = view.sites.get(lk.prfaas)
            snap = view.links.get(lk.link_id)
            capacity = snap.capacity_gbps if snap is not None and snap.capacity_gbps is not None else lk.capacity_gbps
            if site is None or not site.is_up or capacity <= 0 or (snap is not None and not snap.is_up):
                continue
            reachable.append(lk.prfaas)
            cached = min(int(cached_tokens_by_site.get(lk.prfaas, 0)), max(prompt_tokens - 1, 0))
            uncached = prompt_tokens - cached
            if uncached <= self.link_threshold(lk.prfaas, pd, base_threshold_tokens) and base_threshold_tokens > 0:
                refused_by_loop.append(lk.prfaas)
                continue
            estimate = self._estimate(lk.prfaas, pd, prompt_tokens, cached, site, snap, capacity, lk.latency_s)
            if not self.admits(lk.prfaas, pd, site):
                refused_by_share.append((lk.prfaas, estimate))
                continue
            estimates.append((lk.prfaas, estimate))
        if not estimates:
            if refused_by_share:
                return SiteChoice(None, SiteReason.FAIR_SHARE_LOCAL)
            if refused_by_loop:
                return SiteChoice(None, SiteReason.LINK_CONGESTED_LOCAL)
            return SiteChoice(None, SiteReason.NO_SITE)
        order = self._order
        best, best_s = min(estimates, key=lambda item: (item[1], order[item[0]]))
        reason = SiteReason.BEST
        home = self._home[pd]
        if home is not None and home not in reachable:
            reason = SiteReason.FAILOVER
        elif any(est < best_s for _, est in refused_by_share):
            reason = SiteReason.FAIR_SHARE
        elif cached_tokens_by_site.get(best, 0) > 0:
            fresh = [(name, est) for name, est in estimates if name != best]
            no_cache_best = self._estimate_without_cache(best, pd, prompt_tokens, view)
            if fresh and no_cache_best > min(est for _, est in fresh):
                reason = SiteReason.PREFIX_LOCALITY
        cached = min(int(cached_tokens_by_site.get(best, 0)), max(prompt_tokens - 1, 0))
        self.loops[link_id(best, pd)].record_request(now_s, prompt_tokens - cached, prompt_tokens)
        return SiteChoice(best, reason, link_id(best, pd), best_s, tuple(estimates))

    # --- estimates --------------------------------------------------------------------------------
    def _estimate(self, prfaas: str, pd: str, prompt_tokens: int, cached: int, site: PrfaasSiteView,
                  snap: LinkSnapshot | None, capacity_gbps: float, latency_s: float) -> float:
        wait = site.queued_work_s / site.up_instances
        compute = self.prefill_time_s(prfaas, float(prompt_tokens - cached), float(cached))
        used = snap.goodput_gbps if snap is not None else 0.0
        available = max(capacity_gbps - used, self.config.min_available_fraction * capacity_gbps)
        transfer = self.state_bytes(float(prompt_tokens)) / gbps_to_bytes_per_s(available)
        return wait + max(compute, transfer) + latency_s

    def _estimate_without_cache(self, prfaas: str, pd: str, prompt_tokens: int, view: SitesView) -> float:
        lk = self.topology.link(prfaas, pd)
        assert lk is not None
        snap = view.links.get(lk.link_id)
        capacity = snap.capacity_gbps if snap is not None and snap.capacity_gbps is not None else lk.capacity_gbps
        return self._estimate(prfaas, pd, prompt_tokens, 0, view.sites[prfaas], snap, capacity, lk.latency_s)


def _home_site(topology: SiteTopology, pd: str) -> str | None:
    """The region's home PrfaaS cluster: its lowest-latency link (ties: the topology's order)."""
    links = topology.links_to(pd)
    if not links:
        return None
    return min(links, key=lambda lk: (lk.latency_s, topology.prfaas_names.index(lk.prfaas))).prfaas
