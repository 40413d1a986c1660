"""Sim-vs-real on the real engine, re-predicted: a finished bench_live output under each model variant, with the
error distribution over runs and where the error sits (docs/real-fidelity.md).

    python benchmarks/bench_live.py --runs 3 --requests 15 --rate-rps 0.2 --threshold 512 --no-sites \\
        --out runs/bench-live                                  # live: calibration + 3 runs x 4 policies
    python benchmarks/bench_real_fidelity.py runs/bench-live    # this: no live run, seconds

Reads the calibration (calibration/calibration.json, its profile.json: costs measured one request at a time) and
each run's live summaries (run<k>/<policy>/summary.json, records.jsonl, deploy/gateway-requests.jsonl), rebuilds
the same requests from bench-args.json (written by bench_live) and predicts every run with:

    plain        the simulator as before (each node its own machine, no request path)
    path         + the request-path overhead fitted on the calibration run (fixed + per token + residuals)
    path+cores   + processor sharing of the host's cores among the nodes (`sim.host_share`)
    background   + the other processes' runnable tasks measured during each run (their mean)
    full         + the same over time (the sampled series, every 0.5 s), where the run recorded it

and prints, per variant, the median and [min, max] over runs of the relative error on throughput, TTFT mean and
TTFT P90 per policy; then, per policy, the live and simulated means of node queue, prefill and transfer time and
of the request path (the attribution).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import msgspec

from prfaas.bench.choices import SetupChoices, resolve_setup
from prfaas.bench.compare import (
    POLICIES,
    Calibration,
    CompareResult,
    CompareRow,
    format_error_distribution,
    live_setup_for,
    replay_requests,
)
from prfaas.bench.records import RequestStatus, read_records
from prfaas.bench.summary import BenchSummary
from prfaas.bench.workload import workload_requests
from prfaas.perf.measured import load_profile_json
from prfaas.serve.predict import LiveEffects, Prediction, simulate_run, simulate_same

VARIANTS = ("plain", "path", "path+cores", "background", "full")


def _relative(sim: float | None, live: float | None) -> float | None:
    return None if sim is None or live is None or live <= 0 else (sim - live) / live


def _effects(variant: str, cal: Calibration, background: float | None, done: frozenset[int] | None,
             series: list[list[float]] | None = None) -> LiveEffects | None:
    if variant == "plain":
        return None
    overhead = cal.overhead
    delay = None if overhead is None else (lambda r: overhead.at(r.input_tokens, r.request_id))
    if variant == "path":
        return LiveEffects(path_delay_s=delay, completed_ids=done)
    if variant == "path+cores":
        return LiveEffects(host_cores=cal.host_cores, path_delay_s=delay, completed_ids=done)
    if variant == "background":
        return cal.effects(background, own_profile=True, completed_ids=done)
    return cal.effects(background, own_profile=True, completed_ids=done,
                       background_series=[(t, b) for t, b in series or ()])


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _live_parts(run_dir: Path, log: dict[int, dict[str, Any]]) -> dict[str, float | None]:
    queue, prefill, transfer, path = [], [], [], []
    for rec in read_records(run_dir / "records.jsonl"):
        row = log.get(rec.gateway_id) if rec.gateway_id is not None else None
        if rec.status is not RequestStatus.COMPLETED or rec.ttft_s is None or row is None:
            continue
        if row.get("prefill_s") is None:
            continue
        q, p, t = float(row.get("queue_s") or 0), float(row["prefill_s"]), float(row.get("transfer_s") or 0)
        queue.append(q)
        prefill.append(p)
        transfer.append(t)
        path.append(rec.ttft_s - q - p - t)
    return {"queue": _mean(queue), "prefill": _mean(prefill), "transfer": _mean(transfer), "path": _mean(path)}


def _sim_parts(run: Any, delays: dict[int, float], done: frozenset[int] | None) -> dict[str, float | None]:
    ok = [r for r in run.records if r.is_ok and (done is None or r.request_id in done)]
    return {"queue": _mean([r.prefill_queue_s or 0.0 for r in ok]), "prefill": _mean([r.prefill_s or 0.0 for r in ok]),
            "transfer": _mean([r.transfer_s or 0.0 for r in ok]),
            "path": _mean([delays.get(r.request_id, 0.0) for r in ok])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a finished bench_live --out folder")
    parser.add_argument("--limit", type=float, default=0.15, help="the |error| target")
    args = parser.parse_args()
    bench_args = json.loads((args.out / "bench-args.json").read_text())
    choices = dict(bench_args["choices"])
    choices["profile"] = Path(choices["profile"]) if choices.get("profile") else None
    setup = resolve_setup(SetupChoices(**choices))
    cal = msgspec.json.decode((args.out / "calibration" / "calibration.json").read_bytes(), type=Calibration)
    if cal.profile_path is None:
        raise SystemExit("the calibration has no profile (no prefill timings in its gateway log)")
    profile_path = Path(cal.profile_path)
    profile = load_profile_json(profile_path)
    cap_gbps = (setup.cap_mbit / 1000.0) if setup.sites_spec else setup.cfg.egress_link().capacity_gbps
    log = {int(r["id"]): r for r in map(json.loads, (args.out / "deploy" / "gateway-requests.jsonl")
                                        .read_text().splitlines()) if "id" in r}
    print(f"calibration: {cal.describe()}, background {cal.background_tasks or 0:.2f} runnable tasks")
    by_variant: dict[str, list[CompareResult]] = {v: [] for v in VARIANTS}
    parts: dict[str, dict[str, list[dict[str, float | None]]]] = {}
    finished = [k for k in range(bench_args["runs"]) if (args.out / f"run{k}" / "compare.json").exists()]
    if not finished:
        raise SystemExit(f"no finished run under {args.out}")
    for run_index in finished:
        spec = dataclasses.replace(setup.spec, seed=run_index)
        compare = json.loads((args.out / f"run{run_index}" / "compare.json").read_text())
        background = {r["policy"]: r.get("background_tasks") for r in compare["rows"]}
        series = {r["policy"]: r.get("background_series") for r in compare["rows"]}
        rows: dict[str, list[CompareRow]] = {v: [] for v in VARIANTS}
        for policy in POLICIES:
            run_dir = args.out / f"run{run_index}" / policy
            live = msgspec.json.decode((run_dir / "summary.json").read_bytes(), type=BenchSummary)
            lsetup = live_setup_for(setup.cfg, cap_gbps, spec, policy)
            records = read_records(run_dir / "records.jsonl")
            done = frozenset(r.index for r in records if r.status is RequestStatus.COMPLETED)
            done_or_all = None if len(done) == len(records) else done
            for variant in VARIANTS:
                effects = _effects(variant, cal, background.get(policy), done_or_all, series.get(policy))
                reqs = replay_requests(spec) if effects is not None else workload_requests(spec)
                pred: Prediction = simulate_same(profile_path, profile, lsetup, reqs, effects)
                rows[variant].append(CompareRow(
                    policy=policy, live=live, sim=None, ttft_error=_relative(pred.ttft_mean_s, live.ttft_s.mean),
                    throughput_error=_relative(pred.throughput_rps, live.throughput_rps),
                    ttft_p90_error=_relative(pred.ttft_p90_s, live.ttft_s.p90),
                    background_tasks=background.get(policy)))
            sim_run, delays, _ = simulate_run(profile_path, profile, lsetup, replay_requests(spec),
                                              _effects("full", cal, background.get(policy), done_or_all,
                                                       series.get(policy)))
            parts.setdefault(policy, {"live": [], "sim": []})
            parts[policy]["live"].append(_live_parts(run_dir, log))
            parts[policy]["sim"].append(_sim_parts(sim_run, delays, done_or_all))
        for variant in VARIANTS:
            by_variant[variant].append(CompareResult(rows[variant], None, "calibration", []))
        loads = ", ".join(f"{p} {b:.2f}" for p, b in background.items() if b is not None)
        print(f"run {run_index}: background runnable tasks {loads}; load average {compare.get('load_avg')}")
    for variant in VARIANTS:
        print(f"\nvariant {variant}:\n{format_error_distribution(by_variant[variant], args.limit)}")
    print("\nattribution (means over requests, then over runs; live vs simulated with the full model), seconds:")
    print(f"{'policy':<24}{'queue live':>11}{'sim':>7}{'prefill live':>13}{'sim':>7}{'transfer live':>14}{'sim':>7}"
          f"{'path live':>10}{'sim':>7}")
    for policy, both in parts.items():
        def avg(side: str, key: str, both: dict[str, list[dict[str, float | None]]] = both) -> str:
            vals = [p[key] for p in both[side] if p[key] is not None]
            return f"{statistics.fmean(vals):.2f}" if vals else "-"
        print(f"{policy:<24}{avg('live', 'queue'):>11}{avg('sim', 'queue'):>7}{avg('live', 'prefill'):>13}"
              f"{avg('sim', 'prefill'):>7}{avg('live', 'transfer'):>14}{avg('sim', 'transfer'):>7}"
              f"{avg('live', 'path'):>10}{avg('sim', 'path'):>7}")


if __name__ == "__main__":
    main()
