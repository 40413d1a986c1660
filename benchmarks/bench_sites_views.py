"""Re-predict saved `prfaas bench sites chaos --faults burst` runs with the simulator's exact site view and with
the live gateways' view (`sim.multisite_gateway`), beside the live numbers.

    python benchmarks/bench_sites_views.py --topology T.toml [--nodes-per-cluster 1] OUT [OUT ...]

OUT: a chaos output folder holding `baseline/` and `burst/` (or a `--repeats` folder's `seed-S/`). Per folder:
the quiet regions' offloaded TTFT P90 in the burst window, burst vs baseline (the +20% bar), live and predicted
both ways; then per run and region, the share of requests the prediction placed where live placed them (site or
local) and its TTFT mean / P90 error over all the region's requests, and how many region-runs are within +-10% on
both. Predictions use each run's own probes (`overhead.json`, with the probes' send times where kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import prfaas.bench.sites_predict as sites_predict
from prfaas.bench.records import read_records
from prfaas.bench.sites_burst import offloaded_p90_s
from prfaas.bench.sites_compare_report import Row, live_rows
from prfaas.bench.sites_overhead import PathProbe, fit_probes
from prfaas.bench.sites_run import HEARTBEAT_S, RegionRun, SitesRunResult, SitesRunSpec
from prfaas.bench.summary import nearest_rank
from prfaas.core.topology import SiteTopology
from prfaas.planner.multi_build import load_topology

VIEWS = {"exact": None, "gateways": HEARTBEAT_S}


def load_run(folder: Path, topology: SiteTopology) -> tuple[SitesRunResult, PathProbe, dict[str, list[float]] | None]:
    """A saved run (`bench sites run` layout): its records, gateway logs, fault, node sites and probes."""
    config = json.loads((folder / "deploy" / "config.json").read_text())
    site_of = {n["name"]: n["site"] for n in config["nodes"] if n.get("cluster") == "prfaas"}
    regions = {name: RegionRun(name, read_records(folder / f"records-{name}.jsonl"),
                               json.loads((folder / f"gateway-log-{name}.json").read_text()), 0.0)
               for name in topology.pd_names}
    report = json.loads((folder / "report.json").read_text())
    result = SitesRunResult(regions=regions, fault=report["fault"], fault_target=report["fault_target"],
                            fault_s=report["fault_s"], site_of=site_of)
    overhead = json.loads((folder / "overhead.json").read_text())
    probe = fit_probes({k: [(int(t), float(p)) for t, p in v] for k, v in overhead["points"].items()})
    return result, probe, overhead.get("sent_before_load_s")


def predicted_rows(topology: SiteTopology, spec: SitesRunSpec, folder: Path,
                   heartbeat_s: float | None) -> tuple[list[Row], list[Row]]:
    """(live rows, predicted rows with the request path) of one run, the prediction with the given view."""
    result, probe, before = load_run(folder, topology)
    sites_predict.HEARTBEAT_S = heartbeat_s  # type: ignore[assignment]  # the view predict_sites gives the sim
    try:
        prediction = sites_predict.predict_sites(topology, spec, result, overhead=probe.overhead,
                                                 before_load_s=before)
    finally:
        sites_predict.HEARTBEAT_S = HEARTBEAT_S
    return live_rows(result), prediction.rows()


def _pct(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base - 1:+.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--nodes-per-cluster", type=int, default=1)
    args = parser.parse_args()
    topology, _ = load_topology(str(args.topology))
    spec = SitesRunSpec(max_nodes_per_cluster=args.nodes_per_cluster)
    within = {view: [0, 0] for view in VIEWS}
    for folder in args.folders:
        burst = json.loads((folder / "burst" / "report.json").read_text())
        start_s, target = burst["fault_s"], burst["fault_target"]
        end_s = json.loads((folder / "chaos.json").read_text())["bursts"][0]["end_s"]
        rows = {(run, view): predicted_rows(topology, spec, folder / run, hb)
                for run in ("baseline", "burst") for view, hb in VIEWS.items()}
        for region in topology.pd_names:
            if region == target:
                continue
            runs = ("baseline", "burst")
            live = [offloaded_p90_s(rows[(run, "exact")][0], region, start_s, end_s)[0] for run in runs]
            line = f"{folder}: {region} window P90 burst vs baseline: live {_pct(live[1], live[0])}"
            for view in VIEWS:
                sim = [offloaded_p90_s(rows[(run, view)][1], region, start_s, end_s)[0] for run in runs]
                line += f"; sim {view} {_pct(sim[1], sim[0])}"
            print(line)
        for (run, view), (live_r, sim_r) in rows.items():
            live_place = {(r[0], round(r[1], 6)): r[2] for r in live_r}  # (region, send s): where prefilled
            for region in topology.pd_names:
                mine = [r for r in sim_r if r[0] == region]
                lt = [r[3] for r in live_r if r[0] == region and r[3] is not None]
                st = [r[3] for r in mine if r[3] is not None]
                mean_err = statistics.mean(st) / statistics.mean(lt) - 1
                p90_err = (nearest_rank(st, 0.9) or 0.0) / (nearest_rank(lt, 0.9) or 1.0) - 1
                within[view][0] += abs(mean_err) <= 0.10 and abs(p90_err) <= 0.10
                within[view][1] += 1
                print(f"  {run:<8} {view:<8} {region}: mean {mean_err:+.0%} P90 {p90_err:+.0%}")
            same = sum(live_place.get((r[0], round(r[1], 6))) == r[2] for r in sim_r)
            print(f"  {run:<8} {view:<8} placed where live did: {same / max(len(sim_r), 1):.0%}")
    for view, (ok, n) in within.items():
        print(f"{view}: {ok} of {n} region-runs within +-10% on TTFT mean and P90")


if __name__ == "__main__":
    main()
