"""`prfaas plan`: the throughput-optimal threshold and P/D split, the egress it needs, and the gain."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from prfaas.core.errors import ConfigError
from prfaas.perf.measured import Interpolation
from prfaas.planner.build import PlanInputs, build_case, load_plan_inputs, merge_inputs
from prfaas.planner.cost import GpuPrices
from prfaas.planner.model import LengthMode
from prfaas.planner.report import binding_sentence, format_table
from prfaas.planner.run import PlanRun, run_plan

PAPER_TABLE6 = {
    "prfaas_pd": ("19.4K", "4/3/5", 1.61, 1.64, 3.91, 3.24),
    "homogeneous": ("-", "-/9/3", None, 2.11, 2.35, 2.11),
    "naive": ("-", "4/-/8", 2.45, None, 6.25, 2.45),
}


def register(app: typer.Typer) -> None:
    app.command("plan", help="Throughput-optimal threshold and P/D split (the planner).")(plan)


def plan(
    scenario: Annotated[str, typer.Option(help="Base scenario.")] = "paper",
    config: Annotated[str | None, typer.Option(help="TOML file with a [plan] table of these options.")] = None,
    model: Annotated[str | None, typer.Option(help="Catalog model (roofline from its architecture).")] = None,
    decode_overhead_ms: Annotated[float | None, typer.Option(help="--model: fixed decode step overhead.")] = None,
    n_prfaas: Annotated[int | None, typer.Option(help="PrfaaS prefill instances.")] = None,
    n_pd: Annotated[int | None, typer.Option(help="Local PD instances (N_p + N_d).")] = None,
    n_homogeneous: Annotated[int | None, typer.Option(help="Instances of the homogeneous baseline.")] = None,
    gpus_per_instance: Annotated[int | None, typer.Option(help="GPUs per instance (P).")] = None,
    egress_gbps: Annotated[float | None, typer.Option(help="PrfaaS egress bandwidth B_out (Gbps).")] = None,
    prfaas_gpu: Annotated[str | None, typer.Option(help="PrfaaS accelerator (catalog name).")] = None,
    pd_gpu: Annotated[str | None, typer.Option(help="PD accelerator (catalog name).")] = None,
    pd_compute_scale: Annotated[float | None, typer.Option(help="k: PD prefill compute time / PrfaaS's.")] = None,
    profile: Annotated[str | None, typer.Option(help="Measured profile JSON for PrfaaS prefill.")] = None,
    pd_profile: Annotated[str | None, typer.Option(help="Measured profile JSON for the PD cluster.")] = None,
    workload: Annotated[
        str, typer.Option(help="'lognormal' or a trace file (Mooncake JSONL, Azure CSV).")
    ] = "lognormal",
    mu: Annotated[float | None, typer.Option(help="Log-normal mu.")] = None,
    sigma: Annotated[float | None, typer.Option(help="Log-normal sigma.")] = None,
    min_tokens: Annotated[int | None, typer.Option(help="Truncation minimum.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Truncation maximum.")] = None,
    hit_rate: Annotated[float, typer.Option(help="Prefix-cache hit fraction of each prompt.")] = 0.0,
    cache_blocks: Annotated[
        int | None, typer.Option(help="Replay the trace's hash_ids through an LRU of N blocks.")
    ] = None,
    decode_holds_prefix: Annotated[
        bool, typer.Option(help="The decode side holds cached prefixes: offloads ship only the increment.")
    ] = False,
    output_tokens: Annotated[float | None, typer.Option(help="Mean output length L_out.")] = None,
    slo_tokens_per_s: Annotated[float | None, typer.Option(help="Decode SLO per request (tokens/s).")] = None,
    bs_max: Annotated[int | None, typer.Option(help="Max decode batch under the SLO.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Evaluate at this threshold instead of optimising.")] = None,
    exact: Annotated[bool, typer.Option(help="Exact expectations instead of representative lengths.")] = False,
    compare_modes: Annotated[
        bool, typer.Option(help="Also solve with the other length mode and show the change.")
    ] = False,
    interpolation: Annotated[str, typer.Option(help="quadratic_fit or piecewise_linear.")] = "quadratic_fit",
    price_ratio: Annotated[float, typer.Option(help="PrfaaS GPU price / PD GPU price (equal-cost comparison).")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[str | None, typer.Option(help="Write the two grid-search curves to this PNG.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress of the sweep on stderr.")] = False,
    topology: Annotated[
        str | None, typer.Option(help="TOML with a [topology] of many PrfaaS/PD clusters (docs/multisite.md).")
    ] = None,
    size_budget: Annotated[
        int | None, typer.Option(help="--topology: where to put this many PrfaaS instances (sizing mode).")
    ] = None,
    size_step: Annotated[int, typer.Option(help="--size-budget: allocate in steps of this many instances.")] = 1,
) -> None:
    try:
        interp = Interpolation(interpolation)
    except ValueError:
        raise ConfigError(f"unknown interpolation {interpolation!r}; known: "
                          f"{', '.join(i.value for i in Interpolation)}") from None
    if price_ratio <= 0:
        raise ConfigError(f"price-ratio must be > 0, got {price_ratio}")
    inputs = PlanInputs(
        scenario=scenario, n_prfaas=n_prfaas, n_pd=n_pd, n_homogeneous=n_homogeneous,
        gpus_per_instance=gpus_per_instance, egress_gbps=egress_gbps, prfaas_gpu=prfaas_gpu, pd_gpu=pd_gpu,
        pd_compute_scale=pd_compute_scale, profile_path=profile, pd_profile_path=pd_profile, workload=workload,
        mu=mu, sigma=sigma, min_tokens=min_tokens, max_tokens=max_tokens, hit_rate=hit_rate,
        cache_blocks=cache_blocks, decode_holds_prefix=decode_holds_prefix,
        output_tokens=output_tokens, slo_tokens_per_s=slo_tokens_per_s, bs_max=bs_max,
        interpolation=interp, model=model, decode_overhead_ms=decode_overhead_ms,
    )
    if config is not None:
        inputs = merge_inputs(load_plan_inputs(config), inputs)
    if topology is not None:
        _plan_topology(topology, inputs, exact, as_json, size_budget, size_step)
        return
    if size_budget is not None:
        raise ConfigError("--size-budget needs --topology")
    for name, value in (("n-prfaas", n_prfaas), ("n-homogeneous", n_homogeneous)):
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    case = build_case(inputs)
    mode = LengthMode.EXACT if exact else LengthMode.REPRESENTATIVE
    reporter = _progress_printer() if progress else None
    result = run_plan(case, mode, compare_modes=compare_modes, threshold_tokens=threshold,
                      prices=GpuPrices.from_ratio(price_ratio), progress=reporter)
    if plot is not None:
        from prfaas.planner.plots import plot_plan_curves

        plot_plan_curves(result.prfaas_pd, plot)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(render_text(result, show_paper=scenario == "paper" and inputs == PlanInputs(interpolation=interp)))
        if plot is not None:
            typer.echo(f"\nplot written to {plot}")


def _plan_topology(path: str, flags: PlanInputs, exact: bool, as_json: bool, size_budget: int | None,
                   size_step: int) -> None:
    from prfaas.planner.multi_build import build_multi_case, load_topology
    from prfaas.planner.multi_report import render_multi, run_multi

    if size_budget is not None and size_budget < 0:
        raise ConfigError(f"size-budget must be >= 0, got {size_budget}")
    if size_step < 1:
        raise ConfigError(f"size-step must be >= 1, got {size_step}")
    topo, file_inputs = load_topology(path)
    inputs = merge_inputs(file_inputs, flags) if file_inputs is not None else flags
    case = build_multi_case(topo, inputs, name=path)
    run = run_multi(case, LengthMode.EXACT if exact else LengthMode.REPRESENTATIVE, size_budget=size_budget,
                    size_step=size_step)
    typer.echo(json.dumps(run.to_json(), indent=2) if as_json else render_multi(run))


def _progress_printer() -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        sys.stderr.write(f"\rsweeping thresholds: {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def render_text(run: PlanRun, show_paper: bool) -> str:
    rows = []
    for key, point in (("prfaas_pd", run.headline), ("homogeneous", run.homogeneous.best), ("naive", run.naive.best)):
        split = f"{point.n_prfaas or '-'}/{point.n_p or '-'}/{point.n_d}"
        t = f"{point.threshold_tokens:,.0f}" if point.threshold_tokens is not None else "-"
        rows.append([key, t, split, point.theta_prfaas, point.theta_pd_p, point.theta_pd_d, point.lambda_max,
                     f"{point.offload_fraction * 100:.1f}%", point.egress_gbps, point.binding_stage.value])
    headers = ["config", "t (tokens)", "N_prfaas/N_p/N_d", "Θ_prfaas", "Θ_pd-p", "Θ_pd-d", "Λ_max", "offload",
               "egress Gbps", "binding"]
    lines = [f"PrfaaS planner ({run.mode.value} lengths); throughputs in req/s", "",
             format_table(headers, rows), ""]
    lines.append(f"speedup vs homogeneous {run.speedup_vs_homogeneous:.2f}x, vs naive {run.speedup_vs_naive:.2f}x")
    lines.append(f"binding: {binding_sentence(run.headline)}")
    ec = run.equal_cost
    lines.append(f"equal cost (PrfaaS GPU = {ec.price_ratio:g}x PD GPU): {ec.gain_linear * 100:+.1f}% vs the "
                 f"homogeneous cluster scaled linearly; {ec.gain_integer * 100:+.1f}% vs "
                 f"{ec.homogeneous_equal_cost_instances} homogeneous instances")
    if run.alternate is not None:
        alt = run.alternate.best
        lines.append(f"{run.alternate.mode.value} lengths: t = {alt.threshold_tokens:,.0f}, split "
                     f"{alt.n_p}/{alt.n_d}, Λ_max = {alt.lambda_max:.3f} "
                     f"({(alt.lambda_max / run.prfaas_pd.best.lambda_max - 1) * 100:+.1f}%)")
    if show_paper:
        lines += ["", "paper Table 6 for comparison:"]
        lines.append(format_table(["config", "t", "N_prfaas/N_p/N_d", "Θ_prfaas", "Θ_pd-p", "Θ_pd-d", "Λ_max"],
                                  [[k, *v] for k, v in PAPER_TABLE6.items()]))
    lines += ["", "assumptions:"]
    lines += [f"  {a.name} = {a.value}  ({a.source})" for a in run.case.assumptions]
    return "\n".join(lines)
