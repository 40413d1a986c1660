"""The two emulated sites (root + namespaces; skipped otherwise): build, cap, change, teardown, CLI, and a
live deployment across them with the link-drop fault.

Traffic goes only to addresses these tests assign inside namespaces they create (STACK.md §8.3); every
transfer is a fixed number of bytes with timeouts; every namespace is deleted, also on failure.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_helpers import OPTS, THRESHOLD_TOKENS, assert_nothing_lost, assert_sigterm_tears_down, fault_load, small_spec
from typer.testing import CliRunner

from prfaas.bench.chaos import Fault, run_fault
from prfaas.bench.netns import can_emulate, entered, namespace_exists, run_cmd
from prfaas.bench.records import RequestStatus, read_link_samples, read_records
from prfaas.bench.regime import tiny_config
from prfaas.bench.run import Deployment, bench_deployment
from prfaas.bench.sites import Sites, SitesSpec, load_sites, two_sites
from prfaas.bench.workload import build_requests

_OK, _WHY = can_emulate()
pytestmark = [pytest.mark.network, pytest.mark.netns, pytest.mark.skipif(not _OK, reason=_WHY or "no netns")]
PORT = 9300


def _transfer_mbit_s(sites: Sites, nbytes: int) -> float:
    """Send `nbytes` prfaas -> local across the veth; the receiving rate in Mbit/s."""
    info = sites.info
    with entered(info.prfaas_ns):
        server = socket.create_server((info.prfaas_addr, PORT))
    server.settimeout(10)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"\x00" * nbytes)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with entered(info.local_ns):
            client = socket.create_connection((info.prfaas_addr, PORT), timeout=10)
        received, start = 0, time.monotonic()
        with client:
            while chunk := client.recv(1 << 16):
                received += len(chunk)
        elapsed = time.monotonic() - start
    finally:
        thread.join(10)
        server.close()
    assert received == nbytes
    return received * 8 / elapsed / 1e6


def _qdisc(sites: Sites) -> str:
    return run_cmd("tc", "-n", sites.info.prfaas_ns, "qdisc", "show", "dev", sites.info.prfaas_dev)


def test_cap_is_enforced_changed_and_counted() -> None:
    with two_sites(SitesSpec(cap_mbit=40, burst_kb=32)) as sites:
        assert sites.is_up()
        # Only upper bounds on throughput (lower bounds on time): the cap holds. That the cap changed is read from
        # the qdisc itself; no assertion needs the transfer to be fast (a busy machine may be slow).
        assert "rate 40Mbit" in _qdisc(sites)
        fast = _transfer_mbit_s(sites, 1_500_000)
        assert fast < 48, fast
        sent = sites.tx_bytes()
        assert sent >= 1_500_000
        sites.set_cap_mbit(4)
        assert "rate 4Mbit" in _qdisc(sites)
        slow = _transfer_mbit_s(sites, 400_000)
        assert slow < 6, (fast, slow)
        assert sites.cap_mbit == 4
    assert not sites.is_up()


def test_sites_are_deleted_when_the_body_fails() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), two_sites(SitesSpec(cap_mbit=None)) as sites:
        names += [sites.info.prfaas_ns, sites.info.local_ns]
        assert all(namespace_exists(n) for n in names)
        raise RuntimeError("boom")
    assert names and not any(namespace_exists(n) for n in names)


def test_cli_sites_up_then_down(tmp_path: Path) -> None:
    from prfaas.cli import build_app

    state = tmp_path / "sites.json"
    runner = CliRunner()
    up = runner.invoke(build_app(["bench"]), ["bench", "sites", "up", "--cap-mbit", "20", "--state", str(state)])
    sites = load_sites(state) if state.exists() else None
    try:
        assert up.exit_code == 0, up.output
        assert sites is not None and sites.is_up() and "20" in up.output
        again = runner.invoke(build_app(["bench"]), ["bench", "sites", "up", "--state", str(state)])
        assert again.exit_code != 0  # one set of sites per state file
        down = runner.invoke(build_app(["bench"]), ["bench", "sites", "down", "--state", str(state)])
        assert down.exit_code == 0, down.output
        assert not sites.is_up() and not state.exists()
    finally:
        if sites is not None:
            sites.down()


@pytest.fixture(scope="module")
def site_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("bench-sites")
    with bench_deployment(tiny_config(), root / "run", SitesSpec(cap_mbit=50), ready_timeout_s=150) as dep:
        yield dep
    assert dep.sites is not None and not dep.sites.is_up()


@pytest.mark.slow
def test_live_run_across_the_sites(site_deployment: Deployment, tmp_path: Path) -> None:
    from prfaas.bench.run import write_run
    from prfaas.bench.summary import Slo

    dep = site_deployment
    assert dep.sites is not None
    cfg = dep.launcher.cfg
    assert cfg.node("prfaas-0").host == dep.sites.info.prfaas_addr and cfg.gateway.host == dep.sites.info.local_addr
    before = dep.sites.tx_bytes()
    requests = build_requests(small_spec(seed=3))
    result = dep.measure(requests, OPTS)
    summary = write_run(result, tmp_path, "sites", Slo())
    assert summary.completed == len(requests) and summary.lost == 0
    assert summary.requests_by_route.get("prfaas", 0) > 0
    assert dep.sites.tx_bytes() - before >= summary.egress_bytes  # the KV really crossed the capped veth
    samples = read_link_samples(tmp_path / "link.jsonl")
    assert samples and all(s.capacity_gbps == pytest.approx(0.05) for s in samples)
    assert any((s.wire_gbps or 0) > 0 for s in samples)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["prfaas", "prfaas-bandwidth-aware"])
def test_link_drop_loses_nothing_and_routing_recovers(site_deployment: Deployment, tmp_path: Path,
                                                      policy: str) -> None:
    dep = site_deployment
    dep.set_policy(policy, THRESHOLD_TOKENS)
    during, probes = fault_load(seed=4)
    report = run_fault(dep, Fault.LINK_DROP, during, probes, OPTS, tmp_path, fault_at_s=0.3, recover_after_s=2.0)
    assert_nothing_lost(report)
    assert report.failed == 0  # a slower link delays requests, it must not fail them
    assert dep.sites is not None and dep.sites.cap_mbit == 50
    samples = read_link_samples(tmp_path / "link-drop" / "during" / "link.jsonl")
    caps = {round((s.capacity_gbps or 0) * 1000) for s in samples}
    assert caps == {50, 5}, caps  # the cap line shows the 10x drop and the recovery
    assert report.routes_during.get("prfaas", 0) > 0  # offloads kept going over the slower link
    slowest = max(s.ttft_s or 0.0 for s in read_records(tmp_path / "link-drop" / "during" / "records.jsonl")
                  if s.status is RequestStatus.COMPLETED)
    assert slowest > 0.0


def test_sigterm_tears_the_sites_down() -> None:
    script = ("import sys, time\n"
              "from prfaas.bench.sites import SitesSpec, two_sites\n"
              "with two_sites(SitesSpec(cap_mbit=10)) as s:\n"
              "    print(s.info.prfaas_ns, s.info.local_ns, flush=True)\n"
              "    time.sleep(60)\n")
    assert_sigterm_tears_down(script, 2)
