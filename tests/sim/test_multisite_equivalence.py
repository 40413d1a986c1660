"""Acceptance 4: a 1x1 topology run by the multi-site simulator equals the two-cluster simulator, record by
record (every `RequestRecord` field; floats within 1e-9): small random cases with a 10x link drop, a PrfaaS
node failure and recovery, with and without the bandwidth-aware router's own loop; and the existing scenario
files (paper cost models) with their link drop and node failure."""

from __future__ import annotations

import random

import msgspec
import pytest
from multisite_kit import SCENARIOS
from simkit import FixedStep, LinearPrefill, small_deployment

from prfaas.core.topology import two_cluster
from prfaas.policy.config import PolicyConfig
from prfaas.sim.build import build_inputs
from prfaas.sim.config import load_config
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.multisite_deployment import BASE_RECORD_FIELDS, MultiSiteDeployment
from prfaas.sim.multisite_run import merge_regions, simulate_multisite
from prfaas.sim.run import simulate
from prfaas.sim.topology import two_cluster_deployment
from prfaas.workload.request import WorkloadRequest


def _case(seed: int, capacity: float) -> tuple[list[WorkloadRequest], list[ScriptedEvent]]:
    rng = random.Random(seed)
    reqs = [WorkloadRequest(i, i * 0.05 + rng.random() * 0.05, rng.randint(200, 40_000), rng.randint(1, 30))
            for i in range(250)]
    script = [ScriptedEvent(4.0, ScriptKind.LINK_CAPACITY, link_id="prfaas->pd", capacity_gbps=capacity / 10),
              ScriptedEvent(7.0, ScriptKind.NODE_FAIL, instance_id="prfaas-0"),
              ScriptedEvent(9.0, ScriptKind.NODE_RECOVER, instance_id="prfaas-0"),
              ScriptedEvent(10.0, ScriptKind.LINK_CAPACITY, link_id="prfaas->pd", capacity_gbps=capacity)]
    return reqs, script


@pytest.mark.parametrize(("policy", "capacity", "seed"), [("prfaas", 2.0, 0), ("prfaas-bandwidth-aware", 0.5, 1),
                                                          ("prfaas-bandwidth-aware", 10.0, 2)])
def test_one_by_one_topology_gives_the_same_records(policy: str, capacity: float, seed: int) -> None:
    reqs, script = _case(seed, capacity)
    cfg = PolicyConfig(threshold_tokens=8_000)
    opts = SimOptions(horizon_s=200.0)
    old = simulate(small_deployment(capacity_gbps=capacity), policy, reqs, policy_config=cfg, script=script,
                   options=opts).records
    topo = two_cluster(2, 4, capacity, 0.001, n_pd_prefill=2)
    dep = MultiSiteDeployment(topo, LinearPrefill(b=5e-5, name="fast"), LinearPrefill(b=1e-4, name="slow"),
                              FixedStep(0.01), bs_max=4, cache_blocks=1000)
    merged, region_of = merge_regions({"pd": reqs})
    new = simulate_multisite(dep, policy, merged, region_of, selector=None, policy_config=cfg, script=script,
                             options=opts, prefill_queue="node").records
    assert len(new) == len(old) == 250
    assert sum(r.is_offloaded for r in old) > 20 and sum(r.attempts > 1 for r in old) > 0  # the case bites
    for a, b in zip(old, new, strict=True):
        assert b.region == "pd" and b.prfaas_site == ("prfaas" if b.is_offloaded else "")
        for name in BASE_RECORD_FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, float):
                assert y == pytest.approx(x, rel=1e-9, abs=1e-9), (a.request_id, name)
            else:
                assert x == y, (a.request_id, name)


@pytest.mark.parametrize(("name", "duration_s"), [("link_drop.toml", 400.0), ("node_failure.toml", 520.0)])
def test_two_cluster_scenario_files_give_the_same_records_as_a_1x1_topology(name: str, duration_s: float) -> None:
    """The existing scenario files (paper cost models), shortened past their events, run both ways."""
    cfg = msgspec.structs.replace(load_config(SCENARIOS / name), duration_s=duration_s)
    inp = build_inputs(cfg)
    old = simulate(inp.deployment, cfg.policy.name, inp.requests, policy_config=inp.policy_config,
                   script=inp.script, options=inp.options).records
    merged, region_of = merge_regions({"pd": inp.requests})
    new = simulate_multisite(two_cluster_deployment(cfg), cfg.policy.name, merged, region_of, selector=None,
                             policy_config=inp.policy_config, script=inp.script, options=inp.options,
                             prefill_queue="node").records
    assert len(new) == len(old) > 300
    assert [r.request_id for r in new] == [r.request_id for r in old]
    for a, b in zip(old, new, strict=True):
        for field in BASE_RECORD_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            if isinstance(x, float):
                assert y == pytest.approx(x, rel=1e-9, abs=1e-9), (a.request_id, field)
            else:
                assert x == y, (a.request_id, field)
