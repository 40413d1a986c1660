"""`bench chaos`: break the live system while it serves, then check nothing was lost and routing recovered.

    report = run_fault(deployment, Fault.PRFAAS_RESTART, during, probes, opts, out_dir)
    report.lost == 0 and report.recovered

Faults (each injected at `fault_at_s` into a running load, undone `recover_after_s` later):
- LINK_DROP        the cross-site tbf cap drops 10x (`tc qdisc replace`), then comes back (sites only);
- PRFAAS_RESTART   the PrfaaS node is SIGKILLed, then started again through the launcher;
- DECODE_KILL      a PD-D node is SIGKILLed, then started again;
- GATEWAY_RESTART  the gateway is SIGKILLed, then started again (in-flight requests see their connection
                   break, new ones are refused until it is back; nodes re-register by heartbeat);
- OVERLOAD         a storm of `OVERLOAD_CLIENTS` extra clients at once (prompts up to 3,000 tokens, each giving
                   up after `OVERLOAD_CLIENT_TIMEOUT_S`) joins the load: admission control refuses what it cannot
                   serve (429/503, counted as failed with an explicit error); nothing may hang or be lost, in the
                   load or in the storm (a storm client that gave up counts as lost);
- CORRUPT          the PrfaaS node is restarted as `fault_node` (one byte flipped in chunk 0 of every
                   transfer, first send only); prompts are forced through PrfaaS and their greedy outputs must
                   equal the same prompts prefilled locally (so no corrupted state was used), and the node
                   must report corrupted sends > 0; then the normal node is restored.
After recovery the deployment must be ready again and `probes` (prompts above the threshold, default routing),
sent in rounds for up to 30 s, must all complete with at least one offloaded to PrfaaS ("normal routing").
Invariant for every fault: sent == completed + failed + lost and lost == 0 (every accepted request ends in
a completion or an explicit error).
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import msgspec

from prfaas.bench.deploy import CorruptPlan
from prfaas.bench.loadgen import LoadOptions, drive
from prfaas.bench.overload import StormSpec, storm_requests
from prfaas.bench.records import RequestRecord, RequestStatus
from prfaas.bench.run import Deployment, RunResult, SideTask, write_run
from prfaas.bench.summary import Slo, summarize
from prfaas.bench.workload import BenchRequest, WorkloadKind, WorkloadSpec, build_requests
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID

LINK_DROP_FACTOR = 10.0
PROBE_DEADLINE_S = 30.0
PROBE_PAUSE_S = 1.0
OVERLOAD_CLIENTS = 100
OVERLOAD_CLIENT_TIMEOUT_S = 120.0


def replace_index(record: RequestRecord, offset: int) -> RequestRecord:
    return msgspec.structs.replace(record, index=record.index + offset)


class Fault(enum.Enum):
    LINK_DROP = "link-drop"
    PRFAAS_RESTART = "prfaas-restart"
    DECODE_KILL = "decode-kill"
    CORRUPT = "corrupt"
    GATEWAY_RESTART = "gateway-restart"
    OVERLOAD = "overload"


class FaultReport(msgspec.Struct, frozen=True, kw_only=True):
    fault: Fault
    sent: int
    completed: int
    failed: int
    lost: int
    failed_by_kind: dict[str, int]
    routes_during: dict[str, int]
    probes_sent: int
    probes_completed: int
    probes_offloaded: int
    recovered: bool
    recovery_s: float  # from the undo action until a probe was offloaded again (or the probing deadline)
    corrupted_sends: int | None = None
    outputs_match: bool | None = None
    notes: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.recovered and self.outputs_match is not False


def probe_requests(spec: WorkloadSpec, count: int = 3) -> list[BenchRequest]:
    """`count` log-normal prompts above the offload threshold (they go to PrfaaS when routing is normal),
    sent 0.2 s apart, drawn with another seed than the load."""
    pool = build_requests(replace(spec, kind=WorkloadKind.LOGNORMAL, num_requests=10 * count, seed=spec.seed + 1000))
    longer = [r for r in pool if len(r.prompt_tokens) > 1.2 * spec.threshold_tokens][:count]
    if len(longer) < count:
        raise ValueError(f"cannot draw {count} prompts above {spec.threshold_tokens} tokens")
    return [BenchRequest(i, 0.2 * i, r.prompt_tokens, r.max_tokens) for i, r in enumerate(longer)]


def _node(dep: Deployment, cluster: ClusterKind, role: Role | None = None) -> str:
    for node in dep.launcher.cfg.nodes:
        if node.cluster is cluster and (role is None or node.role is role):
            return node.name
    raise ValueError(f"the deployment has no {cluster.value} node" + (f" with role {role.value}" if role else ""))


class _Injector:
    """The inject/undo pair of a timed fault (blocking calls, run on a worker thread)."""

    def __init__(self, dep: Deployment, fault: Fault) -> None:
        self.dep = dep
        self.fault = fault
        self.saved_cap_mbit: float | None = None
        self.undone_at: float | None = None

    def target(self) -> str:
        if self.fault is Fault.PRFAAS_RESTART:
            return _node(self.dep, ClusterKind.PRFAAS)
        if self.fault is Fault.DECODE_KILL:
            return _node(self.dep, ClusterKind.PD, Role.PD_DECODE)
        return "gateway"

    def inject(self) -> None:
        if self.fault is Fault.LINK_DROP:
            sites = self.dep.sites
            assert sites is not None and sites.cap_mbit is not None
            self.saved_cap_mbit = sites.cap_mbit
            sites.set_cap_mbit(sites.cap_mbit / LINK_DROP_FACTOR)
        else:
            self.dep.launcher.kill(self.target())

    def undo(self) -> None:
        if self.fault is Fault.LINK_DROP:
            assert self.dep.sites is not None and self.saved_cap_mbit is not None
            self.dep.sites.set_cap_mbit(self.saved_cap_mbit)
        else:
            self.dep.launcher.restart(self.target())
        self.undone_at = time.monotonic()


def _timed(injector: _Injector, fault_at_s: float, recover_after_s: float) -> SideTask:
    async def side(t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fault_at_s - time.monotonic()))
        await asyncio.to_thread(injector.inject)
        await asyncio.sleep(recover_after_s)
        await asyncio.to_thread(injector.undo)
    return side


def _check_supported(dep: Deployment, fault: Fault) -> None:
    if fault is Fault.LINK_DROP and (dep.sites is None or dep.sites.cap_mbit is None):
        raise ValueError("link-drop needs the emulated sites with a cap (root, --sites)")


def wait_routable(dep: Deployment, timeout_s: float = 30.0) -> None:
    """Until every node is up and the PrfaaS egress link reports up (a sender reconnects with backoff after its
    receiver came back, so "ready" can precede "the link is usable" by a second or so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster = dep.admin("/admin/cluster")
        link = cluster.get("links", {}).get(PRFAAS_EGRESS_LINK_ID)
        nodes_up = all(i.get("is_up") for i in cluster.get("instances", ()))
        if nodes_up and (link is None or link.get("is_up", True)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the deployment did not become routable within {timeout_s:g}s")


def _probe(dep: Deployment, probes: Sequence[BenchRequest], opts: LoadOptions,
           deadline_s: float = PROBE_DEADLINE_S) -> RunResult:
    """Send the probes in rounds until one is offloaded (normal routing is back) or `deadline_s` passes; a
    policy that raised its threshold on congestion relaxes it only as requests keep arriving."""
    wait_routable(dep)
    start = time.monotonic()
    rounds: list[RunResult] = []
    while True:
        rounds.append(dep.measure(probes, opts))
        offloaded = any(r.route == "prfaas" for r in rounds[-1].records)
        if offloaded or time.monotonic() - start > deadline_s:
            break
        time.sleep(PROBE_PAUSE_S)
    records = [replace_index(r, k * len(probes)) for k, run in enumerate(rounds) for r in run.records]
    return RunResult(records, [s for run in rounds for s in run.samples], time.monotonic() - start,
                     [row for run in rounds for row in run.gateway_log])


def _report(fault: Fault, during: RunResult, probes: RunResult, recovery_s: float, *,
            corrupted_sends: int | None = None, outputs_match: bool | None = None,
            notes: list[str] | None = None) -> FaultReport:
    s = summarize(during.records, during.samples, during.duration_s)
    offloaded = sum(r.route == "prfaas" for r in probes.records if r.status is RequestStatus.COMPLETED)
    completed = sum(r.status is RequestStatus.COMPLETED for r in probes.records)
    return FaultReport(fault=fault, sent=s.sent, completed=s.completed, failed=s.failed, lost=s.lost,
                       failed_by_kind=s.failed_by_kind, routes_during=s.requests_by_route,
                       probes_sent=len(probes.records), probes_completed=completed, probes_offloaded=offloaded,
                       recovered=completed == len(probes.records) > 0 and offloaded > 0,
                       recovery_s=recovery_s + probes.duration_s, corrupted_sends=corrupted_sends,
                       outputs_match=outputs_match, notes=notes or [])


def run_fault(dep: Deployment, fault: Fault, during: Sequence[BenchRequest], probes: Sequence[BenchRequest],
              opts: LoadOptions, out_dir: Path, *, fault_at_s: float = 1.0, recover_after_s: float = 3.0,
              ready_timeout_s: float = 120.0) -> FaultReport:
    """Inject `fault` into a load of `during` requests, recover, then send `probes`; write the runs."""
    if fault is Fault.CORRUPT:
        return run_corrupt(dep, during, probes, opts, out_dir, ready_timeout_s=ready_timeout_s)
    if fault is Fault.OVERLOAD:
        return run_overload(dep, during, probes, opts, out_dir, fault_at_s=fault_at_s)
    _check_supported(dep, fault)
    injector = _Injector(dep, fault)
    result = dep.measure(during, opts, side=_timed(injector, fault_at_s, recover_after_s))
    if fault is Fault.LINK_DROP:
        dep.wait_ready(ready_timeout_s)
    else:
        dep.wait_restarted(injector.target(), ready_timeout_s)
    wait_routable(dep)
    recovery_s = time.monotonic() - (injector.undone_at or time.monotonic())
    probe_run = _probe(dep, probes, opts)
    write_run(result, out_dir / fault.value / "during", f"{fault.value}: during", Slo())
    write_run(probe_run, out_dir / fault.value / "after", f"{fault.value}: after recovery", Slo(), plot=False)
    return _report(fault, result, probe_run, recovery_s)


def run_overload(dep: Deployment, during: Sequence[BenchRequest], probes: Sequence[BenchRequest],
                 opts: LoadOptions, out_dir: Path, *, fault_at_s: float = 1.0,
                 clients: int = OVERLOAD_CLIENTS) -> FaultReport:
    """The load with a storm of `clients` joining it at `fault_at_s` (`bench.overload`); recovery counts from the
    end of both (the storm's last answer, the load's last request) until a probe is offloaded again."""
    storm = storm_requests(StormSpec(clients=clients, client_timeout_s=OVERLOAD_CLIENT_TIMEOUT_S))
    storm_opts = LoadOptions(max_concurrency=clients, request_timeout_s=OVERLOAD_CLIENT_TIMEOUT_S,
                             model=opts.model)
    storm_records: list[RequestRecord] = []
    ended: list[float] = []

    async def side(t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fault_at_s - time.monotonic()))
        storm_records.extend(await drive(dep.url, storm, storm_opts))
        ended.append(time.monotonic())

    result = dep.measure(during, opts, side=side)
    quiet_from = max(time.monotonic(), *ended)  # the storm and the load both over
    wait_routable(dep)
    probe_run = _probe(dep, probes, opts)
    recovery_s = time.monotonic() - quiet_from
    write_run(result, out_dir / Fault.OVERLOAD.value / "during", "overload: during", Slo())
    write_run(probe_run, out_dir / Fault.OVERLOAD.value / "after", "overload: after recovery", Slo(), plot=False)
    storm_sum = summarize(storm_records, [], 1.0)
    notes = [f"storm: {storm_sum.sent} sent, {storm_sum.completed} completed, {storm_sum.failed} refused or "
             f"failed {storm_sum.failed_by_kind}, {storm_sum.lost} lost or hung"]
    report = _report(Fault.OVERLOAD, result, probe_run, recovery_s - probe_run.duration_s, notes=notes)
    return msgspec.structs.replace(report, lost=report.lost + storm_sum.lost)


def _corrupted_sends(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["corrupted_sends"])
    except (OSError, ValueError, KeyError):
        return None


def run_corrupt(dep: Deployment, during: Sequence[BenchRequest], probes: Sequence[BenchRequest],
                opts: LoadOptions, out_dir: Path, *, ready_timeout_s: float = 120.0) -> FaultReport:
    name = _node(dep, ClusterKind.PRFAAS)
    launcher = dep.launcher
    previous = launcher.fault_nodes.get(name)
    launcher.fault_nodes[name] = CorruptPlan()
    launcher.restart(name)
    dep.wait_restarted(name, ready_timeout_s)
    via_prfaas = dep.measure(during, _with(opts, route="prfaas"))
    corrupted = _corrupted_sends(launcher.run_dir / f"{name}.shim.json")
    reference = dep.measure(during, _with(opts, route="local"))
    if previous is None:
        del launcher.fault_nodes[name]
    else:
        launcher.fault_nodes[name] = previous
    started = time.monotonic()
    launcher.restart(name)
    dep.wait_restarted(name, ready_timeout_s)
    wait_routable(dep)
    recovery_s = time.monotonic() - started
    probe_run = _probe(dep, probes, opts)
    texts = {r.index: r.text for r in reference.records if r.status is RequestStatus.COMPLETED}
    compared = [r for r in via_prfaas.records if r.status is RequestStatus.COMPLETED and r.index in texts]
    match = bool(compared) and all(r.text == texts[r.index] for r in compared)
    notes = [f"compared {len(compared)} outputs (PrfaaS with corrupted chunks vs local prefill)"]
    write_run(via_prfaas, out_dir / Fault.CORRUPT.value / "during", "corrupt: forced through PrfaaS", Slo())
    write_run(probe_run, out_dir / Fault.CORRUPT.value / "after", "corrupt: after recovery", Slo(), plot=False)
    return _report(Fault.CORRUPT, via_prfaas, probe_run, recovery_s, corrupted_sends=corrupted,
                   outputs_match=match, notes=notes)


def _with(opts: LoadOptions, route: str) -> LoadOptions:
    return replace(opts, keep_text=True, headers=(*opts.headers, ("x-prfaas-route", route)))


def format_reports(reports: Sequence[FaultReport]) -> str:
    head = (f"{'fault':<17}{'sent':>5}{'completed':>10}{'failed':>7}{'lost':>5}{'probes ok':>10}{'offloaded':>10}"
            f"{'recovery s':>11}  {'ok':<4}details")
    lines = [head]
    for r in reports:
        details = []
        if r.failed_by_kind:
            details.append(f"failed: {r.failed_by_kind}")
        if r.corrupted_sends is not None:
            details.append(f"corrupted sends {r.corrupted_sends}")
        if r.outputs_match is not None:
            details.append(f"outputs match {r.outputs_match}")
        details.append(f"routes during {r.routes_during}")
        if r.fault is Fault.OVERLOAD:
            details.extend(r.notes)
        lines.append(f"{r.fault.value:<17}{r.sent:>5}{r.completed:>10}{r.failed:>7}{r.lost:>5}"
                     f"{r.probes_completed:>6}/{r.probes_sent:<3}{r.probes_offloaded:>10}{r.recovery_s:>11.1f}  "
                     f"{'yes' if r.ok else 'NO':<4}{'; '.join(details)}")
    return "\n".join(lines)


def write_reports(reports: Sequence[FaultReport], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chaos.json").write_bytes(msgspec.json.format(msgspec.json.encode(list(reports)), indent=2) + b"\n")
    (out_dir / "chaos.txt").write_text(format_reports(reports) + "\n", encoding="utf-8")
