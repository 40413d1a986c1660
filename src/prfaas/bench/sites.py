"""Two emulated datacenters on one machine: a "prfaas" site and a "local" site (EMULATION, root only).

    with two_sites(SitesSpec(cap_mbit=80)) as sites:     # namespaces + veth + tbf; always torn down
        sites.info.prfaas_addr, sites.info.local_addr      # 10.214.N.1 (PrfaaS node), 10.214.N.2 (gateway, PD)
        sites.exec_prefix(sites.info.prfaas_ns)            # ["ip", "netns", "exec", ...] for a child process
        sites.set_cap_mbit(8)                              # `tc qdisc replace`: the link drops 10x
        sites.tx_bytes()                                   # bytes the cross-site qdisc has sent

Layout (STACK.md §8.2): two uniquely named namespaces joined by one veth pair. The PrfaaS -> local direction
(the KV stream) is capped with `tc tbf` on the prfaas end; the reverse direction (requests, acks) is capped
only if `reverse_cap_mbit` is set. This kernel has no netem: one-way delay and loss/corruption come from the
transport's sender shim (`transport.testing.LinkShim`), configured through the deployment, not from here.

Teardown deletes both namespaces after SIGKILLing any process still inside them (they can only be processes
the benchmark started there); it runs on normal exit, on exceptions, on SIGTERM (turned into SystemExit while
the context is open) and at interpreter exit. `sites_up` / `sites_down` are the persistent variant behind
`prfaas bench sites up|down`, with the handle saved as JSON.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

import msgspec

from prfaas.bench.netns import SiteError, delete_namespace, namespace_exists, run_cmd

InfoT = TypeVar("InfoT", bound=msgspec.Struct)

NAME_PREFIX = "prfaas_site"
SUBNET = "10.214"


@dataclass(frozen=True, slots=True)
class SitesSpec:
    cap_mbit: float | None = 80.0  # PrfaaS -> local (KV direction); None: uncapped
    reverse_cap_mbit: float | None = None  # local -> PrfaaS
    burst_kb: int = 64  # small enough that a capped transfer cannot hide inside the burst
    latency_ms: int = 50  # tbf queue bound (packets waiting longer are dropped)

    def __post_init__(self) -> None:
        for name in ("cap_mbit", "reverse_cap_mbit"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SiteError(f"{name} must be > 0, got {value}")


class SitesInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What was built (also the state file of `prfaas bench sites up`)."""

    tag: str
    prfaas_ns: str
    local_ns: str
    prfaas_dev: str
    local_dev: str
    prfaas_addr: str
    local_addr: str
    cap_mbit: float | None
    reverse_cap_mbit: float | None
    burst_kb: int
    latency_ms: int


def qdisc_sent_bytes(ns: str, dev: str) -> int:
    """Bytes a device's root qdisc has sent (resets when the qdisc is replaced)."""
    match = re.search(r"Sent (\d+) bytes", run_cmd("tc", "-s", "-n", ns, "qdisc", "show", "dev", dev))
    return int(match.group(1)) if match else 0


def tbf(ns: str, dev: str, rate_mbit: float, burst_kb: int, latency_ms: int, verb: str) -> None:
    run_cmd("tc", "-n", ns, "qdisc", verb, "dev", dev, "root", "tbf", "rate", f"{rate_mbit:g}mbit",
            "burst", f"{burst_kb}kb", "latency", f"{latency_ms}ms")


class Sites:
    """Handle on built sites: exec prefixes, the live cap, counters, teardown."""

    def __init__(self, info: SitesInfo) -> None:
        self.info = info
        self.cap_mbit = info.cap_mbit

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def set_cap_mbit(self, rate_mbit: float) -> None:
        """Change the PrfaaS -> local cap now (`tc qdisc replace`)."""
        if not rate_mbit > 0:
            raise SiteError(f"cap must be > 0 Mbit/s, got {rate_mbit}")
        info = self.info
        tbf(info.prfaas_ns, info.prfaas_dev, rate_mbit, info.burst_kb, info.latency_ms, "replace")
        self.cap_mbit = rate_mbit

    def tx_bytes(self) -> int:
        """Bytes the PrfaaS-side qdisc has sent toward the local site (resets when the qdisc is replaced)."""
        return qdisc_sent_bytes(self.info.prfaas_ns, self.info.prfaas_dev)

    def is_up(self) -> bool:
        return namespace_exists(self.info.prfaas_ns) and namespace_exists(self.info.local_ns)

    def down(self) -> None:
        for ns in (self.info.local_ns, self.info.prfaas_ns):
            delete_namespace(ns)


def _new_info(spec: SitesSpec) -> SitesInfo:
    tag = f"{os.getpid() % 100000:05d}{random.randrange(16**3):03x}"
    octet = random.randrange(1, 250)
    return SitesInfo(tag=tag, prfaas_ns=f"{NAME_PREFIX}_{tag}_prfaas", local_ns=f"{NAME_PREFIX}_{tag}_local",
                     prfaas_dev=f"pf{tag}", local_dev=f"lc{tag}", prfaas_addr=f"{SUBNET}.{octet}.1",
                     local_addr=f"{SUBNET}.{octet}.2", cap_mbit=spec.cap_mbit,
                     reverse_cap_mbit=spec.reverse_cap_mbit, burst_kb=spec.burst_kb, latency_ms=spec.latency_ms)


def _build(info: SitesInfo) -> None:
    run_cmd("ip", "netns", "add", info.prfaas_ns)
    run_cmd("ip", "netns", "add", info.local_ns)
    run_cmd("ip", "link", "add", info.prfaas_dev, "type", "veth", "peer", "name", info.local_dev)
    run_cmd("ip", "link", "set", info.prfaas_dev, "netns", info.prfaas_ns)
    run_cmd("ip", "link", "set", info.local_dev, "netns", info.local_ns)
    for ns, dev, addr in ((info.prfaas_ns, info.prfaas_dev, info.prfaas_addr),
                          (info.local_ns, info.local_dev, info.local_addr)):
        run_cmd("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        run_cmd("ip", "-n", ns, "link", "set", dev, "up")
        run_cmd("ip", "-n", ns, "link", "set", "lo", "up")
    if info.cap_mbit is not None:
        tbf(info.prfaas_ns, info.prfaas_dev, info.cap_mbit, info.burst_kb, info.latency_ms, "add")
    if info.reverse_cap_mbit is not None:
        tbf(info.local_ns, info.local_dev, info.reverse_cap_mbit, info.burst_kb, info.latency_ms, "add")


def sites_up(spec: SitesSpec) -> Sites:
    """Build the two sites; on any failure delete what was made and raise SiteError."""
    sites = Sites(_new_info(spec))
    try:
        _build(sites.info)
    except BaseException:
        sites.down()
        raise
    return sites


def save_state(info: msgspec.Struct, path: Path) -> Path:
    """Write the sites' state (`SitesInfo` or `MultiSitesInfo`) so `down` in another process can delete them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(info))
    return path


def load_state(path: Path, kind: type[InfoT], what: str) -> InfoT:
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except (OSError, msgspec.DecodeError) as exc:
        raise SiteError(f"cannot read {what} state {path}: {exc}") from None


def save_sites(sites: Sites, path: Path) -> Path:
    return save_state(sites.info, path)


def load_sites(path: Path) -> Sites:
    return Sites(load_state(path, SitesInfo, "sites"))


def raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While open (main thread only), SIGTERM raises SystemExit so `finally` blocks still run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def two_sites(spec: SitesSpec) -> Iterator[Sites]:
    """Build the sites for the body; always tear them down (exception, SIGTERM, interpreter exit)."""
    sites = sites_up(spec)
    atexit.register(sites.down)
    try:
        with sigterm_as_exit():
            yield sites
    finally:
        sites.down()
        atexit.unregister(sites.down)
