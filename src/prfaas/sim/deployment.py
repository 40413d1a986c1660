"""What the simulator runs: the deployment (nodes, links), scripted events and run options, as frozen data.

Links: `egress` carries PrfaaS -> PD state (`policy.types.PRFAAS_EGRESS_LINK_ID`); a reverse link
(`pd->prfaas`, same capacity and latency) carries cross-cluster prefix-cache transfers planned by the
cache-aware router. Transfers inside the PD cluster (PD-P -> PD-D over RDMA) are never contended:
they take `bytes / intra_cluster_gbps` (the paper's Eq. 4 assumption that RDMA never binds).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from prfaas.sim.host_share import HostSpec
from prfaas.sim.node import NodeSpec

REVERSE_LINK_ID = "pd->prfaas"


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Cross-cluster link. `capacity_gbps` None = unconstrained (modelled as 1e6 Gbps)."""

    capacity_gbps: float | None = 100.0
    latency_s: float = 0.005
    window_s: float = 1.0
    buffer_s: float = 0.05  # bottleneck buffer (seconds of capacity) for the RTT model of `sim.link`

    def __post_init__(self) -> None:
        if self.buffer_s < 0:
            raise ValueError(f"link buffer_s must be >= 0, got {self.buffer_s}")
        if self.capacity_gbps is not None and self.capacity_gbps < 0:
            raise ValueError(f"link capacity_gbps must be >= 0, got {self.capacity_gbps}")
        if self.latency_s < 0 or self.window_s <= 0:
            raise ValueError("link latency_s must be >= 0 and window_s > 0")

    @property
    def effective_gbps(self) -> float:
        return 1e6 if self.capacity_gbps is None else self.capacity_gbps


@dataclass(frozen=True, slots=True)
class Deployment:
    nodes: tuple[NodeSpec, ...]
    egress: LinkSpec = LinkSpec()
    intra_cluster_gbps: float = 800.0

    def __post_init__(self) -> None:
        ids = [n.instance_id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError("instance ids must be unique")
        if not self.nodes:
            raise ValueError("a deployment needs at least one node")
        if self.intra_cluster_gbps <= 0:
            raise ValueError("intra_cluster_gbps must be > 0")


class ScriptKind(enum.Enum):
    LINK_CAPACITY = "link_capacity"  # set a link's capacity to `capacity_gbps` at `time_s`
    NODE_FAIL = "node_fail"  # the instance dies at `time_s`: its work is rerouted
    NODE_RECOVER = "node_recover"  # the instance is back, empty, in its original role


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    time_s: float
    kind: ScriptKind
    link_id: str | None = None
    capacity_gbps: float | None = None
    instance_id: str | None = None

    def __post_init__(self) -> None:
        if self.time_s < 0:
            raise ValueError(f"scripted event time_s must be >= 0, got {self.time_s}")
        if self.kind is ScriptKind.LINK_CAPACITY:
            if self.link_id is None or self.capacity_gbps is None:
                raise ValueError("a link_capacity event needs link and capacity_gbps")
            if self.capacity_gbps < 0:
                raise ValueError(f"capacity_gbps must be >= 0, got {self.capacity_gbps}")
        elif self.instance_id is None:
            raise ValueError(f"a {self.kind.value} event needs instance")


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Run options. `horizon_s` stops the run (None = until every request has finished)."""

    horizon_s: float | None = None
    control_interval_s: float | None = None  # rebalancer period; None = no long-term loop
    sample_interval_s: float = 1.0  # role counts / queue samples for plots
    tpot_slo_s: float = 0.025  # per-token decode time SLO (paper: 40 tokens/s)
    ttft_slo_s: float | None = None  # optional TTFT SLO for goodput
    # The decode side reaches the PD cluster's cached prefixes (the paper's cluster-wide pool over RDMA), so an
    # offloaded request ships only what the PD cluster lacks. False (as `prfaas serve` does today): decode
    # nodes hold no prefix and the whole prompt's state crosses the link.
    decode_holds_prefix: bool = False
    # Processor sharing (`sim.host_share`): instances on one host of C cores each run at min(1, C / busy). Empty
    # (the default): every instance is its own machine.
    hosts: tuple[HostSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.horizon_s is not None and self.horizon_s <= 0:
            raise ValueError("horizon_s must be > 0")
        if self.control_interval_s is not None and self.control_interval_s <= 0:
            raise ValueError("control_interval_s must be > 0")
        if self.sample_interval_s <= 0 or self.tpot_slo_s <= 0:
            raise ValueError("sample_interval_s and tpot_slo_s must be > 0")
