"""The report of `prfaas bench sites run`: per region TTFT (mean, P90), offload share per PrfaaS site over time,
and nothing lost; beside each live number the multi-site simulator's prediction on the same requests, and the error.

    sim = sim_prediction(topology, spec, result)    # bench.sites_predict: the simulator on the run's own requests
    reports = region_reports(result, sim=sim)       # one RegionReport per PD region (live, sim, errors)
    text = format_reports(reports, result)          # what the command prints
    write_sites_run(result, reports, out_dir)       # records-<region>.jsonl, report.json, report.txt

Errors: TTFT mean and P90 as (sim - live) / live; offload share per site (and "local") as sim - live in
percentage points, over every site either side used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prfaas.bench.records import RequestStatus, with_log_rows, write_jsonl
from prfaas.bench.sites_predict import predict_sites
from prfaas.bench.sites_run import SitesRunResult, SitesRunSpec
from prfaas.bench.summary import nearest_rank
from prfaas.core.topology import SiteTopology

LOCAL = "local"


@dataclass(slots=True)
class RegionReport:
    region: str
    rate_rps: float
    sent: int
    completed: int
    failed: int
    lost: int
    ttft_mean_s: float | None
    ttft_p90_s: float | None
    offload_share: dict[str, float]  # PrfaaS site (or "local") -> share of completed requests
    share_over_time: list[dict[str, Any]] = field(default_factory=list)  # [{"t0_s", "t1_s", site: share, ...}]
    sim: dict[str, Any] | None = None  # the simulator's prediction for this region (None: not available)


def sim_prediction(topology: SiteTopology, spec: SitesRunSpec,
                   result: SitesRunResult) -> dict[str, dict[str, Any]]:
    """The multi-site simulator's per-region prediction of this run (`bench.sites_predict.predict_sites`):
    {region: {"sent", "completed", "ttft_mean_s", "ttft_p90_s", "offload_share": {site: share}}}."""
    return predict_sites(topology, spec, result).regions


def _rel_err(sim: float | None, live: float | None) -> float | None:
    return None if sim is None or live is None or live == 0 else (sim - live) / live


def with_errors(live_mean_s: float | None, live_p90_s: float | None, live_share: dict[str, float],
                sim: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prediction with its errors against the live numbers (relative for TTFTs, points for shares)."""
    if sim is None:
        return None
    sim_share = sim.get("offload_share") or {}
    keys = sorted(set(sim_share) | set(live_share))
    return {**sim, "ttft_mean_rel_err": _rel_err(sim.get("ttft_mean_s"), live_mean_s),
            "ttft_p90_rel_err": _rel_err(sim.get("ttft_p90_s"), live_p90_s),
            "offload_share_err_pp": {k: 100.0 * (sim_share.get(k, 0.0) - live_share.get(k, 0.0)) for k in keys}}


def prefilled_at(row: Mapping[str, Any] | None, site_of: Mapping[str, str]) -> str:
    """Where a gateway log row's request was prefilled: its PrfaaS site, "local", or "?" (unknown node)."""
    if row is None or row.get("route") != "prfaas":
        return LOCAL
    return site_of.get(str(row.get("prefill_node")), "?")


def _shares(places: list[str]) -> dict[str, float]:
    total = len(places)
    return {p: places.count(p) / total for p in sorted(set(places))} if total else {}


def region_reports(result: SitesRunResult, bin_s: float | None = None,
                   sim: dict[str, dict[str, Any]] | None = None) -> list[RegionReport]:
    """`bin_s`: the width of the offload-share bins (None: the run's send span / 6, at least 0.5 s)."""
    if bin_s is None:
        span = max((r.send_s for run in result.regions.values() for r in run.records), default=0.0)
        bin_s = max(0.5, round(span / 6, 1))
    reports = []
    for name, run in result.regions.items():
        done = [r for r in run.records if r.status is RequestStatus.COMPLETED]
        ttfts = [r.ttft_s for r in done if r.ttft_s is not None]
        placed = [(r.send_s, prefilled_at(row, result.site_of)) for r, row in with_log_rows(done, run.log)]
        over_time = []
        end_s = max((t for t, _ in placed), default=0.0)
        k = 0
        while k * bin_s <= end_s and placed:
            inside = [p for t, p in placed if k * bin_s <= t < (k + 1) * bin_s]
            if inside:
                over_time.append({"t0_s": k * bin_s, "t1_s": (k + 1) * bin_s, "n": len(inside), **_shares(inside)})
            k += 1
        mean_s = sum(ttfts) / len(ttfts) if ttfts else None
        p90_s = nearest_rank(ttfts, 0.9)
        share = _shares([p for _, p in placed])
        reports.append(RegionReport(
            region=name, rate_rps=run.rate_rps, sent=len(run.records), completed=len(done),
            failed=sum(r.status is RequestStatus.FAILED for r in run.records),
            lost=sum(r.status is RequestStatus.LOST for r in run.records),
            ttft_mean_s=mean_s, ttft_p90_s=p90_s, offload_share=share, share_over_time=over_time,
            sim=with_errors(mean_s, p90_s, share, (sim or {}).get(name))))
    return reports


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def format_reports(reports: list[RegionReport], result: SitesRunResult) -> str:
    lines = []
    if result.fault is not None:
        lines.append(f"fault {result.fault} on {result.fault_target} at {_f(result.fault_s, '.1f')} s")
    for rep in reports:
        sim = rep.sim or {}
        lines.append(f"region {rep.region}: {rep.sent} sent at {rep.rate_rps:.2f} req/s, {rep.completed} completed, "
                     f"{rep.failed} failed, {rep.lost} lost")
        if rep.sim is None:
            lines.append(f"  TTFT mean {_f(rep.ttft_mean_s)} s, P90 {_f(rep.ttft_p90_s)} s (sim n/a)")
            lines.append("  prefilled at: " + ", ".join(f"{k} {v:.0%}" for k, v in rep.offload_share.items()))
        else:
            lines.append(f"  sim: {sim.get('completed')} of {sim.get('sent')} completed")
            lines.append(f"  TTFT mean {_f(rep.ttft_mean_s)} s (sim {_f(sim.get('ttft_mean_s'))}, "
                         f"err {_pct(sim.get('ttft_mean_rel_err'))}), P90 {_f(rep.ttft_p90_s)} s "
                         f"(sim {_f(sim.get('ttft_p90_s'))}, err {_pct(sim.get('ttft_p90_rel_err'))})")
            sim_share = sim.get("offload_share") or {}
            beside = [f"{k} {rep.offload_share.get(k, 0.0):.0%} (sim {sim_share.get(k, 0.0):.0%}, {err:+.0f} pp)"
                      for k, err in (sim.get("offload_share_err_pp") or {}).items()]
            lines.append("  prefilled at: " + ", ".join(beside))
        for b in rep.share_over_time:
            parts = ", ".join(f"{k} {v:.0%}" for k, v in b.items() if k not in ("t0_s", "t1_s", "n"))
            lines.append(f"    [{b['t0_s']:5.1f}, {b['t1_s']:5.1f}) s  n={b['n']:3d}  {parts}")
    if result.tx_bytes:
        lines.append("bytes per link: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in result.tx_bytes.items()))
    lost = sum(r.lost for r in reports)
    lines.append(f"lost {lost}" + ("" if lost == 0 else "  <-- requests lost"))
    return "\n".join(lines)


def write_sites_run(result: SitesRunResult, reports: list[RegionReport], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, run in result.regions.items():
        write_jsonl(out_dir / f"records-{name}.jsonl", run.records)
        (out_dir / f"gateway-log-{name}.json").write_text(json.dumps(run.log), encoding="utf-8")
    doc = {"fault": result.fault, "fault_target": result.fault_target, "fault_s": result.fault_s,
           "tx_bytes": result.tx_bytes, "regions": [asdict(r) for r in reports]}
    (out_dir / "report.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.txt").write_text(format_reports(reports, result) + "\n", encoding="utf-8")
