"""N emulated sites on one machine, from a `SiteTopology`: one network namespace per cluster (EMULATION, root).

    with many_sites(topology, MultiSitesSpec(scale=1e-3)) as sites:   # always torn down
        sites.info.addr["prefill-us"]                      # the cluster's site address (10.216.0.N, on lo)
        sites.exec_prefix("us")                            # ["ip", "netns", "exec", <us's namespace>]
        sites.set_cap_mbit("prefill-us->us", 8)            # `tc qdisc replace`: that link only
        sites.tx_bytes("prefill-us->us")                   # bytes that link's qdisc has sent (PrfaaS -> PD)

Layout: every cluster (PrfaaS and PD) gets its own namespace and one *site address* on its loopback, which its
processes bind. Every link `i->j` of the topology gets its own veth pair (its own /24, 10.217.k.1 at the PrfaaS
end, .2 at the PD end) and a host route each way, so traffic between cluster i's and region j's site addresses
crosses exactly that veth (routes carry `src` = the own site address, so replies take the same veth). A pair
without a link has no route: it cannot talk. The KV direction (PrfaaS -> PD) of each link is capped with its
own `tc tbf` at `capacity_gbps x 1000 x scale` Mbit/s (the paper's 100 Gbps at scale 1e-3 is 100 Mbit/s).

Teardown deletes every namespace (their veths go with them) after SIGKILLing processes still inside them
(only ones this benchmark started there), on normal exit, exceptions, SIGTERM and interpreter exit.
`multi_sites_up` / `load_multi_sites` are the persistent variant behind `prfaas bench sites up --topology`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.bench.netns import SiteError, delete_namespace, namespace_exists, run_cmd
from prfaas.bench.sites import load_state, qdisc_sent_bytes, save_state, sigterm_as_exit, tbf
from prfaas.core.topology import SiteTopology

NAME_PREFIX = "prfaas_ms"
SITE_SUBNET = "10.216.0"  # site addresses, one per cluster (inside the namespaces only)
LINK_SUBNET = "10.217"  # one /24 per link: 10.217.k.1 (PrfaaS end), 10.217.k.2 (PD end)
MAX_CLUSTERS = 250
MAX_LINKS = 250


@dataclass(frozen=True, slots=True)
class MultiSitesSpec:
    scale: float = 1e-3  # link cap in Mbit/s = capacity_gbps * 1000 * scale
    burst_kb: int = 64
    latency_ms: int = 50  # tbf queue bound

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise SiteError(f"scale must be > 0, got {self.scale}")
        if self.burst_kb < 1 or self.latency_ms < 1:
            raise SiteError("burst_kb and latency_ms must be >= 1")


class LinkInfo(msgspec.Struct, frozen=True, kw_only=True):
    link_id: str
    prfaas: str
    pd: str
    prfaas_dev: str  # in the PrfaaS namespace; carries the tbf
    pd_dev: str
    prfaas_end: str  # 10.217.k.1
    pd_end: str  # 10.217.k.2
    cap_mbit: float | None  # None: the link's capacity is 0 (provisioned, down): no veth qdisc cap, no route


class MultiSitesInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What was built (also the state file of `prfaas bench sites up --topology`)."""

    tag: str
    namespace: dict[str, str]  # cluster name -> namespace
    addr: dict[str, str]  # cluster name -> site address
    kind: dict[str, str]  # cluster name -> "prfaas" | "pd"
    links: list[LinkInfo]
    scale: float
    burst_kb: int
    latency_ms: int


class MultiSites:
    """Handle on built sites: exec prefixes, per-link caps and counters, teardown."""

    def __init__(self, info: MultiSitesInfo) -> None:
        self.info = info
        self.cap_mbit: dict[str, float | None] = {lk.link_id: lk.cap_mbit for lk in info.links}

    def namespace(self, cluster: str) -> str:
        try:
            return self.info.namespace[cluster]
        except KeyError:
            raise SiteError(f"unknown cluster {cluster!r}; known: {', '.join(self.info.namespace)}") from None

    def exec_prefix(self, cluster: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(cluster)]

    def link(self, link_id: str) -> LinkInfo:
        for lk in self.info.links:
            if lk.link_id == link_id:
                return lk
        raise SiteError(f"unknown link {link_id!r}; known: {', '.join(lk.link_id for lk in self.info.links)}")

    def set_cap_mbit(self, link_id: str, rate_mbit: float) -> None:
        """Change one link's PrfaaS -> PD cap now (`tc qdisc replace`); the other links are untouched."""
        if not rate_mbit > 0:
            raise SiteError(f"cap must be > 0 Mbit/s, got {rate_mbit}")
        lk = self.link(link_id)
        tbf(self.info.namespace[lk.prfaas], lk.prfaas_dev, rate_mbit, self.info.burst_kb, self.info.latency_ms,
             "replace")
        self.cap_mbit[link_id] = rate_mbit

    def tx_bytes(self, link_id: str) -> int:
        """Bytes the link's PrfaaS-side qdisc has sent toward the PD side (resets when the qdisc is replaced)."""
        lk = self.link(link_id)
        return qdisc_sent_bytes(self.info.namespace[lk.prfaas], lk.prfaas_dev)

    def tx_bytes_by_link(self) -> dict[str, int]:
        return {lk.link_id: self.tx_bytes(lk.link_id) for lk in self.info.links}

    def is_up(self) -> bool:
        return all(namespace_exists(ns) for ns in self.info.namespace.values())

    def any_up(self) -> bool:
        return any(namespace_exists(ns) for ns in self.info.namespace.values())

    def down(self) -> None:
        for ns in self.info.namespace.values():
            delete_namespace(ns)


def _new_info(topology: SiteTopology, spec: MultiSitesSpec) -> MultiSitesInfo:
    clusters = [(s.name, "prfaas") for s in topology.prfaas] + [(s.name, "pd") for s in topology.pd]
    if len(clusters) > MAX_CLUSTERS or len(topology.links) > MAX_LINKS:
        raise SiteError(f"at most {MAX_CLUSTERS} clusters and {MAX_LINKS} links can be emulated")
    tag = f"{os.getpid() % 100000:05d}{random.randrange(16**3):03x}"
    namespace = {name: f"{NAME_PREFIX}_{tag}_{kind[0]}{i}" for i, (name, kind) in enumerate(clusters)}
    addr = {name: f"{SITE_SUBNET}.{i + 1}" for i, (name, _) in enumerate(clusters)}
    links = []
    for k, lk in enumerate(topology.links):
        cap = lk.capacity_gbps * 1000.0 * spec.scale if lk.capacity_gbps > 0 else None
        links.append(LinkInfo(link_id=lk.link_id, prfaas=lk.prfaas, pd=lk.pd, prfaas_dev=f"m{tag}a{k}",
                              pd_dev=f"m{tag}b{k}", prfaas_end=f"{LINK_SUBNET}.{k}.1", pd_end=f"{LINK_SUBNET}.{k}.2",
                              cap_mbit=cap))
    return MultiSitesInfo(tag=tag, namespace=namespace, addr=addr, kind=dict(clusters), links=links,
                          scale=spec.scale, burst_kb=spec.burst_kb, latency_ms=spec.latency_ms)


def _build(info: MultiSitesInfo) -> None:
    for name, ns in info.namespace.items():
        run_cmd("ip", "netns", "add", ns)
        run_cmd("ip", "-n", ns, "link", "set", "lo", "up")
        run_cmd("ip", "-n", ns, "addr", "add", f"{info.addr[name]}/32", "dev", "lo")
    for lk in info.links:
        ns_p, ns_d = info.namespace[lk.prfaas], info.namespace[lk.pd]
        run_cmd("ip", "link", "add", lk.prfaas_dev, "type", "veth", "peer", "name", lk.pd_dev)
        run_cmd("ip", "link", "set", lk.prfaas_dev, "netns", ns_p)
        run_cmd("ip", "link", "set", lk.pd_dev, "netns", ns_d)
        for ns, dev, end in ((ns_p, lk.prfaas_dev, lk.prfaas_end), (ns_d, lk.pd_dev, lk.pd_end)):
            run_cmd("ip", "-n", ns, "addr", "add", f"{end}/24", "dev", dev)
            run_cmd("ip", "-n", ns, "link", "set", dev, "up")
        if lk.cap_mbit is None:
            continue  # capacity 0: the link exists but carries nothing (no route)
        run_cmd("ip", "-n", ns_p, "route", "add", f"{info.addr[lk.pd]}/32", "via", lk.pd_end, "dev", lk.prfaas_dev,
                "src", info.addr[lk.prfaas])
        run_cmd("ip", "-n", ns_d, "route", "add", f"{info.addr[lk.prfaas]}/32", "via", lk.prfaas_end, "dev",
                lk.pd_dev, "src", info.addr[lk.pd])
        tbf(ns_p, lk.prfaas_dev, lk.cap_mbit, info.burst_kb, info.latency_ms, "add")


def multi_sites_up(topology: SiteTopology, spec: MultiSitesSpec | None = None) -> MultiSites:
    """Build every site and link; on any failure delete what was made and raise SiteError."""
    sites = MultiSites(_new_info(topology, spec or MultiSitesSpec()))
    try:
        _build(sites.info)
    except BaseException:
        sites.down()
        raise
    return sites


def save_multi_sites(sites: MultiSites, path: Path) -> Path:
    return save_state(sites.info, path)


def load_multi_sites(path: Path) -> MultiSites:
    return MultiSites(load_state(path, MultiSitesInfo, "multi-site"))


def is_multi_state(path: Path) -> bool:
    """Whether a saved state file holds many sites (`sites up --topology`) rather than the two-site pair."""
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(doc, dict) and "namespace" in doc and "links" in doc


@contextlib.contextmanager
def many_sites(topology: SiteTopology, spec: MultiSitesSpec | None = None) -> Iterator[MultiSites]:
    """Build the sites for the body; always tear them down (exception, SIGTERM, interpreter exit)."""
    sites = multi_sites_up(topology, spec)
    atexit.register(sites.down)
    try:
        with sigterm_as_exit():
            yield sites
    finally:
        sites.down()
        atexit.unregister(sites.down)


def describe(sites: MultiSites) -> str:
    info = sites.info
    lines = [f"{info.kind[name]} {name}: namespace {ns}, address {info.addr[name]}"
             for name, ns in info.namespace.items()]
    for lk in info.links:
        cap = "down (capacity 0)" if lk.cap_mbit is None else f"cap {lk.cap_mbit:g} Mbit/s {lk.prfaas}->{lk.pd}"
        lines.append(f"link {lk.link_id}: veth {lk.prfaas_dev}/{lk.pd_dev}, {cap}")
    return "\n".join(lines)
