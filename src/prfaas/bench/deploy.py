"""The deployment under test: a `serve` config placed on the emulated sites, and a launcher that can restart.

    cfg = place_on_sites(base_cfg, sites.info)           # PrfaaS nodes -> prfaas site, gateway + PD -> local site
    with BenchLauncher(cfg, run_dir, sites=sites) as dep:
        with dep.client():                                # this thread can reach the gateway (local site)
            dep.wait_ready()
        dep.kill("prfaas-0"); dep.restart("prfaas-0")     # fault injection: SIGKILL, then the same command again

Without sites everything stays on loopback (ports resolved by `serve.config.resolve_ports`). On the sites the
namespaces are fresh, so ports are fixed (gateway 8000, node i: control 9000+i, KV 9100+i) and every process
is started under `ip netns exec <its site>`. `fault_nodes` maps a node name to the corruption it injects
(`fault_node.py`: the same node process with a sender shim; EMULATION). Children import the same `prfaas`
as this process (PYTHONPATH is set to it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

import prfaas
from prfaas.bench.netns import entered, pids_in
from prfaas.bench.sites import Sites, SitesInfo
from prfaas.core.lifecycle import ClusterKind
from prfaas.serve.config import DeployConfig
from prfaas.serve.launcher import Launcher

GATEWAY_PORT = 8000
CONTROL_PORT_BASE = 9000
KV_PORT_BASE = 9100
PACKAGE_ROOT = str(Path(prfaas.__file__).resolve().parents[1])


@dataclass(frozen=True, slots=True)
class CorruptPlan:
    """Which KV chunk sends a fault node corrupts: each listed chunk seq of every transfer on its first
    `corrupt_attempts` sends, plus any send with `probability` (EMULATION of loss: the receiver's checksum
    rejects the chunk and the sender retransmits it, as TCP would a lost segment)."""

    corrupt_seqs: tuple[int, ...] = (0,)
    corrupt_attempts: int = 1
    probability: float = 0.0


def place_on_sites(cfg: DeployConfig, info: SitesInfo, cap_gbps: float | None = None) -> DeployConfig:
    """PrfaaS nodes on the prfaas site, gateway and PD nodes on the local site, fixed ports; the egress link's
    capacity is the emulated cap (so the senders pace to it and report utilisation against it)."""
    nodes = []
    for i, node in enumerate(cfg.nodes):
        host = info.prfaas_addr if node.cluster is ClusterKind.PRFAAS else info.local_addr
        nodes.append(msgspec.structs.replace(node, host=host, port=CONTROL_PORT_BASE + i, kv_port=KV_PORT_BASE + i))
    gateway = msgspec.structs.replace(cfg.gateway, host=info.local_addr, port=GATEWAY_PORT)
    link = cfg.egress_link()
    capacity = cap_gbps if cap_gbps is not None else (info.cap_mbit / 1000.0 if info.cap_mbit else None)
    links = [msgspec.structs.replace(link, capacity_gbps=capacity)]
    links += [lk for lk in cfg.links if lk.id != link.id]
    return msgspec.structs.replace(cfg, nodes=nodes, gateway=gateway, links=links)


def with_link(cfg: DeployConfig, capacity_gbps: float | None, one_way_delay_s: float = 0.0) -> DeployConfig:
    link = msgspec.structs.replace(cfg.egress_link(), capacity_gbps=capacity_gbps, one_way_delay_s=one_way_delay_s)
    return msgspec.structs.replace(cfg, links=[link, *[lk for lk in cfg.links if lk.id != link.id]])


class BenchLauncher(Launcher):
    """`serve.launcher.Launcher` with site placement, restarts and fault-injecting nodes."""

    def __init__(self, cfg: DeployConfig, run_dir: Path, *, sites: Sites | None = None,
                 fault_nodes: dict[str, CorruptPlan] | None = None, stop_timeout_s: float = 5.0,
                 spare_sessions: set[int] | None = None) -> None:
        """`spare_sessions`: session ids the namespace sweep at `stop` leaves alone (vLLM servers started once
        per command, stopped by their owner)."""
        env = {"PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        super().__init__(cfg, run_dir, stop_timeout_s=stop_timeout_s, env=env)
        self.sites = sites
        self.fault_nodes = dict(fault_nodes or {})
        self._args: dict[str, list[str]] = {}
        self.spare_sessions = set(spare_sessions or ())

    def _prefix(self, name: str) -> list[str]:
        if self.sites is None:
            return []
        info = self.sites.info
        if name != "gateway" and self.cfg.node(name).cluster is ClusterKind.PRFAAS:
            return self.sites.exec_prefix(info.prfaas_ns)
        return self.sites.exec_prefix(info.local_ns)

    def _command(self, name: str, args: list[str]) -> list[str]:
        assert self.config_path is not None
        plan = self.fault_nodes.get(name)
        if plan is None:
            module = ["-m", "prfaas.serve.main", *args]
        else:
            module = ["-m", "prfaas.bench.fault_node", "--name", name, "--corrupt-seqs",
                      ",".join(str(s) for s in plan.corrupt_seqs), "--corrupt-attempts", str(plan.corrupt_attempts),
                      "--corrupt-probability", str(plan.probability),
                      "--counts", str(self.run_dir / f"{name}.shim.json")]
        return [*self._prefix(name), sys.executable, *module, "--config", str(self.config_path)]

    def _spawn(self, name: str, args: list[str]) -> None:
        self._args[name] = args
        super()._spawn(name, args)

    def restart(self, name: str) -> None:
        """Start a process again with the same command (after `kill` or a crash); SIGKILLs it first if alive."""
        self.kill(name)
        self._spawn(name, self._args[name])

    def is_alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """Put this thread where the gateway is reachable (the local site), or nowhere special on loopback."""
        if self.sites is None:
            yield
            return
        with entered(self.sites.info.local_ns):
            yield

    def stop(self) -> None:
        super().stop()
        if self.sites is not None:  # `ip netns exec` may leave a grandchild behind a killed wrapper
            for ns in (self.sites.info.prfaas_ns, self.sites.info.local_ns):
                for pid in pids_in(ns):
                    with contextlib.suppress(ProcessLookupError):
                        if os.getsid(pid) not in self.spare_sessions:
                            os.kill(pid, signal.SIGKILL)

