"""A read-only JSON endpoint of the connector's worker half: its counters and per-peer link telemetry
(`GET /prfaas/telemetry`). The gateway polls it beside vLLM's own `/metrics`, which knows nothing of links.
Loopback unless configured; it changes nothing, so it needs no credentials."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prfaas.integrations.vllm.layers import describe

PATH = "/prfaas/telemetry"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value
    return value


def telemetry_document(worker: Any) -> dict[str, Any]:
    address = worker.receiver_address
    return {"node_name": worker.settings.node_name,
            "kv_address": None if address is None else f"{address[0]}:{address[1]}",
            "counters": worker.stats.snapshot(), "links": _plain(worker.link_snapshots()),
            "layers": describe(worker.layers)}


class TelemetryServer:
    def __init__(self, host: str, port: int, worker: Any) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != PATH:
                    self.send_error(404)
                    return
                body = json.dumps(telemetry_document(outer.worker)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.worker = worker
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="prfaas-telemetry", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
