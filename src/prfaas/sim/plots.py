"""Plots of simulation results (matplotlib, Agg). matplotlib is imported inside the functions: pyplot
pulls in `socket`, which the pure `sim` package must not import (tests/core/test_purity.py).

    ttft_cdf(runs, path)         TTFT CDF, one line per policy
    egress_over_time(run, path)  egress Gbps in 1 s windows, with the link capacity as a step line
    role_counts(run, path)       PrfaaS up / PD-P / PD-D / converting instances over time
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prfaas.core.units import bytes_per_s_to_gbps
from prfaas.sim.metrics import window_rates
from prfaas.sim.run import RunResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ttft_cdf(runs: Sequence[RunResult], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        ttft = np.sort([r.ttft_s for r in run.records if r.ttft_s is not None])
        if ttft.size:
            ax.plot(ttft, np.arange(1, ttft.size + 1) / ttft.size, label=run.policy)
    ax.set_xlabel("TTFT (s)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT CDF per policy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def egress_over_time(run: RunResult, path: Path) -> None:
    plt = _pyplot()
    end = max((r.finish_s or r.arrival_s for r in run.records), default=1.0)
    rates = bytes_per_s_to_gbps(1.0) * window_rates(run.egress_rate_history, 0.0, end)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(np.arange(rates.size), rates, lw=0.8, label="egress (1 s windows)")
    cap_t = [t for t, _ in run.egress_capacity_history] + [end]
    cap_v = [c for _, c in run.egress_capacity_history]
    ax.step(cap_t, [*cap_v, cap_v[-1]], where="post", color="red", lw=1.2, label="capacity")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Gbps")
    ax.set_ylim(0, max(max(cap_v), float(rates.max()) if rates.size else 1.0) * 1.1)
    ax.set_title(f"PrfaaS egress ({run.policy})")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def role_counts(run: RunResult, path: Path) -> None:
    plt = _pyplot()
    t = [s.time_s for s in run.samples]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.step(t, [s.num_prfaas_up for s in run.samples], where="post", label="PrfaaS up")
    ax.step(t, [s.num_pd_prefill for s in run.samples], where="post", label="PD-P")
    ax.step(t, [s.num_pd_decode for s in run.samples], where="post", label="PD-D")
    ax.step(t, [s.num_converting for s in run.samples], where="post", label="converting", ls="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("instances")
    ax.set_title(f"Roles over time ({run.policy})")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
