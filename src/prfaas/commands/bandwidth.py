"""`prfaas bandwidth`: egress a prefill cluster needs (Eq. 2), from Table 3's measured Phi_kv, from a
catalog architecture with a calibrated roofline, or from a measured profile over a length mix."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from prfaas.catalog import load_accelerator, load_model
from prfaas.catalog.paper import load_phi_kv_table
from prfaas.core.errors import ConfigError
from prfaas.perf.arch import arch_prefill_model
from prfaas.planner.bandwidth import (
    PAPER_EGRESS_EXAMPLES,
    EgressEstimate,
    egress_at_length,
    egress_for_mix,
    egress_from_phi,
    phi_from_table,
)
from prfaas.planner.calibration import table3_calibration
from prfaas.planner.paper import paper_profile
from prfaas.planner.report import format_table
from prfaas.workload.lognormal import truncated_lognormal

BASES = ("table3", "arch", "paper-profile")


def register(app: typer.Typer) -> None:
    app.command("bandwidth", help="Egress bandwidth a prefill cluster needs.")(bandwidth)


def bandwidth(
    model: Annotated[str | None, typer.Option(help="Catalog model name.")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs in the prefill cluster (N).")] = 512,
    gpus_per_instance: Annotated[int, typer.Option(help="GPUs per instance (P).")] = 8,
    length: Annotated[int | None, typer.Option(help="Representative uncached length L_avg (tokens).")] = None,
    threshold: Annotated[
        int | None, typer.Option(help="paper-profile: offload only L > t of the log-normal mix.")
    ] = None,
    basis: Annotated[str, typer.Option(
        help="table3 (measured Phi_kv), arch (S_kv from the architecture over a roofline fitted to Table 3), "
             "paper-profile (Table 5 over a mix).")] = "table3",
    gpu: Annotated[str, typer.Option(help="Accelerator for the arch basis.")] = "h200",
    paper_examples: Annotated[bool, typer.Option(help="Reproduce the paper's egress examples.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    if gpus <= 0 or gpus_per_instance <= 0:
        raise ConfigError(f"gpus and gpus-per-instance must be > 0, got {gpus} and {gpus_per_instance}")
    if basis not in BASES:
        raise ConfigError(f"unknown basis {basis!r}; known: {', '.join(BASES)}")
    if paper_examples:
        _print_examples(basis, as_json)
        return
    if basis == "paper-profile":
        estimate = _paper_profile_estimate(gpus, gpus_per_instance, length, threshold)
    else:
        if model is None or length is None:
            raise ConfigError("--model and --length are required (or use --paper-examples / --basis paper-profile)")
        if length <= 0:
            raise ConfigError(f"length must be > 0, got {length}")
        estimate = estimate_for_model(basis, model, gpus, gpus_per_instance, length, gpu)
    if as_json:
        typer.echo(json.dumps(_estimate_json(estimate), indent=2))
    else:
        typer.echo(f"{estimate.basis}: {estimate.num_instances:g} instances x {estimate.phi_kv_gbps_per_instance:.2f} "
                   f"Gbps = {estimate.egress_gbps:,.1f} Gbps ({estimate.egress_tbps:.2f} Tbps)")


def estimate_for_model(basis: str, model_name: str, num_gpus: int, gpus_per_instance: int, length_tokens: int,
                       gpu: str = "h200") -> EgressEstimate:
    table = load_phi_kv_table()
    arch = load_model(model_name)
    if basis == "table3":
        rows = [(r.length_tokens, r.phi_kv_gbps) for r in table.for_model(arch.name)]
        phi = phi_from_table(rows, length_tokens)
        return egress_from_phi(num_gpus, gpus_per_instance, phi, f"Table 3 Phi_kv ({arch.name}, {length_tokens} tok)")
    accelerator = load_accelerator(gpu)
    calibration = table3_calibration(arch.name)
    if calibration is None:
        raise ConfigError(f"the arch basis calibrates on Table 3 and has no data for {arch.name}; "
                          f"known: {', '.join(table.model_names)}")
    cost = arch_prefill_model(arch, accelerator, gpus_per_instance, calibration.params)
    estimate = egress_at_length(num_gpus, gpus_per_instance, cost, length_tokens)
    return egress_from_phi(num_gpus, gpus_per_instance, estimate.phi_kv_gbps_per_instance,
                           f"S_kv({arch.name}) / roofline T (T0 {calibration.params.t0_s:.3f} s, MFU "
                           f"{calibration.params.mfu:.2f}) at {length_tokens} tok on "
                           f"{gpus_per_instance}x{accelerator.name}")


def _paper_profile_estimate(num_gpus: int, gpus_per_instance: int, length: int | None,
                            threshold: int | None) -> EgressEstimate:
    model = paper_profile()
    if length is not None:
        return egress_at_length(num_gpus, gpus_per_instance, model, length)
    mix = truncated_lognormal()
    if threshold is not None:
        if not mix.min_tokens <= threshold < mix.max_tokens:
            raise ConfigError(f"threshold {threshold} is outside [{mix.min_tokens:g}, {mix.max_tokens:g})")
        keep = mix.lengths > threshold
        from prfaas.workload.distribution import DiscreteLengthDistribution

        mix = DiscreteLengthDistribution(mix.lengths[keep], mix.probs[keep], name=f"log-normal L > {threshold}")
    return egress_for_mix(num_gpus, gpus_per_instance, model, mix)


def _estimate_json(e: EgressEstimate) -> dict[str, object]:
    return {"num_gpus": e.num_gpus, "gpus_per_instance": e.gpus_per_instance, "num_instances": e.num_instances,
            "phi_kv_gbps_per_instance": round(e.phi_kv_gbps_per_instance, 4), "egress_gbps": round(e.egress_gbps, 3),
            "basis": e.basis}


def _print_examples(basis: str, as_json: bool) -> None:
    if basis == "paper-profile":
        raise ConfigError("the paper's examples use catalog models: --basis table3 or arch")
    rows, out = [], []
    for ex in PAPER_EGRESS_EXAMPLES:
        est = estimate_for_model(basis, ex.model_name, ex.num_gpus, 8, ex.length_tokens)
        error = est.egress_gbps / ex.paper_gbps - 1.0
        ok = est.egress_gbps < ex.paper_gbps if ex.paper_bound == "<" else abs(error) <= 0.10
        rows.append([ex.label, f"{ex.paper_bound}{ex.paper_gbps:,.0f}", f"{est.egress_gbps:,.1f}",
                     f"{error * 100:+.1f}%", "yes" if ok else "NO"])
        out.append({"label": ex.label, "paper_gbps": ex.paper_gbps, "paper_bound": ex.paper_bound,
                    "egress_gbps": round(est.egress_gbps, 3), "relative_error": round(error, 4), "within": ok,
                    "basis": est.basis})
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"basis: {basis} (Eq. 2 with P = 8)")
    typer.echo(format_table(["example", "paper Gbps", "ours Gbps", "error", "within 10%"], rows))
