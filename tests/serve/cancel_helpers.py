"""Helpers of the cancellation tests: a client that leaves (raw socket), signed node tables, polling."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.deploy_secrets import load_shared_secret
from prfaas.serve.launcher import Launcher
from prfaas.serve.messages import NodeTables, decode

ANTI_HANG_S = 60.0
EMPTY_FIELDS = ("live_attempts", "queued_jobs", "waiting_admissions", "running_batch", "decode_streams",
                "inbox_states", "inbox_bytes", "waiting_admission_bytes", "pending_allocations",
                "receiver_budget_used_bytes", "queued_tokens", "in_flight")


def node_tables(dep: Launcher, name: str) -> NodeTables:
    """GET /tables of node `name`, signed with the deployment's secret (as the gateway signs its calls)."""
    node = dep.cfg.node(name)
    url = f"http://{node.host}:{node.port}/tables"
    headers = ControlAuth(load_shared_secret(dep.cfg.transport, {}), RefusalRecorder()).sign(url, "GET", b"")
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return decode(resp.read(), NodeTables)


def held(tables: NodeTables) -> dict[str, int]:
    """The tables that are not empty."""
    return {f: getattr(tables, f) for f in EMPTY_FIELDS if getattr(tables, f)}


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = ANTI_HANG_S) -> float:
    """Seconds until `check()` held (anti-hang bound only)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"{what}: not within {timeout_s}s"
        time.sleep(0.02)
    return time.monotonic() - start


class LeavingClient:
    """An HTTP/1.1 client on a raw socket: sends a completion request, may read a little, then just closes."""

    def __init__(self, dep: Launcher, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        lines = ["POST /v1/completions HTTP/1.1", f"host: {dep.cfg.gateway.host}",
                 "content-type: application/json", f"content-length: {len(payload)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock = socket.create_connection((dep.cfg.gateway.host, _gateway_port(dep)), timeout=ANTI_HANG_S)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)

    def read_some(self, min_bytes: int) -> bytes:
        data = b""
        while len(data) < min_bytes:
            part = self.sock.recv(65536)
            if not part:
                break
            data += part
        return data

    def leave(self) -> float:
        """Close the connection; returns `time.monotonic()` at that moment."""
        self.sock.close()
        return time.monotonic()


def _gateway_port(dep: Launcher) -> int:
    return int(dep.url.rsplit(":", 1)[1])


def cancelled_count(metrics: dict[str, float], reason: str) -> float:
    return metrics.get(f'prfaas_requests_cancelled_total{{reason="{reason}"}}', 0.0)
