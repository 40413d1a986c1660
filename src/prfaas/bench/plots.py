"""Plots of benchmark runs (matplotlib, Agg): TTFT CDFs, the link over time with its cap, live vs simulator.

    plot_run(records, samples, out_dir / "run.png", title)        # TTFT CDF | link rate over time + cap line
    plot_compare(rows, runs, out_dir / "compare.png")              # TTFT CDFs per policy | live vs simulator

Pure functions of their inputs; matplotlib is imported lazily (it costs about a second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prfaas.bench.records import LinkSample, RequestRecord, RequestStatus

MBIT = 1e3  # Gbps -> Mbit/s


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf(ax: Any, records: Sequence[RequestRecord], label: str) -> None:
    ttfts = sorted(r.ttft_s for r in records if r.status is RequestStatus.COMPLETED and r.ttft_s is not None)
    if not ttfts:
        return
    ys = [(i + 1) / len(ttfts) for i in range(len(ttfts))]
    ax.step(ttfts, ys, where="post", label=label)


def _link(ax: Any, samples: Sequence[LinkSample]) -> None:
    if not samples:
        ax.text(0.5, 0.5, "no link samples", ha="center", transform=ax.transAxes)
        return
    times = [s.time_s for s in samples]
    ax.plot(times, [s.goodput_gbps * MBIT for s in samples], label="KV goodput (sender counters)")
    if any(s.wire_gbps is not None for s in samples):
        ax.plot(times, [(s.wire_gbps or 0.0) * MBIT for s in samples], label="wire (qdisc bytes)", alpha=0.7)
    if any(s.capacity_gbps for s in samples):
        ax.step(times, [(s.capacity_gbps or 0.0) * MBIT for s in samples], where="post", color="red",
                linestyle="--", label="cap")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title("PrfaaS -> PD link")
    ax.legend(fontsize="small")


def plot_run(records: Sequence[RequestRecord], samples: Sequence[LinkSample], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _cdf(left, records, "all")
    for route in sorted({r.route for r in records if r.route}):
        _cdf(left, [r for r in records if r.route == route], route)
    left.set_xlabel("TTFT (s)")
    left.set_ylabel("fraction of completed requests")
    left.set_title("TTFT CDF")
    left.legend(fontsize="small")
    _link(right, samples)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_compare(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, Sequence[RequestRecord]], path: Path) -> Path:
    """rows: per policy {"policy", "live_ttft_mean_s", "sim_ttft_mean_s", "live_rps", "sim_rps"}."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for policy, records in runs.items():
        _cdf(left, records, policy)
    left.set_xlabel("TTFT (s)")
    left.set_ylabel("fraction of completed requests")
    left.set_title("TTFT CDF by policy (live)")
    left.legend(fontsize="small")
    names = [str(r["policy"]) for r in rows]
    xs = range(len(names))
    live = [r.get("live_ttft_mean_s") or 0.0 for r in rows]
    sim = [r.get("sim_ttft_mean_s") or 0.0 for r in rows]
    right.bar([x - 0.2 for x in xs], live, width=0.4, label="live")
    right.bar([x + 0.2 for x in xs], sim, width=0.4, label="simulator")
    right.set_xticks(list(xs), names, rotation=15, fontsize="small")
    right.set_ylabel("mean TTFT (s)")
    right.set_title("live vs simulator")
    right.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
