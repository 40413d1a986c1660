"""A two-cluster simulator scenario maps to a 1x1 topology whose link is the simulator's egress link."""

from __future__ import annotations

import msgspec

from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID
from prfaas.sim.config import SimConfig
from prfaas.sim.topology import site_topology


def test_default_scenario_is_the_papers_one_by_one_topology() -> None:
    cfg = SimConfig()
    topo = site_topology(cfg)
    assert topo.is_two_cluster
    assert topo.prfaas[0].instances == cfg.cluster.n_prfaas
    assert topo.pd[0].instances == cfg.cluster.n_pd_prefill + cfg.cluster.n_pd_decode
    assert topo.pd[0].prefill_instances == cfg.cluster.n_pd_prefill
    (link,) = topo.links
    assert link.link_id == PRFAAS_EGRESS_LINK_ID
    assert (link.capacity_gbps, link.latency_s) == (cfg.link.capacity_gbps, cfg.link.latency_s)


def test_changed_sections_carry_over() -> None:
    cfg = msgspec.convert({"cluster": {"n_prfaas": 2, "n_pd_prefill": 1, "n_pd_decode": 3},
                           "link": {"capacity_gbps": 25.0, "latency_s": 0.02}}, SimConfig)
    topo = site_topology(cfg)
    assert (topo.prfaas[0].instances, topo.pd[0].instances, topo.pd[0].decode_instances) == (2, 4, 3)
    assert topo.links[0].capacity_gbps == 25.0
