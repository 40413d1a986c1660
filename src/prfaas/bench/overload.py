"""The overload storm (issue 11): many clients at once, then normal traffic; what the deployment does meanwhile.

    report = run_storm(dep, StormSpec(clients=200))       # dep: a started `bench.run.Deployment`
    print(format_report(report))

The storm sends `clients` streamed requests at once (token-id prompts of `min_prompt`-`max_prompt` tokens,
`max_tokens` each, every client giving up after `client_timeout_s`) through the load generator. Each is
classified: completed, refused (429/503 answered at once: admission control), hung (the client gave up waiting),
lost (the stream or connection ended without an answer), other errors. Then a normal request is sent every
`probe_interval_s` until one is served within `normal_factor` x its warm latency: the recovery time counts from
the storm's last answer. RSS (VmRSS of each launcher child) is read warm-idle before the storm, sampled during it
(peak), and after `settle_s` of idle once normal traffic is served again.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prfaas.bench.loadgen import LoadOptions, drive
from prfaas.bench.records import FailureKind, RequestRecord, RequestStatus
from prfaas.bench.workload import FIRST_TOKEN_ID, BenchRequest

if TYPE_CHECKING:
    from prfaas.bench.run import Deployment

_REFUSED = (429, 503)


@dataclass(frozen=True, slots=True)
class StormSpec:
    clients: int = 200
    min_prompt: int = 50
    max_prompt: int = 3000
    max_tokens: int = 8
    client_timeout_s: float = 120.0
    normal_prompt: int = 200
    normal_factor: float = 3.0  # "normal": served within this many times the warm latency
    probe_interval_s: float = 0.5
    recovery_limit_s: float = 300.0  # the benchmark gives up waiting for recovery after this
    normal_requests: int = 20  # the normal traffic after recovery
    settle_s: float = 10.0  # idle before the "after" RSS
    seed: int = 0
    vocab_limit: int = 2000  # token ids below this (and >= FIRST_TOKEN_ID; the default model's vocabulary is 2048)


@dataclass(slots=True)
class StormReport:
    clients: int
    completed: int
    refused_429: int
    refused_503: int
    shed: int  # admitted, then dropped by a node's queue deadline (an SSE error event: the stream had started)
    hung: int
    lost: int
    other_errors: int
    p99_admitted_s: float | None
    storm_s: float
    warm_latency_s: float
    recovery_s: float | None  # storm's last answer -> a normal request served normally (None: not within limit)
    normal_completed: int
    normal_sent: int
    rss_idle_mib: dict[str, float] = field(default_factory=dict)
    rss_peak_mib: dict[str, float] = field(default_factory=dict)
    rss_after_mib: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The invariants: nothing hung, nothing lost."""
        return self.hung == 0 and self.lost == 0


def rss_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _pids(dep: Deployment) -> dict[str, int]:
    """Each launcher child's pid; the process itself when it runs under a wrapper (`ip netns exec` execs)."""
    return {name: proc.pid for name, proc in dep.launcher.procs.items()}


def _rss_all(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        value = rss_mib(pid)
        if value is not None:
            out[name] = value
    return out


class _PeakSampler:
    def __init__(self, pids: dict[str, int], interval_s: float = 0.5) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, value in _rss_all(self.pids).items():
                self.peak[name] = max(self.peak.get(name, 0.0), value)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def storm_requests(spec: StormSpec) -> list[BenchRequest]:
    rng = random.Random(spec.seed)
    out = []
    for i in range(spec.clients):
        n = rng.randint(spec.min_prompt, spec.max_prompt)
        prompt = tuple(rng.randrange(FIRST_TOKEN_ID, spec.vocab_limit) for _ in range(n))
        out.append(BenchRequest(i, 0.0, prompt, spec.max_tokens))
    return out


def _normal_request(spec: StormSpec, index: int) -> BenchRequest:
    rng = random.Random(spec.seed * 1000 + index + 1)
    prompt = tuple(rng.randrange(FIRST_TOKEN_ID, spec.vocab_limit) for _ in range(spec.normal_prompt))
    return BenchRequest(index, 0.0, prompt, spec.max_tokens)


def _one(dep: Deployment, req: BenchRequest, timeout_s: float) -> RequestRecord:
    opts = LoadOptions(max_concurrency=1, request_timeout_s=timeout_s, model=dep.launcher.cfg.model.served_name)
    with dep.launcher.client():
        return asyncio.run(drive(dep.url, [req], opts))[0]


def _is_shed_in_stream(r: RequestRecord) -> bool:
    """A streamed request shed by a node's queue deadline: the 200 stream's only event is the 503 error."""
    return r.failure is FailureKind.STREAM_ERROR and "shed" in (r.error or "")


def _is_hung(r: RequestRecord) -> bool:
    return r.status is RequestStatus.LOST and (r.error or "").startswith("no end of stream")


def _is_lost(r: RequestRecord) -> bool:
    return (r.status is RequestStatus.LOST and not _is_hung(r)) or r.failure is FailureKind.CONNECTION


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _warm_latency(dep: Deployment, spec: StormSpec) -> float:
    latencies = []
    for i in range(3):
        record = _one(dep, _normal_request(spec, 10_000 + i), spec.client_timeout_s)
        if record.status is not RequestStatus.COMPLETED or record.latency_s is None:
            raise RuntimeError(f"warm request did not complete: {record.error}")
        latencies.append(record.latency_s)
    return sorted(latencies)[1]


def _recover(dep: Deployment, spec: StormSpec, warm_s: float, storm_end: float) -> float | None:
    index = 20_000
    while time.monotonic() - storm_end < spec.recovery_limit_s:
        record = _one(dep, _normal_request(spec, index), spec.client_timeout_s)
        index += 1
        if (record.status is RequestStatus.COMPLETED and record.latency_s is not None
                and record.latency_s <= spec.normal_factor * warm_s):
            return time.monotonic() - storm_end
        time.sleep(spec.probe_interval_s)
    return None


def run_storm(dep: Deployment, spec: StormSpec) -> StormReport:
    pids = _pids(dep)
    warm_s = _warm_latency(dep, spec)
    time.sleep(2.0)
    idle = _rss_all(pids)
    requests = storm_requests(spec)
    opts = LoadOptions(max_concurrency=spec.clients, request_timeout_s=spec.client_timeout_s,
                       model=dep.launcher.cfg.model.served_name)
    started = time.monotonic()
    with _PeakSampler(pids) as sampler, dep.launcher.client():
        records = asyncio.run(drive(dep.url, requests, opts))
    storm_end = time.monotonic()
    recovery = _recover(dep, spec, warm_s, storm_end)
    normal = [_one(dep, _normal_request(spec, 30_000 + i), spec.client_timeout_s) for i in range(spec.normal_requests)]
    time.sleep(spec.settle_s)
    after = _rss_all(pids)
    refused = [r for r in records if r.status is RequestStatus.FAILED and r.http_status in _REFUSED
               and r.failure is FailureKind.HTTP_STATUS]
    shed = [r for r in records if _is_shed_in_stream(r)]
    hung = [r for r in records if _is_hung(r)]
    lost = [r for r in records if _is_lost(r)]
    completed = [r for r in records if r.status is RequestStatus.COMPLETED]
    others = [r for r in records
              if r not in completed and r not in refused and r not in shed and r not in hung and r not in lost]
    return StormReport(
        clients=len(records), completed=len(completed), refused_429=sum(r.http_status == 429 for r in refused),
        refused_503=sum(r.http_status == 503 for r in refused), shed=len(shed), hung=len(hung), lost=len(lost),
        other_errors=len(others), p99_admitted_s=_p99([r.latency_s for r in completed if r.latency_s is not None]),
        storm_s=storm_end - started, warm_latency_s=warm_s, recovery_s=recovery,
        normal_completed=sum(r.status is RequestStatus.COMPLETED for r in normal), normal_sent=len(normal),
        rss_idle_mib=idle, rss_peak_mib=dict(sampler.peak), rss_after_mib=after,
        errors=sorted({(r.error or "")[:160] for r in others + lost + hung}))


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.1f} {unit}"


def format_report(report: StormReport, title: str) -> str:
    r = report
    lines = [f"## {title}", "", "| clients | completed | refused 429 | refused 503 | shed (deadline) | hung | lost | "
             "other errors | P99 admitted | storm | recovery (goal < 10 s) | normal after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {r.clients} | {r.completed} | {r.refused_429} | {r.refused_503} | {r.shed} | {r.hung} | {r.lost} | "
             f"{r.other_errors} | {_fmt(r.p99_admitted_s)} | {_fmt(r.storm_s)} | {_fmt(r.recovery_s)} | "
             f"{r.normal_completed}/{r.normal_sent} |", "",
             "| process | RSS warm idle | peak | after | after / idle |", "|---|---:|---:|---:|---:|"]
    for name in sorted(r.rss_idle_mib):
        idle, peak, after = r.rss_idle_mib[name], r.rss_peak_mib.get(name), r.rss_after_mib.get(name)
        ratio = f"{after / idle:.2f}" if after is not None and idle else "-"
        lines.append(f"| {name} | {_fmt(idle, 'MiB')} | {_fmt(peak, 'MiB')} | {_fmt(after, 'MiB')} | {ratio} |")
    if r.errors:
        lines += ["", "errors seen: " + "; ".join(r.errors[:5])]
    lines += ["", f"warm latency of a normal request: {r.warm_latency_s:.2f} s; invariants (hung 0, lost 0): "
              f"{'ok' if r.ok else 'VIOLATED'}"]
    return "\n".join(lines)
