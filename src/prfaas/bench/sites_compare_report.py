"""The reports of `prfaas bench sites compare` and `prfaas bench sites chaos` (pure: built from records).

    rows = compare_rows({"home-only": runs_a, "prfaas-sites": runs_b})   # per region and selector
    text = format_compare(rows, paths)                                   # one table
    faults = chaos_report(topology, baseline, {"site-lost": run, ...})   # per fault, beside the baseline
    text = format_chaos(faults)

A `SelectorRuns` holds one live run's per-region reports twice: the simulator with the measured request path
(`bench.sites_overhead`) and without it, so each row shows the error both ways. A chaos fault is judged on its
*window*: the requests sent at or after the fault's time (the same requests in the baseline, by the fault run's
time). The *affected* regions are those linked to the lost site (site-lost) or the degraded link's region
(link-degraded); for each, where its offloads went after the fault and how many seconds after the fault the
first request was sent that went to another site than the faulted one (live: its send time; sim: the same
request's arrival), or None when none did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prfaas.bench.records import RequestStatus, with_log_rows
from prfaas.bench.sites_report import LOCAL, RegionReport, prefilled_at
from prfaas.bench.sites_run import SitesFault, SitesRunResult
from prfaas.bench.summary import nearest_rank
from prfaas.core.topology import SiteTopology

Row = tuple[str, float, str, float | None]  # (region, sent at s, prefilled at: site or "local", TTFT s or None)


@dataclass(frozen=True, slots=True)
class SelectorRuns:
    """One live run's region reports: sim with the probed request path, without it, and (when another run
    measured it) with the path under load."""

    with_path: list[RegionReport]
    without_path: list[RegionReport]
    loaded_path: list[RegionReport] | None = None


def compare_rows(runs: Mapping[str, SelectorRuns]) -> list[dict[str, Any]]:
    """One row per region and selector (regions in run order, selectors in the given order)."""
    rows = []
    regions = list(dict.fromkeys(r.region for sel in runs.values() for r in sel.with_path))
    for region in regions:
        for selector, sel in runs.items():
            rep = next((r for r in sel.with_path if r.region == region), None)
            bare = next((r for r in sel.without_path if r.region == region), None)
            if rep is None:
                continue
            sim = rep.sim or {}
            bare_sim = (bare.sim if bare is not None else None) or {}
            loaded = next((r for r in sel.loaded_path or [] if r.region == region), None)
            loaded_sim = (loaded.sim if loaded is not None else None) or {}
            rows.append({
                "region": region, "selector": selector, "sent": rep.sent, "completed": rep.completed,
                "lost": rep.lost, "failed": rep.failed,
                "ttft_mean_s": rep.ttft_mean_s, "sim_ttft_mean_s": sim.get("ttft_mean_s"),
                "ttft_mean_rel_err": sim.get("ttft_mean_rel_err"),
                "ttft_p90_s": rep.ttft_p90_s, "sim_ttft_p90_s": sim.get("ttft_p90_s"),
                "ttft_p90_rel_err": sim.get("ttft_p90_rel_err"),
                "nopath_ttft_mean_s": bare_sim.get("ttft_mean_s"),
                "nopath_ttft_mean_rel_err": bare_sim.get("ttft_mean_rel_err"),
                "nopath_ttft_p90_s": bare_sim.get("ttft_p90_s"),
                "nopath_ttft_p90_rel_err": bare_sim.get("ttft_p90_rel_err"),
                "loaded_ttft_mean_s": loaded_sim.get("ttft_mean_s"),
                "loaded_ttft_mean_rel_err": loaded_sim.get("ttft_mean_rel_err"),
                "loaded_ttft_p90_s": loaded_sim.get("ttft_p90_s"),
                "loaded_ttft_p90_rel_err": loaded_sim.get("ttft_p90_rel_err"),
                "offload_share": rep.offload_share, "sim_offload_share": sim.get("offload_share") or {}})
    return rows


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def _shares(live: Mapping[str, float], sim: Mapping[str, float]) -> str:
    keys = sorted(set(live) | set(sim), key=lambda k: (k != LOCAL, k))
    return ", ".join(f"{k} {live.get(k, 0.0):.0%}|{sim.get(k, 0.0):.0%}" for k in keys)


def _beside(row: Mapping[str, Any], stat: str) -> str:
    """live | sim without the path | with the probed path | with the path under load, errors in brackets."""
    parts = [_f(row[f"ttft_{stat}_s"])]
    for prefix in ("nopath_", "sim_", "loaded_"):
        err_key = f"{prefix}ttft_{stat}_rel_err" if prefix != "sim_" else f"ttft_{stat}_rel_err"
        parts.append(f"{_f(row[f'{prefix}ttft_{stat}_s'])} ({_pct(row[err_key])})")
    return " | ".join(parts)


def format_compare(rows: Sequence[dict[str, Any]], paths: Mapping[str, str]) -> str:
    """The compare table; `paths`: a run's name -> its measured request paths, described."""
    lines = [f"request path ({name}): {desc}" for name, desc in paths.items()]
    lines.append("TTFT in s: live | sim without the path | sim + probed path | sim + path under load (err);"
                 " prefilled at: live|sim (probed path)")
    for r in rows:
        lines.append(f"{r['region']:<6} {r['selector']:<13} lost {r['lost']}  "
                     f"prefilled at: {_shares(r['offload_share'], r['sim_offload_share'])}")
        lines.append(f"    TTFT mean {_beside(r, 'mean')}")
        lines.append(f"    TTFT P90  {_beside(r, 'p90')}")
    lost = sum(r["lost"] for r in rows)
    lines.append(f"lost {lost}" + ("" if lost == 0 else "  <-- requests lost"))
    return "\n".join(lines)


# --- chaos ---------------------------------------------------------------------------------------
def live_rows(result: SitesRunResult) -> list[Row]:
    """Per live request: (region, send_s, where prefilled, TTFT s; None unless completed)."""
    rows: list[Row] = []
    for name, run in result.regions.items():
        for rec, row in with_log_rows(run.records, run.log):
            ok = rec.status is RequestStatus.COMPLETED
            rows.append((name, rec.send_s, prefilled_at(row, result.site_of) if ok else LOCAL,
                         rec.ttft_s if ok else None))
    return rows


def window_p90_s(rows: Sequence[Row], region: str, start_s: float) -> float | None:
    """TTFT P90 of `region`'s completed requests sent at or after `start_s`."""
    return nearest_rank([t for reg, sent, _, t in rows if reg == region and sent >= start_s and t is not None], 0.9)


def after_fault(rows: Sequence[Row], region: str, start_s: float, faulted_site: str) -> dict[str, Any]:
    """Where `region`'s completed requests sent at or after `start_s` were prefilled, and the delay (s after
    `start_s`) of the first one prefilled at a PrfaaS site other than `faulted_site` (None: none was)."""
    mine = sorted((sent, place) for reg, sent, place, t in rows if reg == region and sent >= start_s
                  and t is not None)
    places: dict[str, int] = {}
    for _, place in mine:
        places[place] = places.get(place, 0) + 1
    other = [sent for sent, place in mine if place not in (LOCAL, faulted_site)]
    return {"places": dict(sorted(places.items())), "first_other_s": other[0] - start_s if other else None}


def faulted_site_and_regions(topology: SiteTopology, fault: SitesFault, target: str) -> tuple[str, list[str]]:
    """The PrfaaS site the fault hits and the PD regions it affects (module docstring)."""
    if fault is SitesFault.SITE_LOST:
        return target, [lk.pd for lk in topology.links if lk.prfaas == target]
    link = next(lk for lk in topology.links if lk.link_id == target)
    return link.prfaas, [link.pd]


@dataclass(frozen=True, slots=True)
class ChaosRun:
    """One run of `bench sites chaos` as the report needs it."""

    result: SitesRunResult
    sim_rows: list[Row]  # the prediction's rows, the probed request path included (SitesPrediction.rows)
    loaded_rows: list[Row] | None = None  # the same with the path under load (None: not measured)


def chaos_report(topology: SiteTopology, baseline: ChaosRun, faults: Mapping[str, ChaosRun]) -> list[dict[str, Any]]:
    """Per fault: its time and target, per region the window P90 (live, sim; baseline live, sim), per affected
    region where offloads went after it and the first other-site offload's delay (live, sim), and lost."""
    base_live = live_rows(baseline.result)
    out = []
    for name, run in faults.items():
        res = run.result
        if res.fault is None or res.fault_s is None or res.fault_target is None:
            raise ValueError(f"chaos run {name!r} has no fault recorded")
        if SitesFault(res.fault) is SitesFault.BURST:
            continue  # judged by bench.sites_burst.burst_report
        site, affected = faulted_site_and_regions(topology, SitesFault(res.fault), res.fault_target)
        live = live_rows(res)
        regions = []
        for region in res.regions:
            entry: dict[str, Any] = {
                "region": region, "affected": region in affected,
                "window_p90_s": window_p90_s(live, region, res.fault_s),
                "sim_window_p90_s": window_p90_s(run.sim_rows, region, res.fault_s),
                "baseline_window_p90_s": window_p90_s(base_live, region, res.fault_s),
                "baseline_sim_window_p90_s": window_p90_s(baseline.sim_rows, region, res.fault_s),
                "loaded_sim_window_p90_s": None if run.loaded_rows is None else window_p90_s(
                    run.loaded_rows, region, res.fault_s),
                "baseline_loaded_sim_window_p90_s": None if baseline.loaded_rows is None else window_p90_s(
                    baseline.loaded_rows, region, res.fault_s),
                "lost": sum(r.status is RequestStatus.LOST for r in res.regions[region].records)}
            if region in affected:
                entry["live_after"] = after_fault(live, region, res.fault_s, site)
                entry["sim_after"] = after_fault(run.sim_rows, region, res.fault_s, site)
                entry["baseline_after"] = after_fault(base_live, region, res.fault_s, site)
            regions.append(entry)
        out.append({"fault": res.fault, "target": res.fault_target, "fault_s": res.fault_s, "faulted_site": site,
                    "regions": regions, "lost": sum(r["lost"] for r in regions)})
    return out


def _places(after: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in after["places"].items()) or "none"


def format_chaos(faults: Sequence[dict[str, Any]]) -> str:
    lines = []
    for f in faults:
        lines.append(f"{f['fault']} on {f['target']} at {f['fault_s']:.1f} s (site {f['faulted_site']}): "
                     "window = requests sent after the fault; TTFT P90 in s, live | sim + probed path | "
                     "sim + path under load, and the same for the no-fault baseline")
        for r in f["regions"]:
            lines.append(f"  {r['region']:<8} P90 {_f(r['window_p90_s'])} | {_f(r['sim_window_p90_s'])} | "
                         f"{_f(r['loaded_sim_window_p90_s'])}   baseline {_f(r['baseline_window_p90_s'])} | "
                         f"{_f(r['baseline_sim_window_p90_s'])} | {_f(r['baseline_loaded_sim_window_p90_s'])}   "
                         f"lost {r['lost']}")
            if r["affected"]:
                live, sim, base = r["live_after"], r["sim_after"], r["baseline_after"]
                lines.append(f"    after the fault, prefilled at: live {_places(live)}; sim {_places(sim)}; "
                             f"baseline {_places(base)}")
                lines.append(f"    first offload to another site: live {_f(live['first_other_s'], '.1f')} s, "
                             f"sim {_f(sim['first_other_s'], '.1f')} s after the fault")
        lines.append(f"  lost {f['lost']}" + ("" if f["lost"] == 0 else "  <-- requests lost"))
    return "\n".join(lines)
