"""Sites and links as data: any number of PrfaaS clusters and PD clusters, one link per (PrfaaS, PD) pair.

One `[topology]` section, shared by the planner (`planner.multi`), the simulator and (later) the live config:

    [[topology.prfaas]]  name = "east-prefill"; accelerator = "h200"; instances = 4; gpus_per_instance = 8
    [[topology.pd]]      name = "eu"; accelerator = "h20"; instances = 8; prefill_instances = 3; traffic_rps = 2.0
    [[topology.links]]   prfaas = "east-prefill"; pd = "eu"; capacity_gbps = 100; latency_s = 0.005

- A PrfaaS cluster only prefills long requests; a PD cluster prefills short ones (PD-P) and decodes everything
  (PD-D). `instances` of a PD cluster is N_p + N_d; `prefill_instances` fixes N_p (the simulator and a live
  deployment need it; the planner chooses it when absent).
- A link carries KV state one way, PrfaaS cluster -> PD cluster. A pair without a link cannot offload
  (the planner gives it no traffic; a router never picks it). Its id is `"{prfaas}->{pd}"`.
- `traffic_rps` is the PD region's offered load. Given for every PD cluster, the planner scales that mix;
  given for none, each region's weight is its instance count. Mixed is an error.

Today's two-cluster configs map to a 1x1 topology (`two_cluster`) whose names are `prfaas` and `pd`, so
its one link id is `prfaas->pd`, the id every two-cluster component already uses.

Validation (`check_topology`) checks values only and raises `TopologyError` naming the key
(`topology.links[2].pd`) so a file loader can add the line.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from prfaas.core.errors import ConfigError

__all__ = ["PdSite", "PrfaasSite", "SiteLink", "SiteTopology", "TopologyError", "check_topology", "link_id",
           "two_cluster"]

TWO_CLUSTER_PRFAAS = "prfaas"
TWO_CLUSTER_PD = "pd"

Count = Annotated[int, Meta(ge=0)]
NonNeg = Annotated[float, Meta(ge=0)]


class TopologyError(ConfigError):
    """An invalid topology; `key` is the dotted path of the offending value (`topology.links[1].pd`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


class PrfaasSite(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A PrfaaS (prefill-only) cluster."""

    name: str
    accelerator: str = "h200"
    instances: Count = 4
    gpus_per_instance: Annotated[int, Meta(ge=1)] = 8


class PdSite(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A local PD cluster (one region): PD-P + PD-D instances."""

    name: str
    accelerator: str = "h20"
    instances: Annotated[int, Meta(ge=2)] = 8
    prefill_instances: Count | None = None  # N_p (None: the planner chooses)
    gpus_per_instance: Annotated[int, Meta(ge=1)] = 8
    traffic_rps: NonNeg | None = None  # offered load of this region

    @property
    def decode_instances(self) -> int | None:
        return None if self.prefill_instances is None else self.instances - self.prefill_instances


class SiteLink(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The one-way KV link from a PrfaaS cluster to a PD cluster."""

    prfaas: str
    pd: str
    capacity_gbps: NonNeg = 100.0  # 0: provisioned but down
    latency_s: NonNeg = 0.005  # one-way

    @property
    def link_id(self) -> str:
        return link_id(self.prfaas, self.pd)


class SiteTopology(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every cluster and link of a deployment. Build with `check_topology` to validate."""

    prfaas: list[PrfaasSite] = msgspec.field(default_factory=list)
    pd: list[PdSite] = msgspec.field(default_factory=list)
    links: list[SiteLink] = msgspec.field(default_factory=list)

    # --- queries ---------------------------------------------------------------------------------
    @property
    def prfaas_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.prfaas)

    @property
    def pd_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.pd)

    def link(self, prfaas: str, pd: str) -> SiteLink | None:
        for lk in self.links:
            if lk.prfaas == prfaas and lk.pd == pd:
                return lk
        return None

    def links_to(self, pd: str) -> tuple[SiteLink, ...]:
        """The links that can carry `pd`'s offloads, in the order of `prfaas`."""
        return tuple(lk for name in self.prfaas_names if (lk := self.link(name, pd)) is not None)

    def traffic_weights(self) -> tuple[float, ...]:
        """Each PD region's share of traffic (its `traffic_rps`, or its instance count when none is given)."""
        if all(s.traffic_rps is not None for s in self.pd):
            return tuple(float(s.traffic_rps or 0.0) for s in self.pd)
        return tuple(float(s.instances) for s in self.pd)

    @property
    def has_traffic(self) -> bool:
        return bool(self.pd) and all(s.traffic_rps is not None for s in self.pd)

    @property
    def num_gpus(self) -> int:
        return (sum(s.instances * s.gpus_per_instance for s in self.prfaas)
                + sum(s.instances * s.gpus_per_instance for s in self.pd))

    @property
    def is_two_cluster(self) -> bool:
        return len(self.prfaas) <= 1 and len(self.pd) == 1

    def replace_prfaas_instances(self, counts: dict[str, int]) -> SiteTopology:
        """A copy with new PrfaaS instance counts (the sizing mode)."""
        sites = [msgspec.structs.replace(s, instances=counts.get(s.name, s.instances)) for s in self.prfaas]
        return msgspec.structs.replace(self, prfaas=sites)

    def without_links(self, dropped: set[tuple[str, str]]) -> SiteTopology:
        """A copy without the (prfaas, pd) links in `dropped` (baselines, failure what-ifs)."""
        links = [lk for lk in self.links if (lk.prfaas, lk.pd) not in dropped]
        return msgspec.structs.replace(self, links=links)


def link_id(prfaas: str, pd: str) -> str:
    """The id of the link from PrfaaS cluster `prfaas` to PD cluster `pd` (`prfaas->pd` in a two-cluster setup)."""
    return f"{prfaas}->{pd}"


def two_cluster(n_prfaas: int, n_pd: int, capacity_gbps: float = 100.0, latency_s: float = 0.005, *,
                prfaas_accelerator: str = "h200", pd_accelerator: str = "h20", n_pd_prefill: int | None = None,
                gpus_per_instance: int = 8) -> SiteTopology:
    """Today's two-cluster deployment as a 1x1 topology (names `prfaas` and `pd`, link `prfaas->pd`)."""
    prfaas = [PrfaasSite(name=TWO_CLUSTER_PRFAAS, accelerator=prfaas_accelerator, instances=n_prfaas,
                         gpus_per_instance=gpus_per_instance)]
    pd = [PdSite(name=TWO_CLUSTER_PD, accelerator=pd_accelerator, instances=n_pd, prefill_instances=n_pd_prefill,
                 gpus_per_instance=gpus_per_instance)]
    links = [SiteLink(prfaas=TWO_CLUSTER_PRFAAS, pd=TWO_CLUSTER_PD, capacity_gbps=capacity_gbps,
                      latency_s=latency_s)]
    return check_topology(SiteTopology(prfaas=prfaas if n_prfaas > 0 else [], pd=pd,
                                       links=links if n_prfaas > 0 else []))


def check_topology(topo: SiteTopology, prefix: str = "topology") -> SiteTopology:
    """Cross-field checks the schema cannot express; returns `topo` or raises `TopologyError`."""
    if not topo.pd:
        raise TopologyError(f"{prefix}.pd", "need at least one PD cluster ([[topology.pd]])")
    seen: dict[str, str] = {}
    named = [("prfaas", i, s.name) for i, s in enumerate(topo.prfaas)] + [("pd", i, s.name) for i, s in
                                                                            enumerate(topo.pd)]
    for kind, i, name in named:
        key = f"{prefix}.{kind}[{i}].name"
        if not name or any(c in name for c in " \t>/"):
            raise TopologyError(key, f"name must be non-empty without spaces, '/' or '>', got {name!r}")
        if name in seen:
            raise TopologyError(key, f"duplicate cluster name {name!r} (already a {seen[name]} "
                                     "cluster); names are unique across PrfaaS and PD clusters")
        seen[name] = kind
    for i, pd in enumerate(topo.pd):
        if pd.prefill_instances is not None and not 1 <= pd.prefill_instances <= pd.instances - 1:
            raise TopologyError(f"{prefix}.pd[{i}].prefill_instances",
                                f"must be in [1, instances - 1] = [1, {pd.instances - 1}], got {pd.prefill_instances}")
    given = [s.traffic_rps is not None for s in topo.pd]
    if any(given) and not all(given):
        missing = [s.name for s in topo.pd if s.traffic_rps is None]
        raise TopologyError(f"{prefix}.pd", "give traffic_rps for every PD cluster or for none; missing: "
                                            + ", ".join(missing))
    if all(given) and sum(s.traffic_rps or 0.0 for s in topo.pd) <= 0:
        raise TopologyError(f"{prefix}.pd", "traffic_rps is 0 everywhere")
    prfaas_names, pd_names = set(topo.prfaas_names), set(topo.pd_names)
    pairs: set[tuple[str, str]] = set()
    for i, lk in enumerate(topo.links):
        key = f"{prefix}.links[{i}]"
        if lk.prfaas not in prfaas_names:
            raise TopologyError(f"{key}.prfaas", f"unknown PrfaaS cluster {lk.prfaas!r}; known: "
                                                 f"{', '.join(topo.prfaas_names) or '(none)'}")
        if lk.pd not in pd_names:
            raise TopologyError(f"{key}.pd", f"unknown PD cluster {lk.pd!r}; known: {', '.join(topo.pd_names)}")
        if (lk.prfaas, lk.pd) in pairs:
            raise TopologyError(key, f"a second link {lk.link_id}; one link per (PrfaaS, PD) pair")
        pairs.add((lk.prfaas, lk.pd))
    return topo
