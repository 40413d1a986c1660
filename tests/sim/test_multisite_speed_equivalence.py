"""The multi-site simulator's speed work changes no output: runs compared with a frozen reference.

`fixtures/multisite_speed_reference.json` holds, for each case below, every `MultiSiteRecord` and each link's
bytes, transfers, rate and capacity histories, as produced by `sim.multisite` BEFORE its speed changes (the
commit named in the fixture). Cases: the scenario files (a degraded link, a burst, a killed site, the
per-instance fair queue) and the benchmark's 4-site fleet (1,250 instances, 2 PrfaaS + 2 PD sites) for a few
simulated seconds, where the site selector's queue estimates over hundreds of busy nodes decide.

Regenerate (only from code whose outputs are the reference):
    PYTHONPATH=src python tests/sim/test_multisite_speed_equivalence.py --write
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from multisite_kit import run_scenario
from test_speed_equivalence import _first_difference, _plain

from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology
from prfaas.planner.optimize import optimize
from prfaas.planner.paper import paper_case
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import SimOptions
from prfaas.sim.multisite_deployment import MultiSiteDeployment
from prfaas.sim.multisite_run import MultiSiteResult, merge_regions, simulate_multisite
from prfaas.sim.scenario import decode_model_for, poisson_workload

FIXTURE = Path(__file__).parent / "fixtures" / "multisite_speed_reference.json"


def _fleet_four_sites(duration_s: float = 4.0) -> MultiSiteResult:
    """The benchmark's `--sites 4` deployment (bench_sim_scale.py) at 300 req/s for `duration_s`."""
    base = paper_case().prfaas_pd
    sc = base.replace(n_prfaas=417, n_pd=833, egress_gbps=100.0 * 417 / 4)
    threshold = int(optimize(sc).best.threshold_tokens or 0)
    prfaas = [PrfaasSite(name=n, instances=208) for n in ("prefill-a", "prefill-b")]
    pd = [PdSite(name=n, instances=416, prefill_instances=156, traffic_rps=150.0) for n in ("region-a", "region-b")]
    links = [SiteLink(prfaas=f"prefill-{x}", pd=f"region-{y}", capacity_gbps=52.0,
                      latency_s=0.002 if x == y else 0.020) for x in "ab" for y in "ab"]
    topo = check_topology(SiteTopology(prfaas=prfaas, pd=pd, links=links))
    assert sc.prfaas_prefill is not None
    dep = MultiSiteDeployment(topo, sc.prfaas_prefill, sc.pd_prefill, decode_model_for(sc), bs_max=int(sc.bs_max))
    per_region = {f"region-{y}": poisson_workload(sc.lengths, int(sc.output_tokens), 150.0, duration_s=duration_s,
                                                  seed=k) for k, y in enumerate("ab")}
    requests, region_of = merge_regions(per_region)
    config = PolicyConfig(threshold_tokens=threshold)
    return simulate_multisite(dep, "prfaas", requests, region_of, policy_config=config,
                              options=SimOptions(horizon_s=duration_s + 6.0))


CASES: dict[str, Callable[[], MultiSiteResult]] = {
    "link_degraded": lambda: run_scenario("multisite_link_degraded.toml"),
    # two regions share the PrfaaS instances: the reference predates prefill preemption, so without it (the
    # per-instance fair order run to completion, which is what it froze; with it, tests/sim/test_prefill_preemption)
    "link_degraded_node_queue": lambda: run_scenario("multisite_link_degraded.toml", prefill_queue="node",
                                                     preempt_prefill=False),
    "burst": lambda: run_scenario("multisite_burst.toml"),
    "site_killed": lambda: run_scenario("multisite_site_killed.toml"),
    "two_site": lambda: run_scenario("multisite_link_degraded_two_site.toml"),
    "fleet_four_sites": _fleet_four_sites,
}


def outputs(result: MultiSiteResult) -> dict[str, Any]:
    return {
        "records": [[_plain(getattr(r, f.name)) for f in dataclasses.fields(r)] for r in result.records],
        "links": {lid: [s.bytes_sent, s.transfers, _plain(list(s.capacity_history))]
                  for lid, s in result.links.items()},
        "offloads_by_site": {region: dict(sites) for region, sites in result.offloads_by_site.items()},
        "num_events": result.num_events,
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


@pytest.mark.parametrize("name", list(CASES))
def test_multisite_outputs_match_the_reference(name: str, reference: dict[str, Any]) -> None:
    want = reference["cases"][name]
    got = json.loads(json.dumps(outputs(CASES[name]())))
    assert want["records"], "a case without records would compare nothing"
    diff = _first_difference(name, got, want)
    assert diff is None, diff


def test_the_fleet_case_offloads_to_both_sites_from_both_regions(reference: dict[str, Any]) -> None:
    offloads = reference["cases"]["fleet_four_sites"]["offloads_by_site"]
    assert all(len(sites) == 2 and min(sites.values()) > 10 for sites in offloads.values()), offloads


def _write() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    cases = {name: json.loads(json.dumps(outputs(run()))) for name, run in CASES.items()}
    FIXTURE.write_text(json.dumps({"commit": commit, "cases": cases}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        sys.path.insert(0, str(Path(__file__).parent))
        _write()
