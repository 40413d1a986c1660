"""`prfaas bench sites compare` and `prfaas bench sites chaos`: several live `bench sites run`s of the same
requests, each beside the simulator with and without the measured request path (EMULATION, root).

    runs = compare_selectors(topology, spec, ["home-only", "prfaas-sites"], out)   # OUT/<selector>/
    runs = chaos_faults(topology, spec, out)          # OUT/baseline/, OUT/site-lost/, OUT/link-degraded/
    runs = chaos_faults(topology, spec, out, faults=[SitesFault.BURST])   # OUT/baseline/, OUT/burst/

Each run is one fresh deployment (`bench.sites_run.sites_deployment`): a site-lost fault kills nodes, so a
deployment is never reused across runs, and every run starts from the same empty state. In each: the request
path is probed first (`bench.sites_overhead`), then the load (`run_regions`, the same seed: the same requests
at the same times in every run), then the simulator twice on the run's own records (`predict_sites` with and
without the path). Once every run is done, each is predicted a third time with the path under load measured
on the other runs' own requests (`sites_overhead.cross_run_paths`). Each run's folder has what `bench sites
run` writes plus `overhead.json`, `report-without-path.json` and `report-loaded-path.json`; the combined
report (`bench.sites_compare_report`) goes to OUT.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prfaas.bench.paper_overhead import RequestOverhead
from prfaas.bench.sites_multi import describe
from prfaas.bench.sites_overhead import PathProbe, cross_run_paths, fit_probes, probe_regions, run_points
from prfaas.bench.sites_predict import SitesPrediction, predict_sites
from prfaas.bench.sites_report import RegionReport, region_reports, write_sites_run
from prfaas.bench.sites_run import SitesFault, SitesRunResult, SitesRunSpec, run_regions, sites_deployment
from prfaas.core.errors import ConfigError
from prfaas.core.topology import SiteTopology
from prfaas.policy.site_registry import list_site_selectors

Log = Callable[[str], None]
VLLM_READY_TIMEOUT_S = 600.0  # adapters and gateways, once the servers answer (they wait for no model load)


@dataclass(slots=True)
class SitesOutcome:
    """One live run with its probes and both predictions."""

    spec: SitesRunSpec
    result: SitesRunResult
    probe: PathProbe
    with_path: SitesPrediction
    without_path: SitesPrediction
    reports: list[RegionReport]  # live beside the sim with the path
    reports_without_path: list[RegionReport]
    loaded_path: RequestOverhead | None = None  # the path under load, from the other runs (`with_loaded_path`)
    with_loaded_path: SitesPrediction | None = None
    reports_loaded_path: list[RegionReport] | None = None


def check_selectors(selectors: Sequence[str]) -> list[str]:
    """The selectors as given, each a known one, no repeats, at least one (ConfigError otherwise)."""
    names = [s.strip() for s in selectors if s.strip()]
    known = list_site_selectors()
    if not names:
        raise ConfigError(f"--selectors needs at least one of: {', '.join(known)}")
    unknown = [s for s in names if s not in known]
    if unknown:
        raise ConfigError(f"unknown site selector {unknown[0]!r}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--selectors repeats a selector: {', '.join(names)}")
    return names


def chaos_targets(topology: SiteTopology, site: str | None, link: str | None) -> tuple[str, str]:
    """The site to lose and the link to degrade (defaults: the first PrfaaS site, and its first link)."""
    if not topology.prfaas or not topology.links:
        raise ConfigError("bench sites chaos needs a PrfaaS site and a link")
    site = site or topology.prfaas_names[0]
    if site not in topology.prfaas_names:
        raise ConfigError(f"--lost-site {site!r} is not a PrfaaS cluster; known: {', '.join(topology.prfaas_names)}")
    ids = [lk.link_id for lk in topology.links]
    link = link or next(lk.link_id for lk in topology.links if lk.prfaas == site)
    if link not in ids:
        raise ConfigError(f"--degraded-link {link!r} is not a link; known: {', '.join(ids)}")
    return site, link


def run_with_prediction(topology: SiteTopology, spec: SitesRunSpec, out_dir: Path, num_probes: int,
                        log: Log = print) -> SitesOutcome:
    """One deployment: probes, the load (with spec's fault), both predictions; written to `out_dir`."""
    with sites_deployment(topology, spec, out_dir / "deploy") as dep:
        log(describe(dep.sites))
        probe = probe_regions(dep, num_probes) if num_probes > 0 else fit_probes({})
        log(f"request path: {probe.overhead.describe()}")
        result = run_regions(dep)
    before_load_s = probe.arrivals_before(result.start_mono_s)  # the gateways' meters counted the probes
    without_path = predict_sites(topology, spec, result, before_load_s=before_load_s)
    with_path = predict_sites(topology, spec, result, overhead=probe.overhead, before_load_s=before_load_s)
    reports = region_reports(result, sim=with_path.regions)
    bare = region_reports(result, sim=without_path.regions)
    write_sites_run(result, reports, out_dir)
    overhead_doc = probe.as_json(result.start_mono_s)
    (out_dir / "overhead.json").write_text(json.dumps(overhead_doc, indent=2) + "\n", encoding="utf-8")
    doc = {"regions": [dataclasses.asdict(r) for r in bare]}
    (out_dir / "report-without-path.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return SitesOutcome(spec, result, probe, with_path, without_path, reports, bare)


def run_live(topology: SiteTopology, spec: SitesRunSpec, out_dir: Path,
             log: Log = print) -> tuple[SitesRunResult, list[RegionReport]]:
    """One deployment and its load, live numbers only (engine vllm: the simulator has no profile of the CPU
    servers, so nothing is predicted); written to `out_dir` as `run_with_prediction` writes it."""
    with sites_deployment(topology, spec, out_dir / "deploy", ready_timeout_s=VLLM_READY_TIMEOUT_S, log=log) as dep:
        log(describe(dep.sites))
        result = run_regions(dep)
    reports = region_reports(result)
    write_sites_run(result, reports, out_dir)
    return result, reports


def compare_selectors(topology: SiteTopology, spec: SitesRunSpec, selectors: Sequence[str], out_dir: Path,
                      num_probes: int, log: Log = print) -> dict[str, SitesOutcome]:
    """The same requests (spec's seed), no fault, once per selector, each on its own deployment."""
    runs = {}
    for selector in check_selectors(selectors):
        log(f"--- selector {selector}")
        one = dataclasses.replace(spec, site_selector=selector, fault=None, fault_target=None)
        runs[selector] = run_with_prediction(topology, one, out_dir / selector, num_probes, log)
    add_loaded_paths(topology, runs, out_dir)
    return runs


def add_loaded_paths(topology: SiteTopology, runs: dict[str, SitesOutcome], out_dir: Path) -> None:
    """Predict each run again with the path under load measured on the other runs; written per run."""
    paths = cross_run_paths({name: run_points(o.result.regions) for name, o in runs.items()})
    for name, outcome in runs.items():
        path = paths[name]
        if path is None:
            continue
        outcome.loaded_path = path
        outcome.with_loaded_path = predict_sites(
            topology, outcome.spec, outcome.result, overhead=path,
            before_load_s=outcome.probe.arrivals_before(outcome.result.start_mono_s))
        outcome.reports_loaded_path = region_reports(outcome.result, sim=outcome.with_loaded_path.regions)
        doc = {"loaded_path": {"fixed_s": path.fixed_s, "per_token_s": path.per_token_s,
                               "num_points": path.num_points, "describe": path.describe(),
                               "measured_on": [other for other in runs if other != name]},
               "regions": [dataclasses.asdict(r) for r in outcome.reports_loaded_path]}
        (out_dir / name / "report-loaded-path.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


CHAOS_FAULTS = (SitesFault.SITE_LOST, SitesFault.LINK_DEGRADED)  # the default `--faults`


def check_faults(names: Sequence[str]) -> list[SitesFault]:
    """The chaos faults as given, each known, no repeats, at least one (ConfigError otherwise)."""
    known = [f.value for f in SitesFault]
    picked = [n.strip() for n in names if n.strip()]
    if not picked:
        raise ConfigError(f"--faults needs at least one of: {', '.join(known)}")
    bad = [n for n in picked if n not in known]
    if bad:
        raise ConfigError(f"unknown fault {bad[0]!r}; known: {', '.join(known)}")
    if len(set(picked)) != len(picked):
        raise ConfigError(f"--faults repeats a fault: {', '.join(picked)}")
    return [SitesFault(n) for n in picked]


def burst_target(topology: SiteTopology, region: str | None) -> str:
    """The region to burst (default: the first)."""
    if not topology.pd:
        raise ConfigError("a burst needs a PD region")
    region = region or topology.pd_names[0]
    if region not in topology.pd_names:
        raise ConfigError(f"--burst-region {region!r} is not a PD region; known: {', '.join(topology.pd_names)}")
    if len(topology.pd) < 2:
        raise ConfigError("a burst needs a second PD region to judge")
    return region


def chaos_faults(topology: SiteTopology, spec: SitesRunSpec, out_dir: Path, num_probes: int,
                 lost_site: str | None = None, degraded_link: str | None = None,
                 log: Log = print, faults: Sequence[SitesFault] = CHAOS_FAULTS,
                 burst_region: str | None = None) -> dict[str, SitesOutcome]:
    """A no-fault baseline, then one run per fault (site-lost, link-degraded x 1/10, burst of one region x
    spec.burst_factor), all on the same requests (a burst adds its extra ones)."""
    targets = {}
    if SitesFault.SITE_LOST in faults or SitesFault.LINK_DEGRADED in faults:
        site, link = chaos_targets(topology, lost_site, degraded_link)
        targets = {SitesFault.SITE_LOST: site, SitesFault.LINK_DEGRADED: link}
    if SitesFault.BURST in faults:
        targets[SitesFault.BURST] = burst_target(topology, burst_region)
    specs = {"baseline": dataclasses.replace(spec, fault=None, fault_target=None)}
    specs.update({f.value: dataclasses.replace(spec, fault=f, fault_target=targets[f]) for f in faults})
    runs = {}
    for name, one in specs.items():
        log(f"--- {name}")
        runs[name] = run_with_prediction(topology, one, out_dir / name, num_probes, log)
    add_loaded_paths(topology, runs, out_dir)
    return runs
