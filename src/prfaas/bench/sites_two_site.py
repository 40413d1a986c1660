"""The two-site system with the same total capacity, live: the baseline of issue 14's degraded-link criterion.

    topo1, cap = two_site_topology(topology, spec)        # 1 PrfaaS x 1 PD cluster holding every live node
    out = run_two_site(topology, spec, link_run, out_dir, num_probes)   # every region's requests, one region
    entry = two_site_entry(out, region, fault_s)          # the degraded region's window P90, live and sim

As docs/multisite-sim.md builds it (`tests/sim/scenarios/multisite_link_degraded_two_site.toml`): one PrfaaS
cluster holding all the PrfaaS nodes the 2x2 run starts, one PD cluster holding all its PD-P and PD-D nodes, one
link whose capacity is the sum of the regions' home links (each region's widest link; latency the smallest of
theirs), offered every region's requests (the very requests the 2x2 run sent: same arrivals, lengths, prompts,
merged into one region in arrival order), its link degraded 10x at the 2x2 run's fault time. A region's window
P90 in it is that of its own requests (by origin) sent at or after the fault.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.bench.records import RequestStatus, with_log_rows
from prfaas.bench.sites_compare_report import Row, window_p90_s
from prfaas.bench.sites_multi import describe
from prfaas.bench.sites_overhead import fit_probes, probe_regions
from prfaas.bench.sites_predict import LOCAL, SitesPrediction, live_node_counts, predict_sites
from prfaas.bench.sites_report import prefilled_at, region_reports, write_sites_run
from prfaas.bench.sites_run import (
    SitesFault,
    SitesRunResult,
    SitesRunSpec,
    region_workload,
    run_regions,
    sites_deployment,
)
from prfaas.bench.workload import BenchRequest
from prfaas.core.errors import ConfigError
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology

PRFAAS_NAME = "prfaas-all"
PD_NAME = "pd-all"


def home_links(topology: SiteTopology) -> list[SiteLink]:
    """Each region's widest link (the first of equals), in region order."""
    out = []
    for region in topology.pd_names:
        mine = [lk for lk in topology.links if lk.pd == region and lk.capacity_gbps > 0]
        if not mine:
            raise ConfigError(f"region {region!r} has no link with capacity")
        out.append(max(mine, key=lambda lk: lk.capacity_gbps))
    return out


def two_site_topology(topology: SiteTopology, spec: SitesRunSpec) -> tuple[SiteTopology, int]:
    """The 1x1 topology with every live node of `topology` under `spec`, and the per-cluster node cap that
    starts them all (module docstring)."""
    counts = live_node_counts(topology, spec)
    n_prfaas = sum(counts[s.name][0] for s in topology.prfaas)
    n_p = sum(counts[r.name][0] for r in topology.pd)
    n_d = sum(counts[r.name][1] for r in topology.pd)
    homes = home_links(topology)
    rates = [r.traffic_rps for r in topology.pd]
    one = SiteTopology(
        prfaas=[PrfaasSite(name=PRFAAS_NAME, accelerator=topology.prfaas[0].accelerator, instances=n_prfaas)],
        pd=[PdSite(name=PD_NAME, accelerator=topology.pd[0].accelerator, instances=n_p + n_d, prefill_instances=n_p,
                   traffic_rps=None if None in rates else sum(r or 0.0 for r in rates))],
        links=[SiteLink(prfaas=PRFAAS_NAME, pd=PD_NAME, capacity_gbps=sum(lk.capacity_gbps for lk in homes),
                        latency_s=min(lk.latency_s for lk in homes))])
    return one, max(n_prfaas, n_p, n_d)


def merged_workload(topology: SiteTopology, spec: SitesRunSpec) -> tuple[list[BenchRequest], float,
                                                                          dict[int, tuple[str, int]]]:
    """Every region's requests (as the 2x2 run draws them) as one region's, in arrival order; the summed rate;
    the merged index -> (origin region, its index there)."""
    tagged = []
    rate = 0.0
    for i, region in enumerate(topology.pd_names):
        requests, region_rate = region_workload(topology, spec, i)
        rate += region_rate
        tagged += [(r.arrival_s, i, r.index, region, r) for r in requests]
    tagged.sort(key=lambda t: t[:3])
    merged = [dataclasses.replace(t[4], index=k) for k, t in enumerate(tagged)]
    return merged, rate, {k: (t[3], t[2]) for k, t in enumerate(tagged)}


@dataclass(slots=True)
class TwoSiteOutcome:
    topology: SiteTopology
    spec: SitesRunSpec
    result: SitesRunResult
    prediction: SitesPrediction
    origin: dict[int, tuple[str, int]]  # merged index -> (origin region, index)


def run_two_site(topology: SiteTopology, spec: SitesRunSpec, out_dir: Path, num_probes: int,
                 log: Callable[[str], None] = print) -> TwoSiteOutcome:
    """The two-site system live (one deployment), its link / 10 at spec.fault_at_s, then its prediction; written
    to `out_dir` as `bench sites run` writes a run (its one region: `pd-all`)."""
    one, cap = two_site_topology(topology, spec)
    requests, rate, origin = merged_workload(topology, dataclasses.replace(spec, fault=None, fault_target=None))
    one_spec = dataclasses.replace(spec, max_nodes_per_cluster=cap, fault=SitesFault.LINK_DEGRADED,
                                   fault_target=one.links[0].link_id)
    with sites_deployment(one, one_spec, out_dir / "deploy") as dep:
        log(describe(dep.sites))
        probe = probe_regions(dep, num_probes) if num_probes > 0 else fit_probes({})
        result = run_regions(dep, workloads=[(requests, rate)])
    prediction = predict_sites(one, one_spec, result, overhead=probe.overhead,
                               before_load_s=probe.arrivals_before(result.start_mono_s))
    write_sites_run(result, region_reports(result, sim=prediction.regions), out_dir)
    return TwoSiteOutcome(one, one_spec, result, prediction, origin)


def origin_live_rows(out: TwoSiteOutcome) -> list[Row]:
    """The live rows with each request's origin region (`sites_compare_report.live_rows`, relabelled)."""
    rows: list[Row] = []
    for run in out.result.regions.values():
        for rec, row in with_log_rows(run.records, run.log):
            ok = rec.status is RequestStatus.COMPLETED
            rows.append((out.origin[rec.index][0], rec.send_s,
                         prefilled_at(row, out.result.site_of) if ok else LOCAL, rec.ttft_s if ok else None))
    return rows


def origin_sim_rows(out: TwoSiteOutcome) -> list[Row]:
    pred = out.prediction
    return [(out.origin[pred.live_index_of[rec.request_id]][0], *row[1:])
            for rec, row in zip(pred.sim.records, pred.rows(), strict=True)]


def two_site_entry(live: Sequence[Row], sim: Sequence[Row], region: str, fault_s: float,
                   degraded: Mapping[str, Any]) -> dict[str, Any]:
    """The degraded region's window P90 in the two-site system beside the 2x2 run's (`degraded`: its chaos
    report region entry), live and sim; "pass" when the 2x2's is at most the two-site system's."""
    out: dict[str, Any] = {"region": region,
                           "two_site_window_p90_s": window_p90_s(live, region, fault_s),
                           "two_site_sim_window_p90_s": window_p90_s(sim, region, fault_s)}
    for side, key, two in (("live", "window_p90_s", "two_site_window_p90_s"),
                           ("sim", "sim_window_p90_s", "two_site_sim_window_p90_s")):
        mine, theirs = degraded[key], out[two]
        out[f"{side}_verdict"] = "n/a" if mine is None or theirs is None else (
            "pass" if mine <= theirs else "fail")
    return out


def format_two_site(entry: Mapping[str, Any], link: str, cap_gbps: float) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return (f"  two-site system with the same total capacity (one link {link}, {cap_gbps:g} Gbps, / 10 at the same "
            f"time): {entry['region']} window P90 live {f(entry['two_site_window_p90_s'])} s, sim "
            f"{f(entry['two_site_sim_window_p90_s'])} s; 2x2 <= two-site: live {entry['live_verdict'].upper()}, "
            f"sim {entry['sim_verdict'].upper()}")
