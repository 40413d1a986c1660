"""`bench compare`: one workload under each policy on the same deployment, beside the simulator and planner.

    rows = compare_policies(deployment, spec, opts, out_dir, policies=POLICIES, profile_path=None)

For each policy the gateway is switched (`POST /admin/policy`, same threshold), the same requests are sent,
and the run is written under out_dir/<policy>/. The simulator then replays the same requests (arrivals and
scaled lengths) on the same setup (policy, threshold, node counts, link cap) through
`serve.predict.simulate_same(..., requests)`, with costs from a `prfaas profile` JSON when one is given, else
from a profile measured from this run's own gateway log (`serve.predict.profile_from_records`); the planner's
optimum comes from `serve.predict.plan_same`.
The headline number is the simulator's relative error on mean TTFT and throughput per policy.
Trace workloads get the simulator (same requests, prefix chains included) but no planner row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.bench.loadgen import LoadOptions, ProgressBar
from prfaas.bench.plots import plot_compare
from prfaas.bench.records import RequestRecord
from prfaas.bench.run import Deployment, RunResult, write_run
from prfaas.bench.summary import BenchSummary, Slo
from prfaas.bench.workload import WorkloadKind, WorkloadSpec, build_requests, workload_requests
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.measured import MeasuredProfile, load_profile_json
from prfaas.serve.predict import LiveSetup, Prediction, plan_same, profile_from_records, simulate_same, write_profile
from prfaas.workload.lognormal import PAPER_MAX_TOKENS, PAPER_MIN_TOKENS, PAPER_MU, PAPER_SIGMA

POLICIES = ("homogeneous", "naive-offload", "prfaas", "prfaas-bandwidth-aware")


class CompareRow(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    live: BenchSummary
    sim: dict[str, float | None] | None  # the simulator's Prediction fields
    ttft_error: float | None  # (sim - live) / live, mean TTFT
    throughput_error: float | None


@dataclass(frozen=True, slots=True)
class CompareResult:
    rows: list[CompareRow]
    planner: dict[str, float | None] | None
    profile_source: str
    notes: list[str]

    def mean_abs_ttft_error(self) -> float | None:
        errs = [abs(r.ttft_error) for r in self.rows if r.ttft_error is not None]
        return statistics.fmean(errs) if errs else None


def live_setup(dep: Deployment, spec: WorkloadSpec, policy: str) -> LiveSetup:
    """The live run as the simulator sees it. Its arrival window is num_requests / rate, so the simulator draws
    as many requests (in expectation) as the live run sent, from the same scaled log-normal."""
    cfg = dep.launcher.cfg
    roles = [n.role for n in cfg.nodes]
    factor = spec.factor
    return LiveSetup(policy=policy, threshold_tokens=int(cfg.policy.threshold_tokens or spec.threshold_tokens),
                     n_prfaas=sum(n.cluster is ClusterKind.PRFAAS for n in cfg.nodes),
                     n_pd_prefill=roles.count(Role.PD_PREFILL), n_pd_decode=roles.count(Role.PD_DECODE),
                     link_gbps=dep.cap_gbps() or 10.0, mu=PAPER_MU + math.log(factor), sigma=PAPER_SIGMA,
                     min_tokens=max(1, round(PAPER_MIN_TOKENS * factor)),
                     max_tokens=min(round(PAPER_MAX_TOKENS * factor), spec.max_prompt_tokens),
                     output_tokens=spec.max_tokens, rate_rps=spec.rate_rps,
                     duration_s=max(spec.num_requests / spec.rate_rps, 1.0),
                     max_batch=cfg.model.max_batch_size, seed=spec.seed)


def _relative(sim: float | None, live: float | None) -> float | None:
    if sim is None or live is None or live <= 0:
        return None
    return (sim - live) / live


def _prediction_dict(p: Prediction) -> dict[str, float | None]:
    return {"ttft_mean_s": p.ttft_mean_s, "ttft_p90_s": p.ttft_p90_s, "offload_fraction": p.offload_fraction,
            "egress_bytes": p.egress_bytes, "throughput_rps": p.throughput_rps,
            "threshold_tokens": p.threshold_tokens}


def _profile(runs: dict[str, RunResult], profile_path: Path | None,
             out_dir: Path) -> tuple[Path, MeasuredProfile, str]:
    if profile_path is not None:
        return profile_path, load_profile_json(profile_path), f"prfaas profile ({profile_path})"
    rows = [row for run in runs.values() for row in run.gateway_log]
    profile = profile_from_records(rows, "live")
    return write_profile(profile, out_dir / "live-profile.json"), profile, "measured from the live gateway log"


def run_policies(dep: Deployment, spec: WorkloadSpec, opts: LoadOptions, out_dir: Path,
                 policies: Sequence[str], slo: Slo, progress: bool = True) -> dict[str, tuple[RunResult, BenchSummary]]:
    """Each policy gets the same lengths and arrivals with its own token ids (`salt`), so no policy is served
    from prefixes an earlier one left in the caches."""
    threshold = dep.launcher.cfg.policy.threshold_tokens
    out: dict[str, tuple[RunResult, BenchSummary]] = {}
    for salt, policy in enumerate(policies, start=1):
        requests = build_requests(spec, salt=salt)
        dep.set_policy(policy, threshold)
        bar = ProgressBar(len(requests), label=policy) if progress else None
        result = dep.measure(requests, opts, bar)
        out[policy] = (result, write_run(result, out_dir / policy, policy, slo))
    return out


@dataclass(slots=True)
class _Predictions:
    sims: dict[str, Prediction]
    planner: dict[str, float | None] | None
    source: str
    notes: list[str]


def _predict(dep: Deployment, spec: WorkloadSpec, runs: dict[str, RunResult], profile_path: Path | None,
             out_dir: Path) -> _Predictions:
    """The simulator per policy and the planner once; every failure becomes a note, never an exception."""
    out = _Predictions({}, None, "none", [])
    try:
        path, profile, out.source = _profile(runs, profile_path, out_dir)
    except ValueError as exc:
        out.notes.append(f"no profile for the predictions: {exc}")
        return out
    for policy in runs:
        try:
            out.sims[policy] = simulate_same(path, profile, live_setup(dep, spec, policy), workload_requests(spec))
        except Exception as exc:  # a prediction is an extra; the live row stands without it
            out.notes.append(f"{policy}: simulator unavailable: {exc}")
    if spec.kind is not WorkloadKind.LOGNORMAL:
        out.notes.append("trace workload: no planner row (the planner takes the log-normal's parameters)")
        return out
    try:
        out.planner = _prediction_dict(plan_same(path, live_setup(dep, spec, "prfaas")))
    except Exception as exc:
        out.notes.append(f"planner unavailable: {exc}")
    return out


def compare_policies(dep: Deployment, spec: WorkloadSpec, opts: LoadOptions, out_dir: Path, *,
                     policies: Sequence[str] = POLICIES, slo: Slo | None = None,
                     profile_path: Path | None = None, progress: bool = True) -> CompareResult:
    live = run_policies(dep, spec, opts, out_dir, policies, slo or Slo(), progress)
    pred = _predict(dep, spec, {k: v[0] for k, v in live.items()}, profile_path, out_dir)
    rows = []
    for policy, (_run, summary) in live.items():
        sim = pred.sims.get(policy)
        rows.append(CompareRow(policy=policy, live=summary, sim=_prediction_dict(sim) if sim else None,
                               ttft_error=_relative(sim.ttft_mean_s if sim else None, summary.ttft_s.mean),
                               throughput_error=_relative(sim.throughput_rps if sim else None,
                                                          summary.throughput_rps)))
    compared = CompareResult(rows, pred.planner, pred.source, pred.notes)
    write_compare(compared, {p: v[0].records for p, v in live.items()}, out_dir)
    return compared


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def format_compare(result: CompareResult) -> str:
    head = (f"{'policy':<24}{'live rps':>9}{'sim rps':>9}{'err':>7}{'live TTFT':>10}{'sim TTFT':>10}{'err':>7}"
            f"{'live p90':>9}{'sim p90':>9}{'offload':>8}{'sim off':>8}{'egress MB':>10}{'sim MB':>8}{'link util':>10}"
            f"{'failed':>7}{'lost':>5}")
    lines = [head]
    for r in result.rows:
        s, sim = r.live, r.sim or {}
        offload = s.requests_by_route.get("prfaas", 0) / s.completed if s.completed else None
        lines.append(
            f"{r.policy:<24}{s.throughput_rps:>9.3f}{_f(sim.get('throughput_rps'), '.3f'):>9}"
            f"{_f(r.throughput_error, '+.0%'):>7}{_f(s.ttft_s.mean, '.3f'):>10}{_f(sim.get('ttft_mean_s'), '.3f'):>10}"
            f"{_f(r.ttft_error, '+.0%'):>7}{_f(s.ttft_s.p90, '.3f'):>9}{_f(sim.get('ttft_p90_s'), '.3f'):>9}"
            f"{_f(offload, '.2f'):>8}{_f(sim.get('offload_fraction'), '.2f'):>8}{s.egress_bytes / 1e6:>10.2f}"
            f"{_f(_mb(sim.get('egress_bytes')), '.2f'):>8}"
            f"{_f(s.link_utilisation_mean, '.1%'):>10}{s.failed:>7}{s.lost:>5}")
    if result.planner:
        p = result.planner
        lines.append(f"planner (prfaas, throughput-optimal): Lambda_max {_f(p.get('throughput_rps'), '.3f')} req/s "
                     f"at threshold {_f(p.get('threshold_tokens'), ',.0f')} tokens")
    err = result.mean_abs_ttft_error()
    lines.append(f"simulator vs live, mean |error| of mean TTFT: {_f(err, '.0%')}  (profile: {result.profile_source})")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def write_compare(result: CompareResult, runs: dict[str, list[RequestRecord]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"rows": msgspec.to_builtins(result.rows), "planner": result.planner,
               "profile_source": result.profile_source, "notes": result.notes,
               "mean_abs_ttft_error": result.mean_abs_ttft_error()}
    (out_dir / "compare.json").write_bytes(msgspec.json.format(msgspec.json.encode(payload), indent=2) + b"\n")
    (out_dir / "compare.txt").write_text(format_compare(result) + "\n", encoding="utf-8")
    rows = [{"policy": r.policy, "live_ttft_mean_s": r.live.ttft_s.mean,
             "sim_ttft_mean_s": (r.sim or {}).get("ttft_mean_s")} for r in result.rows]
    plot_compare(rows, runs, out_dir / "compare.png")
