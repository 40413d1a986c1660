"""One live benchmark run: deploy (optionally on two emulated sites), drive a workload, record, summarise, plot.

    with bench_deployment(cfg, run_dir, SitesSpec(cap_mbit=80)) as dep:     # sites + processes, always torn down
        result = dep.measure(requests, LoadOptions(...))                    # records + link samples
        write_run(result, run_dir / "lognormal", "prfaas", Slo(ttft_s=10))  # records.jsonl, link.jsonl,
                                                                            # summary.json, run.png
`Deployment.measure` runs the load generator and the link monitor in one event loop on a thread placed in
the local site, then joins each record with the gateway's request log (`/admin/requests`: route, reason, KV
bytes) by the gateway's request id (checked against the prompt length).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from prfaas.bench.deploy import BenchLauncher, CorruptPlan, place_on_sites
from prfaas.bench.linkmon import LinkMonitor
from prfaas.bench.loadgen import LoadOptions, ProgressFn, drive
from prfaas.bench.plots import plot_run
from prfaas.bench.records import LinkSample, RequestRecord, RequestStatus, with_log_rows, write_jsonl
from prfaas.bench.sites import Sites, SitesSpec, sigterm_as_exit, two_sites
from prfaas.bench.summary import BenchSummary, Slo, format_summary, summarize
from prfaas.bench.workload import FIRST_TOKEN_ID, BenchRequest
from prfaas.core.lifecycle import Role
from prfaas.serve.config import DeployConfig

SideTask = Callable[[float], Coroutine[Any, Any, None]]  # gets the run's t0 (monotonic); runs beside the load
LOG_WAIT_S = 30.0  # how long the end of a run waits for an unreachable gateway (restarted by a fault) to answer
SAMPLE_AFTER_SIDE_TIMEOUT_S = 10.0  # after a side task (a fault injector) ends, wait this long at most for the link
# monitor to sample the state it left (the cap line must show a recovery)


@dataclass(frozen=True, slots=True)
class RunResult:
    records: list[RequestRecord]
    samples: list[LinkSample]
    duration_s: float
    gateway_log: list[dict[str, Any]]  # the gateway's /admin/requests rows of this run


def _join(records: Sequence[RequestRecord], log: Sequence[dict[str, Any]]) -> list[RequestRecord]:
    out = []
    for r, row in with_log_rows(records, log):
        if row is None or row.get("prompt_tokens") != r.prompt_tokens:
            out.append(r)
            continue
        out.append(msgspec.structs.replace(r, route=row.get("route"), reason=row.get("reason"),
                                           transfer_bytes=int(row.get("transfer_bytes") or 0)))
    return out


async def _get_json_when_up(session: aiohttp.ClientSession, url: str, wait_s: float,
                            headers: Mapping[str, str] | None = None) -> Any:
    """`_get_json`, retried while the gateway is unreachable (a run that restarted it), for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while (got := await _get_json(session, url, headers)) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return got


async def _get_json(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None) -> Any:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10), headers=headers) as resp:
            return await resp.json() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def measure_async(url: str, requests: Sequence[BenchRequest], opts: LoadOptions, *,
                        cap_gbps: Callable[[], float | None] | None = None,
                        wire_bytes: Callable[[], int] | None = None, progress: ProgressFn | None = None,
                        side: SideTask | None = None, admin_headers: Mapping[str, str] | None = None) -> RunResult:
    """`admin_headers`: the gateway's admin token (the request log and link readings are /admin/*)."""
    async with aiohttp.ClientSession() as session:
        before = await _get_json(session, f"{url}/admin/requests", admin_headers) or []
        since = max((int(r["id"]) for r in before), default=0)
        t0 = time.monotonic()
        monitor = LinkMonitor(url, t0, cap_gbps=cap_gbps, wire_bytes=wire_bytes, headers=admin_headers)
        stop = asyncio.Event()
        watcher = asyncio.create_task(monitor.run(session, stop))
        extra = asyncio.create_task(side(t0)) if side is not None else None
        try:
            records = await drive(url, requests, opts, progress)
            if extra is not None:
                await extra
                await monitor.wait_for_sample_after(time.monotonic(), timeout_s=SAMPLE_AFTER_SIDE_TIMEOUT_S)
        finally:
            stop.set()
            await watcher
            if extra is not None and not extra.done():
                extra.cancel()
        duration_s = time.monotonic() - t0
        log = await _get_json_when_up(session, f"{url}/admin/requests?since={since}", LOG_WAIT_S,
                                      admin_headers) or []
    return RunResult(_join(records, log), monitor.samples, duration_s, list(log))


class Deployment:
    """A started deployment (and its sites, if any); everything below runs with the client in the local site."""

    def __init__(self, launcher: BenchLauncher, sites: Sites | None) -> None:
        self.launcher = launcher
        self.sites = sites

    @property
    def url(self) -> str:
        return self.launcher.url

    def cap_gbps(self) -> float | None:
        if self.sites is not None and self.sites.cap_mbit is not None:
            return self.sites.cap_mbit / 1000.0
        return self.launcher.cfg.egress_link().capacity_gbps

    def measure(self, requests: Sequence[BenchRequest], opts: LoadOptions, progress: ProgressFn | None = None,
                side: SideTask | None = None) -> RunResult:
        wire = self.sites.tx_bytes if self.sites is not None else None
        with self.launcher.client():
            return asyncio.run(measure_async(self.url, requests, opts, cap_gbps=self.cap_gbps, wire_bytes=wire,
                                             progress=progress, side=side,
                                             admin_headers=self.launcher.admin_headers()))

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (no body) or POST an admin endpoint of the gateway; returns the decoded JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data,
                                     headers={"content-type": "application/json", **self.launcher.admin_headers()})
        with self.launcher.client():
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None

    def warm_up(self, num_tokens: int = 600) -> None:
        """One request forced through PrfaaS and one kept local, so the KV connections exist before anything
        is measured (a sender opens its pool on its first transfer; until a heartbeat shows it connected, the
        link reads as down and the router would fall back to PRFAAS_DOWN_LOCAL)."""
        prompt = tuple(range(FIRST_TOKEN_ID, FIRST_TOKEN_ID + num_tokens))
        roles = {n.role for n in self.launcher.cfg.nodes}
        routes = [r for r, role in (("prfaas", Role.PRFAAS_PREFILL), ("local", Role.PD_PREFILL)) if role in roles]
        for route in routes:  # a topology without PrfaaS nodes (homogeneous) or PD-P nodes (naive) skips one
            opts = LoadOptions(max_concurrency=1, request_timeout_s=120.0, model=self.launcher.cfg.model.served_name,
                               headers=(("x-prfaas-route", route),))
            result = self.measure([BenchRequest(0, 0.0, prompt, 2)], opts)
            if result.records[0].status is not RequestStatus.COMPLETED:
                raise RuntimeError(f"warm-up request ({route}) did not complete: {result.records[0].error}")
        time.sleep(2 * self.launcher.cfg.gateway.heartbeat_interval_s)

    def set_policy(self, name: str, threshold_tokens: int | None = None) -> None:
        body: dict[str, Any] = {"name": name}
        if threshold_tokens is not None:
            body["threshold_tokens"] = threshold_tokens
        self.admin("/admin/policy", body)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        with self.launcher.client():
            self.launcher.wait_ready(timeout_s)

    def wait_restarted(self, name: str, timeout_s: float = 120.0) -> None:
        """After `launcher.restart(name)`: the process answers /health, has had time to register (nodes), and
        the deployment is ready again (a stale registration of the old process cannot pass for the new one)."""
        if name == "gateway":
            url = self.url
        else:
            node = self.launcher.cfg.node(name)
            url = f"http://{node.host}:{node.port}"
        deadline = time.monotonic() + timeout_s
        with self.launcher.client():
            while not _answers(f"{url}/health"):
                if time.monotonic() > deadline or not self.launcher.is_alive(name):
                    raise RuntimeError(f"{name} did not come back within {timeout_s:g}s (see its log)")
                time.sleep(0.2)
        if name != "gateway":
            time.sleep(2 * self.launcher.cfg.gateway.heartbeat_interval_s)
        self.wait_ready(max(1.0, deadline - time.monotonic()))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return True  # it is up (a gateway still waiting for nodes answers 503)
    except OSError:
        return False


@contextlib.contextmanager
def bench_deployment(cfg: DeployConfig, run_dir: Path, sites_spec: SitesSpec | None = None, *,
                     fault_nodes: Mapping[str, CorruptPlan] | None = None,
                     ready_timeout_s: float = 180.0, engine: str = "prfaas",
                     log: Callable[[str], None] = print) -> Iterator[Deployment]:
    """Sites (if asked), then the processes; waits until ready; tears both down on any exit (SIGTERM included).
    engine "vllm": one vLLM server per node is started first, in the node's site (`bench.vllm_nodes`), and the
    deployment's nodes are adapters of them; on exit the gateway and adapters stop, then the servers, then the
    sites."""
    if engine not in ("prfaas", "vllm"):
        raise ValueError(f"engine must be prfaas or vllm, got {engine!r}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_exit())
        sites = stack.enter_context(two_sites(sites_spec)) if sites_spec is not None else None
        placed = place_on_sites(cfg, sites.info) if sites is not None else cfg
        spare: set[int] = set()
        if engine == "vllm":
            from prfaas.bench.vllm_nodes import vllm_backends

            backends = stack.enter_context(vllm_backends(placed, sites, run_dir / "vllm", log))
            placed, spare = backends.cfg, backends.sessions
        launcher = BenchLauncher(placed, run_dir, sites=sites, fault_nodes=dict(fault_nodes or {}),
                                 spare_sessions=spare)
        stack.callback(launcher.stop)
        launcher.start()
        deployment = Deployment(launcher, sites)
        deployment.wait_ready(ready_timeout_s)
        deployment.warm_up()
        yield deployment


def write_run(result: RunResult, out_dir: Path, title: str, slo: Slo, *, plot: bool = True) -> BenchSummary:
    """records.jsonl, link.jsonl, summary.json (and run.png) under out_dir; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "records.jsonl", result.records)
    write_jsonl(out_dir / "link.jsonl", result.samples)
    summary = summarize(result.records, result.samples, result.duration_s, slo)
    (out_dir / "summary.json").write_bytes(msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n")
    (out_dir / "summary.txt").write_text(format_summary(summary, title) + "\n", encoding="utf-8")
    if plot:
        plot_run(result.records, result.samples, out_dir / "run.png", title)
    return summary
