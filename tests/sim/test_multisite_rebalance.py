"""The long-term loop per PD region (`sim.multisite_rebalance`): a decode-bound region converts a PD-P node to
PD-D from its own load; a calm region next to it, sharing the same PrfaaS cluster, keeps its split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from simkit import FixedStep, LinearPrefill

from prfaas.core.lifecycle import RequestState, Role
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology
from prfaas.policy.config import PolicyConfig
from prfaas.policy.rebalancer import RebalancerConfig
from prfaas.policy.types import RebalanceReason
from prfaas.sim.config import load_config
from prfaas.sim.deployment import SimOptions
from prfaas.sim.multisite_deployment import MultiSiteDeployment
from prfaas.sim.multisite_report import run_config
from prfaas.sim.multisite_run import MultiSiteResult, merge_regions, simulate_multisite
from prfaas.workload.request import WorkloadRequest


def _deployment() -> MultiSiteDeployment:
    topo = check_topology(SiteTopology(
        prfaas=[PrfaasSite(name="A", instances=1)],
        pd=[PdSite(name="x", instances=4, prefill_instances=2), PdSite(name="y", instances=4, prefill_instances=2)],
        links=[SiteLink(prfaas="A", pd=pd, capacity_gbps=100.0, latency_s=0.001) for pd in ("x", "y")]))
    return MultiSiteDeployment(topo, LinearPrefill(b=5e-5), LinearPrefill(a=0.05, b=5e-5), FixedStep(0.01),
                               bs_max=4, cache_blocks=100)


def _requests(rate_rps: float, duration_s: float) -> list[WorkloadRequest]:
    """Short prompts (local prefill, 0.1 s) with 400 output tokens (4 s in a decode slot)."""
    n = int(rate_rps * duration_s)
    return [WorkloadRequest(i, i / rate_rps, 1_000, 400) for i in range(n)]


def _run(rebalance: bool) -> MultiSiteResult:
    # x offers 3 req/s to 2 PD-D x 4 slots (2 req/s of decode): decode-bound; y 0.2 req/s
    merged, region_of = merge_regions({"x": _requests(3.0, 60.0), "y": _requests(0.2, 60.0)})
    cfg = PolicyConfig(threshold_tokens=8_000, rebalancer=RebalancerConfig(conversion_s=2.0, cooldown_s=10.0))
    return simulate_multisite(_deployment(), "prfaas", merged, region_of, policy_config=cfg, rebalance=rebalance,
                              options=SimOptions(horizon_s=400.0, control_interval_s=5.0))


def test_each_region_is_rebalanced_from_its_own_load() -> None:
    run = _run(rebalance=True)
    assert all(r.state is RequestState.FINISHED_OK for r in run.records)
    switched = [(s.instance_id, s.from_role, s.to_role) for s in run.role_switches]
    assert switched and all(iid in ("x-0", "x-1") and (a, b) == (Role.PD_PREFILL, Role.PD_DECODE)
                            for iid, a, b in switched)  # x's PD-P nodes become PD-D (1 of 2 at most: the floor)
    assert not any(s.instance_id.startswith("y-") for s in run.role_switches)
    reasons = {(p.region, p.plan.reason) for p in run.rebalance_plans}
    assert ("x", RebalanceReason.DECODE_BOUND) in reasons
    assert {reason for region, reason in reasons if region == "y"} <= {
        RebalanceReason.WARMING_UP, RebalanceReason.BALANCED, RebalanceReason.COOLDOWN}
    # x's decode backlog clears sooner with the extra PD-D node
    still = _run(rebalance=False)
    assert not still.role_switches and not still.rebalance_plans

    def last_x_finish(res: MultiSiteResult) -> float:
        return max(r.finish_s or 0.0 for r in res.records if r.region == "x")

    assert last_x_finish(run) < last_x_finish(still)


def test_policy_rebalance_in_a_topology_file_runs_one_loop_per_region(tmp_path: Path) -> None:
    path = tmp_path / "rebalance.toml"
    path.write_text("""
seed = 1
duration_s = 30.0
[workload]
output_tokens = 16
[policy]
rebalance = true
control_interval_s = 5.0
[[topology.prfaas]]
name = "A"
instances = 1
[[topology.pd]]
name = "x"
instances = 4
prefill_instances = 2
traffic_rps = 0.5
[[topology.pd]]
name = "y"
instances = 4
prefill_instances = 2
traffic_rps = 0.5
[[topology.links]]
prfaas = "A"
pd = "x"
[[topology.links]]
prfaas = "A"
pd = "y"
""")
    run = run_config(load_config(path))
    steps = Counter(p.region for p in run.rebalance_plans)
    assert steps["x"] == steps["y"] >= 5  # every 5 s while requests are in flight, per region
