"""The planner's two grid-search curves (the paper's Fig. 5) as one PNG. matplotlib is imported lazily."""

from __future__ import annotations

from pathlib import Path

from prfaas.planner.model import PlanPoint, Stage
from prfaas.planner.optimize import PlanResult


def plot_plan_curves(result: PlanResult, path: str | Path) -> None:
    """(a) Lambda vs N_p at the optimal t; (b) stage caps and Lambda vs t at the optimal split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    best = result.best
    n_ps = [pt.n_p for pt in result.split_curve]
    prefill_caps = [_cap(pt, Stage.PRFAAS_PREFILL, Stage.PD_PREFILL) for pt in result.split_curve]
    decode_caps = [pt.theta_pd_d for pt in result.split_curve]
    ax_a.plot(n_ps, prefill_caps, "o-", label="prefill-bound")
    ax_a.plot(n_ps, decode_caps, "s-", label="decode-bound (Θ_pd-d)")
    ax_a.plot(n_ps, [pt.lambda_max for pt in result.split_curve], "k--", label="Λ_max")
    ax_a.axvline(best.n_p, color="grey", lw=0.8)
    ax_a.set_xlabel("N_p (N_d = N_pd − N_p)")
    ax_a.set_ylabel("throughput (req/s)")
    t_label = f"{best.threshold_tokens:,.0f}" if best.threshold_tokens is not None else "-"
    ax_a.set_title(f"(a) t = {t_label} tokens")
    ax_a.legend()
    if result.threshold_curve:
        ts = [(pt.threshold_tokens or 0.0) / 1000.0 for pt in result.threshold_curve]
        prfaas_caps = [_stage(pt, Stage.PRFAAS_PREFILL) for pt in result.threshold_curve]
        ax_b.plot(ts, prfaas_caps, label="PrfaaS bound Θ_prfaas/p")
        ax_b.plot(ts, [_stage(pt, Stage.PD_PREFILL) for pt in result.threshold_curve], label="PD-P bound Θ_pd-p/(1−p)")
        ax_b.plot(ts, [pt.lambda_max for pt in result.threshold_curve], "k--", label="Λ_max")
        ax_b.axvline((best.threshold_tokens or 0.0) / 1000.0, color="grey", lw=0.8)
        ax_b.set_ylim(0, max(best.theta_pd_d, best.lambda_max) * 2.0)
    ax_b.set_xlabel("threshold t (K tokens)")
    ax_b.set_title(f"(b) N_p = {best.n_p}, N_d = {best.n_d}")
    ax_b.legend()
    fig.suptitle(f"{result.scenario_name}: Λ_max = {best.lambda_max:.2f} req/s ({result.mode.value} lengths)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stage(point: PlanPoint, stage: Stage) -> float | None:
    for s, cap in point.stage_limits:
        if s is stage:
            return float(cap)
    return None


def _cap(point: PlanPoint, *stages: Stage) -> float:
    caps = [c for c in (_stage(point, s) for s in stages) if c is not None]
    return min(caps) if caps else float("nan")
