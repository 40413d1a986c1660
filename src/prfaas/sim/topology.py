"""A simulator scenario's deployment as a `core.topology.SiteTopology` (the shared config section).

Today's `[cluster]` + `[link]` sections are a 1x1 topology: PrfaaS cluster `prfaas`, PD cluster `pd` with its
fixed split, link `prfaas->pd` (the id the simulator's egress link and its events already use). The planner
can plan it (`planner.multi_build.build_multi_case`) and the multi-site simulator runs it
(`two_cluster_deployment`).
"""

from __future__ import annotations

from prfaas.core.topology import SiteTopology, two_cluster
from prfaas.sim.config import SimConfig
from prfaas.sim.multisite_deployment import MultiSiteDeployment


def site_topology(cfg: SimConfig) -> SiteTopology:
    """The 1x1 topology of a two-cluster scenario."""
    c, lk = cfg.cluster, cfg.link
    return two_cluster(c.n_prfaas, c.n_pd_prefill + c.n_pd_decode, lk.capacity_gbps, lk.latency_s,
                       n_pd_prefill=c.n_pd_prefill)


def two_cluster_deployment(cfg: SimConfig) -> MultiSiteDeployment:
    """A two-cluster scenario as the multi-site simulator's input (its 1x1 topology, the same node ids and models):
    run with `prefill_queue="node"` and no site selector it gives the two-cluster simulator's records."""
    from prfaas.sim.build import cost_models

    models = cost_models(cfg)
    c = cfg.cluster
    return MultiSiteDeployment(site_topology(cfg), models.prfaas_prefill, models.pd_prefill, models.decode,
                               bs_max=cfg.model.bs_max, cache_blocks=c.cache_blocks,
                               intra_cluster_gbps=c.intra_cluster_gbps, window_s=cfg.link.window_s,
                               buffer_s=cfg.link.buffer_s)
