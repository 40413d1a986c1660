"""`prfaas bench paper`: the paper's case study live on emulated accelerators, with the simulator beside it.

    result = run_paper(PaperOptions(out_dir=Path("runs/paper"), runs=3))
    print(format_paper(result))                     # bench.paper_report; plots and records under out_dir

For each configuration (`bench.paper_config`: PrfaaS-PD under `prfaas` and `prfaas-bandwidth-aware`,
homogeneous, naive) one deployment of emulated nodes is started (on the two emulated sites when possible) and
driven, per run (seed), through:

1. **Max sustainable rate.** The criterion of `sim.search` (no backlog, bounded TTFT growth), applied to live
   records; bisection from a bracket around the simulator's own answer on the same workload (the live judgement
   decides; a bracket end that does not fail / pass widens it). Every probe is a full run: Poisson arrivals on
   [0, D) (D = requests / rate) and a tail; a request still running at send + tail is abandoned (unfinished,
   as the simulator counts it at its horizon).
2. **Common load.** One run at the same rate for every configuration: TTFT mean / P90 and egress.

The simulator replays the very same requests (arrival times and lengths, `sim.scenario.poisson_workload`) on
the same topology with the emulated engine's own scaled cost models (`paper_config.sim_scenario`), and is judged
by the same criterion: sim-vs-live errors per probe and per configuration. Everything is in the emulation's
scaled units (docs/emulated.md); reports convert rates back to the paper's (x k_t).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import numpy as np

from prfaas.bench.loadgen import LoadOptions, ProgressBar
from prfaas.bench.netns import can_emulate
from prfaas.bench.paper_config import OUTPUT_TOKENS, PaperConfiguration, PaperScale, deploy_config, sim_scenario
from prfaas.bench.paper_overhead import RequestOverhead, cross_run_overhead, shifted
from prfaas.bench.records import LinkSample, RequestStatus
from prfaas.bench.run import Deployment, RunResult, bench_deployment, write_run
from prfaas.bench.sites import SitesSpec
from prfaas.bench.summary import Slo
from prfaas.bench.workload import BenchRequest, prompt_for
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import SimOptions
from prfaas.sim.run import RunResult as SimRun
from prfaas.sim.run import simulate
from prfaas.sim.scenario import deployment_for, poisson_workload
from prfaas.sim.search import Probe, SustainCriteria, judge
from prfaas.workload import WorkloadRequest

VOCAB = 2048  # the emulated engine's (default tokenizer's) ids
DEFAULT_COMMON_LOAD_RPS = 1.0  # unscaled, as `sim.paper`
DEFAULT_TAIL_S = 60.0  # unscaled, as `sim.search.SustainCriteria`
_ABANDONING = ("search", "capacity")
# The request path is measured where nothing else waits: at the common load. At a saturated probe the gateway's
# own waits for a route (a decode slot) fall outside the node's queue_s and would be counted again as "path".
CALIBRATION_KIND = "common"  # probes whose unfinished requests are cut at a deadline on purpose


@dataclass(frozen=True, slots=True)
class PaperOptions:
    out_dir: Path
    scale: PaperScale = field(default_factory=PaperScale)
    num_requests: int = 300  # per probe (the arrival window is num_requests / rate)
    runs: int = 1
    seed: int = 0
    common_load_rps: float = DEFAULT_COMMON_LOAD_RPS  # unscaled
    rel_tol: float = 0.04
    bracket: float = 0.12  # the live search starts at sim_max x (1 +- bracket)
    max_probes: int = 6
    search: bool = False  # the sim-criterion rate search (long: see the module docstring)
    capacity: bool = True  # one saturated run at `overload` x the planner's Lambda: the served throughput
    overload: float = 1.5
    capacity_window_s: float = 60.0  # unscaled arrival window of the capacity run
    capacity_requests: int | None = None  # the capacity run's size instead (window = requests / rate)
    capacity_stop_s: float = 20.0  # unscaled: the capacity run is cut this long after D + decode (no drain)
    common_requests: int | None = None  # requests at the common load (None: num_requests)
    overhead: RequestOverhead | None = None  # the measured request path (`paper_overhead`): "sim+overhead" too
    extra_rates: tuple[float, ...] = ()  # unscaled rates also run (quick mode: one overload rate)
    configurations: tuple[str, ...] = ("prfaas-pd", "prfaas-pd/prfaas-bandwidth-aware", "homogeneous", "naive")
    sites: bool | None = None  # None: when this process can make namespaces
    tls: bool = True
    progress: bool = True

    @property
    def criteria(self) -> SustainCriteria:
        k = self.scale.time_scale
        return SustainCriteria(duration_s=1.0, tail_s=DEFAULT_TAIL_S * k, ttft_growth_slack_s=10.0 * k,
                               tpot_slo_s=0.025 * k)


class ProbeRow(msgspec.Struct, frozen=True, kw_only=True):
    """One rate on one configuration: live and simulated on the same requests."""

    configuration: str
    run: int
    kind: str  # search | common | extra
    rate_rps: float  # scaled (requests per emulated second)
    num_requests: int
    live: Probe
    sim: Probe
    live_throughput_rps: float | None  # completions per second while saturated (`served_rps`)
    sim_throughput_rps: float | None
    live_first_token_rps: float | None  # requests given a first token per second (prefill throughput)
    sim_first_token_rps: float | None
    simoh_ttft_mean_s: float | None = None  # the simulator with the measured request-path overhead
    simoh_ttft_p90_s: float | None = None
    simoh_throughput_rps: float | None = None
    live_ttft_mean_s: float | None
    sim_ttft_mean_s: float | None
    live_ttft_p90_s: float | None
    sim_ttft_p90_s: float | None
    live_completed: int
    live_failed: int
    live_lost: int  # stream ended without completion (the invariant: 0 at the common load)
    live_abandoned: int  # still running at send + tail (overloaded probes only)
    live_offload_fraction: float
    sim_offload_fraction: float
    live_egress_gbps_mean: float | None  # wire (sites) or goodput
    sim_egress_gbps_mean: float
    live_link_utilisation_mean: float | None
    out: str = ""


class ConfigResult(msgspec.Struct, frozen=True, kw_only=True):
    configuration: str
    policy: str
    threshold_tokens: int | None
    n_prfaas: int
    n_p: int
    n_d: int
    planner_lambda_rps: float  # unscaled
    live_max_rps: list[float]  # scaled, one per run
    sim_max_rps: list[float]
    probes: list[ProbeRow] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class PaperResult:
    options: PaperOptions
    configs: list[ConfigResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- workload --------------------------------------------------------------------------------------
def paper_requests(c: PaperConfiguration, rate_rps: float, num_requests: int, seed: int) -> list[WorkloadRequest]:
    """Exactly `num_requests` Poisson arrivals at `rate_rps` (scaled; their window is num_requests / rate on
    average), the paper's lengths, 1,024 output tokens: the first requests of a longer Poisson stream."""
    horizon_s = 2.0 * num_requests / rate_rps + 60.0
    while True:
        requests = poisson_workload(c.scenario.lengths, OUTPUT_TOKENS, rate_rps, duration_s=horizon_s, seed=seed)
        if len(requests) >= num_requests:
            return requests[:num_requests]
        horizon_s *= 2.0


def bench_requests(requests: Sequence[WorkloadRequest], seed: int, salt: int) -> list[BenchRequest]:
    return [BenchRequest(i, r.arrival_s, prompt_for(r, VOCAB, seed, salt), r.output_tokens)
            for i, r in enumerate(requests)]


# --- judging live records with the simulator's criterion ------------------------------------------
@dataclass(frozen=True, slots=True)
class _Judged:
    arrival_s: float
    is_ok: bool
    ttft_s: float | None
    batch_tpot_s: float | None = None  # not observable live (the slot wait is inside the client's TPOT)


@dataclass(frozen=True, slots=True)
class _JudgedRun:
    records: tuple[_Judged, ...]


def judge_live(run: RunResult, rate_rps: float, duration_s: float, criteria: SustainCriteria) -> Probe:
    end = duration_s + criteria.tail_s
    recs = []
    for r in run.records:
        done = r.status is RequestStatus.COMPLETED and r.latency_s is not None and r.send_s + r.latency_s <= end
        recs.append(_Judged(r.send_s, done, r.ttft_s if r.ttft_s is not None and r.status is
                            RequestStatus.COMPLETED else None))
    crit = _with_duration(criteria, duration_s)
    return judge(cast(Any, _JudgedRun(tuple(recs))), rate_rps, crit)


def _with_duration(criteria: SustainCriteria, duration_s: float) -> SustainCriteria:
    return dataclasses.replace(criteria, duration_s=duration_s)


# --- the simulator on the same requests -------------------------------------------------------------
def simulate_same(c: PaperConfiguration, scale: PaperScale, requests: Sequence[WorkloadRequest],
                  duration_s: float, tail_s: float) -> SimRun:
    scenario = sim_scenario(c, scale)
    deployment = deployment_for(scenario, c.n_p, c.n_d)
    cfg = PolicyConfig(threshold_tokens=c.threshold_tokens) if c.threshold_tokens is not None else PolicyConfig()
    options = SimOptions(horizon_s=duration_s + tail_s, tpot_slo_s=scenario.t_decode_s,
                         sample_interval_s=max(duration_s / 600, 0.5))
    return simulate(deployment, c.policy, list(requests), policy_config=cfg, options=options,
                    measure_end_s=duration_s)


def sim_with_overhead(c: PaperConfiguration, scale: PaperScale, requests: Sequence[WorkloadRequest],
                      duration_s: float, tail_s: float, overhead: RequestOverhead) -> dict[str, float | None]:
    """The simulator on the same requests, each reaching the prefill side `overhead(l)` after its arrival;
    TTFT and completions counted from the original arrival (the `ProbeRow.simoh_*` fields)."""
    run = simulate_same(c, scale, shifted(requests, overhead), duration_s, tail_s)
    decode_s = OUTPUT_TOKENS * scale.emulation.duration_s(0.025)
    ok = [r for r in run.records if r.is_ok and r.ttft_s is not None]
    ttfts = [r.ttft_s + overhead.at(r.input_tokens, r.request_id) for r in ok if r.ttft_s is not None]
    mean, p90 = _percentiles(ttfts)
    pairs = []
    for r in ok:
        origin = r.arrival_s - overhead.at(r.input_tokens, r.request_id)
        pairs.append((origin, None if r.finish_s is None else r.finish_s - origin))
    return {"simoh_ttft_mean_s": mean, "simoh_ttft_p90_s": p90,
            "simoh_throughput_rps": served_rps(pairs, duration_s, decode_s)}


def sim_max_rate(c: PaperConfiguration, opts: PaperOptions, seed: int) -> float:
    """The simulator's max sustainable rate (scaled) with the live search's workload and criterion."""
    crit = opts.criteria
    lo, hi = 0.5 * opts.scale.emulation.rate_rps(c.planner_lambda_rps), 1.5 * opts.scale.emulation.rate_rps(
        c.planner_lambda_rps)

    def ok(rate: float) -> bool:
        reqs = paper_requests(c, rate, opts.num_requests, seed)
        d = opts.num_requests / rate
        return judge(simulate_same(c, opts.scale, reqs, d, crit.tail_s), rate, _with_duration(crit, d)).is_sustainable

    while ok(hi):
        lo, hi = hi, hi * 1.5
    while hi - lo > 0.01 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


# --- live ------------------------------------------------------------------------------------------
def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.percentile(values, 90))


def first_token_rps(pairs: Sequence[tuple[float, float | None]]) -> float | None:
    """Requests that got a first token per second, from the first arrival to the last first token: under
    overload, the prefill stage's throughput (what a short run can show without a sustainability verdict)."""
    times = [(a, a + t) for a, t in pairs if t is not None]
    if len(times) < 2:
        return None
    span = max(f for _, f in times) - min(a for a, _ in times)
    return len(times) / span if span > 0 else None


def served_rps(pairs: Sequence[tuple[float, float | None]], duration_s: float, decode_s: float) -> float | None:
    """Completions per second with completion times in [D/4 + decode, D + decode]: the throughput a saturated
    system serves (arrivals on [0, D); the first quarter is the ramp; one decode later the completions show it)."""
    lo, hi = duration_s / 4 + decode_s, duration_s + decode_s
    done = [a + lat for a, lat in pairs if lat is not None]
    if not done:
        return None
    return sum(lo <= t <= hi for t in done) / (hi - lo)


def _link_means(samples: Sequence[LinkSample], duration_s: float) -> tuple[float | None, float | None]:
    inside = [s for s in samples if s.time_s <= duration_s] or list(samples)
    if not inside:
        return None, None
    gbps = [s.wire_gbps if s.wire_gbps is not None else s.goodput_gbps for s in inside]
    utils = [u for u in (s.utilisation for s in inside) if u is not None]
    return statistics.fmean(gbps), (statistics.fmean(utils) if utils else None)


class LiveConfig:
    """One started deployment of a configuration; `probe(rate)` runs live and simulated on the same requests."""

    def __init__(self, c: PaperConfiguration, dep: Deployment, opts: PaperOptions, run: int,
                 out_dir: Path) -> None:
        self.c, self.dep, self.opts, self.run, self.out_dir = c, dep, opts, run, out_dir
        self._salt = 0

    def probe(self, rate_rps: float, kind: str, num_requests: int | None = None) -> ProbeRow:
        opts, c = self.opts, self.c
        seed = opts.seed + 1000 * self.run
        n = num_requests or opts.num_requests
        requests = paper_requests(c, rate_rps, n, seed)
        duration_s = n / rate_rps
        decode_s = OUTPUT_TOKENS * opts.scale.emulation.duration_s(0.025)
        crit = _with_duration(opts.criteria, duration_s)
        self._salt += 1
        bench = bench_requests(requests, seed, self._salt)
        timeout_s = crit.tail_s if kind == "search" else 10 * crit.tail_s + duration_s
        # A saturated capacity run is judged on completions up to D + decode: its backlog is not drained.
        stop_s = (duration_s + decode_s + opts.scale.emulation.duration_s(opts.capacity_stop_s)
                  if kind == "capacity" else None)
        load = LoadOptions(max_concurrency=100_000, time_budget_s=duration_s + 60.0, request_timeout_s=timeout_s,
                           stop_after_s=stop_s, model=self.dep.launcher.cfg.model.served_name)
        label = f"{c.name} run {self.run} {kind} {rate_rps:.3f} req/s"
        bar = ProgressBar(len(bench), label=label) if opts.progress else None
        live = self.dep.measure(bench, load, bar)
        out = self.out_dir / f"{kind}-{rate_rps:.4f}"
        write_run(live, out, label, Slo(), plot=False)
        sim = simulate_same(c, opts.scale, requests, duration_s, crit.tail_s)
        (out / "sim_summary.json").write_bytes(msgspec.json.encode(sim.summary.to_json()))
        (out / "sim_ttft.json").write_bytes(msgspec.json.encode(
            [r.ttft_s for r in sim.records if r.is_ok and r.ttft_s is not None]))
        live_probe = judge_live(live, rate_rps, duration_s, crit)
        sim_probe = judge(sim, rate_rps, crit)
        ok = [r for r in live.records if r.status is RequestStatus.COMPLETED]
        live_ttft = _percentiles([r.ttft_s for r in ok if r.ttft_s is not None])
        sim_ttft = _percentiles([r.ttft_s for r in sim.records if r.is_ok and r.ttft_s is not None])
        lost = [r for r in live.records if r.status is RequestStatus.LOST]
        abandoned = sum(1 for r in lost if r.error and "no end of stream" in r.error)
        egress, util = _link_means(live.samples, duration_s)
        simoh: dict[str, float | None] = {}
        if opts.overhead is not None:
            simoh = sim_with_overhead(c, opts.scale, requests, duration_s, crit.tail_s, opts.overhead)
        routed = [r for r in ok if r.route is not None]
        return ProbeRow(
            configuration=c.name, run=self.run, kind=kind, rate_rps=rate_rps, num_requests=len(bench),
            live=live_probe, sim=sim_probe, **simoh,
            live_throughput_rps=served_rps([(r.send_s, r.latency_s) for r in ok], duration_s, decode_s),
            sim_throughput_rps=served_rps([(r.arrival_s, None if r.finish_s is None else r.finish_s - r.arrival_s)
                                           for r in sim.records if r.is_ok], duration_s, decode_s),
            live_first_token_rps=first_token_rps([(r.send_s, r.ttft_s) for r in ok]),
            sim_first_token_rps=first_token_rps([(r.arrival_s, r.ttft_s) for r in sim.records if r.is_ok]),
            live_ttft_mean_s=live_ttft[0], sim_ttft_mean_s=sim_ttft[0],
            live_ttft_p90_s=live_ttft[1], sim_ttft_p90_s=sim_ttft[1], live_completed=len(ok),
            live_failed=sum(r.status is RequestStatus.FAILED for r in live.records),
            live_lost=len(lost) - (abandoned if kind in _ABANDONING else 0),
            live_abandoned=abandoned if kind in _ABANDONING else 0,
            live_offload_fraction=(sum(r.route == "prfaas" for r in routed) / len(routed)) if routed else 0.0,
            sim_offload_fraction=sim.summary.offload_fraction, live_egress_gbps_mean=egress,
            sim_egress_gbps_mean=sim.summary.egress_gbps_mean, live_link_utilisation_mean=util,
            out=str(out))

    def search(self, sim_max_rps: float, on_row: Callable[[ProbeRow], None]) -> float:
        """Bisection on live judgements from sim_max x (1 -+ bracket); ends widen until they fail / pass."""
        opts = self.opts
        lo, hi = sim_max_rps * (1 - opts.bracket), sim_max_rps * (1 + opts.bracket)
        probes = 0

        def ok(rate: float) -> bool:
            nonlocal probes
            probes += 1
            row = self.probe(rate, "search")
            on_row(row)
            return row.live.is_sustainable

        while probes < opts.max_probes and ok(hi):
            lo, hi = hi, hi * (1 + opts.bracket)
        while probes < opts.max_probes and not ok(lo):
            hi, lo = lo, lo * (1 - opts.bracket)
        while probes < opts.max_probes and hi - lo > opts.rel_tol * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo


@contextlib.contextmanager
def _deployment(c: PaperConfiguration, opts: PaperOptions, run_dir: Path) -> Iterator[Deployment]:
    cfg = deploy_config(c, opts.scale, tls=opts.tls)
    use_sites = opts.sites if opts.sites is not None else can_emulate()[0]
    spec = SitesSpec(cap_mbit=opts.scale.link_gbps * 1000.0) if use_sites else None
    with bench_deployment(cfg, run_dir, spec) as dep:
        yield dep


def capacity_size(opts: PaperOptions, rate_rps: float) -> int:
    """Requests in a capacity run at `rate_rps` (scaled): `capacity_requests`, else the window's."""
    if opts.capacity_requests is not None:
        return max(2, opts.capacity_requests)
    return max(2, round(rate_rps * opts.scale.emulation.duration_s(opts.capacity_window_s)))


def _config_by_name(configs: Sequence[PaperConfiguration], name: str) -> PaperConfiguration:
    base, _, policy = name.partition("/")
    for c in configs:
        if c.name == base:
            return c.with_policy(policy) if policy else c
    raise ValueError(f"unknown configuration {name!r}; known: {', '.join(c.name for c in configs)}")


def run_paper(opts: PaperOptions, configs: Sequence[PaperConfiguration] | None = None,
              log: Callable[[str], None] = print) -> PaperResult:
    from prfaas.bench.paper_config import paper_configurations
    from prfaas.bench.paper_report import write_paper

    base = list(configs) if configs is not None else paper_configurations()
    result = PaperResult(opts)
    emu = opts.scale.emulation
    for name in opts.configurations:
        c = _config_by_name(base, name)
        res = ConfigResult(configuration=c.name, policy=c.policy, threshold_tokens=c.threshold_tokens,
                           n_prfaas=c.n_prfaas, n_p=c.n_p, n_d=c.n_d, planner_lambda_rps=c.planner_lambda_rps,
                           live_max_rps=[], sim_max_rps=[])
        for run in range(opts.runs):
            seed = opts.seed + 1000 * run
            sim_max = sim_max_rate(c, opts, seed) if opts.search else 0.0
            log(f"{c.name} run {run}: planner {emu.rate_rps(c.planner_lambda_rps):.3f} req/s, simulator "
                f"{sim_max:.3f} req/s (scaled)")
            run_dir = opts.out_dir / c.name.replace("/", "_") / f"run-{run}"
            with _deployment(c, opts, run_dir) as dep:
                live = LiveConfig(c, dep, opts, run, run_dir)
                if opts.search:
                    res.sim_max_rps.append(sim_max)
                    res.live_max_rps.append(live.search(sim_max, res.probes.append))
                if opts.capacity:
                    rate = emu.rate_rps(opts.overload * c.planner_lambda_rps)
                    n = capacity_size(opts, rate)
                    res.probes.append(live.probe(rate, "capacity", n))
                res.probes.append(live.probe(emu.rate_rps(opts.common_load_rps), "common", opts.common_requests))
                for rate in opts.extra_rates:
                    res.probes.append(live.probe(emu.rate_rps(rate), "extra"))
            write_paper(result, extra=res)
        result.configs.append(res)
        write_paper(result)
    return result


def resimulate(paper_dir: Path, overhead: RequestOverhead | None, *, common_requests: int | None = None,
               capacity_window_s: float | None = None, capacity_requests: int | None = None) -> PaperResult:
    """The simulator side of a finished `bench paper` output again, with `overhead` (`simoh_*` fields); the live
    rows are read back unchanged. Each probe's requests are regenerated from its configuration, rate and seed.
    `overhead=None`: cross-validated, each probe with the overhead of its configuration's common-load probes in
    the other runs (`paper_overhead.cross_run_overhead`; needs >= 2 runs)."""
    from prfaas.bench.paper_config import paper_configurations
    from prfaas.bench.paper_report import write_paper

    doc = json.loads((paper_dir / "paper.json").read_text(encoding="utf-8"))
    scale = PaperScale(doc["scale"]["time_scale"], doc["scale"]["state_scale"], doc["scale"]["steps_per_event"])
    window = capacity_window_s or doc.get("capacity_window_s") or 60.0
    cap_n = capacity_requests or doc.get("capacity_requests")
    common_n = common_requests or doc.get("common_requests") or doc["num_requests"]
    opts = PaperOptions(out_dir=paper_dir, scale=scale, num_requests=doc["num_requests"], runs=doc["runs"],
                        seed=doc.get("seed", 0), common_load_rps=doc["common_load_rps"],
                        overload=doc.get("overload", 1.5), capacity_window_s=window, capacity_requests=cap_n,
                        common_requests=common_n,
                        overhead=overhead, progress=False)
    base = paper_configurations()
    note = (f"simulator re-run with the request-path overhead {overhead.describe()}" if overhead is not None else
            "simulator re-run with the request-path overhead fitted per probe on the same configuration's and "
            "load's probes of the other runs (cross-validation)")
    if overhead is None and doc["runs"] < 2:
        raise ValueError(f"{paper_dir}: cross-validated overheads need >= 2 runs (it has {doc['runs']})")
    result = PaperResult(opts, notes=[note])
    for raw in doc["configs"]:
        res = msgspec.convert(raw, ConfigResult)
        c = _config_by_name(base, res.configuration)
        probes = []
        for p in res.probes:
            n = {"capacity": capacity_size(opts, p.rate_rps), "common": common_n}.get(p.kind, opts.num_requests)
            requests = paper_requests(c, p.rate_rps, n, opts.seed + 1000 * p.run)
            if len(requests) != p.num_requests:
                raise ValueError(f"{c.name} {p.kind} {p.rate_rps}: regenerated {len(requests)} requests, the live "
                                 f"run sent {p.num_requests} (give --common-requests / --capacity-window-s)")
            used = overhead if overhead is not None else cross_run_overhead(
                paper_dir, res.configuration.replace("/", "_"), CALIBRATION_KIND, p.run)
            extra = sim_with_overhead(c, scale, requests, n / p.rate_rps, opts.criteria.tail_s, used)
            probes.append(msgspec.structs.replace(p, **extra))
        result.configs.append(msgspec.structs.replace(res, probes=probes))
    write_paper(result)
    return result
