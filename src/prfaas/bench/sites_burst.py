"""The `burst` fault of `prfaas bench sites run|chaos`: one region's arrival rate x F over a window, and its report.

    requests = with_burst(base, wl, start_s=3.0, burst_s=5.0, factor=5.0, salt=1)   # base + (F - 1) x rate extra
    entry = burst_report(baseline, run)        # the other regions' offloaded TTFT P90 in the window, both runs
    entry = pooled_burst_report([(b1, r1), (b2, r2), ...])   # the same over several seeds' runs, pooled

The burst region's requests are its no-burst requests (same seed: same arrivals, lengths, prompts) plus extra
Poisson arrivals at (F - 1) x its rate over [start_s, start_s + burst_s), drawn from their own seed, renumbered
in arrival order; every other region's requests are exactly the no-burst run's. So the region's rate in the
window is F x its rate (as long as its no-burst requests span the window; the report gives the counts).

The report judges the *other* regions (issue 14's fairness criterion): per region, the TTFT P90 of its
requests sent in the window that were prefilled at a PrfaaS site, in the burst run and in the no-burst
baseline (each run's own offloads), live and sim, and whether the burst run's stays within +20% of the
baseline's (pass), plus where each region's window requests were prefilled, so that a shared site is visible.
Beside the live verdict, a diagnostic that is not judged: the P90 of the same offloads' *node side* (queue + prefill
+ state transfer, from the gateway log: what the PrfaaS sites and their share policy decide), burst vs baseline.
When the TTFT grows and the node side does not, the time went into the request path (gateway, decode, the load
generator) of a small emulation host processing the burst, not into the shared site.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prfaas.bench.records import RequestStatus, node_side_s, with_log_rows
from prfaas.bench.sites_compare_report import ChaosRun, Row, live_rows
from prfaas.bench.sites_report import LOCAL
from prfaas.bench.sites_run import SitesFault, SitesRunResult
from prfaas.bench.summary import nearest_rank
from prfaas.bench.workload import BenchRequest, WorkloadSpec, build_requests

FAIRNESS_BAR = 0.20  # the other region's offloaded TTFT P90 may grow at most this much (issue 14)
EXTRA_SEED_OFFSET = 500


def with_burst(base: Sequence[BenchRequest], wl: WorkloadSpec, start_s: float, burst_s: float, factor: float,
               salt: int) -> list[BenchRequest]:
    """`base` plus Poisson arrivals at (factor - 1) x wl.rate_rps over [start_s, start_s + burst_s)."""
    extra_rate = (factor - 1.0) * wl.rate_rps
    if extra_rate <= 0:
        return list(base)
    # enough draws to cover the window (mean count + 6 sigma), then keep those inside it
    mean = extra_rate * burst_s
    num = math.ceil(mean + 6.0 * math.sqrt(mean)) + 1
    spec = dataclasses.replace(wl, num_requests=num, rate_rps=extra_rate, seed=wl.seed + EXTRA_SEED_OFFSET)
    extra = [dataclasses.replace(r, arrival_s=start_s + r.arrival_s) for r in build_requests(spec, salt=salt + 1000)
             if r.arrival_s < burst_s]
    merged = sorted([*base, *extra], key=lambda r: r.arrival_s)
    return [dataclasses.replace(r, index=i) for i, r in enumerate(merged)]


def _in_window(rows: Sequence[Row], region: str, start_s: float, end_s: float) -> list[Row]:
    return [r for r in rows if r[0] == region and start_s <= r[1] < end_s]


def offloaded_p90_s(rows: Sequence[Row], region: str, start_s: float, end_s: float) -> tuple[float | None, int]:
    """TTFT P90 of `region`'s completed requests sent in [start_s, end_s) that were prefilled at a PrfaaS site,
    and how many there were."""
    ttfts = [t for _, _, place, t in _in_window(rows, region, start_s, end_s) if place != LOCAL and t is not None]
    return nearest_rank(ttfts, 0.9), len(ttfts)


def node_sides_s(result: SitesRunResult, region: str, start_s: float, end_s: float) -> list[float]:
    """Queue + prefill + transfer seconds (the gateway log's) of `region`'s completed offloads sent in
    [start_s, end_s): the part of their TTFT spent at the PrfaaS site and on its link."""
    run = result.regions.get(region)
    if run is None:
        return []
    sides = [node_side_s(row) for rec, row in with_log_rows(run.records, run.log)
             if row is not None and row.get("route") == "prfaas" and rec.status is RequestStatus.COMPLETED
             and start_s <= rec.send_s < end_s]
    return [s for s in sides if s is not None]


def places(rows: Sequence[Row], region: str, start_s: float, end_s: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, _, place, t in _in_window(rows, region, start_s, end_s):
        if t is not None:
            out[place] = out.get(place, 0) + 1
    return dict(sorted(out.items()))


def change(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None or base <= 0 else (value - base) / base


def verdict(rel_change: float | None) -> str:
    if rel_change is None:
        return "n/a"
    return "pass" if rel_change <= FAIRNESS_BAR else "fail"


def _side(rows: Sequence[Row], base_rows: Sequence[Row], region: str, start_s: float, end_s: float) -> dict[str, Any]:
    p90, n = offloaded_p90_s(rows, region, start_s, end_s)
    base_p90, base_n = offloaded_p90_s(base_rows, region, start_s, end_s)
    rel = change(p90, base_p90)
    return {"offloaded_p90_s": p90, "num_offloaded": n, "baseline_offloaded_p90_s": base_p90,
            "baseline_num_offloaded": base_n, "change": rel, "verdict": verdict(rel),
            "places": places(rows, region, start_s, end_s), "baseline_places": places(base_rows, region, start_s,
                                                                                          end_s)}


def burst_report(baseline: ChaosRun, run: ChaosRun) -> dict[str, Any]:
    """The burst run beside the no-burst baseline (module docstring); live and sim (the probed path)."""
    return pooled_burst_report([(baseline, run)])


def pooled_burst_report(pairs: Sequence[tuple[ChaosRun, ChaosRun]]) -> dict[str, Any]:
    """`burst_report` over several (baseline, burst) pairs of the same command (seeds): every pair's window
    requests pooled, so the P90s are over all their offloads (a window of one run holds 5-12: its P90 is its largest
    value or next to it). The pairs must share the window and the bursting region."""
    if not pairs:
        raise ValueError("no burst run to report")
    windows = set()
    for _, run in pairs:
        res = run.result
        if res.fault != SitesFault.BURST.value or res.fault_s is None or res.fault_end_s is None:
            raise ValueError("not a burst run")
        windows.add((res.fault_s, res.fault_end_s, res.fault_target))
    if len(windows) > 1:
        raise ValueError(f"the burst runs differ in window or region: {sorted(windows)}")
    ((start_s, end_s, burst_region),) = windows
    live = [row for _, run in pairs for row in live_rows(run.result)]
    base_live = [row for baseline, _ in pairs for row in live_rows(baseline.result)]
    sim = [row for _, run in pairs for row in run.sim_rows]
    base_sim = [row for baseline, _ in pairs for row in baseline.sim_rows]
    sent = sum(1 for r in live if r[0] == burst_region and start_s <= r[1] < end_s)
    base_sent = sum(1 for r in base_live if r[0] == burst_region and start_s <= r[1] < end_s)
    regions: list[dict[str, Any]] = []
    for region in pairs[0][1].result.regions:
        lost = sum(_lost(run, region) for _, run in pairs)
        if region == burst_region:
            regions.append({"region": region, "burst": True, "live": {"places": places(live, region, start_s,
                                                                                         end_s)},
                            "sim": {"places": places(sim, region, start_s, end_s)}, "lost": lost})
            continue
        live_side = _side(live, base_live, region, start_s, end_s)
        node = nearest_rank([v for _, run in pairs for v in node_sides_s(run.result, region, start_s, end_s)], 0.9)
        base_node = nearest_rank([v for baseline, _ in pairs
                                  for v in node_sides_s(baseline.result, region, start_s, end_s)], 0.9)
        live_side.update(node_p90_s=node, baseline_node_p90_s=base_node, node_change=change(node, base_node))
        regions.append({"region": region, "burst": False, "live": live_side,
                        "sim": _side(sim, base_sim, region, start_s, end_s), "lost": lost})
    lost = sum(r["lost"] for r in regions) + sum(_lost(baseline, r) for baseline, _ in pairs
                                                 for r in baseline.result.regions)
    return {"fault": SitesFault.BURST.value, "target": burst_region, "fault_s": start_s, "end_s": end_s,
            "burst_sent": sent, "baseline_sent": base_sent, "regions": regions, "lost": lost, "runs": len(pairs)}


def _lost(run: ChaosRun, region: str) -> int:
    records = run.result.regions[region].records if region in run.result.regions else []
    return sum(r.status is RequestStatus.LOST for r in records)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def _places(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def format_burst(entry: Mapping[str, Any]) -> str:
    e = entry
    pooled = f" ({e['runs']} runs pooled)" if e.get("runs", 1) > 1 else ""
    lines = [f"burst of {e['target']} over [{e['fault_s']:.1f}, {e['end_s']:.1f}) s{pooled}: it sent "
             f"{e['burst_sent']} requests in the window (baseline {e['baseline_sent']}); other regions' offloaded "
             f"TTFT P90 in the window, burst vs no-burst baseline (bar: +{FAIRNESS_BAR:.0%})"]
    for r in e["regions"]:
        if r["burst"]:
            lines.append(f"  {r['region']:<8} (bursting) prefilled at: live {_places(r['live']['places'])}; "
                         f"sim {_places(r['sim']['places'])}   lost {r['lost']}")
            continue
        for side in ("live", "sim"):
            s = r[side]
            lines.append(f"  {r['region']:<8} {side:<4} {_f(s['offloaded_p90_s'])} s ({s['num_offloaded']} offloads)"
                         f" vs {_f(s['baseline_offloaded_p90_s'])} s ({s['baseline_num_offloaded']}): "
                         f"{_pct(s['change'])} {s['verdict'].upper()}   prefilled at {_places(s['places'])} "
                         f"(baseline {_places(s['baseline_places'])})")
            if "node_p90_s" in s:
                lines.append(f"  {'':<8} {'':<4} node side (queue + prefill + transfer) P90 {_f(s['node_p90_s'])} s "
                             f"vs {_f(s['baseline_node_p90_s'])} s: {_pct(s['node_change'])} (not judged)")
        lines.append(f"  {r['region']:<8} lost {r['lost']}")
    lines.append(f"  lost {e['lost']}" + ("" if e["lost"] == 0 else "  <-- requests lost"))
    return "\n".join(lines)
