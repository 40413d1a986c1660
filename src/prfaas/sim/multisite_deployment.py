"""The multi-site simulator's inputs and records as frozen data (`sim.multisite` runs them).

`MultiSiteDeployment`: a `core.topology.SiteTopology` with the cost models of its nodes; node ids are
`{cluster}-{i}` (a PD cluster's first `prefill_instances` are PD-P), so the 1x1 topology (`two_cluster`) has the
two-cluster simulator's ids. `SiteEvent`: a whole cluster fails or recovers. `MultiSiteRecord`: a
`RequestRecord` plus region, PrfaaS site and the site selector's reason.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.topology import SiteTopology
from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.sim.deployment import Deployment, LinkSpec
from prfaas.sim.node import NodeSpec
from prfaas.sim.request import RequestRecord


def reverse_link_id(prfaas: str, pd: str) -> str:
    return f"{pd}->{prfaas}"


@dataclass(frozen=True, slots=True)
class MultiSiteDeployment:
    """A `SiteTopology` with the cost models of its nodes. Node ids are `{cluster}-{i}` (a PD cluster's
    first `prefill_instances` are PD-P), so the 1x1 topology (`two_cluster`) has today's ids."""

    topology: SiteTopology
    prfaas_prefill: PrefillCostModel
    pd_prefill: PrefillCostModel
    decode: DecodeCostModel
    bs_max: int = 20
    cache_blocks: int = 100_000
    intra_cluster_gbps: float = 800.0
    window_s: float = 1.0
    buffer_s: float = 0.05
    site_prefill: Mapping[str, PrefillCostModel] = field(default_factory=dict)  # per-cluster override

    def __post_init__(self) -> None:
        missing = [pd.name for pd in self.topology.pd if pd.prefill_instances is None]
        if missing:
            raise ValueError(f"PD clusters need prefill_instances for the simulator: {', '.join(missing)}")

    def prefill_model(self, cluster: str) -> PrefillCostModel:
        if cluster in self.site_prefill:
            return self.site_prefill[cluster]
        return self.prfaas_prefill if cluster in self.topology.prfaas_names else self.pd_prefill

    def node_specs(self) -> tuple[NodeSpec, ...]:
        """PrfaaS clusters' nodes, then PD clusters', in topology order."""
        nodes = [NodeSpec(f"{s.name}-{i}", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL, self.prefill_model(s.name),
                          None, 1, self.cache_blocks) for s in self.topology.prfaas for i in range(s.instances)]
        for pd in self.topology.pd:
            n_p = pd.prefill_instances or 0
            roles = [Role.PD_PREFILL] * n_p + [Role.PD_DECODE] * (pd.instances - n_p)
            nodes += [NodeSpec(f"{pd.name}-{i}", ClusterKind.PD, role, self.prefill_model(pd.name), self.decode,
                               self.bs_max, self.cache_blocks) for i, role in enumerate(roles)]
        return tuple(nodes)

    def cluster_of_nodes(self) -> dict[str, str]:
        out = {f"{s.name}-{i}": s.name for s in self.topology.prfaas for i in range(s.instances)}
        out.update({f"{s.name}-{i}": s.name for s in self.topology.pd for i in range(s.instances)})
        return out

    def deployment(self) -> Deployment:
        first = self.topology.links[0] if self.topology.links else None
        spec = LinkSpec(first.capacity_gbps if first else 100.0, first.latency_s if first else 0.005,
                        self.window_s, self.buffer_s)
        return Deployment(self.node_specs(), spec, self.intra_cluster_gbps)


class SiteEventKind(enum.Enum):
    SITE_FAIL = "site_fail"  # every node of the cluster fails at `time_s`
    SITE_RECOVER = "site_recover"  # every node of the cluster is back, empty


@dataclass(frozen=True, slots=True)
class SiteEvent:
    time_s: float
    kind: SiteEventKind
    site: str

    def __post_init__(self) -> None:
        if self.time_s < 0:
            raise ValueError(f"scripted event time_s must be >= 0, got {self.time_s}")


@dataclass(frozen=True, slots=True)
class MultiSiteRecord(RequestRecord):
    """A `RequestRecord` with where it came from and where it was prefilled."""

    region: str = ""
    prfaas_site: str = ""  # "" unless the last attempt was prefilled at a PrfaaS cluster
    site_reason: str = ""  # the selector's `SiteReason` value for the last attempt ("" if not consulted)


BASE_RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))
