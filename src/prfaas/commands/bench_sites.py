"""`prfaas bench sites compare|chaos --topology T.toml`: several live multi-site runs of the same requests, each
beside the simulator with and without the measured request path (`bench.sites_compare`; root, namespaces).

    prfaas bench sites compare --topology T.toml [--selectors home-only,prfaas-sites]   # OUT/<selector>/
    prfaas bench sites chaos --topology T.toml [--lost-site S] [--degraded-link L]      # baseline + 2 faults
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
    from prfaas.bench.sites_run import SitesRunSpec

Topology = Annotated[Path, typer.Option(help="A TOML file with a topology section (core.topology).")]
Requests = Annotated[int, typer.Option(help="Requests per region (the same in every run).")]
Load = Annotated[float, typer.Option(help="Region j offers traffic_rps_j x load (paper req/s).")]
NodesPerCluster = Annotated[int, typer.Option(help="At most this many nodes per PrfaaS cluster and PD role.")]
Probes = Annotated[int, typer.Option(help="Request-path probes per region before the load (0: none).")]
Seed = Annotated[int, typer.Option(help="Workload seed (the same requests in every run).")]
Out = Annotated[Path | None, typer.Option(help="Output folder (default: a fresh run folder).")]
FaultAt = Annotated[float, typer.Option(help="Inject each fault this long after the load starts.")]


def _spec(requests: int, load: float, nodes_per_cluster: int, seed: int, fault_at_s: float = 3.0,
          threshold: int = 19400, max_tokens: int = 8) -> SitesRunSpec:
    from prfaas.bench.sites_run import SitesRunSpec

    return SitesRunSpec(requests_per_region=requests, load=load, threshold_tokens=threshold, max_tokens=max_tokens,
                        max_nodes_per_cluster=nodes_per_cluster, seed=seed, fault_at_s=fault_at_s)


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
                      probes: Probes = 6, seed: Seed = 0, out: Out = None) -> None:
    from prfaas.bench.sites_compare import check_selectors, compare_selectors
    from prfaas.bench.sites_compare_report import SelectorRuns, compare_rows, format_compare
    from prfaas.planner.multi_build import load_topology

    names = check_selectors(selectors.split(","))
    _check_probes(probes)
    spec = _spec(requests, load, nodes_per_cluster, seed)
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
                    lost_site: Annotated[str | None, typer.Option(help="The PrfaaS site to lose (default: the "
                                                                       "first).")] = None,
                    degraded_link: Annotated[str | None, typer.Option(help="The link to divide by 10 (default: the "
                                                                           "lost site's first link).")] = None,
                    requests: Requests = 20, load: Load = 0.5, nodes_per_cluster: NodesPerCluster = 1,
                    fault_at_s: FaultAt = 3.0, probes: Probes = 6, seed: Seed = 0, out: Out = None) -> None:
    from prfaas.bench.sites_compare import chaos_faults, chaos_targets
    from prfaas.bench.sites_compare_report import ChaosRun, chaos_report, format_chaos
    from prfaas.planner.multi_build import load_topology

    _check_probes(probes)
    if not fault_at_s > 0:
        raise ConfigError(f"--fault-at-s must be > 0, got {fault_at_s}")
    spec = _spec(requests, load, nodes_per_cluster, seed, fault_at_s)
    topo, _ = load_topology(str(topology))
    chaos_targets(topo, lost_site, degraded_link)  # before anything starts
    out_dir = _out(out, "sites-chaos")
    runs = chaos_faults(topo, spec, out_dir, probes, lost_site, degraded_link,
                        log=typer.echo)
    chaos = {name: ChaosRun(o.result, o.with_path.rows(),
                            None if o.with_loaded_path is None else o.with_loaded_path.rows())
             for name, o in runs.items()}
    faults = chaos_report(topo, chaos.pop("baseline"), chaos)
    text = "\n".join([f"request path ({n}): {d}" for n, d in _paths(runs).items()] + [format_chaos(faults)])
    (out_dir / "chaos.json").write_text(json.dumps({"faults": faults}, indent=2) + "\n", encoding="utf-8")
    (out_dir / "chaos.txt").write_text(text + "\n", encoding="utf-8")
    typer.echo(text)
    typer.echo(f"wrote {out_dir}/chaos.json, chaos.txt, <run>/report.json")
    if any(f["lost"] for f in faults) or any(r.lost for o in runs.values() for r in o.reports):
        raise typer.Exit(1)
