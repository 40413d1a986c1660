"""`prfaas bench paper-scenario`: the simulator's scenarios (a) link drop and (b) mix shift, live on the emulated
engine at the paper's topology, with the simulator on the very same requests beside it.

    spec = scenario_spec("link-drop", quick=False)       # paper units, time-compressed (see COMPRESSION)
    result = run_scenario(ScenarioOptions(out_dir=Path("runs/scen"), scenario="link-drop"))
    print(format_scenario(result))                       # bench.paper_scenarios_report; JSON + PNG under out_dir

(a) link drop: 4 PrfaaS + 3 PD-P / 5 PD-D, the egress 40 Gbps dropping 10x for a while, Poisson 1.5 req/s, the
    routers `prfaas` and `prfaas-bandwidth-aware` (tests/sim/scenarios/link_drop.toml). Live, the drop is the
    tbf cap of the two emulated sites (`Sites.set_cap_mbit`) at the scaled time; the simulator gets the same
    `link_capacity` events.
(b) mix shift: 4 PrfaaS + 2 PD-P / 6 PD-D, the long share (above 19.4K tokens) moving 20% -> 80% at 2 req/s,
    the long-term loop on (PD role conversions and threshold re-optimisation; tests/sim/scenarios/mix_shift.toml).
    Live it is the gateway's own rebalancer (`serve.control`, every control interval), whose planner is the
    emulated engine's scenario (`serve.replan.emulated_scenario`); the simulator gets the same rebalancer config
    and the same re-optimiser.

Everything runs in the emulation's scaled units (docs/emulated.md: durations x k_t, rates / k_t, bytes / k_b, links
/ (k_t k_b)); reports convert back to paper seconds. Both sides get the same requests (arrival times, lengths,
seed), the emulated engine's scaled cost models, the same scripted events and the same policy config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from prfaas.bench.loadgen import LoadOptions, ProgressBar
from prfaas.bench.netns import can_emulate
from prfaas.bench.paper import bench_requests
from prfaas.bench.paper_config import (
    EMULATED_RTT_BASELINE_MS,
    OUTPUT_TOKENS,
    PaperConfiguration,
    PaperScale,
    deploy_config,
    paper_configurations,
    sim_scenario,
)
from prfaas.bench.records import LinkSample, RequestStatus
from prfaas.bench.run import Deployment, RunResult, bench_deployment, write_run
from prfaas.bench.sites import SitesSpec
from prfaas.bench.summary import Slo
from prfaas.core.lifecycle import Role
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.rebalancer import PdRebalancer
from prfaas.policy.registry import make_router
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID
from prfaas.serve.config import DeployConfig, policy_config
from prfaas.serve.replan import live_reoptimiser
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.request import RequestRecord as SimRecord
from prfaas.sim.run import prefill_time_fn, state_bytes_fn
from prfaas.sim.scenario import deployment_for
from prfaas.sim.simulator import Simulator
from prfaas.workload.arrivals import PoissonArrivals
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.mixshift import MixShift, short_long_split
from prfaas.workload.request import WorkloadRequest

SCENARIOS = ("link-drop", "mix-shift")
SPLIT_TOKENS = 19_400  # mix shift: "long" is above this (tests/sim/scenarios/mix_shift.toml's split_tokens)
SAMPLE_INTERVAL_PAPER_S = 1.0  # threshold / role / link samples, both sides
RTT_BASELINE_MS = EMULATED_RTT_BASELINE_MS  # both sides (bench.paper_config: why)
_THRESHOLD_RE = re.compile(r"^prfaas_threshold_tokens\s+(\S+)", re.MULTILINE)

COMPRESSION = {
    "link-drop": "900 s with the drop at 300 s for 60 s -> {duration:g} s with the drop at {drop_at:g} s for "
                 "{drop_for:g} s (paper seconds); link 40 -> 4 Gbps, 1.5 req/s, deployment unchanged",
    "mix-shift": "2,400 s, shift 600 -> 900 s, control interval 30 s -> {duration:g} s, shift {shift_start:g} -> "
                 "{shift_end:g} s, control interval {control:g} s; rebalancer conversion {conversion:g} s (30), "
                 "cooldown {cooldown:g} s (120) (paper seconds); 2 req/s, 2P/6D start, 20% -> 80% long",
}


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One scenario in the paper's units (seconds, req/s, Gbps); `scaled(...)` values come from PaperScale."""

    name: str
    duration_s: float  # arrivals on [0, duration_s)
    rate_rps: float
    n_p: int
    n_d: int
    link_gbps: float
    link_events: tuple[tuple[float, float], ...] = ()  # (time_s, capacity_gbps)
    mix: MixSpec | None = None
    rebalance: bool = False
    control_interval_s: float = 30.0
    rebalancer: dict[str, float] = field(default_factory=dict)  # RebalancerConfig fields; *_s in paper seconds
    phases: tuple[tuple[str, float, float], ...] = ()  # (name, start_s, end_s), by arrival time
    policies: tuple[str, ...] = ("prfaas",)
    seed: int = 1

    @property
    def compression(self) -> str:
        if self.name == "link-drop":
            (drop_at, _), (back_at, _) = self.link_events
            return COMPRESSION[self.name].format(duration=self.duration_s, drop_at=drop_at, drop_for=back_at - drop_at)
        assert self.mix is not None
        return COMPRESSION[self.name].format(
            duration=self.duration_s, shift_start=self.mix.shift_start_s, shift_end=self.mix.shift_end_s,
            control=self.control_interval_s, conversion=self.rebalancer.get("conversion_s", 30.0),
            cooldown=self.rebalancer.get("cooldown_s", 120.0))


@dataclass(frozen=True, slots=True)
class MixSpec:
    start_long_fraction: float
    end_long_fraction: float
    shift_start_s: float
    shift_end_s: float


def scenario_spec(name: str, *, quick: bool = False) -> ScenarioSpec:
    """The time-compressed scenario (`quick`: the short test version)."""
    if name == "link-drop":
        duration, drop_at, drop_for = (90.0, 30.0, 30.0) if quick else (300.0, 120.0, 60.0)
        return ScenarioSpec(
            name=name, duration_s=duration, rate_rps=1.5, n_p=3, n_d=5, link_gbps=40.0,
            link_events=((drop_at, 4.0), (drop_at + drop_for, 40.0)),
            phases=(("before", 0.0, drop_at), ("during", drop_at, drop_at + drop_for),
                    ("after", drop_at + drop_for, duration)),
            policies=("prfaas-bandwidth-aware",) if quick else ("prfaas", "prfaas-bandwidth-aware"), seed=1)
    if name == "mix-shift":
        duration, start, end, control = (150.0, 30.0, 60.0, 10.0) if quick else (300.0, 90.0, 150.0, 10.0)
        return ScenarioSpec(
            name=name, duration_s=duration, rate_rps=2.0, n_p=2, n_d=6, link_gbps=100.0,
            mix=MixSpec(0.2, 0.8, start, end), rebalance=True, control_interval_s=control,
            rebalancer={"conversion_s": 2.0, "cooldown_s": 20.0},
            phases=(("before", 0.0, start), ("during", start, end), ("after", end, duration)),
            policies=("prfaas",), seed=2)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


@dataclass(frozen=True, slots=True)
class ScenarioOptions:
    out_dir: Path
    scenario: str = "link-drop"
    quick: bool = False
    scale: PaperScale = field(default_factory=PaperScale)
    policies: tuple[str, ...] | None = None  # None: the scenario's
    sites: bool | None = None  # None: when this process can make namespaces (a live link drop needs them)
    tls: bool = True
    progress: bool = True
    live: bool = True  # False: the simulator only (tuning; the report has no live columns)


# --- what one run (one policy) produced, both sides, in scaled units ----------------------------------
class Sample(msgspec.Struct, frozen=True, kw_only=True):
    time_s: float
    threshold_tokens: int | None
    n_pd_prefill: int
    n_pd_decode: int
    n_converting: int
    egress_gbps: float | None = None
    capacity_gbps: float | None = None


class Request(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    arrival_s: float
    input_tokens: int
    ttft_s: float | None
    offloaded: bool | None
    ok: bool


class Side(msgspec.Struct, frozen=True, kw_only=True):
    """One side (live or sim) of one run: its requests and time series (scaled units)."""

    requests: list[Request]
    samples: list[Sample]
    lost: int  # live: stream ended without completion; sim: unfinished at the end
    failed: int = 0
    role_switches: list[tuple[float, str, str, str]] = msgspec.field(default_factory=list)  # (t, node, from, to)


class Run(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    sim: Side
    live: Side | None
    live_wall_s: float | None = None
    out: str = ""


class ScenarioResult(msgspec.Struct, frozen=True, kw_only=True):
    scenario: str
    quick: bool
    compression: str
    spec: dict[str, Any]
    time_scale: float
    state_scale: float
    link_gbps_scaled: float
    num_requests: int
    runs: list[Run]
    notes: list[str] = msgspec.field(default_factory=list)


# --- workload -----------------------------------------------------------------------------------
def scenario_requests(spec: ScenarioSpec, scale: PaperScale) -> list[WorkloadRequest]:
    """Poisson arrivals at the scaled rate over the scaled duration, the paper's lengths (mix shift: split at
    SPLIT_TOKENS, the long share ramping over the scaled shift window), 1,024 output tokens."""
    emu = scale.emulation
    dist = truncated_lognormal()
    sampler: Any = dist
    if spec.mix is not None:
        short, long = short_long_split(dist, SPLIT_TOKENS)
        m = spec.mix
        sampler = MixShift(short, long, m.start_long_fraction, m.end_long_fraction, emu.duration_s(m.shift_start_s),
                           emu.duration_s(m.shift_end_s))
    return synthetic_requests(sampler, OUTPUT_TOKENS, PoissonArrivals(emu.rate_rps(spec.rate_rps)),
                              duration_s=emu.duration_s(spec.duration_s), seed=spec.seed)


# --- configuration shared by both sides ------------------------------------------------------------
def scenario_configuration(spec: ScenarioSpec, policy: str) -> PaperConfiguration:
    base = next(c for c in paper_configurations() if c.name == "prfaas-pd")
    return dataclasses.replace(base.with_policy(policy), n_p=spec.n_p, n_d=spec.n_d)


def rebalancer_overrides(spec: ScenarioSpec, scale: PaperScale) -> dict[str, float]:
    """The spec's rebalancer fields with durations (`*_s`) scaled by k_t."""
    return {k: (scale.emulation.duration_s(v) if k.endswith("_s") else v) for k, v in spec.rebalancer.items()}


def scenario_deploy_config(spec: ScenarioSpec, policy: str, scale: PaperScale, *, tls: bool = True) -> DeployConfig:
    c = scenario_configuration(spec, policy)
    cfg = deploy_config(c, scale, tls=tls)
    emu = scale.emulation
    links = [msgspec.structs.replace(link, capacity_gbps=emu.link_gbps(spec.link_gbps)) for link in cfg.links]
    pol = msgspec.structs.replace(cfg.policy, rebalance=spec.rebalance, rebalancer=rebalancer_overrides(spec, scale),
                                  bandwidth={**cfg.policy.bandwidth, "rtt_baseline_ms": RTT_BASELINE_MS})
    gateway = msgspec.structs.replace(cfg.gateway, rebalance_interval_s=emu.duration_s(spec.control_interval_s))
    return msgspec.structs.replace(cfg, links=links, policy=pol, gateway=gateway)


def scenario_policy_config(cfg: DeployConfig) -> PolicyConfig:
    """What the gateway builds from `[policy]` (`serve.config.policy_config`): the simulator gets the same."""
    return policy_config(cfg)


# --- the simulator -----------------------------------------------------------------------------------
def run_sim(spec: ScenarioSpec, policy: str, scale: PaperScale, requests: Sequence[WorkloadRequest]) -> Side:
    emu = scale.emulation
    c = scenario_configuration(spec, policy)
    cfg = scenario_deploy_config(spec, policy, scale, tls=False)
    link_gbps = emu.link_gbps(spec.link_gbps)
    scenario = sim_scenario(c, scale).replace(egress_gbps=link_gbps)
    deployment = deployment_for(scenario, c.n_p, c.n_d, egress_gbps=link_gbps)
    policy_cfg = scenario_policy_config(cfg)
    index = GlobalKvIndex()
    router = make_router(policy, policy_cfg, kv_index=index, state_bytes=state_bytes_fn(deployment),
                         prefill_time_s=prefill_time_fn(deployment))
    rebalancer = None
    if spec.rebalance:
        rebalancer = PdRebalancer(policy_cfg.rebalancer, reoptimise=live_reoptimiser(cfg),
                                  threshold_tokens=router.threshold_tokens)
    script = [ScriptedEvent(emu.duration_s(t), ScriptKind.LINK_CAPACITY, link_id=PRFAAS_EGRESS_LINK_ID,
                            capacity_gbps=emu.link_gbps(g)) for t, g in spec.link_events]
    options = SimOptions(control_interval_s=emu.duration_s(spec.control_interval_s) if spec.rebalance else None,
                         sample_interval_s=emu.duration_s(SAMPLE_INTERVAL_PAPER_S), tpot_slo_s=scenario.t_decode_s)
    thresholds: dict[float, int | None] = {}
    sim = Simulator(deployment, router, requests, kv_index=index, rebalancer=rebalancer, script=script,
                    options=options, progress=lambda now_s: thresholds.__setitem__(now_s, effective_threshold(router)))
    records = sim.run()
    caps = list(sim.egress.capacity_history)
    samples = [Sample(time_s=s.time_s, threshold_tokens=thresholds.get(s.time_s, s.threshold_tokens),
                      n_pd_prefill=s.num_pd_prefill, n_pd_decode=s.num_pd_decode, n_converting=s.num_converting,
                      egress_gbps=s.egress_gbps, capacity_gbps=_cap_at(caps, s.time_s))
               for s in sim.control.samples]
    switches = [(s.time_s, s.instance_id, s.from_role.value, s.to_role.value) for s in sim.control.role_switches]
    return Side(requests=[_sim_request(r) for r in records], samples=samples,
                lost=sum(1 for r in records if not r.is_ok), role_switches=switches)


def effective_threshold(router: Any) -> int | None:
    fn = getattr(router, "effective_threshold", None)
    value = fn() if callable(fn) else router.threshold_tokens
    return int(value) if value is not None else None


def _cap_at(history: Sequence[tuple[float, float]], t: float) -> float | None:
    cap = None
    for at, gbps in history:
        if at <= t:
            cap = gbps
    return cap


def _sim_request(r: SimRecord) -> Request:
    return Request(arrival_s=r.arrival_s, input_tokens=r.input_tokens, ttft_s=r.ttft_s if r.is_ok else None,
                   offloaded=r.is_offloaded, ok=r.is_ok)


# --- live ---------------------------------------------------------------------------------------------
class _Watcher:
    """Beside the load: the link events at their scaled times, and a sample of the threshold in force (the
    gateway's /metrics gauge, the bandwidth-aware loop's t') and the PD role counts (/admin/cluster)."""

    def __init__(self, dep: Deployment, spec: ScenarioSpec, scale: PaperScale) -> None:
        self.dep, self.spec, self.scale = dep, spec, scale
        self.samples: list[Sample] = []
        self.events_done: list[tuple[float, float]] = []  # (scaled time applied, Mbit/s)

    async def __call__(self, t0: float) -> None:
        emu = self.scale.emulation
        events = sorted((emu.duration_s(t), emu.link_gbps(g) * 1000.0) for t, g in self.spec.link_events)
        end = t0 + emu.duration_s(self.spec.duration_s)
        interval = emu.duration_s(SAMPLE_INTERVAL_PAPER_S)
        headers = self.dep.launcher.admin_headers()
        async with aiohttp.ClientSession() as session:
            while (now := time.monotonic()) < end:
                while events and now - t0 >= events[0][0]:
                    _, mbit = events.pop(0)
                    assert self.dep.sites is not None
                    await asyncio.to_thread(self.dep.sites.set_cap_mbit, mbit)
                    self.events_done.append((time.monotonic() - t0, mbit))
                sample = await self._sample(session, headers, time.monotonic() - t0)
                if sample is not None:
                    self.samples.append(sample)
                next_s = min([end, t0 + events[0][0]] if events else [end])
                await asyncio.sleep(max(0.0, min(interval, next_s - time.monotonic())))

    async def _sample(self, session: aiohttp.ClientSession, headers: dict[str, str], at_s: float) -> Sample | None:
        url = self.dep.url
        timeout = aiohttp.ClientTimeout(total=5.0)
        try:
            async with session.get(f"{url}/metrics", headers=headers, timeout=timeout) as resp:
                text = await resp.text() if resp.status == 200 else ""
            async with session.get(f"{url}/admin/cluster", headers=headers, timeout=timeout) as resp:
                cluster = await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None
        match = _THRESHOLD_RE.search(text)
        threshold = int(float(match.group(1))) if match else (cluster or {}).get("threshold_tokens")
        roles = [(i.get("role"), i.get("pending_role")) for i in (cluster or {}).get("instances", [])]
        return Sample(time_s=at_s, threshold_tokens=threshold,
                      n_pd_prefill=sum(r == Role.PD_PREFILL.value and p is None for r, p in roles),
                      n_pd_decode=sum(r == Role.PD_DECODE.value and p is None for r, p in roles),
                      n_converting=sum(p is not None for _, p in roles))


def run_live(spec: ScenarioSpec, policy: str, opts: ScenarioOptions, requests: Sequence[WorkloadRequest],
             run_dir: Path) -> tuple[Side, float]:
    scale = opts.scale
    emu = scale.emulation
    cfg = scenario_deploy_config(spec, policy, scale, tls=opts.tls)
    use_sites = opts.sites if opts.sites is not None else can_emulate()[0]
    if spec.link_events and not use_sites:
        raise RuntimeError("the live link drop needs the two emulated sites (root: network namespaces and tc)")
    sites = SitesSpec(cap_mbit=emu.link_gbps(spec.link_gbps) * 1000.0) if use_sites else None
    bench = bench_requests(requests, spec.seed, 1)
    duration = emu.duration_s(spec.duration_s)
    decode_s = OUTPUT_TOKENS * emu.duration_s(0.025)
    with bench_deployment(cfg, run_dir, sites) as dep:
        watcher = _Watcher(dep, spec, scale)
        load = LoadOptions(max_concurrency=100_000, time_budget_s=duration + 60.0,
                           request_timeout_s=duration + 10 * decode_s, model=cfg.model.served_name)
        label = f"{spec.name} {policy}"
        bar = ProgressBar(len(bench), label=label) if opts.progress else None
        started = time.monotonic()
        live = dep.measure(bench, load, bar, side=watcher)
        wall = time.monotonic() - started
    write_run(live, run_dir, label, Slo(), plot=False)
    return _live_side(live, watcher.samples), wall


def _live_side(live: RunResult, watched: list[Sample]) -> Side:
    links = sorted(live.samples, key=lambda s: s.time_s)
    samples = [_with_link(s, links) for s in watched]
    reqs = []
    for r in live.records:
        ok = r.status is RequestStatus.COMPLETED
        reqs.append(Request(arrival_s=r.send_s, input_tokens=r.prompt_tokens, ttft_s=r.ttft_s if ok else None,
                            offloaded=None if r.route is None else r.route == "prfaas", ok=ok))
    switches = _switches_from_samples(samples)
    return Side(requests=reqs, samples=samples, lost=sum(r.status is RequestStatus.LOST for r in live.records),
                failed=sum(r.status is RequestStatus.FAILED for r in live.records), role_switches=switches)


def _with_link(s: Sample, links: Sequence[LinkSample]) -> Sample:
    """The watcher's sample with the link monitor's nearest reading (wire rate when measured, and the cap)."""
    if not links:
        return s
    near = min(links, key=lambda x: abs(x.time_s - s.time_s))
    rate = near.wire_gbps if near.wire_gbps is not None else near.goodput_gbps
    return msgspec.structs.replace(s, egress_gbps=rate, capacity_gbps=near.capacity_gbps)


def _switches_from_samples(samples: Sequence[Sample]) -> list[tuple[float, str, str, str]]:
    """Role changes seen in the counts (live: the gateway's view, sampled): one entry per node moved."""
    out: list[tuple[float, str, str, str]] = []
    for a, b in itertools.pairwise(samples):
        gained = b.n_pd_prefill - a.n_pd_prefill
        if gained > 0 and b.n_converting == 0:
            out += [(b.time_s, "?", Role.PD_DECODE.value, Role.PD_PREFILL.value)] * gained
        elif gained < 0 and b.n_converting == 0 and b.n_pd_decode > a.n_pd_decode:
            out += [(b.time_s, "?", Role.PD_PREFILL.value, Role.PD_DECODE.value)] * (-gained)
    return out


# --- the whole scenario ---------------------------------------------------------------------------------
def run_scenario(opts: ScenarioOptions, log: Callable[[str], None] = print) -> ScenarioResult:
    from prfaas.bench.paper_scenarios_report import write_scenario

    spec = scenario_spec(opts.scenario, quick=opts.quick)
    policies = opts.policies or spec.policies
    scale = opts.scale
    requests = scenario_requests(spec, scale)
    runs: list[Run] = []
    for policy in policies:
        run_dir = opts.out_dir / f"{spec.name}-{policy}"
        started = time.monotonic()
        sim = run_sim(spec, policy, scale, requests)
        log(f"{spec.name} {policy}: simulator done in {time.monotonic() - started:.1f}s ({len(requests)} requests)")
        live, wall = (run_live(spec, policy, opts, requests, run_dir) if opts.live else (None, None))
        runs.append(Run(policy=policy, sim=sim, live=live, live_wall_s=wall, out=str(run_dir)))
    result = ScenarioResult(scenario=spec.name, quick=opts.quick, compression=spec.compression,
                            spec=msgspec.to_builtins(dataclasses.asdict(spec)), time_scale=scale.time_scale,
                            state_scale=scale.state_scale, link_gbps_scaled=scale.emulation.link_gbps(spec.link_gbps),
                            num_requests=len(requests), runs=runs)
    write_scenario(result, opts.out_dir)
    return result
