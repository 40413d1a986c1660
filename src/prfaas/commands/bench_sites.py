"""`prfaas bench sites compare|chaos --topology T.toml`: several live multi-site runs of the same requests, each
beside the simulator with and without the measured request path (`bench.sites_compare`; root, namespaces).

    prfaas bench sites compare --topology T.toml [--selectors home-only,prfaas-sites]   # OUT/<selector>/
    prfaas bench sites chaos --topology T.toml [--lost-site S] [--degraded-link L]      # baseline + 2 faults
    prfaas bench sites chaos --topology T.toml --faults burst [--burst-region R] [--burst-factor 5] [--burst-s 5]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from prfaas.commands.rundirs import new_run_dir
from prfaas.core.errors import ConfigError

if TYPE_CHECKING:
    from prfaas.bench.sites_compare import SitesOutcome
    from prfaas.bench.sites_compare_report import ChaosRun
    from prfaas.bench.sites_run import SitesRunSpec
    from prfaas.bench.sites_two_site import TwoSiteOutcome
    from prfaas.core.topology import SiteTopology

Topology = Annotated[Path, typer.Option(help="A TOML file with a topology section (core.topology).")]
Requests = Annotated[int, typer.Option(help="Requests per region (the same in every run).")]
Load = Annotated[float, typer.Option(help="Region j offers traffic_rps_j x load (paper req/s).")]
NodesPerCluster = Annotated[int, typer.Option(help="At most this many nodes per PrfaaS cluster and PD role.")]
Probes = Annotated[int, typer.Option(help="Request-path probes per region before the load (0: none).")]
Seed = Annotated[int, typer.Option(help="Workload seed (the same requests in every run).")]
Out = Annotated[Path | None, typer.Option(help="Output folder (default: a fresh run folder).")]
FaultAt = Annotated[float, typer.Option(help="Inject each fault this long after the load starts.")]
BurstFactor = Annotated[float, typer.Option(help="burst: the region's arrival rate x this in the window.")]
BurstS = Annotated[float, typer.Option(help="burst: the window's length in s (from --fault-at-s).")]
Preemption = Annotated[bool, typer.Option(
    "--preemption/--no-preemption", help="PrfaaS nodes pause a prefill at a safe point for another region's turn "
                                         "([policy] prefill_preemption); the prediction does the same.")]


def _spec(requests: int, load: float, nodes_per_cluster: int, seed: int, fault_at_s: float = 3.0,
          threshold: int = 19400, max_tokens: int = 8, burst_factor: float = 5.0, burst_s: float = 5.0,
          preemption: bool = True) -> SitesRunSpec:
    from prfaas.bench.sites_run import SitesRunSpec

    return SitesRunSpec(requests_per_region=requests, load=load, threshold_tokens=threshold, max_tokens=max_tokens,
                        max_nodes_per_cluster=nodes_per_cluster, seed=seed, fault_at_s=fault_at_s,
                        burst_factor=burst_factor, burst_s=burst_s, prefill_preemption=preemption)


def _out(out: Path | None, cmd: str) -> Path:
    out_dir = out or new_run_dir(f"bench-{cmd}")
    typer.echo(f"output: {out_dir}")
    return out_dir


def _paths(runs: Mapping[str, SitesOutcome]) -> dict[str, str]:
    """Per run: the probed path and the path under load (from the other runs), described."""
    out = {}
    for name, o in runs.items():
        loaded = "n/a" if o.loaded_path is None else o.loaded_path.describe()
        out[name] = f"probed {o.probe.overhead.describe()}; under load (other runs) {loaded}"
    return out


def _check_probes(probes: int) -> None:
    if probes < 0:
        raise ConfigError(f"--probes must be >= 0, got {probes}")


def sites_compare_cmd(topology: Topology,
                      selectors: Annotated[str, typer.Option(help="Comma-separated site selectors.")] =
                      "home-only,prfaas-sites",
                      requests: Requests = 20, load: Load = 0.5, nodes_per_cluster: NodesPerCluster = 1,
                      probes: Probes = 6, seed: Seed = 0, preemption: Preemption = True, out: Out = None) -> None:
    from prfaas.bench.sites_compare import check_selectors, compare_selectors
    from prfaas.bench.sites_compare_report import SelectorRuns, compare_rows, format_compare
    from prfaas.planner.multi_build import load_topology

    names = check_selectors(selectors.split(","))
    _check_probes(probes)
    spec = _spec(requests, load, nodes_per_cluster, seed, preemption=preemption)
    topo, _ = load_topology(str(topology))
    out_dir = _out(out, "sites-compare")
    runs = compare_selectors(topo, spec, names, out_dir, probes, log=typer.echo)
    rows = compare_rows({s: SelectorRuns(o.reports, o.reports_without_path, o.reports_loaded_path)
                         for s, o in runs.items()})
    text = format_compare(rows, _paths(runs))
    (out_dir / "compare.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n", encoding="utf-8")
    (out_dir / "compare.txt").write_text(text + "\n", encoding="utf-8")
    typer.echo(text)
    typer.echo(f"wrote {out_dir}/compare.json, compare.txt, <selector>/report.json")
    if any(r["lost"] for r in rows):
        raise typer.Exit(1)


def sites_chaos_cmd(topology: Topology,
                    faults: Annotated[str, typer.Option(help="Comma-separated: site-lost, link-degraded, "
                                                             "burst.")] = "site-lost,link-degraded",
                    lost_site: Annotated[str | None, typer.Option(help="The PrfaaS site to lose (default: the "
                                                                       "first).")] = None,
                    degraded_link: Annotated[str | None, typer.Option(help="The link to divide by 10 (default: the "
                                                                           "lost site's first link).")] = None,
                    burst_region: Annotated[str | None, typer.Option(help="The region that bursts (default: the "
                                                                          "first).")] = None,
                    burst_factor: BurstFactor = 5.0, burst_s: BurstS = 5.0,
                    two_site: Annotated[bool, typer.Option(
                        "--two-site/--no-two-site", help="link-degraded: also run the two-site system with the "
                                                         "same total capacity (one more deployment).")] = True,
                    requests: Requests = 20, load: Load = 0.5, nodes_per_cluster: NodesPerCluster = 1,
                    fault_at_s: FaultAt = 3.0, probes: Probes = 6, seed: Seed = 0, preemption: Preemption = True,
                    repeats: Annotated[int, typer.Option(
                        help="Run everything this many times, seeds seed, seed+1, ... (OUT/seed-S/ each); a burst "
                             "is also judged on all runs' window requests pooled (OUT/pooled.txt).")] = 1,
                    out: Out = None) -> None:
    from prfaas.bench.sites_burst import format_burst, pooled_burst_report
    from prfaas.bench.sites_compare import burst_target, chaos_faults, chaos_targets, check_faults
    from prfaas.bench.sites_run import SitesFault
    from prfaas.planner.multi_build import load_topology

    chosen = check_faults(faults.split(","))
    _check_probes(probes)
    if not fault_at_s > 0:
        raise ConfigError(f"--fault-at-s must be > 0, got {fault_at_s}")
    if not 1 <= repeats <= 20:
        raise ConfigError(f"--repeats must be 1-20, got {repeats}")
    topo, _ = load_topology(str(topology))
    if SitesFault.SITE_LOST in chosen or SitesFault.LINK_DEGRADED in chosen:  # before anything starts
        chaos_targets(topo, lost_site, degraded_link)
    if SitesFault.BURST in chosen:
        burst_target(topo, burst_region)
    out_dir = _out(out, "sites-chaos")
    lost = False
    pairs: list[tuple[ChaosRun, ChaosRun]] = []
    for k in range(repeats):
        spec = _spec(requests, load, nodes_per_cluster, seed + k, fault_at_s, burst_factor=burst_factor,
                     burst_s=burst_s, preemption=preemption)
        one_dir = out_dir if repeats == 1 else out_dir / f"seed-{seed + k}"
        if repeats > 1:
            typer.echo(f"=== seed {seed + k} ({k + 1} of {repeats})")
        runs = chaos_faults(topo, spec, one_dir, probes, lost_site, degraded_link, log=typer.echo, faults=chosen,
                            burst_region=burst_region)
        two = None
        if two_site and SitesFault.LINK_DEGRADED in chosen:
            from prfaas.bench.sites_two_site import run_two_site

            typer.echo("--- two-site (same total capacity)")
            link_spec = runs[SitesFault.LINK_DEGRADED.value].spec
            two = run_two_site(topo, link_spec, one_dir / "two-site", probes, log=typer.echo)
        chaos, one_lost = _chaos_out(topo, runs, two, one_dir)
        lost = lost or one_lost
        if SitesFault.BURST.value in chaos:
            pairs.append((chaos["baseline"], chaos[SitesFault.BURST.value]))
    if repeats > 1 and pairs:
        entry = pooled_burst_report(pairs)
        text = format_burst(entry)
        (out_dir / "pooled.json").write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
        (out_dir / "pooled.txt").write_text(text + "\n", encoding="utf-8")
        typer.echo(f"=== {len(pairs)} seeds pooled\n{text}")
        typer.echo(f"wrote {out_dir}/pooled.json, pooled.txt")
    if lost:
        raise typer.Exit(1)


def _chaos_out(topo: SiteTopology, runs: dict[str, SitesOutcome], two: TwoSiteOutcome | None,
               out_dir: Path) -> tuple[dict[str, ChaosRun], bool]:
    """Write and print one chaos run's report; its runs as the reports see them, and whether any request was lost."""
    from prfaas.bench.records import RequestStatus
    from prfaas.bench.sites_burst import burst_report, format_burst
    from prfaas.bench.sites_compare_report import ChaosRun, chaos_report, format_chaos
    from prfaas.bench.sites_run import SitesFault
    from prfaas.bench.sites_two_site import format_two_site, origin_live_rows, origin_sim_rows, two_site_entry

    every = {name: ChaosRun(o.result, o.with_path.rows(),
                            None if o.with_loaded_path is None else o.with_loaded_path.rows())
             for name, o in runs.items()}
    chaos = dict(every)
    baseline = chaos.pop("baseline")
    faults = chaos_report(topo, baseline, chaos)
    lines = [f"request path ({n}): {d}" for n, d in _paths(runs).items()]
    for f in faults:
        lines.append(format_chaos([f]))
        if f["fault"] == SitesFault.LINK_DEGRADED.value and two is not None:
            degraded = next(r for r in f["regions"] if r["affected"])
            f["two_site"] = two_site_entry(origin_live_rows(two), origin_sim_rows(two), degraded["region"],
                                           f["fault_s"], degraded)
            f["two_site"]["live_fault_s"] = two.result.fault_s
            f["two_site"]["lost"] = sum(r.status is RequestStatus.LOST for run in two.result.regions.values()
                                        for r in run.records)
            link = two.topology.links[0]
            lines.append(format_two_site(f["two_site"], link.link_id, link.capacity_gbps))
    bursts = [burst_report(baseline, run) for run in chaos.values() if run.result.fault == SitesFault.BURST.value]
    lines += [format_burst(b) for b in bursts]
    text = "\n".join(lines)
    (out_dir / "chaos.json").write_text(json.dumps({"faults": faults, "bursts": bursts}, indent=2) + "\n",
                                        encoding="utf-8")
    (out_dir / "chaos.txt").write_text(text + "\n", encoding="utf-8")
    typer.echo(text)
    typer.echo(f"wrote {out_dir}/chaos.json, chaos.txt, <run>/report.json")
    lost = (any(f["lost"] or f.get("two_site", {}).get("lost") for f in faults) or any(b["lost"] for b in bursts)
            or any(r.lost for o in runs.values() for r in o.reports))
    return every, bool(lost)
