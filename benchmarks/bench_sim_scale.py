"""Simulator at datacenter scale: 10,000 GPUs (1,250 eight-GPU instances) for 10 simulated minutes.

    python benchmarks/bench_sim_scale.py [--instances 1250] [--minutes 10] [--load 0.85] [--repeats 1]
                                         [--reference-link] [--profile] [--sites 4] [--native]

The paper's PrfaaS-PD proportions scaled up: PrfaaS : PD = 4 : 8 and PD-P : PD-D = 3 : 5 (Table 5
profile, planner threshold), Poisson arrivals at `--load` x the planner's Lambda_max for that
deployment, egress link scaled with the PrfaaS cluster (100 Gbps per 4 PrfaaS instances).
Prints wall time (median, min-max), the median CPU time of the process (less sensitive to other jobs on a
shared machine), events, events/s and simulated seconds per wall second; with `--compare`, also the
12-instance paper deployment for the same simulated time, as a ratio measured in the same run.
`--reference-link` runs the O(flows)-per-event link model that `sim.link` replaced (tests/sim/reference_link.py),
for a before/after ratio on the same machine; the records are the same (tests/sim/test_link_incremental.py).
`--profile` runs the simulation once more under cProfile and prints its own time (tottime) grouped by
part of the simulator (docs/sim-speed.md has the breakdown before and after the issue-14 work).
`--native` runs it on the compiled simulator (`prfaas native build`: mypyc, the same records; built first when
the sources changed); run the same command with and without it for the ratio.
`--sites 4` runs the same instances as 2 PrfaaS + 2 PD sites (`sim.multisite`): each site half of its kind,
each region half of the traffic, a link per pair (home links 2 ms, far links 20 ms one way, each with the
capacity of its PrfaaS site's share of the egress), every region's router `prfaas` with the `prfaas-sites`
selector.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from typing import NamedTuple

from prfaas.native import is_native, run_native
from prfaas.planner.optimize import optimize
from prfaas.planner.paper import paper_case
from prfaas.planner.scenario import Scenario
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import Deployment, SimOptions
from prfaas.sim.run import simulate
from prfaas.sim.scenario import deployment_for, poisson_workload
from prfaas.workload.request import WorkloadRequest

PROFILE_PARTS = (  # (substring of the file path or function name, part), first match wins
    ("sim/multisite", "multi-site (sim/multisite*)"),
    ("sim/view", "view refresh (sim/view, sim/node)"), ("sim/node.py", "view refresh (sim/view, sim/node)"),
    ("policy/", "router (policy/)"), ("sim/link.py", "link (sim/link)"), ("core/link.py", "link (sim/link)"),
    ("sim/servers.py", "servers + cost models"), ("perf/", "servers + cost models"), ("numpy", "servers + cost models"),
    ("sim/request.py", "records + summary"), ("sim/metrics.py", "records + summary"),
    ("sim/control.py", "control + sample ticks"), ("sim/events.py", "event loop"), ("core/clock.py", "event loop"),
    ("_heapq", "event loop"), ("sim/simulator.py", "simulator handlers"), ("enum.py", "enum hashing"),
)


def profile_parts(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time per part of the simulator, largest first (the rest: builtins, dataclass __init__s)."""
    parts: dict[str, float] = {}
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{name}"
        part = next((p for key, p in PROFILE_PARTS if key in where), "other (builtins, dataclass inits)")
        parts[part] = parts.get(part, 0.0) + row[2]
    return sorted(parts.items(), key=lambda item: -item[1])


_PROFILE_TOP = int(os.environ.get("PRFAAS_PROFILE_TOP", "0"))  # > 0: also print the top functions by own time


class ScaleInputs(NamedTuple):
    scenario: Scenario
    n_prfaas: int
    n_pd: int
    n_p: int
    deployment: Deployment
    rate: float
    duration_s: float
    requests: list[WorkloadRequest]
    gen_s: float
    config: PolicyConfig


def _scale_inputs(n_instances: int, minutes: float, load: float) -> ScaleInputs:
    base = paper_case().prfaas_pd
    n_prfaas = max(1, round(n_instances * 4 / 12))
    n_pd = n_instances - n_prfaas
    n_p = max(1, round(n_pd * 3 / 8))
    scenario = base.replace(n_prfaas=n_prfaas, n_pd=n_pd, egress_gbps=100.0 * n_prfaas / 4)
    plan = optimize(scenario).best
    dep = deployment_for(scenario, n_p, n_pd - n_p)
    rate = load * plan.lambda_max
    duration = 60.0 * minutes
    t0 = time.perf_counter()
    requests = poisson_workload(scenario.lengths, int(scenario.output_tokens), rate, duration_s=duration, seed=0)
    gen_s = time.perf_counter() - t0
    cfg = PolicyConfig(threshold_tokens=int(plan.threshold_tokens or 0))
    return ScaleInputs(scenario, n_prfaas, n_pd, n_p, dep, rate, duration, requests, gen_s, cfg)


def run_profile(n_instances: int, minutes: float, load: float, sites: int = 2) -> None:
    inputs = _scale_inputs(n_instances, minutes, load)
    profiler = cProfile.Profile()
    if sites == 4:
        from prfaas.sim.multisite_run import simulate_multisite

        dep, requests, region_of = _four_site_inputs(inputs)
        profiler.enable()
        simulate_multisite(dep, "prfaas", requests, region_of, policy_config=inputs.config,  # type: ignore[arg-type]
                           options=SimOptions(horizon_s=inputs.duration_s))
    else:
        profiler.enable()
        simulate(inputs.deployment, "prfaas", inputs.requests, policy_config=inputs.config,
                 options=SimOptions(horizon_s=inputs.duration_s))
    profiler.disable()
    if _PROFILE_TOP:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(_PROFILE_TOP)
    parts = profile_parts(pstats.Stats(profiler))
    total = sum(t for _, t in parts)
    print(f"profile ({minutes:g} simulated min, {total:.1f} s own time under cProfile):")
    for part, own_s in parts:
        print(f"  {part:<36} {own_s:7.2f} s {100 * own_s / total:5.1f}%")


def run_scale(n_instances: int, minutes: float, load: float, repeats: int) -> dict[str, float]:
    scenario, n_prfaas, n_pd, n_p, dep, rate, duration, requests, gen_s, cfg = _scale_inputs(n_instances, minutes, load)
    walls: list[float] = []
    cpus: list[float] = []
    events, finished = 0, 0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run = simulate(dep, "prfaas", requests, policy_config=cfg, options=SimOptions(horizon_s=duration))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        events, finished = run.num_events, run.summary.num_finished
    wall = statistics.median(walls)
    return {"instances": n_instances, "gpus": 8 * n_instances, "n_prfaas": n_prfaas, "n_p": n_p, "n_d": n_pd - n_p,
            "rate": rate, "requests": len(requests), "finished": finished, "gen_s": gen_s, "wall_s": wall,
            "wall_min_s": min(walls), "wall_max_s": max(walls), "cpu_s": statistics.median(cpus),
            "events": events, "events_per_s": events / wall, "sim_per_wall": duration / wall,
            "egress_gbps": scenario.egress_gbps or 0.0}


def _four_site_inputs(inputs: ScaleInputs) -> tuple[object, list[WorkloadRequest], dict[int, str]]:
    from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology
    from prfaas.sim.multisite_deployment import MultiSiteDeployment
    from prfaas.sim.multisite_run import merge_regions

    half_prfaas = max(1, inputs.n_prfaas // 2)
    half_pd, half_p = inputs.n_pd // 2, max(1, inputs.n_p // 2)
    site_gbps = 100.0 * half_prfaas / 4
    prfaas = [PrfaasSite(name=n, instances=half_prfaas) for n in ("prefill-a", "prefill-b")]
    pd = [PdSite(name=n, instances=half_pd, prefill_instances=half_p, traffic_rps=inputs.rate / 2)
          for n in ("region-a", "region-b")]
    links = [SiteLink(prfaas=f"prefill-{x}", pd=f"region-{y}", capacity_gbps=site_gbps,
                      latency_s=0.002 if x == y else 0.020) for x in "ab" for y in "ab"]
    topo = check_topology(SiteTopology(prfaas=prfaas, pd=pd, links=links))
    sc = inputs.scenario
    from prfaas.sim.scenario import decode_model_for

    assert sc.prfaas_prefill is not None
    dep = MultiSiteDeployment(topo, sc.prfaas_prefill, sc.pd_prefill, decode_model_for(sc), bs_max=int(sc.bs_max))
    per_region = {f"region-{y}": poisson_workload(sc.lengths, int(sc.output_tokens), inputs.rate / 2,
                                                  duration_s=inputs.duration_s, seed=k)
                  for k, y in enumerate("ab")}
    requests, region_of = merge_regions(per_region)
    return dep, requests, region_of


def run_sites(n_instances: int, minutes: float, load: float, repeats: int) -> dict[str, float]:
    """The 4-site version of `run_scale` (`--sites 4`)."""
    from prfaas.sim.multisite_run import simulate_multisite

    inputs = _scale_inputs(n_instances, minutes, load)
    dep, requests, region_of = _four_site_inputs(inputs)
    walls: list[float] = []
    cpus: list[float] = []
    finished, events = 0, 0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate_multisite(dep, "prfaas", requests, region_of, policy_config=inputs.config,  # type: ignore[arg-type]
                                 options=SimOptions(horizon_s=inputs.duration_s))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        finished = sum(r.num_finished for r in res.regions.values())
        events = res.num_events
    wall = statistics.median(walls)
    return {"instances": n_instances, "gpus": 8 * n_instances, "n_prfaas": inputs.n_prfaas, "n_p": inputs.n_p,
            "n_d": inputs.n_pd - inputs.n_p, "rate": inputs.rate, "requests": len(requests), "finished": finished,
            "gen_s": inputs.gen_s, "wall_s": wall, "wall_min_s": min(walls), "wall_max_s": max(walls),
            "cpu_s": statistics.median(cpus), "events": events, "events_per_s": events / wall,
            "sim_per_wall": inputs.duration_s / wall, "egress_gbps": inputs.scenario.egress_gbps or 0.0}


def _use_reference_link() -> None:
    import sys
    from pathlib import Path

    import prfaas.sim.simulator as simulator_module

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))
    import reference_link

    simulator_module.SimLink = reference_link.SimLink  # type: ignore[misc]
    simulator_module.Transfer = reference_link.Transfer  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1250)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.85)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare", action="store_true", help="also run the 12-instance paper deployment")
    parser.add_argument("--reference-link", action="store_true", help="use the old O(flows) link model")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile breakdown by simulator part")
    parser.add_argument("--native", action="store_true",
                        help="run on the compiled simulator (`prfaas native build`, built first if needed)")
    parser.add_argument("--sites", type=int, choices=(2, 4), default=2,
                        help="2: the two-cluster deployment; 4: 2 PrfaaS + 2 PD sites (sim.multisite)")
    args = parser.parse_args()
    if args.native:
        run_native()
    print(f"simulator: {'compiled (prfaas.native)' if is_native() else 'pure Python'}")
    if args.reference_link:
        _use_reference_link()
    rows = [run_scale(12, args.minutes, args.load, max(args.repeats, 3))] if args.compare else []
    run = run_sites if args.sites == 4 else run_scale
    rows.append(run(args.instances, args.minutes, args.load, args.repeats))
    print(f"{'GPUs':>6} {'inst':>5} {'PrfaaS/P/D':>13} {'egress Gbps':>11} {'rate':>7} {'requests':>8} "
          f"{'finished':>8} {'events':>9} {'wall s':>7} {'min-max':>11} {'cpu s':>6} {'events/s':>9} "
          f"{'sim s/wall s':>12}")
    for r in rows:
        split = f"{r['n_prfaas']:.0f}/{r['n_p']:.0f}/{r['n_d']:.0f}"
        print(f"{r['gpus']:>6.0f} {r['instances']:>5.0f} {split:>13} {r['egress_gbps']:>11.0f} {r['rate']:>7.1f} "
              f"{r['requests']:>8.0f} {r['finished']:>8.0f} {r['events']:>9.0f} {r['wall_s']:>7.1f} "
              f"{r['wall_min_s']:>5.1f}-{r['wall_max_s']:<5.1f} {r['cpu_s']:>6.1f} "
              f"{r['events_per_s']:>9,.0f} {r['sim_per_wall']:>12.2f}")
    if len(rows) == 2:
        print(f"events/s ratio 10k-GPU / 96-GPU (same run): {rows[1]['events_per_s'] / rows[0]['events_per_s']:.3f}")
    if args.profile:
        run_profile(args.instances, args.minutes, args.load, args.sites)


if __name__ == "__main__":
    main()
