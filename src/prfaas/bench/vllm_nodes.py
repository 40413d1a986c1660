"""The benchmarks on vLLM (`bench compare|chaos --engine vllm`): one vLLM server per node, started once per command.

    with vllm_backends(placed_cfg, sites, run_dir / "vllm") as backends:
        backends.cfg            # the same deployment with engine = "vllm" nodes pointing at the servers
        backends.sessions       # the servers' session ids (the launcher's namespace sweep spares them)

Each node's server runs where the node runs: in the node's site (`ip netns exec <site>`, listening on the site
address, its prfaas connector receiving state on `kv_host` = that address, so PrfaaS -> PD state crosses the
tbf-capped veth), or all on loopback without sites. The gateway and the adapter nodes (`serve.vllm_node`) are the
launcher's processes as for our engine; the servers outlive them (chaos restarts adapters, never servers) and are
stopped when the block exits. The checkpoint is `prfaas up --engine vllm`'s default (tiny Qwen3-Next with our
tokenizer, built once).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.bench.netns import entered
from prfaas.bench.sites import Sites
from prfaas.bench.sites_multi import MultiSites
from prfaas.core.lifecycle import ClusterKind
from prfaas.integrations.vllm.harness import VllmServers
from prfaas.integrations.vllm.launch import VllmServerSpec
from prfaas.serve.config import DeployConfig, ModelSection, NodeSection
from prfaas.transport.ports import free_ports

VLLM_PORT_BASE = 8100  # on the sites (fresh namespaces: fixed ports); vLLM's OpenAI server of node i
TELEMETRY_PORT_BASE = 9300
EVENTS_PORT_BASE = 9400
MAX_MODEL_LEN = 4096  # the workload's context is capped to this (`vllm_workload_context`)
READY_TIMEOUT_S = 1800.0
MIN_HEARTBEAT_TIMEOUT_S = 5.0  # an adapter's heartbeat waits on vLLM's /metrics, slow on a busy small CPU


@dataclass(slots=True)
class VllmBackends:
    cfg: DeployConfig
    servers: VllmServers
    sessions: set[int]


def _namespace_of(node: NodeSection, sites: Sites | MultiSites | None) -> str | None:
    """The network namespace a node's server runs in: its cluster's (many sites), its side's (two sites), or
    none (loopback)."""
    if sites is None:
        return None
    if isinstance(sites, MultiSites):
        return sites.namespace(node.site or "")
    info = sites.info
    return info.prfaas_ns if node.cluster is ClusterKind.PRFAAS else info.local_ns


def _write_secret(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "vllm-kv.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


def vllm_config(cfg: DeployConfig, checkpoint: str, specs: Sequence[VllmServerSpec]) -> DeployConfig:
    """`cfg` (already placed) with each node an engine = "vllm" adapter of its server; the model is the
    checkpoint (the gateway needs only its tokenizer), served as the config's served name. Each node's
    `state_bytes_model` is the checkpoint, so the policy's link budgets and the gateway log's transfer bytes (and
    so the simulator's measured profile) see the state vLLM ships."""
    nodes = []
    for node, spec in zip(cfg.nodes, specs, strict=True):
        host = spec.host
        nodes.append(msgspec.structs.replace(
            node, engine="vllm", vllm_url=f"http://{host}:{spec.port}",
            kv_port=spec.kv_port, kv_host=spec.kv_host,
            telemetry_url=f"http://127.0.0.1:{spec.telemetry_port}",
            kv_events_endpoint=f"tcp://{host}:{spec.kv_events_port}",
            state_bytes_model=checkpoint))  # S_kv(l) registered, S_kv(prompt) reported as transfer bytes
    model = ModelSection(name=checkpoint, served_name=cfg.model.served_name, max_batch_size=cfg.model.max_batch_size)
    gateway = cfg.gateway
    if gateway.heartbeat_timeout_s < MIN_HEARTBEAT_TIMEOUT_S:
        gateway = msgspec.structs.replace(gateway, heartbeat_timeout_s=MIN_HEARTBEAT_TIMEOUT_S)
    return msgspec.structs.replace(cfg, nodes=nodes, model=model, gateway=gateway)


@contextlib.contextmanager
def vllm_backends(cfg: DeployConfig, sites: Sites | MultiSites | None, run_dir: Path,
                  log: Callable[[str], None] = print, ready_timeout_s: float = READY_TIMEOUT_S,
                  ) -> Iterator[VllmBackends]:
    """Start one vLLM server per node of `cfg` (placed: hosts are the sites' addresses, or loopback; `sites`: the
    two sites of `bench run|compare|chaos` or the many of `bench sites`), wait until all answer, yield the vLLM
    config; stop every server on exit (any exit)."""
    from prfaas.commands.up_vllm import default_checkpoint
    from prfaas.integrations.vllm import venv as vllm_venv

    venv = vllm_venv.require()
    checkpoint = default_checkpoint(venv, log)
    secret = _write_secret(run_dir / "secrets")
    n = len(cfg.nodes)
    loopback = free_ports("127.0.0.1", 4 * n) if sites is None else []
    specs = []
    for i, node in enumerate(cfg.nodes):
        site = _namespace_of(node, sites)
        if site is None:
            port, kv_port, tport, eport = loopback[4 * i:4 * i + 4]
        else:  # fresh namespaces: fixed ports; kv_port is the placed one (the adapter itself does not listen on it)
            port, kv_port = VLLM_PORT_BASE + i, node.kv_port
            tport, eport = TELEMETRY_PORT_BASE + i, EVENTS_PORT_BASE + i
        host = node.host if site is not None else "127.0.0.1"
        specs.append(VllmServerSpec(model=str(checkpoint), port=port, kv_port=kv_port, telemetry_port=tport,
                                    kv_events_port=eport, secret_file=secret, node_name=node.name, host=host,
                                    kv_host=host, max_model_len=MAX_MODEL_LEN, kv_cache_gib=1.0,
                                    exec_prefix=("ip", "netns", "exec", site) if site else ()))
    ns_of = {spec.port: _namespace_of(node, sites) for spec, node in zip(specs, cfg.nodes, strict=True)}

    def inside(spec: VllmServerSpec) -> contextlib.AbstractContextManager[None]:
        ns = ns_of[spec.port]
        return entered(ns) if ns is not None else contextlib.nullcontext()

    servers = VllmServers(venv, run_dir, specs, inside=inside)
    try:
        servers.__enter__()
        log(f"starting {n} vLLM servers once for the whole command (logs in {run_dir}; minutes on a small CPU)")
        waited_s = servers.wait_ready(timeout_s=ready_timeout_s)
        log(f"vLLM servers ready in {waited_s:.0f} s")
        sessions = {proc.pid for proc in servers.procs.values()}  # start_new_session: pid == session id
        yield VllmBackends(vllm_config(cfg, str(checkpoint), specs), servers, sessions)
    finally:
        servers.stop_all()

