"""A simulator scenario's deployment as a `core.topology.SiteTopology` (the shared config section).

Today's `[cluster]` + `[link]` sections are a 1x1 topology: PrfaaS cluster `prfaas`, PD cluster `pd` with its
fixed split, link `prfaas->pd` (the id the simulator's egress link and its events already use). The planner
can plan it (`planner.multi_build.build_multi_case`) and the multi-site simulator will run the same value.
"""

from __future__ import annotations

from prfaas.core.topology import SiteTopology, two_cluster
from prfaas.sim.config import SimConfig


def site_topology(cfg: SimConfig) -> SiteTopology:
    """The 1x1 topology of a two-cluster scenario."""
    c, lk = cfg.cluster, cfg.link
    return two_cluster(c.n_prfaas, c.n_pd_prefill + c.n_pd_decode, lk.capacity_gbps, lk.latency_s,
                       n_pd_prefill=c.n_pd_prefill)
