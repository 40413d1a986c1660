"""The console's HTTP surface on a real gateway (stub-model deployment, no browser): the page is public and holds
no data, its feed and controls need the admin token, the feed streams the requests as they finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from serve_helpers import complete, get_json, post, ready_deployment

from prfaas.serve.launcher import Launcher
from prfaas.transport.ports import free_port

pytestmark = pytest.mark.network

STUB_TOML = """
[model]
name = "stub"

[gateway]
port = 0
heartbeat_interval_s = 0.2
route_wait_s = 30.0

[policy]
threshold_tokens = 256
rebalance = false
"""


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("console-http"), STUB_TOML) as launcher:
        yield launcher


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _events(dep: Launcher, headers: dict[str, str]) -> Iterator[tuple[str, Any]]:
    req = urllib.request.Request(f"{dep.url}/admin/console/stream", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = ""
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name, json.loads(line[6:])


def test_the_page_is_public_static_and_locked_down(dep: Launcher) -> None:
    status, headers, body = _get(f"{dep.url}/console")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and headers["cache-control"] == "no-store"
    assert b"/console/static/console.js" in body and b"admin token" in body
    status, headers, body = _get(f"{dep.url}/console/static/console.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"/admin/console/stream" in body
    for name in ("nope.js", "..%2Fgateway.py", "..%2F..%2Fconfig.py", "console_routes.py"):
        assert _get(f"{dep.url}/console/static/{name}")[0] == 404, name


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic eDp5"}])
def test_the_feed_and_controls_need_the_admin_token(dep: Launcher, headers: dict[str, str]) -> None:
    for path in ("/admin/console/stream", "/admin/console/snapshot"):
        status, _h, body = _get(f"{dep.url}{path}", headers)
        assert status == 401 and b"admin token" in body, (path, body)
    assert post(f"{dep.url}/admin/console/whatif", b"", headers)[0] == 401


def test_the_feed_streams_requests_with_route_and_reason(dep: Launcher) -> None:
    events = _events(dep, dep.admin_headers())
    name, hello = next(events)
    assert name == "hello" and hello["boot_id"] and hello["tick_s"] > 0
    offloaded = int(complete(dep.url, list(range(1, 1001)), max_tokens=4)["id"].removeprefix("cmpl-"))
    local = int(complete(dep.url, list(range(1, 51)), max_tokens=4)["id"].removeprefix("cmpl-"))
    seen: dict[int, dict[str, Any]] = {}
    frames = 0
    for name, data in events:
        if name != "tick":
            continue
        frames += 1
        assert data["boot_id"] == hello["boot_id"]
        seen.update({r["id"]: r for r in data["requests"]})
        # the link appears once the PrfaaS node's next heartbeat carries its sender's telemetry (after the transfer)
        if ({offloaded, local} <= set(seen) and "prfaas->pd" in data["links"]) or frames > 100:
            break
    assert (seen[offloaded]["route"], seen[offloaded]["reason"]) == ("prfaas", "long_offload")
    assert (seen[local]["route"], seen[local]["reason"]) == ("local", "short_local")
    assert seen[offloaded]["transfer_bytes"] > 0 and seen[offloaded]["prefill_node"] == "prfaas-0"
    assert {n["name"]: n["role"] for n in data["nodes"]} == {"prfaas-0": "prfaas_prefill", "pd-0": "pd_prefill",
                                                            "pd-1": "pd_decode"}
    assert data["router"]["threshold_tokens"] == 256 and "prfaas->pd" in data["links"]
    assert data["latency"]["ttft"]["prfaas"]["count"] >= 1
    events.close()  # the console goes away: the gateway forgets it
    deadline = time.monotonic() + 20
    while get_json(f"{dep.url}/admin/console/snapshot", dep.admin_headers())["subscribers"] != 0:
        assert time.monotonic() < deadline, "a closed console is still subscribed"
        time.sleep(0.2)


def test_what_if_on_demand_is_rate_limited(dep: Launcher) -> None:
    deadline = time.monotonic() + 30  # an automatic run may have just happened: the next is at most 5 s away
    while (first := post(f"{dep.url}/admin/console/whatif", b"", dep.admin_headers()))[0] == 429:
        assert time.monotonic() < deadline, first
        time.sleep(0.5)
    second = post(f"{dep.url}/admin/console/whatif", b"", dep.admin_headers())
    assert first[0] == 202 and second[0] == 429, (first, second)


def test_a_connected_console_does_not_hold_up_the_gateway_shutdown(tmp_path: Any) -> None:
    """SIGTERM ends the consoles' streams first: the stream ends cleanly and uvicorn's graceful shutdown never has
    to cancel it (it would log 'timeout graceful shutdown exceeded' after `timeout_graceful_shutdown`)."""
    with ready_deployment(tmp_path, STUB_TOML) as dep:
        events = _events(dep, dep.admin_headers())
        assert next(events)[0] == "hello"
        gateway = dep.procs["gateway"]
        gateway.terminate()
        kinds = [name for name, _ in events]  # the stream ends (EOF): the loop finishes, no error is raised
        assert set(kinds) <= {"tick"}
        gateway.wait(60)
        log = (dep.run_dir / "gateway.log").read_text()
        assert "gateway stopped" in log and "graceful shutdown exceeded" not in log, log[-2000:]


def test_prfaas_up_prints_the_console_and_it_serves_the_live_feed(tmp_path: Any) -> None:
    """As a user runs it: `prfaas up` (multi-process), the printed console URL and admin token."""
    config = tmp_path / "stub.toml"
    config.write_text(STUB_TOML.replace("port = 0", f"port = {free_port()}"), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "prfaas.cli", "up", "--config", str(config), "--run-dir",
                             str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or "Ctrl-C" not in lines[-1]:  # the banner ends with "Ctrl-C stops everything."
            lines.append(proc.stdout.readline())
            if not lines[-1]:  # stdout closed: `prfaas up` ended before its banner; say why
                assert proc.stderr is not None
                proc.wait(30)
                raise AssertionError(f"prfaas up exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
            assert len(lines) < 40, lines
        token = next(ln for ln in lines if "admin token" in ln).rsplit(" ", 1)[1].strip()
        console = next(ln for ln in lines if ln.strip().startswith("console:")).split()[1]
        status, _h, page = _get(console)
        assert status == 200 and b"console.js" in page
        req = urllib.request.Request(console.replace("/console", "/admin/console/stream"),
                                     headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.readline() == b"event: hello\n"
            hello = json.loads(resp.readline().decode().removeprefix("data: "))
        assert hello["boot_id"] and hello["snapshot"]["requests"] == []
    finally:
        proc.terminate()
        proc.wait(60)
