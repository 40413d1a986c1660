"""`prfaas bench sites run --topology FILE`: a live run on one network namespace per cluster (EMULATION, root).

    with sites_deployment(topology, spec, run_dir) as dep:      # namespaces + links, then every process
        result = run_regions(dep, spec)                         # per-region Poisson load, fault mid-run
    report = region_reports(result, dep.topology)               # per region: TTFT, offload share per site, lost

Layout: `bench.sites_multi` builds a namespace per cluster and a capped veth per link (cap = capacity_gbps x 1000
x scale Mbit/s; default scale 1 / (k_t x k_b), the emulation's link scaling, docs/emulated.md). The emulated
engine (`serve.emulated_backend`) runs each node: PrfaaS nodes in their cluster's namespace, PD-P and PD-D nodes
and one gateway per region (`serve.sites`, `prfaas.serve.main gateway --region R`) in their region's namespace.
The gateways' topology carries the *emulated* link capacities, so the site selector's transfer estimates are in
the bytes and seconds the emulation really has. Each region's load generator runs on a thread placed in the
region's namespace, against its own gateway. Faults (mid-run, at `fault_at_s`): `site-lost` SIGKILLs every node
of one PrfaaS cluster; `link-degraded` divides one link's cap by 10; `burst` multiplies one region's arrival rate
by `burst_factor` over [fault_at_s, fault_at_s + burst_s) (extra requests in its workload, `bench.sites_burst`:
every other request, and every other region's, is the no-burst run's). Everything is torn down on any exit.
`engine = "vllm"` (`--engine vllm`): one vLLM server per node in the node's cluster namespace (`bench.vllm_nodes`,
tiny Qwen3-Next on this CPU, prompts scaled to its 4,096-token context), the nodes adapters of them; the PrfaaS
servers' connectors stream the state over the capped veths to the PD-D servers of any region.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from prfaas.bench.deploy import PACKAGE_ROOT
from prfaas.bench.loadgen import LoadOptions, drive
from prfaas.bench.netns import SiteError, entered, pids_in
from prfaas.bench.paper_config import EMULATED_RTT_BASELINE_MS
from prfaas.bench.records import RequestRecord
from prfaas.bench.sites_multi import MultiSites, MultiSitesSpec, many_sites
from prfaas.bench.workload import BenchRequest, WorkloadSpec, build_requests
from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.topology import SiteTopology
from prfaas.serve.config import (
    AdmissionSection,
    DeployConfig,
    EmulatedSection,
    EngineKind,
    GatewaySection,
    LinkSection,
    ModelSection,
    NodeSection,
    PolicySection,
    RegionGatewaySection,
    TlsMode,
    TransportSection,
    check_config,
    write_resolved,
)
from prfaas.serve.deploy_secrets import prepare_run_secrets
from prfaas.serve.launcher import Launcher, LaunchError
from prfaas.serve.sites import served_regions
from prfaas.serve.tls_setup import prepare_tls

GATEWAY_PORT = 8000
CONTROL_PORT_BASE = 9000
KV_PORT_BASE = 9200
PAPER_THRESHOLD_TOKENS = 19400
HEARTBEAT_S = 0.5  # the nodes' heartbeat interval (wall seconds): how stale a gateway's view of other regions' work is


ENGINES = ("emulated", "vllm")
VLLM_THRESHOLD_TOKENS = 256  # engine vllm: the tiny checkpoint's context is 4,096 tokens (bench.vllm_nodes)


class SitesFault(enum.Enum):
    SITE_LOST = "site-lost"
    LINK_DEGRADED = "link-degraded"
    BURST = "burst"  # one region's arrival rate x burst_factor for burst_s (its target: the region)


@dataclass(frozen=True, slots=True)
class SitesRunSpec:
    requests_per_region: int = 20
    load: float = 0.5  # region j offers traffic_rps_j x load paper req/s (x 1/k_t live)
    threshold_tokens: int = PAPER_THRESHOLD_TOKENS  # every region's offload threshold (paper tokens)
    length_factor: float = 1.0  # prompt lengths x this (the paper's log-normal)
    max_tokens: int = 8
    time_scale: float = 0.25  # k_t
    state_scale: float = 512.0  # k_b
    scale: float | None = None  # link Mbit/s per paper Gbps / 1000; None: 1 / (k_t x k_b)
    max_nodes_per_cluster: int = 2  # emulation size: at most this many nodes per PrfaaS cluster / PD role
    site_selector: str = "prfaas-sites"
    seed: int = 0
    fault: SitesFault | None = None
    fault_at_s: float = 3.0
    fault_target: str | None = None  # a PrfaaS cluster (site-lost), link id (link-degraded) or region (burst);
    #                                  None: the first
    burst_factor: float = 5.0  # burst: the region's arrival rate x this over the window
    burst_s: float = 5.0  # burst: the window's length (from fault_at_s)
    request_timeout_s: float = 300.0
    tls: bool = False
    prefill_preemption: bool = True  # the nodes' [policy] prefill_preemption (serve.worker); the prediction's too
    engine: str = "emulated"  # "emulated" (serve.emulated_backend) or "vllm": one vLLM server per node (adapters)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.requests_per_region < 1 or not self.load > 0 or self.max_nodes_per_cluster < 1:
            raise ConfigError("need requests_per_region >= 1, load > 0 and max_nodes_per_cluster >= 1")
        if not self.time_scale > 0 or self.state_scale < 1 or (self.scale is not None and not self.scale > 0):
            raise ConfigError("need time_scale > 0, state_scale >= 1 and scale > 0")
        if not self.burst_factor >= 1 or not self.burst_s > 0:
            raise ConfigError(f"need burst_factor >= 1 and burst_s > 0, got {self.burst_factor}, {self.burst_s}")

    @property
    def link_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / (self.time_scale * self.state_scale)


def emulated_topology(topology: SiteTopology, link_scale: float) -> SiteTopology:
    """The topology the gateways see: link capacities as emulated (paper Gbps x link_scale)."""
    links = [msgspec.structs.replace(lk, capacity_gbps=lk.capacity_gbps * link_scale) for lk in topology.links]
    return msgspec.structs.replace(topology, links=links)


def _nodes(topology: SiteTopology, sites: MultiSites, spec: SitesRunSpec) -> list[NodeSection]:
    nodes: list[NodeSection] = []

    def add(name: str, cluster: ClusterKind, role: Role, site: str) -> None:
        i = len(nodes)
        nodes.append(NodeSection(name=name, cluster=cluster, role=role, site=site, host=sites.info.addr[site],
                                 port=CONTROL_PORT_BASE + i, kv_port=KV_PORT_BASE + i))

    cap = spec.max_nodes_per_cluster
    for s in topology.prfaas:
        for k in range(max(1, min(s.instances, cap))):
            add(f"{s.name}-{k}", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL, s.name)
    for r in topology.pd:
        n_p = r.prefill_instances if r.prefill_instances is not None else max(1, r.instances // 2)
        for k in range(max(1, min(n_p, cap))):
            add(f"{r.name}-p{k}", ClusterKind.PD, Role.PD_PREFILL, r.name)
        for k in range(max(1, min(r.instances - n_p, cap))):
            add(f"{r.name}-d{k}", ClusterKind.PD, Role.PD_DECODE, r.name)
    return nodes


def sites_config(topology: SiteTopology, sites: MultiSites, spec: SitesRunSpec) -> DeployConfig:
    """The serve config of the run: emulated engine, one gateway per region in its namespace, nodes on sites."""
    model = ModelSection(name="emulated", served_name="default", engine=EngineKind.EMULATED, prefix_cache_bytes=0,
                         emulated=EmulatedSection(time_scale=spec.time_scale, state_scale=spec.state_scale))
    big = 10**9
    cfg = DeployConfig(
        model=model,
        gateway=GatewaySection(port=0, heartbeat_interval_s=HEARTBEAT_S, heartbeat_timeout_s=2.0, route_wait_s=60.0,
                               request_timeout_s=spec.request_timeout_s),
        admission=AdmissionSection(max_in_flight=100_000, node_max_queued_requests=100_000,
                                   node_max_queued_tokens=big, queue_deadline_s=86_400.0),
        transport=msgspec.structs.replace(TransportSection(), transfer_deadline_s=600.0,
                                          tls=TlsMode.ON if spec.tls else TlsMode.OFF),
        nodes=_nodes(topology, sites, spec),
        links=[LinkSection(capacity_gbps=None)],  # unpaced: each link's tc cap is the limit
        # the per-link loops' RTT baseline: the sites emulate no delay (bench.paper_config: why)
        policy=PolicySection(threshold_tokens=spec.threshold_tokens, rebalance=False,
                             site_selector=spec.site_selector, prefill_preemption=spec.prefill_preemption,
                             bandwidth={"rtt_baseline_ms": EMULATED_RTT_BASELINE_MS}),
        topology=emulated_topology(topology, spec.link_scale),
        gateways=[RegionGatewaySection(region=r.name, host=sites.info.addr[r.name], port=GATEWAY_PORT)
                  for r in topology.pd],
    )
    return cfg  # checked by the launcher once the run's secret files exist (beyond loopback they must)


class SitesLauncher(Launcher):
    """Every process in its cluster's namespace; one gateway per region (`gateway-<region>`)."""

    def __init__(self, cfg: DeployConfig, run_dir: Path, sites: MultiSites,
                 spare_sessions: set[int] | None = None) -> None:
        """`spare_sessions`: session ids the namespace sweep at `stop` leaves alone (vLLM servers, stopped by
        their own harness afterwards)."""
        env = {"PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        super().__init__(cfg, run_dir, env=env)
        self.sites = sites
        self.spare_sessions = set(spare_sessions or ())
        self.ns_of = {f"gateway-{r}": sites.namespace(r) for r in served_regions(cfg)}
        self.ns_of.update({n.name: sites.namespace(n.site or "") for n in cfg.nodes})

    def start(self) -> SitesLauncher:
        self.cfg = prepare_tls(self.cfg, self.run_dir)
        self.cfg, self.secrets = prepare_run_secrets(self.cfg, self.run_dir, self.api_keys)
        check_config(self.cfg, str(self.run_dir / "config.json"))
        self.config_path = write_resolved(self.cfg, self.run_dir)
        for region in served_regions(self.cfg):
            self._spawn(f"gateway-{region}", ["gateway", "--region", region])
        for node in self.cfg.nodes:
            self._spawn(node.name, ["node", "--name", node.name])
        return self

    def _command(self, name: str, args: list[str]) -> list[str]:
        assert self.config_path is not None
        return ["ip", "netns", "exec", self.ns_of[name], sys.executable, "-m", "prfaas.serve.main", *args,
                "--config", str(self.config_path)]

    def region_url(self, region: str) -> str:
        gw = next(g for g in self.cfg.gateways if g.region == region)
        return f"http://{gw.host}:{gw.port}"

    def get(self, region: str, path: str) -> Any:
        """GET a region gateway's endpoint from inside its namespace (admin headers on); None if unreachable."""
        req = urllib.request.Request(f"{self.region_url(region)}{path}", headers=self.admin_headers())
        with entered(self.sites.namespace(region)):
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return json.loads(resp.read())
            except (OSError, ValueError):
                return None

    def post(self, region: str, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to a region gateway's admin endpoint from inside its namespace; raises on failure."""
        req = urllib.request.Request(f"{self.region_url(region)}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json", **self.admin_headers()})
        with entered(self.sites.namespace(region)), urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        for region in served_regions(self.cfg):
            expected = {n.name for n in self.cfg.nodes if n.site == region or (n.cluster is ClusterKind.PRFAAS
                        and self.cfg.topology is not None and self.cfg.topology.link(n.site or "", region))}
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise LaunchError(f"{name} exited with status {proc.returncode}; see "
                                          f"{self.run_dir / (name + '.log')}")
                health = self.get(region, "/health") or {}
                up = {n for n, v in health.get("nodes", {}).items() if v.get("up")}
                if health.get("ready") and expected <= up:
                    break
                if time.monotonic() > deadline:
                    raise LaunchError(f"region {region} not ready after {timeout_s:.0f}s (up: {sorted(up)}); "
                                      f"logs in {self.run_dir}")
                time.sleep(0.3)

    def kill_site(self, site: str) -> list[str]:
        """SIGKILL every node of PrfaaS cluster `site` (the `ip netns exec` wrappers exec into Python)."""
        names = [n.name for n in self.cfg.nodes if n.site == site and n.cluster is ClusterKind.PRFAAS]
        for name in names:
            self.kill(name)
        return names

    def stop(self) -> None:
        super().stop()
        for ns in self.sites.info.namespace.values():  # what a killed wrapper may have left behind
            for pid in pids_in(ns):
                with contextlib.suppress(ProcessLookupError):
                    if os.getsid(pid) not in self.spare_sessions:
                        os.kill(pid, signal.SIGKILL)


@dataclass(slots=True)
class SitesDeployment:
    topology: SiteTopology
    sites: MultiSites
    launcher: SitesLauncher
    spec: SitesRunSpec


@contextlib.contextmanager
def sites_deployment(topology: SiteTopology, spec: SitesRunSpec, run_dir: Path,
                     ready_timeout_s: float = 180.0, log: Callable[[str], None] = print) -> Iterator[SitesDeployment]:
    """The namespaces and links, then every process; ready; all torn down on any exit (SIGTERM included).
    Engine vllm: one vLLM server per node first, in the node's cluster namespace (`bench.vllm_nodes`), and the
    nodes are adapters of them; on exit the gateways and adapters stop, then the servers, then the sites."""
    if not topology.pd or not topology.prfaas:
        raise ConfigError("bench sites run needs at least one PrfaaS cluster and one PD region")
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        sites = stack.enter_context(many_sites(topology, MultiSitesSpec(scale=spec.link_scale)))
        cfg, spare = sites_config(topology, sites, spec), set[int]()
        if spec.engine == "vllm":
            from prfaas.bench.vllm_nodes import vllm_backends

            backends = stack.enter_context(vllm_backends(cfg, sites, run_dir / "vllm", log))
            cfg, spare = backends.cfg, backends.sessions
        launcher = SitesLauncher(cfg, run_dir, sites, spare_sessions=spare)
        stack.callback(launcher.stop)
        launcher.start()
        launcher.wait_ready(ready_timeout_s)
        yield SitesDeployment(topology, sites, launcher, spec)


# --- the run -------------------------------------------------------------------------------------
@dataclass(slots=True)
class RegionRun:
    region: str
    records: list[RequestRecord]
    log: list[dict[str, Any]]  # the region gateway's /admin/requests rows of this run
    rate_rps: float


@dataclass(slots=True)
class SitesRunResult:
    regions: dict[str, RegionRun]
    fault: str | None = None
    fault_target: str | None = None
    fault_s: float | None = None
    fault_end_s: float | None = None  # burst: the window's end (the other faults last to the end of the run)
    site_of: dict[str, str] = field(default_factory=dict)  # node -> PrfaaS cluster
    tx_bytes: dict[str, int] = field(default_factory=dict)  # per link, at the end
    start_mono_s: float | None = None  # time.monotonic() when every region's load started (their send_s's 0)


def region_workload(topology: SiteTopology, spec: SitesRunSpec, index: int) -> tuple[list[BenchRequest], float]:
    """Region `index`'s requests and Poisson rate (req/s live); a burst's extra requests if it is the target."""
    weight = topology.traffic_weights()[index]
    rate = max(weight, 1e-6) * spec.load / spec.time_scale
    context = 131072 + spec.max_tokens + 2
    if spec.engine == "vllm":
        from prfaas.bench.vllm_nodes import MAX_MODEL_LEN

        context = MAX_MODEL_LEN
    wl = WorkloadSpec(num_requests=spec.requests_per_region, rate_rps=rate, threshold_tokens=spec.threshold_tokens,
                      length_factor=spec.length_factor, max_context_tokens=context,
                      max_tokens=spec.max_tokens, seed=spec.seed * 1000 + index)
    requests = build_requests(wl, salt=index + 1)
    if spec.fault is SitesFault.BURST and topology.pd_names[index] == (spec.fault_target or topology.pd_names[0]):
        from prfaas.bench.sites_burst import with_burst

        requests = with_burst(requests, wl, spec.fault_at_s, spec.burst_s, spec.burst_factor, salt=index + 1)
    return requests, rate


def _inject(dep: SitesDeployment, result: SitesRunResult, t0: float, done: threading.Event) -> None:
    spec = dep.spec
    if spec.fault is SitesFault.BURST:  # in the arrivals already: recorded at its scheduled time
        target = spec.fault_target or dep.topology.pd_names[0]
        if target not in dep.topology.pd_names:
            raise SiteError(f"--fault-target {target!r} is not a PD region")
        result.fault, result.fault_target = spec.fault.value, target
        result.fault_s, result.fault_end_s = spec.fault_at_s, spec.fault_at_s + spec.burst_s
        return
    if spec.fault is None or done.wait(max(0.0, t0 + spec.fault_at_s - time.monotonic())):
        return
    result.fault_s = time.monotonic() - t0
    if spec.fault is SitesFault.SITE_LOST:
        target = spec.fault_target or dep.topology.prfaas_names[0]
        if target not in dep.topology.prfaas_names:
            raise SiteError(f"--fault-target {target!r} is not a PrfaaS cluster")
        dep.launcher.kill_site(target)
    else:
        target = spec.fault_target or dep.topology.links[0].link_id
        cap = dep.sites.cap_mbit.get(target)
        if cap is None:
            raise SiteError(f"--fault-target {target!r} is not a link with a cap")
        dep.sites.set_cap_mbit(target, cap / 10.0)
        region = dep.sites.link(target).pd  # the link's monitoring tells its region's gateway (serve.sites)
        dep.launcher.post(region, "/admin/sites/links", {"link_id": target, "capacity_gbps": cap / 10.0 / 1000.0})
    result.fault, result.fault_target = spec.fault.value, target


def run_regions(dep: SitesDeployment,
                workloads: Sequence[tuple[list[BenchRequest], float]] | None = None) -> SitesRunResult:
    """Every region's load at once (a thread each, in its namespace), the fault mid-run, then the logs.
    `workloads`: per region (topology order) its requests and rate; None: `region_workload`'s."""
    opts = LoadOptions(max_concurrency=64, request_timeout_s=dep.spec.request_timeout_s)
    result = SitesRunResult(regions={}, site_of={n.name: n.site or "" for n in dep.launcher.cfg.nodes
                                                 if n.cluster is ClusterKind.PRFAAS})
    before = {r: max((int(x["id"]) for x in dep.launcher.get(r, "/admin/requests") or []), default=0)
              for r in dep.topology.pd_names}
    done = threading.Event()
    errors: list[BaseException] = []
    if workloads is None:  # before the clock starts
        workloads = [region_workload(dep.topology, dep.spec, i) for i in range(len(dep.topology.pd))]
    start = threading.Barrier(len(workloads) + 1)

    def region_load(index: int) -> None:
        name = dep.topology.pd_names[index]
        requests, rate = workloads[index]
        try:
            with entered(dep.sites.namespace(name)):
                start.wait(60)
                records = asyncio.run(drive(dep.launcher.region_url(name), requests, opts))
            result.regions[name] = RegionRun(name, records, [], rate)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=region_load, args=(i,), daemon=True) for i in range(len(workloads))]
    for t in threads:
        t.start()
    start.wait(60)  # every region's load and the fault clock start together
    t0 = result.start_mono_s = time.monotonic()
    injector = threading.Thread(target=_inject, args=(dep, result, t0, done), daemon=True)
    injector.start()
    for t in threads:
        t.join()
    done.set()
    injector.join(30)
    if errors:
        raise errors[0]
    result.regions = {n: result.regions[n] for n in dep.topology.pd_names if n in result.regions}  # topology order
    for name, run in result.regions.items():
        rows = dep.launcher.get(name, f"/admin/requests?since={before[name]}") or []
        run.log = [r for r in rows if int(r.get("id", 0)) > before[name]]
    result.tx_bytes = dep.sites.tx_bytes_by_link()
    return result
