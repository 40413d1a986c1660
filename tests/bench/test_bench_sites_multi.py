"""N emulated sites from a topology (root + namespaces; skipped otherwise): every link reachable over its own veth,
a cap per link, one link's cap changed live, per-link counters, teardown (exit, failure, SIGTERM), the CLI.

Traffic goes only to addresses these tests assign inside namespaces they create; every transfer is a fixed
number of bytes with timeouts; every namespace is deleted, also on failure.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from bench_helpers import assert_sigterm_tears_down
from typer.testing import CliRunner

from prfaas.bench.netns import can_emulate, entered, namespace_exists, run_cmd
from prfaas.bench.sites_multi import MultiSites, MultiSitesSpec, load_multi_sites, many_sites
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology

_OK, _WHY = can_emulate()
pytestmark = [pytest.mark.network, pytest.mark.netns, pytest.mark.skipif(not _OK, reason=_WHY or "no netns")]
PORT = 9310
# 2 PrfaaS x 2 PD; caps at scale 1e-3: 40, 20, 16, 8 Mbit/s (distinct, so a swapped cap would show)
CAPS_GBPS = {("pa", "ra"): 40.0, ("pa", "rb"): 20.0, ("pb", "ra"): 16.0, ("pb", "rb"): 8.0}


def _topology(links: dict[tuple[str, str], float] = CAPS_GBPS) -> SiteTopology:
    return check_topology(SiteTopology(
        prfaas=[PrfaasSite(name="pa"), PrfaasSite(name="pb")],
        pd=[PdSite(name="ra", instances=4, prefill_instances=1), PdSite(name="rb", instances=4, prefill_instances=1)],
        links=[SiteLink(prfaas=p, pd=d, capacity_gbps=c, latency_s=0.01) for (p, d), c in links.items()]))


def _transfer_mbit_s(sites: MultiSites, prfaas: str, pd: str, nbytes: int) -> float:
    """Send `nbytes` from PrfaaS site `prfaas` to region `pd` (between their site addresses); Mbit/s received."""
    src, dst = sites.info.addr[prfaas], sites.info.addr[pd]
    with entered(sites.namespace(prfaas)):
        server = socket.create_server((src, PORT))
    server.settimeout(10)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"\x00" * nbytes)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with entered(sites.namespace(pd)):
            client = socket.create_connection((src, PORT), timeout=10, source_address=(dst, 0))
        received, start = 0, time.monotonic()
        with client:
            client.settimeout(20)
            while chunk := client.recv(1 << 16):
                received += len(chunk)
        elapsed = time.monotonic() - start
    finally:
        thread.join(10)
        server.close()
    assert received == nbytes
    return received * 8 / elapsed / 1e6


def _qdisc(sites: MultiSites, link_id: str) -> str:
    lk = sites.link(link_id)
    return run_cmd("tc", "-n", sites.namespace(lk.prfaas), "qdisc", "show", "dev", lk.prfaas_dev)


def test_every_link_is_capped_on_its_own_veth_and_changes_alone() -> None:
    with many_sites(_topology(), MultiSitesSpec(scale=1e-3, burst_kb=32)) as sites:
        assert sites.is_up() and len(sites.info.namespace) == 4 and len(set(sites.info.namespace.values())) == 4
        for (p, d), cap_gbps in CAPS_GBPS.items():
            link_id = f"{p}->{d}"
            assert f"rate {cap_gbps:g}Mbit" in _qdisc(sites, link_id)
            before = sites.tx_bytes_by_link()
            nbytes = int(cap_gbps * 1e6 / 8 * 0.25)  # ~0.25 s at the cap
            rate = _transfer_mbit_s(sites, p, d, nbytes)
            assert rate < cap_gbps * 1.2, (link_id, rate)
            after = sites.tx_bytes_by_link()
            assert after[link_id] - before[link_id] >= nbytes  # it crossed this link's veth ...
            others = {k: after[k] - before[k] for k in after if k != link_id}
            assert all(v < 100_000 for v in others.values()), others  # ... and no other link's
        sites.set_cap_mbit("pa->ra", 4)  # 10x down
        assert "rate 4Mbit" in _qdisc(sites, "pa->ra") and "rate 20Mbit" in _qdisc(sites, "pa->rb")
        assert sites.cap_mbit["pa->ra"] == 4 and sites.cap_mbit["pa->rb"] == 20
        slow = _transfer_mbit_s(sites, "pa", "ra", 150_000)
        assert slow < 4 * 1.5, slow
        names = list(sites.info.namespace.values())
    assert not any(namespace_exists(n) for n in names)


def test_a_pair_without_a_link_cannot_talk() -> None:
    links = {k: v for k, v in CAPS_GBPS.items() if k != ("pb", "ra")}
    with many_sites(_topology(links)) as sites:
        with entered(sites.namespace("ra")), pytest.raises(OSError):
            socket.create_connection((sites.info.addr["pb"], PORT), timeout=2)
        assert _transfer_mbit_s(sites, "pa", "ra", 10_000) > 0  # the linked pairs still can


def test_sites_are_deleted_when_the_body_fails() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), many_sites(_topology()) as sites:
        names += list(sites.info.namespace.values())
        assert all(namespace_exists(n) for n in names)
        raise RuntimeError("boom")
    assert names and not any(namespace_exists(n) for n in names)


def test_sigterm_tears_every_site_down() -> None:
    script = ("import time\n"
              "from prfaas.bench.sites_multi import many_sites\n"
              "from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology\n"
              "t = SiteTopology(prfaas=[PrfaasSite(name='x'), PrfaasSite(name='y')], pd=[PdSite(name='z')],\n"
              "                 links=[SiteLink(prfaas='x', pd='z'), SiteLink(prfaas='y', pd='z')])\n"
              "with many_sites(t) as s:\n"
              "    print(*s.info.namespace.values(), flush=True)\n"
              "    time.sleep(60)\n")
    assert_sigterm_tears_down(script, 3)



def test_cli_sites_up_with_a_topology_then_down(tmp_path: Path) -> None:
    from prfaas.cli import build_app

    topo = Path(__file__).resolve().parents[2] / "examples" / "topologies" / "two-by-two.toml"
    state = tmp_path / "sites.json"
    runner = CliRunner()
    up = runner.invoke(build_app(["bench"]), ["bench", "sites", "up", "--topology", str(topo), "--scale", "0.0005",
                                              "--state", str(state)])
    sites = load_multi_sites(state) if state.exists() else None
    try:
        assert up.exit_code == 0, up.output
        assert sites is not None and sites.is_up() and len(sites.info.links) == 4
        assert sites.cap_mbit["prefill-eu->us"] == pytest.approx(5.0)  # 10 Gbps x 1000 x 0.0005
        assert "prefill-us->eu" in up.output and "12.5 Mbit/s" in up.output
        down = runner.invoke(build_app(["bench"]), ["bench", "sites", "down", "--state", str(state)])
        assert down.exit_code == 0, down.output
        assert not sites.any_up() and not state.exists()
    finally:
        if sites is not None:
            sites.down()


def test_bad_topology_file_is_a_clear_error(tmp_path: Path) -> None:
    from prfaas.cli import build_app

    bad = tmp_path / "bad.toml"
    bad.write_text('[[topology.pd]]\nname = "r"\n[[topology.links]]\nprfaas = "nowhere"\npd = "r"\n')
    result = CliRunner().invoke(build_app(["bench"]), ["bench", "sites", "up", "--topology", str(bad), "--state",
                                                        str(tmp_path / "s.json")])
    assert result.exit_code != 0 and not (tmp_path / "s.json").exists()
    assert "nowhere" in (result.output + str(result.exception))
