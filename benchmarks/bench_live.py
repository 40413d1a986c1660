"""Live PrfaaS on one machine: the four policies on two emulated sites, several runs, medians and ratios.

    python benchmarks/bench_live.py --profile runs/profile-default.json [--runs 3] [--requests 30]
                                    [--rate-rps 1.0] [--tiny] [--no-sites] [--no-host-model]

One deployment (the embedded default model unless --tiny: PrfaaS node on the "prfaas" site, gateway + PD-P +
PD-D on the "local" site, cross-site tbf cap from the paper's regime for this profile, see bench/regime.py).
Each run sends the scaled paper log-normal (a new seed per run) under homogeneous, naive-offload, prfaas and
prfaas-bandwidth-aware in turn, and the simulator predicts each from the same profile. The table gives the
median over runs of each number, the throughput and mean-TTFT ratios against homogeneous measured within the
same run, and the simulator's relative error. Root is needed for the sites (else: --no-sites, loopback).

Sim-vs-real fidelity (docs/real-fidelity.md): unless --no-host-model, one calibration run (another seed, policy
prfaas) comes first; its request paths give the overhead fit and this machine's os.cpu_count() the shared
cores, and every compared run is predicted with that model (never fitted on itself). The last table is the
error distribution: per policy and metric (throughput, TTFT mean, TTFT P90) the median and [min, max] of the
simulator's relative error over the runs, with the load average at the end of each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
from pathlib import Path

from prfaas.bench.choices import SetupChoices, resolve_setup
from prfaas.bench.compare import (
    POLICIES,
    CompareResult,
    calibrate,
    compare_policies,
    format_compare,
    format_error_distribution,
)
from prfaas.bench.run import bench_deployment


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[CompareResult]) -> str:
    lines = [f"{'policy':<24}{'req/s':>8}{'x homog':>9}{'TTFT mean':>11}{'x homog':>9}{'TTFT p90':>10}"
             f"{'sim TTFT':>10}{'sim err':>9}{'sim req/s':>10}{'offload':>9}{'link util':>10}{'lost':>6}"]
    for i, policy in enumerate(POLICIES):
        rows = [r.rows[i] for r in results]
        base = [r.rows[0] for r in results]
        rps = [r.live.throughput_rps for r in rows]
        ratio_rps = [r.live.throughput_rps / b.live.throughput_rps for r, b in zip(rows, base, strict=True)]
        ratio_ttft = [(r.live.ttft_s.mean or 0) / (b.live.ttft_s.mean or 1) for r, b in zip(rows, base, strict=True)]
        offload = [r.live.requests_by_route.get("prfaas", 0) / max(r.live.completed, 1) for r in rows]
        lines.append(
            f"{policy:<24}{_f(_median(list(rps)), '.3f'):>8}{_f(_median(list(ratio_rps)), '.2f'):>9}"
            f"{_f(_median([r.live.ttft_s.mean for r in rows]), '.2f'):>11}{_f(_median(list(ratio_ttft)), '.2f'):>9}"
            f"{_f(_median([r.live.ttft_s.p90 for r in rows]), '.2f'):>10}"
            f"{_f(_median([(r.sim or {}).get('ttft_mean_s') for r in rows]), '.2f'):>10}"
            f"{_f(_median([r.ttft_error for r in rows]), '+.0%'):>9}"
            f"{_f(_median([(r.sim or {}).get('throughput_rps') for r in rows]), '.3f'):>10}"
            f"{_f(_median(list(offload)), '.2f'):>9}"
            f"{_f(_median([r.live.link_utilisation_mean for r in rows]), '.1%'):>10}"
            f"{sum(r.live.lost for r in rows):>6}")
    planner = [r.planner for r in results if r.planner]
    if planner:
        lam = _median([p.get("throughput_rps") for p in planner])
        thr = _median([p.get("threshold_tokens") for p in planner])
        lines.append(f"planner (prfaas): Lambda_max {_f(lam, '.3f')} req/s at threshold {_f(thr, ',.0f')} tokens")
    errs = [r.mean_abs_ttft_error() for r in results]
    lines.append(f"simulator vs live, mean |error| of mean TTFT (median over runs): {_f(_median(errs), '.0%')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=None, help="`prfaas profile` JSON (regime cap + simulator)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rate-rps", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cap-mbit", type=float, default=None)
    parser.add_argument("--threshold", type=int, default=None, help="offload threshold (sets the prompt lengths)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--sites", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--host-model", action=argparse.BooleanOptionalAction, default=True,
                        help="model the shared host and request path from a calibration run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-live"))
    args = parser.parse_args()
    setup = resolve_setup(SetupChoices(tiny=args.tiny, sites=args.sites, cap_mbit=args.cap_mbit,
                                       profile=args.profile, num_requests=args.requests, rate_rps=args.rate_rps,
                                       max_tokens=args.max_tokens, threshold_tokens=args.threshold))
    for note in setup.notes:
        print(f"note: {note}")
    where = "two emulated sites" if setup.sites_spec else "loopback"
    print(f"{where}, cap {setup.cap_mbit:.1f} Mbit/s, threshold {setup.cfg.policy.threshold_tokens}, "
          f"{args.requests} requests at {args.rate_rps:g} req/s per policy, {args.runs} runs; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    choices = {"tiny": args.tiny, "sites": args.sites, "cap_mbit": args.cap_mbit,
               "profile": str(args.profile) if args.profile else None, "num_requests": args.requests,
               "rate_rps": args.rate_rps, "max_tokens": args.max_tokens, "threshold_tokens": args.threshold}
    (args.out / "bench-args.json").write_text(json.dumps({"choices": choices, "runs": args.runs}, indent=2) + "\n")
    results = []
    with bench_deployment(setup.cfg, args.out / "deploy", setup.sites_spec) as dep:
        calibration = None
        if args.host_model:
            calibration = calibrate(dep, setup.spec, setup.opts, args.out, slo=setup.slo, progress=False)
            print(f"calibration: {calibration.describe()}", flush=True)
        for run in range(args.runs):
            spec = dataclasses.replace(setup.spec, seed=run)
            # with the host model the costs are the calibration's, measured alone on this deployment
            result = compare_policies(dep, spec, setup.opts, args.out / f"run{run}", slo=setup.slo,
                                      profile_path=None if calibration else args.profile, progress=False,
                                      calibration=calibration)
            print(f"\nrun {run}:\n{format_compare(result)}", flush=True)
            results.append(result)
    print(f"\nmedians over {args.runs} runs:\n{table(results)}")
    loads = ", ".join(f"{r.load_avg[0]:.2f}" for r in results if r.load_avg is not None)
    print(f"\nsimulator error over {args.runs} runs (load average at the end of each run: {loads}):\n"
          f"{format_error_distribution(results)}")


if __name__ == "__main__":
    main()
