"""What the planner and the simulator predict for a live deployment, from the live run's own measurements.

    profile = profile_from_records(records, model_name)      # T_prefill(l), S_kv(l), decode step, measured live
    sim = simulate_same(profile_path, setup)                 # the simulator on the same cluster, link, workload
    plan = plan_same(profile_path, setup)                    # the planner's optimum for the same inputs

`records` are the gateway's per-request log (`GET /admin/requests`). The profile is binned by uncached prompt
length (powers of two); S_kv comes from the bytes the transport actually moved (a linear fit over transferred
requests). Both predictions use the same policy, threshold, node counts and link capacity as the live run.

`simulate_same(..., effects=LiveEffects(host_cores, path_delay_s))` adds what a one-machine live run has and a
plain simulator lacks, each a measured input (docs/real-fidelity.md): the nodes share the host's cores
(`sim.host_share`, processor sharing over os.cpu_count() cores of the machine that ran live), and each request
spends `path_delay_s(request)` in the request path outside the model (client, HTTP, gateway; fitted on a
calibration run, `bench.compare.calibrate`) before the prefill side sees it. With effects the prediction is
computed the way the live summary is (TTFT from the request's own send time, nearest-rank P90, throughput =
finished / time from the run's start to the last finish).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.perf.measured import DecodePoint, MeasuredProfile, PrefillPoint, save_profile_json
from prfaas.workload.request import WorkloadRequest


@dataclass(frozen=True, slots=True)
class LiveSetup:
    """The live configuration the predictions reproduce."""

    policy: str
    threshold_tokens: int
    n_prfaas: int
    n_pd_prefill: int
    n_pd_decode: int
    link_gbps: float
    mu: float
    sigma: float
    min_tokens: int
    max_tokens: int
    output_tokens: int
    rate_rps: float
    duration_s: float
    max_batch: int
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LiveEffects:
    """What the live run adds to the simulator's model (None / no function: that effect is off)."""

    host_cores: float | None = None  # all nodes on one host of this many cores (os.cpu_count of the live host)
    path_delay_s: Callable[[WorkloadRequest], float] | None = None  # request path outside the model, per request
    background_tasks: float = 0.0  # other processes' runnable tasks during the run (`bench.host_load`)
    # other processes' runnable tasks while the profile was measured one request at a time on this host (None:
    # the profile was measured on a dedicated core)
    reference_background_tasks: float | None = None
    # the request ids live completed: the statistics are over those (live sheds requests that cannot start
    # within its queue deadline; the simulator has no admission control). None: every request.
    completed_ids: frozenset[int] | None = None
    # the background measured over time [(seconds since the run started, runnable tasks)]: replaces the mean
    background_series: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.host_cores is not None and not self.host_cores > 0:
            raise ValueError(f"host_cores must be > 0, got {self.host_cores}")
        if self.background_tasks < 0 or (self.reference_background_tasks or 0.0) < 0:
            raise ValueError("background tasks must be >= 0")

    def host_spec(self, instance_ids: tuple[str, ...]) -> Any:
        """The `sim.host_share.HostSpec` of the live host (None when the cores are not modelled)."""
        from prfaas.sim.host_share import HostSpec, share_speed

        if self.host_cores is None:
            return None
        reference = 1.0
        if self.reference_background_tasks is not None:
            reference = share_speed(self.host_cores, 1.0 + self.reference_background_tasks)
        return HostSpec(self.host_cores, instance_ids, "live-host", self.background_tasks, reference,
                        self.background_series)


@dataclass(frozen=True, slots=True)
class Prediction:
    source: str
    ttft_mean_s: float | None
    ttft_p90_s: float | None
    offload_fraction: float | None
    egress_bytes: float | None
    throughput_rps: float | None  # simulator: finished / s; planner: Lambda_max
    threshold_tokens: float | None = None


def _s_kv_fit(records: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """bytes = a + b * tokens over requests whose state crossed the wire (least squares)."""
    pts = [(float(r["uncached_tokens"] + 0), float(r["transfer_bytes"])) for r in records
           if r.get("transfer_bytes") and r.get("attempt") == 0 and r.get("uncached_tokens") == r["prompt_tokens"]]
    if not pts:
        return 0.0, 0.0
    if len({x for x, _ in pts}) < 2:
        x, y = pts[0]
        return 0.0, y / x
    mean_x = statistics.fmean(x for x, _ in pts)
    mean_y = statistics.fmean(y for _, y in pts)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in pts) / sum((x - mean_x) ** 2 for x, _ in pts)
    return max(0.0, mean_y - slope * mean_x), max(slope, 0.0)


def profile_from_records(records: Sequence[dict[str, Any]], model: str) -> MeasuredProfile:
    """A measured profile of this deployment's nodes from the live per-request log."""
    usable = [r for r in records if r.get("prefill_s") and r.get("uncached_tokens")]
    if not usable:
        raise ValueError("no finished requests with prefill timings to build a profile from")
    a, b = _s_kv_fit(usable)
    bins: dict[int, list[dict[str, Any]]] = {}
    for r in usable:
        bins.setdefault(2 ** round(math.log2(max(1, r["uncached_tokens"]))), []).append(r)
    prefill = tuple(
        PrefillPoint(int(statistics.median(r["uncached_tokens"] for r in group)),
                     max(1e-6, statistics.median(r["prefill_s"] for r in group)),
                     a + b * statistics.median(r["uncached_tokens"] for r in group))
        for _key, group in sorted(bins.items()))
    prefill = tuple({p.num_tokens: p for p in prefill}.values())
    steps = [(r["latency_s"] - r["ttft_s"]) / (r["completion_tokens"] - 1) for r in usable
             if r.get("completion_tokens", 0) > 1 and r.get("ttft_s") is not None]
    step_s = max(1e-6, statistics.median(steps)) if steps else 0.01
    context = int(statistics.median(r["prompt_tokens"] for r in usable))
    return MeasuredProfile(name="live", model=model, device="cpu", n_gpu=1, prefill=prefill,
                           decode=(DecodePoint(1, context, step_s),), source="prfaas demo (live gateway log)")


def write_profile(profile: MeasuredProfile, path: Path) -> Path:
    save_profile_json(profile, path)
    return path


def decode_step_s(profile: MeasuredProfile) -> float:
    return profile.decode[0].t_step_s if profile.decode else 0.01


SIM_LINK_LATENCY_S = 0.0001  # loopback or one machine's veth pair


def sim_config(profile_path: Path, profile: MeasuredProfile, setup: LiveSetup) -> dict[str, Any]:
    """The simulator's scenario for this live setup (a `SimConfig` table)."""
    return {
        "seed": setup.seed, "duration_s": setup.duration_s, "tpot_slo_s": 10.0,
        "model": {"profile": str(profile_path), "t_decode_s": decode_step_s(profile), "bs_max": setup.max_batch},
        "cluster": {"n_prfaas": setup.n_prfaas, "n_pd_prefill": setup.n_pd_prefill,
                    "n_pd_decode": setup.n_pd_decode},
        "link": {"capacity_gbps": setup.link_gbps, "latency_s": SIM_LINK_LATENCY_S},
        "workload": {"kind": "lognormal", "mu": setup.mu, "sigma": setup.sigma, "min_tokens": setup.min_tokens,
                     "max_tokens": setup.max_tokens, "output_tokens": setup.output_tokens,
                     "arrivals": {"kind": "poisson", "rate_rps": setup.rate_rps}},
        "policy": {"name": setup.policy, "threshold_tokens": setup.threshold_tokens},
    }


def _nearest_rank(values: Sequence[float], q: float) -> float | None:
    """Smallest value whose empirical CDF reaches q (the live summary's percentile, `bench.summary`)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def _live_aligned(run: Any, delays_s: dict[int, float], origin_s: float, setup: LiveSetup,
                  completed_ids: frozenset[int] | None = None) -> Prediction:
    """The simulator's records summarised as the live run is: TTFT from the send time (the path delay added
    back), nearest-rank P90, throughput over [first send, last finish] (the load generator sends the first
    request as its clock starts, `bench.workload.build_requests`)."""
    s = run.summary
    ok = [r for r in run.records if r.is_ok and (completed_ids is None or r.request_id in completed_ids)]
    ttft = [r.ttft_s + delays_s.get(r.request_id, 0.0) for r in ok if r.ttft_s is not None]
    span_s = max((r.finish_s for r in ok if r.finish_s is not None), default=origin_s) - origin_s
    return Prediction("simulator", statistics.fmean(ttft) if ttft else None, _nearest_rank(ttft, 0.9),
                      s.offload_fraction, s.egress_bytes, len(ok) / span_s if span_s > 0 else None,
                      setup.threshold_tokens)


def _constant_decode(deployment: Any, step_s: float) -> Any:
    import dataclasses

    from prfaas.sim.scenario import ConstantStepDecode

    step = ConstantStepDecode(step_s)
    nodes = tuple(dataclasses.replace(n, decode_cost=step) if n.decode_cost is not None else n
                  for n in deployment.nodes)
    return dataclasses.replace(deployment, nodes=nodes)


def simulate_same(profile_path: Path, profile: MeasuredProfile, setup: LiveSetup,
                  requests: Sequence[WorkloadRequest] | None = None, effects: LiveEffects | None = None) -> Prediction:
    """The discrete-event simulator on the live configuration (same policy objects, measured costs); with
    `requests` it replays exactly those (e.g. the live run's own), otherwise it draws the setup's workload;
    `effects`: the live host's shared cores and request path (module docstring)."""
    run, delays, origin_s = simulate_run(profile_path, profile, setup, requests, effects)
    if effects is not None:
        return _live_aligned(run, delays, origin_s, setup, effects.completed_ids)
    s = run.summary
    return Prediction("simulator", s.ttft_mean_s, s.ttft_p90_s, s.offload_fraction, s.egress_bytes,
                      s.throughput_rps, setup.threshold_tokens)


def simulate_run(profile_path: Path, profile: MeasuredProfile, setup: LiveSetup,
                 requests: Sequence[WorkloadRequest] | None = None,
                 effects: LiveEffects | None = None) -> tuple[Any, dict[int, float], float]:
    """`simulate_same`'s run itself (`sim.run.RunResult`, records included), the path delay per request id and
    the first arrival: what an error attribution reads (prefill, queue and transfer times per request)."""
    import dataclasses

    import msgspec

    from prfaas.sim.build import build_inputs
    from prfaas.sim.config import SimConfig
    from prfaas.sim.run import simulate

    inputs = build_inputs(msgspec.convert(sim_config(profile_path, profile, setup), SimConfig))
    if requests is not None:
        inputs = dataclasses.replace(inputs, requests=tuple(requests))
    if effects is not None and len(profile.decode) == 1:
        # one measured step (batch 1, as `profile_from_records` gives): the batch x context fit of
        # `ProfileDecodeModel` has nothing to stand on and would grow the step with batch x context; keep it
        inputs = dataclasses.replace(inputs, deployment=_constant_decode(inputs.deployment, profile.decode[0].t_step_s))
    options = inputs.options
    replay = list(inputs.requests)
    origin_s = min((r.arrival_s for r in replay), default=0.0)
    delays: dict[int, float] = {}
    if effects is not None:
        host = effects.host_spec(tuple(n.instance_id for n in inputs.deployment.nodes))
        if host is not None:
            options = dataclasses.replace(options, hosts=(host,))
        if effects.path_delay_s is not None:
            delays = {r.request_id: max(0.0, effects.path_delay_s(r)) for r in replay}
            replay = sorted((dataclasses.replace(r, arrival_s=r.arrival_s + delays[r.request_id]) for r in replay),
                            key=lambda r: r.arrival_s)
    run = simulate(inputs.deployment, setup.policy, replay, policy_config=inputs.policy_config, options=options)
    return run, delays, origin_s


def plan_same(profile_path: Path, setup: LiveSetup) -> Prediction:
    """The planner's throughput-optimal threshold and Lambda_max for the same nodes, link and lengths."""
    from prfaas.planner.build import PlanInputs, build_case
    from prfaas.planner.run import run_plan

    inputs = PlanInputs(n_prfaas=setup.n_prfaas, n_pd=setup.n_pd_prefill + setup.n_pd_decode,
                        egress_gbps=setup.link_gbps, profile_path=str(profile_path),
                        pd_profile_path=str(profile_path), mu=setup.mu, sigma=setup.sigma,
                        min_tokens=setup.min_tokens, max_tokens=setup.max_tokens,
                        output_tokens=float(setup.output_tokens), bs_max=setup.max_batch)
    run = run_plan(build_case(inputs))
    best = run.prfaas_pd.best
    return Prediction("planner", None, None, None, None, best.lambda_max, best.threshold_tokens)
