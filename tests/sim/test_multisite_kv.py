"""Prefix caches per site in the multi-site simulator (`sim.multisite_kv`): a prefix cached at PrfaaS cluster A is
cached at A only (the selector prefers A for it; B does not count it), a region's router knows only its own PD
nodes and its linked clusters, and `decode_holds_prefix` reads the request's own region."""

from __future__ import annotations

import pytest
from simkit import FixedStep, LinearPrefill

from prfaas.core.lifecycle import ClusterKind
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.multisite_deployment import MultiSiteDeployment
from prfaas.sim.multisite_kv import SiteKvIndexes
from prfaas.sim.multisite_run import merge_regions, simulate_multisite
from prfaas.workload.request import WorkloadRequest

CLUSTER_OF_NODE = {"A-0": "A", "A-1": "A", "B-0": "B", "us-0": "us", "us-1": "us", "eu-0": "eu"}
KINDS = {"A": ClusterKind.PRFAAS, "B": ClusterKind.PRFAAS, "us": ClusterKind.PD, "eu": ClusterKind.PD}


def _indexes() -> SiteKvIndexes:
    kv = SiteKvIndexes.for_clusters(CLUSTER_OF_NODE)
    for node, cluster in CLUSTER_OF_NODE.items():
        kv.add_node(node, KINDS[cluster], 100)
    return kv


def test_a_prefix_cached_in_one_cluster_is_not_cached_in_another() -> None:
    kv = _indexes()
    kv.insert("A-1", [1, 2, 3])
    kv.insert("us-0", [7, 8])
    assert kv.cluster_prefix_blocks("A", [1, 2, 3, 4]) == 3
    assert kv.cluster_prefix_blocks("B", [1, 2, 3, 4]) == 0
    assert kv.cluster("B").total_blocks() == 0 and kv.cluster("A").num_blocks("A-1") == 3
    # the whole view answers as one GlobalKvIndex would
    assert kv.best_prefix_node(ClusterKind.PRFAAS, [1, 2]).instance_id == "A-1"
    assert kv.holders(1) == {"A-1"} and kv.total_blocks() == 5
    # region eu's gateway is linked to B only: it knows neither A's nor us's blocks
    eu = kv.scoped(["eu", "B"])
    assert eu.holders(1) == frozenset() and eu.longest_prefix_blocks(ClusterKind.PD, [7, 8]) == 0
    assert not eu.has_node("A-1") and eu.has_node("B-0")
    with pytest.raises(KeyError):
        eu.node_prefix_blocks("A-1", [1])
    # region us's (linked to A and B) sees A's blocks, and shares the index: an insert through it is seen by all
    us = kv.scoped(["us", "A", "B"])
    assert us.node_prefix_blocks("A-1", [1, 2, 3]) == 3 and us.longest_prefix_blocks(ClusterKind.PD, [7, 8]) == 2
    us.insert("B-0", [1, 2])
    assert kv.cluster_prefix_blocks("B", [1, 2, 3]) == 2 and eu.holders(1) == {"B-0"}
    assert kv.remove_node("A-1") == (3, 2, 1) and kv.cluster_prefix_blocks("A", [1]) == 0


def _topology() -> SiteTopology:
    return check_topology(SiteTopology(
        prfaas=[PrfaasSite(name="A", instances=1), PrfaasSite(name="B", instances=1)],
        pd=[PdSite(name="us", instances=3, prefill_instances=1), PdSite(name="eu", instances=3, prefill_instances=1)],
        links=[SiteLink(prfaas=a, pd=pd, capacity_gbps=100.0, latency_s=0.001) for a in ("A", "B")
               for pd in ("us", "eu")]))


def _deployment() -> MultiSiteDeployment:
    # B prefills twice as fast as A: without a cached prefix the selector prefers B
    slow, fast = LinearPrefill(b=1e-4, name="A"), LinearPrefill(b=5e-5, name="B")
    return MultiSiteDeployment(_topology(), slow, LinearPrefill(b=2e-4, name="pd"), FixedStep(0.01), bs_max=4,
                               cache_blocks=1000, site_prefill={"B": fast})


PREFIX = tuple(range(1000, 1078))  # 78 blocks = 39,936 tokens
SHARED = PREFIX[:60] + tuple(range(2000, 2018))  # the first 60 blocks (30,720 tokens) shared with PREFIX


def test_a_repeated_prefix_routed_to_a_is_found_at_a_the_second_time() -> None:
    """B's link to us is down when the first request arrives, so it is prefilled at A; the second (30,720 tokens
    of the same prefix, once every link is up) goes back to A for its cache although B is faster on an empty
    cache (A: 0.1 + 1e-4 x 9,280 = 1.03 s, B: 0.1 + 5e-5 x 40,000 = 2.1 s, A without its cache 4.1 s)."""
    reqs = {"us": [WorkloadRequest(0, 0.0, 40_000, 4, PREFIX), WorkloadRequest(1, 20.0, 40_000, 4, SHARED)],
            "eu": [WorkloadRequest(0, 40.0, 40_000, 4, PREFIX[:60] + tuple(range(3000, 3018)))]}
    merged, region_of = merge_regions(reqs)
    script = [ScriptedEvent(0.0, ScriptKind.LINK_CAPACITY, link_id="B->us", capacity_gbps=0.0),
              ScriptedEvent(10.0, ScriptKind.LINK_CAPACITY, link_id="B->us", capacity_gbps=100.0)]
    res = simulate_multisite(_deployment(), "prfaas", merged, region_of, policy_config=PolicyConfig(
        threshold_tokens=8_000), script=script, options=SimOptions(horizon_s=200.0))
    first, second, third = sorted(res.records, key=lambda r: r.request_id)
    assert first.prfaas_site == "A" and first.cached_tokens == 0
    assert second.prfaas_site == "A" and second.cached_tokens == 30_720
    assert second.site_reason == "prefix_locality"  # B would win without A's cached prefix
    # a PrfaaS cluster's cache serves every region linked to it
    assert third.region == "eu" and third.prfaas_site == "A" and third.cached_tokens == 30_720
    assert second.prefill_s is not None and first.prefill_s is not None and second.prefill_s < first.prefill_s


def test_a_fresh_prompt_goes_to_the_faster_cluster() -> None:
    """The control for the test above: the same arrivals without a shared prefix go to B the second time."""
    other = tuple(range(5000, 5078))
    reqs = {"us": [WorkloadRequest(0, 0.0, 40_000, 4, PREFIX), WorkloadRequest(1, 20.0, 40_000, 4, other)]}
    merged, region_of = merge_regions(reqs)
    script = [ScriptedEvent(0.0, ScriptKind.LINK_CAPACITY, link_id="B->us", capacity_gbps=0.0),
              ScriptedEvent(10.0, ScriptKind.LINK_CAPACITY, link_id="B->us", capacity_gbps=100.0)]
    res = simulate_multisite(_deployment(), "prfaas", merged, region_of, policy_config=PolicyConfig(
        threshold_tokens=8_000), script=script, options=SimOptions(horizon_s=200.0))
    first, second = sorted(res.records, key=lambda r: r.request_id)
    assert (first.prfaas_site, second.prfaas_site) == ("A", "B") and second.cached_tokens == 0


def test_decode_holds_prefix_reads_the_requests_own_region() -> None:
    """With `decode_holds_prefix`, only the increment ships when the prefix is cached in the request's region; a
    prefix cached in another region's PD nodes saves nothing."""
    short = PREFIX[:10]  # 5,120 tokens: below the threshold, prefilled (and cached) at eu's PD-P node
    reqs = {"us": [WorkloadRequest(0, 10.0, 40_000, 4, PREFIX)], "eu": [WorkloadRequest(0, 0.0, 5_200, 4, short)]}
    merged, region_of = merge_regions(reqs)
    opts = SimOptions(horizon_s=200.0, decode_holds_prefix=True)
    res = simulate_multisite(_deployment(), "prfaas", merged, region_of,
                             policy_config=PolicyConfig(threshold_tokens=8_000), options=opts)
    eu_rec, us_rec = sorted(res.records, key=lambda r: r.arrival_s)
    assert eu_rec.region == "eu" and eu_rec.prefill_instance == "eu-0"
    assert us_rec.region == "us" and us_rec.is_offloaded
    assert us_rec.transfer_bytes == pytest.approx(LinearPrefill().s_kv_bytes(40_000))  # the whole state
