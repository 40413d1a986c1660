"""`bench compare`: one workload under each policy on the same deployment, beside the simulator and planner.

    rows = compare_policies(deployment, spec, opts, out_dir, policies=POLICIES, profile_path=None)

For each policy the gateway is switched (`POST /admin/policy`, same threshold), the same requests are sent,
and the run is written under out_dir/<policy>/. The simulator then replays the same requests (arrivals and
scaled lengths) on the same setup (policy, threshold, node counts, link cap) through
`serve.predict.simulate_same(..., requests)`, with costs from a `prfaas profile` JSON when one is given, else
from a profile measured from this run's own gateway log (`serve.predict.profile_from_records`); the planner's
optimum comes from `serve.predict.plan_same`.
The headline number is the simulator's relative error on mean TTFT, TTFT P90 and throughput per policy.
Trace workloads get the simulator (same requests, prefix chains included) but no planner row.

With a `Calibration` (`calibrate(...)`: one run of another seed before the compared runs, never the predicted
runs themselves) the simulator also models what one machine adds (docs/real-fidelity.md): the nodes share the
host's os.cpu_count() cores (`sim.host_share`) and each request first spends the request path's measured
overhead (`bench.paper_overhead.RequestOverhead`, fixed + per token + the calibration's residuals). The plain
simulator's prediction is kept beside it (`sim_plain`), so the report shows what the model changes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.bench.host_load import HostLoadSampler
from prfaas.bench.loadgen import LoadOptions, ProgressBar
from prfaas.bench.paper_overhead import RequestOverhead, fit_overhead
from prfaas.bench.plots import plot_compare
from prfaas.bench.records import RequestRecord, RequestStatus, node_side_s, with_log_rows
from prfaas.bench.run import Deployment, RunResult, write_run
from prfaas.bench.summary import BenchSummary, Slo
from prfaas.bench.workload import WorkloadKind, WorkloadSpec, build_requests, workload_requests
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.measured import MeasuredProfile, load_profile_json
from prfaas.serve.config import DeployConfig
from prfaas.serve.predict import (
    LiveEffects,
    LiveSetup,
    Prediction,
    plan_same,
    profile_from_records,
    simulate_same,
    write_profile,
)
from prfaas.workload.lognormal import PAPER_MAX_TOKENS, PAPER_MIN_TOKENS, PAPER_MU, PAPER_SIGMA
from prfaas.workload.request import WorkloadRequest

POLICIES = ("homogeneous", "naive-offload", "prfaas", "prfaas-bandwidth-aware")


CALIBRATION_SEED_OFFSET = 1_000  # the calibration run's workload seed: spec.seed + this (never a compared run's)
CALIBRATION_POLICY = "prfaas"  # both routes (local and offloaded) appear in the calibration's request paths


class CompareRow(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    live: BenchSummary
    sim: dict[str, float | None] | None  # the simulator's Prediction fields (with the calibration's model if any)
    ttft_error: float | None  # (sim - live) / live, mean TTFT
    throughput_error: float | None
    ttft_p90_error: float | None = None
    sim_plain: dict[str, float | None] | None = None  # the simulator without the model (only with a calibration)
    background_tasks: float | None = None  # other processes' runnable tasks during this run (`bench.host_load`)
    background_series: list[tuple[float, float]] | None = None  # the same over time (s since the run started)

    def errors(self) -> dict[str, float | None]:
        return {"throughput": self.throughput_error, "ttft_mean": self.ttft_error, "ttft_p90": self.ttft_p90_error}


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """What the model of the live host takes, measured on a calibration run (not on a compared run)."""

    host_cores: float  # os.cpu_count() of the machine that ran live
    overhead: RequestOverhead | None  # the request path outside the model (None: not modelled)
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # os.getloadavg() after the calibration run
    policy: str = CALIBRATION_POLICY
    seed: int = 0
    max_concurrency: int = 1
    profile_path: str | None = None  # costs measured on the calibration run (one request at a time: alone)
    background_tasks: float | None = None  # other processes' runnable tasks during the calibration

    def effects(self, background_tasks: float | None = None, own_profile: bool = True,
                completed_ids: frozenset[int] | None = None,
                background_series: Sequence[tuple[float, float]] = ()) -> LiveEffects:
        """The model for a run with `background_tasks` other runnable tasks (None: not measured, 0); with
        `own_profile` the costs are this calibration's (measured under its own background), else a profile
        measured on a dedicated core."""
        overhead = self.overhead
        delay = None if overhead is None else (lambda r: overhead.at(r.input_tokens, r.request_id))
        reference = (self.background_tasks or 0.0) if own_profile else None
        return LiveEffects(host_cores=self.host_cores, path_delay_s=delay, background_tasks=background_tasks or 0.0,
                           reference_background_tasks=reference, completed_ids=completed_ids,
                           background_series=tuple((float(t), float(b)) for t, b in background_series))

    def describe(self) -> str:
        path = self.overhead.describe() if self.overhead is not None else "not modelled"
        return (f"host {self.host_cores:g} cores shared by every node; request path {path}; calibration: "
                f"{self.policy}, seed {self.seed}, concurrency {self.max_concurrency}, load average "
                f"{self.load_avg[0]:.2f}")


@dataclass(frozen=True, slots=True)
class CompareResult:
    rows: list[CompareRow]
    planner: dict[str, float | None] | None
    profile_source: str
    notes: list[str]
    calibration: Calibration | None = None
    load_avg: tuple[float, float, float] | None = None  # os.getloadavg() when the compared runs ended

    def mean_abs_ttft_error(self) -> float | None:
        errs = [abs(r.ttft_error) for r in self.rows if r.ttft_error is not None]
        return statistics.fmean(errs) if errs else None

    def max_abs_error(self) -> float | None:
        """The largest |error| over every policy and metric (throughput, TTFT mean, TTFT P90)."""
        errs = [abs(e) for r in self.rows for e in r.errors().values() if e is not None]
        return max(errs) if errs else None


def live_setup(dep: Deployment, spec: WorkloadSpec, policy: str) -> LiveSetup:
    """The live run as the simulator sees it. Its arrival window is num_requests / rate, so the simulator draws
    as many requests (in expectation) as the live run sent, from the same scaled log-normal."""
    return live_setup_for(dep.launcher.cfg, dep.cap_gbps(), spec, policy)


def live_setup_for(cfg: DeployConfig, cap_gbps: float | None, spec: WorkloadSpec, policy: str) -> LiveSetup:
    """`live_setup` from the deployment's config and link cap (e.g. re-predicting a finished run)."""
    roles = [n.role for n in cfg.nodes]
    factor = spec.factor
    return LiveSetup(policy=policy, threshold_tokens=int(cfg.policy.threshold_tokens or spec.threshold_tokens),
                     n_prfaas=sum(n.cluster is ClusterKind.PRFAAS for n in cfg.nodes),
                     n_pd_prefill=roles.count(Role.PD_PREFILL), n_pd_decode=roles.count(Role.PD_DECODE),
                     link_gbps=cap_gbps or 10.0, mu=PAPER_MU + math.log(factor), sigma=PAPER_SIGMA,
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


def overhead_points(run: RunResult) -> list[tuple[int, float]]:
    """(prompt tokens, client TTFT - (node queue + prefill + transfer)) per completed request of a live run: the
    request path outside the model (the method of `bench.paper_overhead`, on in-memory records)."""
    out = []
    for rec, row in with_log_rows(run.records, run.gateway_log):
        if rec.status is not RequestStatus.COMPLETED or rec.ttft_s is None or row is None:
            continue
        inside = node_side_s(row)
        if inside is not None and row.get("prompt_tokens") == rec.prompt_tokens:
            out.append((rec.prompt_tokens, rec.ttft_s - inside))
    return out


def calibrate(dep: Deployment, spec: WorkloadSpec, opts: LoadOptions, out_dir: Path, *, slo: Slo | None = None,
              policy: str = CALIBRATION_POLICY, max_concurrency: int = 1, progress: bool = True) -> Calibration:
    """One run of the same kind of workload with another seed (and prompts of its own, salt 0), sent
    `max_concurrency` at a time (1: each request alone on the deployment). Its gateway log gives the costs
    measured alone (`profile_from_records`, written as out_dir/calibration/profile.json) and its request paths
    the overhead fit; the host's cores are this machine's. Written under out_dir/calibration/."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    cal_dir = out_dir / "calibration"
    cal_spec = dataclasses.replace(spec, seed=spec.seed + CALIBRATION_SEED_OFFSET)
    requests = build_requests(cal_spec, salt=0)
    dep.set_policy(policy, dep.launcher.cfg.policy.threshold_tokens)
    bar = ProgressBar(len(requests), label="calibration") if progress else None
    with HostLoadSampler() as sampler:
        result = dep.measure(requests, dataclasses.replace(opts, max_concurrency=max_concurrency), bar)
    write_run(result, cal_dir, policy, slo or Slo())
    points = overhead_points(result)
    profile_path = None
    if any(row.get("prefill_s") for row in result.gateway_log):
        profile_path = str(write_profile(profile_from_records(result.gateway_log, "calibration"),
                                         cal_dir / "profile.json"))
    calibration = Calibration(host_cores=float(os.cpu_count() or 1), overhead=fit_overhead(points) if points else None,
                              load_avg=os.getloadavg(), policy=policy, seed=cal_spec.seed,
                              max_concurrency=max_concurrency, profile_path=profile_path,
                              background_tasks=sampler.background_mean())
    cal_dir.mkdir(parents=True, exist_ok=True)
    (cal_dir / "calibration.json").write_bytes(msgspec.json.format(msgspec.json.encode(calibration), indent=2) + b"\n")
    return calibration


def completed_indices(run: RunResult) -> frozenset[int] | None:
    """The workload positions (= the replayed requests' ids) live completed; None when every request did."""
    done = frozenset(r.index for r in run.records if r.status is RequestStatus.COMPLETED)
    return None if len(done) == len(run.records) else done


def replay_requests(spec: WorkloadSpec) -> list[WorkloadRequest]:
    """The workload as the load generator sends it (`build_requests`): arrivals shifted to start at 0."""
    reqs = workload_requests(spec)
    start_s = min(r.arrival_s for r in reqs)
    return [dataclasses.replace(r, arrival_s=r.arrival_s - start_s) for r in reqs]


def run_policies(dep: Deployment, spec: WorkloadSpec, opts: LoadOptions, out_dir: Path,
                 policies: Sequence[str], slo: Slo, progress: bool = True,
                 background: dict[str, float | None] | None = None,
                 series: dict[str, list[tuple[float, float]]] | None = None,
                 ) -> dict[str, tuple[RunResult, BenchSummary]]:
    """Each policy gets the same lengths and arrivals with its own token ids (`salt`), so no policy is served
    from prefixes an earlier one left in the caches. `background` receives each policy run's mean background
    runnable tasks (`bench.host_load`)."""
    background = background if background is not None else {}
    threshold = dep.launcher.cfg.policy.threshold_tokens
    out: dict[str, tuple[RunResult, BenchSummary]] = {}
    for salt, policy in enumerate(policies, start=1):
        requests = build_requests(spec, salt=salt)
        dep.set_policy(policy, threshold)
        bar = ProgressBar(len(requests), label=policy) if progress else None
        with HostLoadSampler() as sampler:
            result = dep.measure(requests, opts, bar)
        out[policy] = (result, write_run(result, out_dir / policy, policy, slo))
        background[policy] = sampler.background_mean()
        if series is not None:
            series[policy] = sampler.series()
    return out


@dataclass(slots=True)
class _Predictions:
    sims: dict[str, Prediction]
    planner: dict[str, float | None] | None
    source: str
    notes: list[str]
    plain: dict[str, Prediction] = dataclasses.field(default_factory=dict)


def _predict(dep: Deployment, spec: WorkloadSpec, runs: dict[str, RunResult], profile_path: Path | None,
             out_dir: Path, calibration: Calibration | None = None,
             background: dict[str, float | None] | None = None,
             series: dict[str, list[tuple[float, float]]] | None = None) -> _Predictions:
    """The simulator per policy and the planner once; every failure becomes a note, never an exception."""
    out = _Predictions({}, None, "none", [])
    own_profile = profile_path is None and calibration is not None and calibration.profile_path is not None
    if own_profile:
        assert calibration is not None and calibration.profile_path is not None
        profile_path = Path(calibration.profile_path)
    try:
        path, profile, out.source = _profile(runs, profile_path, out_dir)
    except ValueError as exc:
        out.notes.append(f"no profile for the predictions: {exc}")
        return out
    if calibration is not None and profile_path is None:
        out.notes.append("the host model needs costs measured alone (a calibration profile or --profile): this "
                         "run's own gateway log already carries the sharing, so the model is applied on top of it")
    for policy in runs:
        effects = None
        if calibration is not None:
            effects = calibration.effects((background or {}).get(policy), own_profile, completed_indices(runs[policy]),
                                          (series or {}).get(policy, ()))
        try:
            setup = live_setup(dep, spec, policy)
            if effects is None:
                out.sims[policy] = simulate_same(path, profile, setup, workload_requests(spec))
            else:
                out.plain[policy] = simulate_same(path, profile, setup, workload_requests(spec))
                out.sims[policy] = simulate_same(path, profile, setup, replay_requests(spec), effects)
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
                     profile_path: Path | None = None, progress: bool = True,
                     calibration: Calibration | None = None) -> CompareResult:
    """`calibration`: model the live host (shared cores, request path) with what `calibrate` measured."""
    background: dict[str, float | None] = {}
    series: dict[str, list[tuple[float, float]]] = {}
    live = run_policies(dep, spec, opts, out_dir, policies, slo or Slo(), progress, background, series)
    load_avg = os.getloadavg()
    pred = _predict(dep, spec, {k: v[0] for k, v in live.items()}, profile_path, out_dir, calibration, background,
                    series)
    rows = []
    for policy, (_run, summary) in live.items():
        sim, plain = pred.sims.get(policy), pred.plain.get(policy)
        rows.append(CompareRow(policy=policy, live=summary, sim=_prediction_dict(sim) if sim else None,
                               ttft_error=_relative(sim.ttft_mean_s if sim else None, summary.ttft_s.mean),
                               throughput_error=_relative(sim.throughput_rps if sim else None,
                                                          summary.throughput_rps),
                               ttft_p90_error=_relative(sim.ttft_p90_s if sim else None, summary.ttft_s.p90),
                               sim_plain=_prediction_dict(plain) if plain else None,
                               background_tasks=background.get(policy), background_series=series.get(policy)))
    compared = CompareResult(rows, pred.planner, pred.source, pred.notes, calibration, load_avg)
    write_compare(compared, {p: v[0].records for p, v in live.items()}, out_dir)
    return compared


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def format_compare(result: CompareResult) -> str:
    head = (f"{'policy':<24}{'live rps':>9}{'sim rps':>9}{'err':>7}{'live TTFT':>10}{'sim TTFT':>10}{'err':>7}"
            f"{'live p90':>9}{'sim p90':>9}{'err':>7}{'offload':>8}{'sim off':>8}{'egress MB':>10}{'sim MB':>8}"
            f"{'link util':>10}"
            f"{'failed':>7}{'lost':>5}")
    lines = [head]
    for r in result.rows:
        s, sim = r.live, r.sim or {}
        offload = s.requests_by_route.get("prfaas", 0) / s.completed if s.completed else None
        lines.append(
            f"{r.policy:<24}{s.throughput_rps:>9.3f}{_f(sim.get('throughput_rps'), '.3f'):>9}"
            f"{_f(r.throughput_error, '+.0%'):>7}{_f(s.ttft_s.mean, '.3f'):>10}{_f(sim.get('ttft_mean_s'), '.3f'):>10}"
            f"{_f(r.ttft_error, '+.0%'):>7}{_f(s.ttft_s.p90, '.3f'):>9}{_f(sim.get('ttft_p90_s'), '.3f'):>9}"
            f"{_f(r.ttft_p90_error, '+.0%'):>7}"
            f"{_f(offload, '.2f'):>8}{_f(sim.get('offload_fraction'), '.2f'):>8}{s.egress_bytes / 1e6:>10.2f}"
            f"{_f(_mb(sim.get('egress_bytes')), '.2f'):>8}"
            f"{_f(s.link_utilisation_mean, '.1%'):>10}{s.failed:>7}{s.lost:>5}")
    if result.planner:
        p = result.planner
        lines.append(f"planner (prfaas, throughput-optimal): Lambda_max {_f(p.get('throughput_rps'), '.3f')} req/s "
                     f"at threshold {_f(p.get('threshold_tokens'), ',.0f')} tokens")
    err = result.mean_abs_ttft_error()
    lines.append(f"simulator vs live, mean |error| of mean TTFT: {_f(err, '.0%')}, largest |error| of throughput, "
                 f"TTFT mean and P90: {_f(result.max_abs_error(), '.0%')}  (profile: {result.profile_source})")
    plain = [(r.policy, r.sim_plain, r.live) for r in result.rows if r.sim_plain]
    if plain:
        lines.append("without the host model: " + ", ".join(
            f"{p} TTFT {_f(_relative(sp.get('ttft_mean_s'), lv.ttft_s.mean), '+.0%')}"
            f" rps {_f(_relative(sp.get('throughput_rps'), lv.throughput_rps), '+.0%')}" for p, sp, lv in plain))
    shed = [f"{r.policy} {r.live.failed}" for r in result.rows if r.live.failed]
    if shed and result.calibration is not None:
        lines.append("live failed requests (" + ", ".join(shed) + "): the model's statistics cover the requests "
                     "live completed; admission control is not simulated, so such rows are not like for like")
    if result.calibration is not None:
        lines.append(f"host model: {result.calibration.describe()}")
    if result.load_avg is not None:
        lines.append(f"load average at the end of the runs: {' '.join(f'{v:.2f}' for v in result.load_avg)}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def write_compare(result: CompareResult, runs: dict[str, list[RequestRecord]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"rows": msgspec.to_builtins(result.rows), "planner": result.planner,
               "profile_source": result.profile_source, "notes": result.notes,
               "mean_abs_ttft_error": result.mean_abs_ttft_error(), "max_abs_error": result.max_abs_error(),
               "calibration": msgspec.to_builtins(result.calibration), "load_avg": result.load_avg}
    (out_dir / "compare.json").write_bytes(msgspec.json.format(msgspec.json.encode(payload), indent=2) + b"\n")
    (out_dir / "compare.txt").write_text(format_compare(result) + "\n", encoding="utf-8")
    rows = [{"policy": r.policy, "live_ttft_mean_s": r.live.ttft_s.mean,
             "sim_ttft_mean_s": (r.sim or {}).get("ttft_mean_s")} for r in result.rows]
    plot_compare(rows, runs, out_dir / "compare.png")


METRICS = ("throughput", "ttft_mean", "ttft_p90")


@dataclass(frozen=True, slots=True)
class ErrorSpread:
    """One policy's relative error on one metric over runs: median, min and max (signed), and the run count."""

    median: float
    low: float
    high: float
    num_runs: int

    @property
    def worst_abs(self) -> float:
        return max(abs(self.low), abs(self.high))


def error_distribution(results: Sequence[CompareResult]) -> dict[str, dict[str, ErrorSpread]]:
    """Policy -> metric -> the spread of the simulator's relative error over `results` (runs without a
    prediction for that cell are left out; a cell no run predicted is absent)."""
    out: dict[str, dict[str, ErrorSpread]] = {}
    for result in results:
        for row in result.rows:
            out.setdefault(row.policy, {})
    for policy, cells in out.items():
        for metric in METRICS:
            errs = [e for result in results for row in result.rows if row.policy == policy
                    for e in (row.errors()[metric],) if e is not None]
            if errs:
                cells[metric] = ErrorSpread(statistics.median(errs), min(errs), max(errs), len(errs))
    return out


def format_error_distribution(results: Sequence[CompareResult], limit: float = 0.15) -> str:
    """The error table: per policy and metric, the median and [min, max] over runs, and whether every run's
    error is within `limit`."""
    dist = error_distribution(results)
    head = f"{'policy':<24}" + "".join(f"{m + ' err (median [min, max])':>36}" for m in METRICS)
    lines = [head]
    for policy, cells in dist.items():
        row = f"{policy:<24}"
        for metric in METRICS:
            c = cells.get(metric)
            text = "-" if c is None else f"{c.median:+.1%} [{c.low:+.1%}, {c.high:+.1%}] n={c.num_runs}"
            row += f"{text:>36}"
        lines.append(row)
    worst = [c.worst_abs for cells in dist.values() for c in cells.values()]
    if worst:
        within = sum(w <= limit for w in worst)
        lines.append(f"cells whose every run is within {limit:.0%}: {within}/{len(worst)}; "
                     f"worst |error| {max(worst):.1%}")
    return "\n".join(lines)
