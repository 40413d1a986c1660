"""Tables, JSON and plots of `bench paper-scenario` (`bench.paper_scenarios`), in the paper's units.

    rows = phase_rows(result)              # per run, side and phase: TTFT mean / P90, offload share, t, link use
    print(format_scenario(result))
    write_scenario(result, out_dir)        # SCENARIO.txt, SCENARIO.json, SCENARIO-POLICY.png

Phases are by arrival time (paper seconds): a request belongs to the phase it arrived in; threshold and link
samples to the phase they were taken in. TTFTs are divided by k_t, times too.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from prfaas.bench.paper_scenarios import Run, Sample, ScenarioResult, Side


class PhaseRow(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    side: str  # live | sim
    phase: str
    start_s: float  # paper seconds
    end_s: float
    requests: int
    completed: int
    ttft_mean_s: float | None  # paper seconds
    ttft_p90_s: float | None
    offload_share: float | None
    threshold_median: float | None  # tokens, over the phase's samples
    threshold_max: int | None
    link_util_mean: float | None  # rate / cap in force
    n_pd_prefill_end: int | None  # the role counts at the phase's last sample
    n_pd_decode_end: int | None


def _phase_row(policy: str, side_name: str, side: Side, phase: tuple[str, float, float], k: float) -> PhaseRow:
    name, start, end = phase
    lo, hi = start * k, end * k
    reqs = [r for r in side.requests if lo <= r.arrival_s < hi]
    ttfts = [r.ttft_s / k for r in reqs if r.ok and r.ttft_s is not None]
    routed = [r for r in reqs if r.offloaded is not None]
    samples = [s for s in side.samples if lo <= s.time_s < hi]
    thresholds = [s.threshold_tokens for s in samples if s.threshold_tokens is not None]
    utils = [s.egress_gbps / s.capacity_gbps for s in samples
             if s.egress_gbps is not None and s.capacity_gbps]
    last = samples[-1] if samples else None
    return PhaseRow(
        policy=policy, side=side_name, phase=name, start_s=start, end_s=end, requests=len(reqs),
        completed=sum(r.ok for r in reqs), ttft_mean_s=float(np.mean(ttfts)) if ttfts else None,
        ttft_p90_s=float(np.percentile(ttfts, 90)) if ttfts else None,
        offload_share=sum(bool(r.offloaded) for r in routed) / len(routed) if routed else None,
        threshold_median=float(statistics.median(thresholds)) if thresholds else None,
        threshold_max=max(thresholds) if thresholds else None,
        link_util_mean=statistics.fmean(utils) if utils else None,
        n_pd_prefill_end=last.n_pd_prefill if last else None, n_pd_decode_end=last.n_pd_decode if last else None)


def phase_rows(result: ScenarioResult) -> list[PhaseRow]:
    phases = [tuple(p) for p in result.spec["phases"]]
    k = result.time_scale
    rows = []
    for run in result.runs:
        for side_name, side in (("live", run.live), ("sim", run.sim)):
            if side is not None:
                rows += [_phase_row(run.policy, side_name, side, (str(p[0]), float(p[1]), float(p[2])), k)
                         for p in phases]
    return rows


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_scenario(result: ScenarioResult) -> str:
    lines = [f"bench paper-scenario {result.scenario}{' (quick)' if result.quick else ''}: {result.num_requests} "
             f"requests; k_t = {result.time_scale:g}, k_b = {result.state_scale:g}; link {result.link_gbps_scaled:.4f} "
             f"Gbps scaled", f"compressed: {result.compression}", "",
             f"{'policy':<24}{'side':<5}{'phase':<8}{'reqs':>5}{'done':>5}{'TTFT mean':>10}{'P90':>8}{'offload':>8}"
             f"{'t med':>8}{'t max':>8}{'link util':>10}{'P/D end':>8}"]
    for r in phase_rows(result):
        pd = f"{r.n_pd_prefill_end}/{r.n_pd_decode_end}" if r.n_pd_prefill_end is not None else "-"
        lines.append(f"{r.policy:<24}{r.side:<5}{r.phase:<8}{r.requests:>5}{r.completed:>5}"
                     f"{_f(r.ttft_mean_s, '.2f'):>10}{_f(r.ttft_p90_s, '.2f'):>8}{_f(r.offload_share, '.1%'):>8}"
                     f"{_f(r.threshold_median, '.0f'):>8}{_f(r.threshold_max, 'd'):>8}"
                     f"{_f(r.link_util_mean, '.1%'):>10}{pd:>8}")
    lines.append("")
    for run in result.runs:
        for side_name, side in (("live", run.live), ("sim", run.sim)):
            if side is None:
                continue
            switches = ", ".join(f"{t / result.time_scale:.0f}s {a}->{b}" for t, _, a, b in side.role_switches)
            lines.append(f"{run.policy} {side_name}: lost {side.lost}, failed {side.failed}; role switches: "
                         f"{switches or 'none'}")
        if run.live_wall_s is not None:
            lines.append(f"{run.policy} live wall time {run.live_wall_s:.0f} s")
    lines += result.notes
    return "\n".join(lines)


def write_scenario(result: ScenarioResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"result": msgspec.to_builtins(result), "phases": msgspec.to_builtins(phase_rows(result))}
    (out_dir / f"{result.scenario}.json").write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=1))
    (out_dir / f"{result.scenario}.txt").write_text(format_scenario(result) + "\n", encoding="utf-8")
    for run in result.runs:
        plot_run(result, run, out_dir / f"{result.scenario}-{run.policy}.png")


def _binned_share(side: Side, k: float, bin_s: float, end_s: float) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    t = 0.0
    while t < end_s:
        routed = [r for r in side.requests if t * k <= r.arrival_s < (t + bin_s) * k and r.offloaded is not None]
        if routed:
            xs.append(t + bin_s / 2)
            ys.append(sum(bool(r.offloaded) for r in routed) / len(routed))
        t += bin_s
    return xs, ys


def _series(samples: Sequence[Sample], k: float, attr: str) -> tuple[list[float], list[float]]:
    pts = [(s.time_s / k, getattr(s, attr)) for s in samples if getattr(s, attr) is not None]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def plot_run(result: ScenarioResult, run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.time_scale
    end = float(result.spec["duration_s"])
    mix = result.spec.get("mix") is not None
    fig, axes = plt.subplots(4 if mix else 3, 1, figsize=(10, 11 if mix else 9), sharex=True)
    sides = [(n, s, st) for n, s, st in (("live", run.live, "-"), ("sim", run.sim, "--")) if s is not None]
    ax = axes[0]
    for name, side, _ in sides:
        pts = [(r.arrival_s / k, r.ttft_s / k) for r in side.requests if r.ok and r.ttft_s is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, alpha=0.6, label=f"{name} TTFT",
                   marker="o" if name == "live" else "x")
    ax.set_ylabel("TTFT (paper s)")
    ax.legend(loc="upper left")
    ax = axes[1]
    twin = ax.twinx()
    for name, side, style in sides:
        xs, ys = _binned_share(side, k, max(end / 30, 5.0), end)
        ax.plot(xs, ys, style, marker=".", label=f"{name} offload share")
        tx, ty = _series(side.samples, k, "threshold_tokens")
        twin.plot(tx, ty, style, color="tab:red", alpha=0.7, label=f"{name} threshold")
    ax.set_ylabel("offload share")
    twin.set_ylabel("threshold (tokens)")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    ax = axes[2]
    for name, side, style in sides:
        x, y = _series(side.samples, k, "egress_gbps")
        ax.plot(x, [v * 1000 for v in y], style, label=f"{name} link rate")
        cx, cy = _series(side.samples, k, "capacity_gbps")
        ax.plot(cx, [v * 1000 for v in cy], style, color="black", alpha=0.5, label=f"{name} cap")
    ax.set_ylabel("Mbit/s (scaled)")
    ax.legend(loc="upper left")
    if mix:
        ax = axes[3]
        for name, side, style in sides:
            x, y = _series(side.samples, k, "n_pd_prefill")
            ax.plot(x, y, style, label=f"{name} PD-P")
            x, y = _series(side.samples, k, "n_pd_decode")
            ax.plot(x, y, style, label=f"{name} PD-D")
        ax.set_ylabel("nodes")
        ax.legend(loc="center left")
    for a in axes:
        for _, start, _end in result.spec["phases"][1:]:
            a.axvline(float(start), color="grey", lw=0.8, ls=":")
    axes[-1].set_xlabel("arrival / sample time (paper s)")
    fig.suptitle(f"{result.scenario}: {run.policy} (live solid, simulator dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
