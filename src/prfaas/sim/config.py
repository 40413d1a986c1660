"""`prfaas simulate --config FILE`: the TOML scenario, validated once into a frozen tree (STYLE.md §5).

Every section has defaults (the paper's case study), so a file only states what differs:

    seed = 0                    duration_s = 600.0       # arrivals on [0, duration_s)
    horizon_s = 700.0           # stop the clock (default: run until every request finished)
    tpot_slo_s = 0.025          ttft_slo_s = 10.0        warmup_s = 0.0
    [model]     profile = "paper" | "path/to/profile.json"; pd_profile; t_decode_s; bs_max
    [cluster]   n_prfaas; n_pd_prefill; n_pd_decode; cache_blocks; intra_cluster_gbps; decode_holds_prefix
    [link]      capacity_gbps; latency_s; window_s; buffer_s             # the PrfaaS -> PD egress
    [workload]  kind = "lognormal" (mu, sigma, min_tokens, max_tokens) | "trace" (trace, limit, time_scale)
                | "mixshift" (lognormal split at split_tokens; start/end_long_fraction, shift_start/end_s)
                output_tokens
    [workload.arrivals] kind = "poisson" (rate_rps) | "burst" (base_rps, burst_rps, period_s, burst_s)
                | "diurnal" (mean_rps, amplitude_rps, period_s, phase_s) | "step" (start_times_s, step_rates_rps)
    [policy]    name; threshold_tokens; rebalance; control_interval_s
    [policy.bandwidth] / [policy.cache] / [policy.rebalancer] / [policy.node_select] / [policy.failure]
                fields of the policy's own config dataclasses
    [[events]]  time_s; kind = "link_capacity" (capacity_gbps, link) | "node_fail" | "node_recover" (instance)
                | "site_fail" | "site_recover" (site; a [topology] scenario only)

Multi-site scenarios (`sim.multisite`): a `[topology]` section (`core.topology` format; every PD cluster needs
`prefill_instances`) replaces `[cluster]`'s instance counts and `[link]`'s capacity and latency (its
`window_s` / `buffer_s` still apply). Each region's workload is `[workload]` with Poisson arrivals at its
`traffic_rps` unless `[regions.NAME.workload]` gives its own (same fields); region k draws with seed + k.
    [sites]     selector = "prfaas-sites" | "home-only"; target_queue_s; min_available_fraction; weights;
                prefill_queue = "cluster" | "node"; prefill_preemption (with "node": a PrfaaS instance pauses a
                prefill for another region's whose fair turn comes first, as the live `[policy]` knob; default on);
                gateway_heartbeat_s (the selector and routers see the sites as live gateways do, with the
                nodes' heartbeats this often: `sim.multisite_gateway`; unset: the exact view)
Events name links by id (`{prfaas}->{pd}`, reverse `{pd}->{prfaas}`), nodes `{cluster}-{i}`, sites by name.

Errors name the file, the key and its line (`catalog.tomlfile`). Validation only validates: building
the run (reading profiles and traces) happens in `sim.build`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from prfaas.catalog.tomlfile import TomlDoc, convert, read_toml
from prfaas.core.topology import SiteTopology, TopologyError, check_topology
from prfaas.policy.config import PolicyConfig
from prfaas.policy.overrides import POLICY_SUBCONFIGS, PolicyOverrideError, apply_policy_overrides
from prfaas.policy.registry import list_routers
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID
from prfaas.sim.deployment import REVERSE_LINK_ID

NonNeg = Annotated[float, Meta(ge=0)]
Pos = Annotated[float, Meta(gt=0)]


class ModelSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    profile: str = "paper"
    pd_profile: str | None = None
    t_decode_s: Pos = 0.025
    bs_max: Annotated[int, Meta(ge=1)] = 20


class ClusterSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    n_prfaas: Annotated[int, Meta(ge=0)] = 4
    n_pd_prefill: Annotated[int, Meta(ge=0)] = 3
    n_pd_decode: Annotated[int, Meta(ge=1)] = 5
    cache_blocks: Annotated[int, Meta(ge=0)] = 100_000
    intra_cluster_gbps: Pos = 800.0
    decode_holds_prefix: bool = False  # see SimOptions.decode_holds_prefix


class LinkSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    capacity_gbps: NonNeg = 100.0
    latency_s: NonNeg = 0.005
    window_s: Pos = 1.0
    buffer_s: NonNeg = 0.05


class ArrivalsSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["poisson", "burst", "diurnal", "step"] = "poisson"
    rate_rps: NonNeg | None = None
    base_rps: NonNeg | None = None
    burst_rps: NonNeg | None = None
    period_s: Pos | None = None
    burst_s: NonNeg | None = None
    mean_rps: NonNeg | None = None
    amplitude_rps: NonNeg | None = None
    phase_s: float = 0.0
    start_times_s: list[float] | None = None
    step_rates_rps: list[NonNeg] | None = None


class WorkloadSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["lognormal", "trace", "mixshift"] = "lognormal"
    output_tokens: Annotated[int, Meta(ge=0)] = 1024
    mu: float = 9.90
    sigma: Pos = 1.00
    min_tokens: Annotated[int, Meta(ge=1)] = 128
    max_tokens: Annotated[int, Meta(ge=1)] = 131_072
    trace: str | None = None
    limit: Annotated[int, Meta(ge=1)] | None = None
    time_scale: Pos = 1.0
    split_tokens: Pos = 19_400
    start_long_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.2
    end_long_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.8
    shift_start_s: NonNeg = 0.0
    shift_end_s: NonNeg = 0.0
    arrivals: ArrivalsSection = msgspec.field(default_factory=ArrivalsSection)


class PolicySection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = "prfaas"
    threshold_tokens: Annotated[int, Meta(ge=0)] | None = None
    rebalance: bool = False
    control_interval_s: Pos = 30.0
    bandwidth: dict[str, Any] = msgspec.field(default_factory=dict)
    cache: dict[str, Any] = msgspec.field(default_factory=dict)
    rebalancer: dict[str, Any] = msgspec.field(default_factory=dict)
    node_select: dict[str, Any] = msgspec.field(default_factory=dict)
    failure: dict[str, Any] = msgspec.field(default_factory=dict)


class EventSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    time_s: NonNeg
    kind: Literal["link_capacity", "node_fail", "node_recover", "site_fail", "site_recover"]
    link: str = PRFAAS_EGRESS_LINK_ID
    capacity_gbps: NonNeg | None = None
    instance: str | None = None
    site: str | None = None


class RegionSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    workload: WorkloadSection | None = None  # None: [workload] at the region's traffic_rps


class SitesSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    selector: str = "prfaas-sites"
    target_queue_s: Pos = 2.0
    min_available_fraction: Annotated[float, Meta(gt=0, le=1)] = 0.05
    weights: dict[str, NonNeg] | None = None
    prefill_queue: Literal["cluster", "node"] = "cluster"  # see sim.multisite_queue
    prefill_preemption: bool = True  # with prefill_queue = "node" (sim.servers; live: [policy] prefill_preemption)
    # the site selector and routers see the PrfaaS sites as live region gateways do: the nodes' work as of their
    # last heartbeat, this often (live: [gateway] heartbeat_interval_s), plus the region's own in flight
    # (sim.multisite_gateway); unset: the exact view
    gateway_heartbeat_s: Pos | None = None


class SimConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole resolved scenario (written to config.json next to the results)."""

    seed: int = 0
    duration_s: Pos = 600.0
    horizon_s: Pos | None = None
    tpot_slo_s: Pos = 0.025
    ttft_slo_s: Pos | None = None
    warmup_s: NonNeg = 0.0
    source: str = ""
    model: ModelSection = msgspec.field(default_factory=ModelSection)
    cluster: ClusterSection = msgspec.field(default_factory=ClusterSection)
    link: LinkSection = msgspec.field(default_factory=LinkSection)
    workload: WorkloadSection = msgspec.field(default_factory=WorkloadSection)
    policy: PolicySection = msgspec.field(default_factory=PolicySection)
    events: list[EventSection] = msgspec.field(default_factory=list)
    topology: SiteTopology | None = None
    regions: dict[str, RegionSection] = msgspec.field(default_factory=dict)
    sites: SitesSection = msgspec.field(default_factory=SitesSection)


def instance_ids(cluster: ClusterSection) -> tuple[str, ...]:
    """Node ids the deployment will have (the names events refer to)."""
    n_pd = cluster.n_pd_prefill + cluster.n_pd_decode
    return tuple(f"prfaas-{i}" for i in range(cluster.n_prfaas)) + tuple(f"pd-{i}" for i in range(n_pd))


def load_config(path: str | Path) -> SimConfig:
    """Read and validate a scenario file; any problem is a `ConfigError` naming file, key and line."""
    doc = read_toml(path)
    cfg = convert(doc.data, SimConfig, doc)
    cfg = msgspec.structs.replace(cfg, source=str(path))
    validate(cfg, doc)
    return cfg


def validate(cfg: SimConfig, doc: TomlDoc) -> None:
    """Cross-field checks the schema cannot express."""
    if cfg.policy.name not in list_routers():
        raise doc.error("policy.name", f"unknown policy {cfg.policy.name!r}; known: {', '.join(list_routers())}")
    policy_config(cfg, doc)
    w = cfg.workload
    if w.kind == "trace" and not w.trace:
        raise doc.error("workload.trace", "a trace workload needs `trace = \"path.jsonl\"`")
    if w.min_tokens > w.max_tokens:
        raise doc.error("workload.min_tokens", "must be <= max_tokens")
    if w.kind == "mixshift" and w.shift_end_s < w.shift_start_s:
        raise doc.error("workload.shift_end_s", "must be >= shift_start_s")
    if cfg.topology is not None:
        _validate_topology(cfg, doc)
        return
    for key in ("regions", "sites"):
        if key in doc.data:
            raise doc.error(key, "needs a [topology] section")
    if w.kind != "trace":
        _check_arrivals(w.arrivals, doc)
    if cfg.cluster.n_prfaas == 0 and cfg.cluster.n_pd_prefill == 0:
        raise doc.error("cluster", "no prefill instance: set n_prfaas or n_pd_prefill >= 1")
    ids = set(instance_ids(cfg.cluster))
    for i, ev in enumerate(cfg.events):
        key = f"events[{i}]"
        if ev.kind == "link_capacity":
            if ev.capacity_gbps is None:
                raise doc.error(key, "a link_capacity event needs capacity_gbps")
            if ev.link not in (PRFAAS_EGRESS_LINK_ID, REVERSE_LINK_ID):
                raise doc.error(f"{key}.link", f"unknown link {ev.link!r}; known: {PRFAAS_EGRESS_LINK_ID}, "
                                               f"{REVERSE_LINK_ID}")
        elif ev.kind in ("site_fail", "site_recover"):
            raise doc.error(f"{key}.kind", "site events need a [topology] section")
        elif ev.instance not in ids:
            raise doc.error(f"{key}.instance", f"unknown instance {ev.instance!r}; known: {', '.join(sorted(ids))}")


def _validate_topology(cfg: SimConfig, doc: TomlDoc) -> None:
    """A multi-site scenario: the topology, per-region workloads, the selector and events by name."""
    from prfaas.policy.site_registry import list_site_selectors
    from prfaas.sim.multisite_deployment import reverse_link_id

    topo = cfg.topology
    assert topo is not None
    try:
        check_topology(topo)
    except TopologyError as exc:
        raise doc.error(exc.key, exc.reason) from None
    for key in ("n_prfaas", "n_pd_prefill", "n_pd_decode"):
        if key in doc.data.get("cluster", {}):
            raise doc.error(f"cluster.{key}", "the [topology] section gives the instances")
    for i, pd in enumerate(topo.pd):
        if pd.prefill_instances is None:
            raise doc.error(f"topology.pd[{i}].prefill_instances", "the simulator needs N_p for every PD cluster")
    for name in cfg.regions:
        if name not in topo.pd_names:
            raise doc.error(f"regions.{name}", f"unknown PD region; known: {', '.join(topo.pd_names)}")
    for pd in topo.pd:
        region = cfg.regions.get(pd.name)
        w = region.workload if region is not None and region.workload is not None else cfg.workload
        prefix = f"regions.{pd.name}.workload" if region is not None and region.workload is not None else "workload"
        if w.kind == "trace":
            raise doc.error(f"{prefix}.kind", "multi-site scenarios take synthetic workloads (lognormal, mixshift)")
        if w.min_tokens > w.max_tokens:
            raise doc.error(f"{prefix}.min_tokens", "must be <= max_tokens")
        if w.arrivals.kind == "poisson" and w.arrivals.rate_rps is None and pd.traffic_rps is None:
            raise doc.error(f"{prefix}.arrivals.rate_rps", f"region {pd.name}: give rate_rps or its traffic_rps")
        if not (w.arrivals.kind == "poisson" and w.arrivals.rate_rps is None):
            _check_arrivals(w.arrivals, doc)
    if cfg.sites.selector not in list_site_selectors():
        raise doc.error("sites.selector", f"unknown site selector {cfg.sites.selector!r}; known: "
                                          f"{', '.join(list_site_selectors())}")
    for name in cfg.sites.weights or {}:
        if name not in topo.pd_names:
            raise doc.error(f"sites.weights.{name}", f"unknown PD region; known: {', '.join(topo.pd_names)}")
    links = [lk.link_id for lk in topo.links] + [reverse_link_id(lk.prfaas, lk.pd) for lk in topo.links]
    clusters = [*topo.prfaas_names, *topo.pd_names]
    ids = {f"{s.name}-{i}" for s in topo.prfaas for i in range(s.instances)}
    ids |= {f"{s.name}-{i}" for s in topo.pd for i in range(s.instances)}
    for i, ev in enumerate(cfg.events):
        key = f"events[{i}]"
        if ev.kind == "link_capacity":
            if ev.capacity_gbps is None:
                raise doc.error(key, "a link_capacity event needs capacity_gbps")
            if ev.link not in links:
                raise doc.error(f"{key}.link", f"unknown link {ev.link!r}; known: {', '.join(links) or '(none)'}")
        elif ev.kind in ("site_fail", "site_recover"):
            if ev.site not in clusters:
                raise doc.error(f"{key}.site", f"unknown cluster {ev.site!r}; known: {', '.join(clusters)}")
        elif ev.instance not in ids:
            raise doc.error(f"{key}.instance", f"unknown instance {ev.instance!r}; known: {', '.join(sorted(ids))}")


_ARRIVAL_NEEDS = {
    "poisson": ("rate_rps",),
    "burst": ("base_rps", "burst_rps", "period_s", "burst_s"),
    "diurnal": ("mean_rps", "amplitude_rps", "period_s"),
    "step": ("start_times_s", "step_rates_rps"),
}


def _check_arrivals(a: ArrivalsSection, doc: TomlDoc) -> None:
    for name in _ARRIVAL_NEEDS[a.kind]:
        if getattr(a, name) is None:
            raise doc.error(f"workload.arrivals.{name}", f"required for {a.kind} arrivals")




def policy_config(cfg: SimConfig, doc: TomlDoc | None = None) -> PolicyConfig:
    """The policy's own config tree with the file's overrides applied (validated by its dataclasses)."""
    tables = {name: getattr(cfg.policy, name) for name in POLICY_SUBCONFIGS}
    try:
        return apply_policy_overrides(tables, cfg.policy.threshold_tokens)
    except PolicyOverrideError as exc:
        raise _err(doc, exc.key, str(exc)) from None


def _err(doc: TomlDoc | None, key: str, message: str) -> Exception:
    from prfaas.core.errors import ConfigError

    return doc.error(key, message) if doc is not None else ConfigError(f"{key}: {message}")


def config_to_json(cfg: SimConfig) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    return out
