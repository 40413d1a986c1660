"""The report of `prfaas bench paper`: paper.json, paper.txt and paper.png under the output folder.

Rates are shown in the paper's units (emulated rate x k_t) and TTFTs in the paper's seconds (/ k_t), so they
read beside Table 6 and the planner; the raw (scaled) values are in paper.json and each probe's folder.
Sim-vs-live errors are (sim - live) / live per probe and per run; tables give medians and the spread.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from prfaas.bench.records import read_link_samples, read_records

if TYPE_CHECKING:
    from prfaas.bench.paper import ConfigResult, PaperResult, ProbeRow

PAPER_EGRESS_UTILISATION = 0.13
PAPER_RATIO = {"prfaas-pd": 1.54, "homogeneous": 1.0, "naive": 1.16}


def _err(sim: float | None, live: float | None) -> float | None:
    if sim is None or live is None or live <= 0:
        return None
    return (sim - live) / live


def _med(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _span(values: Sequence[float | None], fmt: str) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    if len(got) == 1:
        return format(got[0], fmt)
    return f"{format(statistics.median(got), fmt)} [{format(min(got), fmt)}, {format(max(got), fmt)}]"


def _times(v: float | None, k: float) -> float | None:
    return None if v is None else v * k


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def common_rows(c: ConfigResult) -> list[ProbeRow]:
    return [p for p in c.probes if p.kind == "common"]


def best_sustained(c: ConfigResult, run: int) -> ProbeRow | None:
    ok = [p for p in c.probes if p.run == run and p.kind == "search" and p.live.is_sustainable]
    return max(ok, key=lambda p: p.rate_rps) if ok else None


def format_paper(result: PaperResult, extra: ConfigResult | None = None) -> str:
    opts = result.options
    k = opts.scale.time_scale
    configs = list(result.configs) + ([extra] if extra is not None else [])
    homo = next((c for c in configs if c.configuration == "homogeneous" and c.live_max_rps), None)
    homo_live = _med(homo.live_max_rps) if homo else None
    homo_sim = _med(homo.sim_max_rps) if homo else None
    homo_any = next((c for c in configs if c.configuration == "homogeneous"), None)
    homo_planner = homo_any.planner_lambda_rps if homo_any else None
    lines = [f"prfaas bench paper: emulated accelerators, {opts.scale.emulation.describe()}, "
             f"{opts.scale.steps_per_event} decode step(s) per token event; {opts.num_requests} requests per probe, "
             f"{opts.runs} run(s); rates in the paper's req/s (emulated x k_t), TTFT in the paper's s (emulated / k_t)",
             "",
             f"{'configuration':<34}{'t':>7}{'P/D':>6}{'planner':>9}{'sim max':>9}{'live max (median [min,max])':>30}"
             f"{'sim err':>9}{'live/homo':>10}{'planner/homo':>13}{'paper':>7}{'egress util':>12}"]
    for c in configs:
        live = [v * k for v in c.live_max_rps]
        sim = [v * k for v in c.sim_max_rps]
        errs = [_err(s, lv) for s, lv in zip(c.sim_max_rps, c.live_max_rps, strict=False)]
        live_med = _med(c.live_max_rps)
        ratio = live_med / homo_live if homo_live and live_med is not None else None
        pl_ratio = c.planner_lambda_rps / homo_planner if homo_planner else None
        utils = [b.live_link_utilisation_mean for r in range(opts.runs) if (b := best_sustained(c, r)) is not None]
        base = c.configuration.split("/")[0]
        lines.append(
            f"{c.configuration:<34}{_f(c.threshold_tokens, ',d') if c.threshold_tokens else '-':>7}"
            f"{f'{c.n_p}/{c.n_d}':>6}{c.planner_lambda_rps:>9.3f}{_f(_med(sim), '.3f'):>9}{_span(live, '.3f'):>30}"
            f"{_span(errs, '+.1%'):>9}{_f(ratio, '.3f'):>10}{_f(pl_ratio, '.3f'):>13}"
            f"{PAPER_RATIO.get(base, float('nan')):>7.2f}{_span(utils, '.1%'):>12}")
    if homo_sim:
        lines.append("(simulator ratios to homogeneous: " + ", ".join(
            f"{c.configuration} {(_med(c.sim_max_rps) or 0.0) / homo_sim:.3f}" for c in configs if c.sim_max_rps)
            + ")")
    cap_rows = {c.configuration: [p for p in c.probes if p.kind == "capacity"] for c in configs}
    if any(cap_rows.values()):
        homo_cap = cap_rows.get("homogeneous") or []
        h_live = _med([p.live_throughput_rps for p in homo_cap])
        h_sim = _med([p.sim_throughput_rps for p in homo_cap])
        size = (f"{opts.capacity_requests} requests" if opts.capacity_requests is not None
                else f"{opts.capacity_window_s:g} s (paper units)")
        lines += ["", f"capacity: Poisson arrivals at {opts.overload:g} x the planner's Lambda_max for "
                  f"{size}, cut {opts.capacity_stop_s:g} s after the last arrival + decode; "
                  "served = completions per second once saturated "
                  "(median [min, max] over runs, paper req/s); sim on the same requests",
                  f"{'configuration':<34}{'planner':>8}{'offered':>8}{'live served':>24}{'sim served':>11}"
                  f"{'sim err':>25}{'live/homo':>10}{'sim/homo':>9}{'planner/homo':>13}{'paper':>6}"
                  f"{'egress util':>24}{'lost':>5}"]
        for c in configs:
            rows = cap_rows.get(c.configuration) or []
            if not rows:
                continue
            lv = _med([p.live_throughput_rps for p in rows])
            sv = _med([p.sim_throughput_rps for p in rows])
            base = c.configuration.split("/")[0]
            lines.append(
                f"{c.configuration:<34}{c.planner_lambda_rps:>8.3f}{rows[0].rate_rps * k:>8.3f}"
                f"{_span([_times(p.live_throughput_rps, k) for p in rows], '.3f'):>24}"
                f"{_f(None if sv is None else sv * k, '.3f'):>11}"
                f"{_span([_err(p.sim_throughput_rps, p.live_throughput_rps) for p in rows], '+.1%'):>25}"
                f"{_f(lv / h_live if lv is not None and h_live else None, '.3f'):>10}"
                f"{_f(sv / h_sim if sv is not None and h_sim else None, '.3f'):>9}"
                f"{_f(c.planner_lambda_rps / homo_planner if homo_planner else None, '.3f'):>13}"
                f"{PAPER_RATIO.get(base, float('nan')):>6.2f}"
                f"{_span([p.live_link_utilisation_mean for p in rows], '.1%'):>24}{sum(p.live_lost for p in rows):>5}")
    lines += ["", f"common load {opts.common_load_rps:g} req/s (paper units): TTFT mean / P90 in paper seconds, "
              "live vs simulator on the same requests",
              f"{'configuration':<34}{'live mean':>10}{'sim mean':>9}{'err':>25}{'live p90':>9}{'sim p90':>9}"
              f"{'err':>25}{'offload':>8}{'sim off':>8}{'egress util':>22}{'done':>6}{'failed':>7}{'lost':>5}"]
    for c in configs:
        rows = common_rows(c)
        if not rows:
            continue
        lm = [r.live_ttft_mean_s / k for r in rows if r.live_ttft_mean_s is not None]
        sm = [r.sim_ttft_mean_s / k for r in rows if r.sim_ttft_mean_s is not None]
        lp = [r.live_ttft_p90_s / k for r in rows if r.live_ttft_p90_s is not None]
        sp = [r.sim_ttft_p90_s / k for r in rows if r.sim_ttft_p90_s is not None]
        lines.append(
            f"{c.configuration:<34}{_f(_med(lm), '.3f'):>10}{_f(_med(sm), '.3f'):>9}"
            f"{_span([_err(r.sim_ttft_mean_s, r.live_ttft_mean_s) for r in rows], '+.1%'):>25}"
            f"{_f(_med(lp), '.3f'):>9}{_f(_med(sp), '.3f'):>9}"
            f"{_span([_err(r.sim_ttft_p90_s, r.live_ttft_p90_s) for r in rows], '+.1%'):>25}"
            f"{_f(_med([r.live_offload_fraction for r in rows]), '.2f'):>8}"
            f"{_f(_med([r.sim_offload_fraction for r in rows]), '.2f'):>8}"
            f"{_span([r.live_link_utilisation_mean for r in rows], '.1%'):>22}"
            f"{sum(r.live_completed for r in rows):>6}{sum(r.live_failed for r in rows):>7}"
            f"{sum(r.live_lost for r in rows):>5}")
    oh = [(c, p) for c in configs for p in c.probes if p.simoh_ttft_mean_s is not None]
    if oh:
        lines += ["", "simulator + measured request-path overhead (sim+oh) vs live, error (sim+oh - live) / live "
                  "per probe: median [min, max] over runs",
                  f"{'configuration':<34}{'kind':<10}{'TTFT mean err':>24}{'TTFT p90 err':>24}{'served err':>24}"]
        for c in configs:
            for kind in ("capacity", "common", "extra"):
                rows = [p for p in c.probes if p.kind == kind and p.simoh_ttft_mean_s is not None]
                if not rows:
                    continue
                lines.append(
                    f"{c.configuration:<34}{kind:<10}"
                    f"{_span([_err(p.simoh_ttft_mean_s, p.live_ttft_mean_s) for p in rows], '+.1%'):>24}"
                    f"{_span([_err(p.simoh_ttft_p90_s, p.live_ttft_p90_s) for p in rows], '+.1%'):>24}"
                    f"{_span([_err(p.simoh_throughput_rps, p.live_throughput_rps) for p in rows], '+.1%'):>24}")
    lines += ["", "every probe (scaled units): rate, live / sim sustainable, finished fraction, TTFT mean (s)"]
    for c in configs:
        for p in c.probes:
            lines.append(f"  {c.configuration:<32} run {p.run} {p.kind:<7}{p.rate_rps:>8.3f} req/s  live "
                         f"{'ok ' if p.live.is_sustainable else 'no '}{p.live.finished_fraction:>5.0%} "
                         f"{_f(p.live_ttft_mean_s, '7.2f')}  sim {'ok ' if p.sim.is_sustainable else 'no '}"
                         f"{p.sim.finished_fraction:>5.0%} {_f(p.sim_ttft_mean_s, '7.2f')}  first tokens/s live "
                         f"{_f(p.live_first_token_rps, '.3f')} sim {_f(p.sim_first_token_rps, '.3f')}  served live "
                         f"{_f(p.live_throughput_rps, '.3f')} sim {_f(p.sim_throughput_rps, '.3f')}  "
                         f"failed {p.live_failed} lost {p.live_lost} abandoned {p.live_abandoned}")
    lines += [f"paper: PrfaaS egress averages ~{PAPER_EGRESS_UTILISATION:.0%} of the link at the operating point"]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def write_paper(result: PaperResult, extra: ConfigResult | None = None) -> None:
    """paper.json + paper.txt (+ paper.png when nothing is pending); called after every run (partial results)."""
    out = result.options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    configs = list(result.configs) + ([extra] if extra is not None else [])
    payload: dict[str, Any] = {
        "scale": {"time_scale": result.options.scale.time_scale, "state_scale": result.options.scale.state_scale,
                  "steps_per_event": result.options.scale.steps_per_event},
        "num_requests": result.options.num_requests, "overload": result.options.overload,
        "capacity_window_s": result.options.capacity_window_s, "common_requests": result.options.common_requests,
        "capacity_requests": result.options.capacity_requests, "capacity_stop_s": result.options.capacity_stop_s,
        "seed": result.options.seed,
        "overhead": None if result.options.overhead is None else {
            "fixed_s": result.options.overhead.fixed_s, "per_token_s": result.options.overhead.per_token_s,
            "num_points": result.options.overhead.num_points}, "runs": result.options.runs,
        "common_load_rps": result.options.common_load_rps,
        "configs": msgspec.to_builtins(configs), "notes": result.notes}
    (out / "paper.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    (out / "paper.txt").write_text(format_paper(result, extra) + "\n", encoding="utf-8")
    if extra is None:
        plot_paper(result, out / "paper.png")


def plot_paper(result: PaperResult, path: Path) -> Path | None:
    from prfaas.bench.plots import _pyplot

    k = result.options.scale.time_scale
    plt = _pyplot()
    fig, (bars, cdf, link) = plt.subplots(1, 3, figsize=(17, 4.5))
    names = [c.configuration for c in result.configs]
    xs = range(len(names))
    planner = [c.planner_lambda_rps for c in result.configs]
    def live_rates(c: ConfigResult) -> list[float]:  # the search's answers, else the capacity runs' served rates
        return c.live_max_rps or [p.live_throughput_rps for p in c.probes
                                  if p.kind == "capacity" and p.live_throughput_rps is not None]

    def sim_rates(c: ConfigResult) -> list[float]:
        return c.sim_max_rps or [p.sim_throughput_rps for p in c.probes
                                 if p.kind == "capacity" and p.sim_throughput_rps is not None]

    sim = [(_med(sim_rates(c)) or 0.0) * k for c in result.configs]
    live = [(_med(live_rates(c)) or 0.0) * k for c in result.configs]
    lo = [lv - min(live_rates(c), default=0.0) * k for lv, c in zip(live, result.configs, strict=True)]
    hi = [max(live_rates(c), default=0.0) * k - lv for lv, c in zip(live, result.configs, strict=True)]
    bars.bar([x - 0.27 for x in xs], planner, 0.27, label="planner")
    bars.bar(list(xs), sim, 0.27, label="simulator")
    bars.bar([x + 0.27 for x in xs], live, 0.27, yerr=[lo, hi], label="live (median, min-max)")
    bars.set_xticks(list(xs), [n.replace("/", "\n") for n in names], fontsize="small")
    bars.set_ylabel("max sustainable / served rate (paper req/s)")
    bars.legend(fontsize="small")
    for c in result.configs:
        for common in common_rows(c)[:1]:
            recs = read_records(Path(common.out) / "records.jsonl")
            ttfts = sorted(r.ttft_s / k for r in recs if r.ttft_s is not None)
            line = cdf.step(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], where="post",
                            label=f"{c.configuration} live") if ttfts else None
            sim_path = Path(common.out) / "sim_ttft.json"
            if sim_path.exists():
                sims = sorted(v / k for v in json.loads(sim_path.read_text()))
                color = line[0].get_color() if line else None
                cdf.step(sims, [(i + 1) / len(sims) for i in range(len(sims))], where="post", linestyle="--",
                         color=color, label=f"{c.configuration} sim")
    cdf.set_xlabel("TTFT (paper s)")
    cdf.set_ylabel("CDF")
    cdf.set_title(f"TTFT at {result.options.common_load_rps:g} req/s")
    cdf.legend(fontsize="x-small")
    pd = next((c for c in result.configs if c.configuration == "prfaas-pd"), None)
    row: ProbeRow | None = best_sustained(pd, 0) if pd is not None else None
    if row is None and pd is not None:
        row = next((p for p in pd.probes if p.kind == "capacity"), None)
    if row is None and pd is not None and common_rows(pd):
        row = common_rows(pd)[0]
    if row is not None:
        samples = read_link_samples(Path(row.out) / "link.jsonl")
        times = [s.time_s for s in samples]
        link.plot(times, [(s.wire_gbps if s.wire_gbps is not None else s.goodput_gbps) * 1e3 for s in samples],
                  label="egress (wire)")
        link.plot(times, [s.goodput_gbps * 1e3 for s in samples], label="KV goodput", alpha=0.6)
        link.step(times, [(s.capacity_gbps or 0.0) * 1e3 for s in samples], where="post", color="red",
                  linestyle="--", label="cap")
        link.set_title(f"prfaas-pd link at {row.rate_rps * k:.2f} req/s ({row.kind})")
        link.set_xlabel("emulated time (s)")
        link.set_ylabel("Mbit/s (emulated)")
        link.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
