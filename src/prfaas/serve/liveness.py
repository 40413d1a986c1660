"""A node's liveness, isolated from its load: registration and heartbeats from a thread of their own.

    beat = HeartbeatThread(auth, gateway_url, interval_s, register=node._register_message,
                           heartbeat=node.heartbeat, reporter=node.cache_reporter)
    beat.start() ... beat.stop()
    beats = start_heartbeats(auth, node_gateways(cfg, name), interval_s, register=..., heartbeat=node.heartbeat,
                             reporter=node.cache_reporter)   # one per gateway (many sites: `serve.sites`)

The thread has its own small HTTP client (`http.client`, one kept-alive connection) and signs every call with
the deployment's control key exactly as the aiohttp middleware does (`ControlAuth.sign`); a reply that is not
signed back counts as no reply. Neither a saturated event loop (hundreds of queued requests) nor the model
thread can delay it beyond the interpreter's thread switch interval, so a busy node stays in routing: the
gateway sees its queue depth grow, not a missing heartbeat. A stopped or killed process sends nothing and
leaves routing after `gateway.heartbeat_timeout_s`.
"""

from __future__ import annotations

import functools
import http.client
import logging
import threading
from collections.abc import Callable, Sequence

from prfaas.serve.cache_report import CacheReporter
from prfaas.serve.control_auth import ControlAuth
from prfaas.serve.messages import (
    Heartbeat,
    HeartbeatReply,
    Message,
    NodeRegister,
    ProtocolVersionError,
    RegisterReply,
    decode,
    encode,
)
from prfaas.serve.signing import HEADER_NONCE, HEADER_REPLY_SIGNATURE, RefusalReason, is_reply_authentic

_log = logging.getLogger(__name__)


class GatewayUnreachable(Exception):
    """No (authentic, 200) answer from the gateway."""


class HeartbeatThread:
    def __init__(self, auth: ControlAuth, gateway_host: str, gateway_port: int, interval_s: float, *,
                 register: Callable[[], NodeRegister], heartbeat: Callable[[], Heartbeat],
                 reporter: CacheReporter, timeout_s: float = 5.0,
                 healthy: Callable[[], bool] | None = None) -> None:
        self.auth = auth
        self.host, self.port = gateway_host, gateway_port
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._register = register
        self._heartbeat = heartbeat
        self._reporter = reporter
        self._healthy = healthy  # False: send nothing (the node's engine is down; the gateway expires the node)
        self._conn: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)
        self.sent_total = 0  # heartbeats the gateway answered

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._close()

    def _run(self) -> None:
        registered = False
        while not self._stop.is_set():
            if self._healthy is not None and not self._healthy():
                registered = False  # re-register once the engine is back (its cache starts over)
                self._reporter.on_lost()
                self._stop.wait(self.interval_s)
                continue
            try:
                registered = self._beat(registered)
            except (GatewayUnreachable, OSError, http.client.HTTPException, ProtocolVersionError) as exc:
                _log.debug("gateway not reachable: %s", exc)
                registered = False
                self._reporter.on_lost()
                self._close()
            self._stop.wait(self.interval_s)

    def _beat(self, registered: bool) -> bool:
        if not registered:
            decode(self._post("/internal/register", self._register()), RegisterReply)
            self._reporter.on_lost()  # a (re-)registered node starts from a full cache report
        reply = decode(self._post("/internal/heartbeat", self._heartbeat()), HeartbeatReply)
        self._reporter.on_reply(resync=reply.cache_resync or not reply.known)
        self.sent_total += 1
        return reply.known

    def _post(self, path: str, message: Message) -> bytes:
        body = encode(message)
        url = f"http://{self.host}:{self.port}{path}"
        headers = self.auth.sign(url, "POST", body)
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        self._conn.request("POST", path, body=body, headers={**headers, "content-type": "application/json"})
        resp = self._conn.getresponse()
        data = resp.read()
        header = resp.getheader(HEADER_REPLY_SIGNATURE)
        if not is_reply_authentic(self.auth.key, nonce=headers[HEADER_NONCE], status=resp.status, header=header):
            detail = f"{self.host}:{self.port} answered {resp.status} to {path} without the deployment's signature"
            reason = RefusalReason.MISSING if header is None else RefusalReason.BAD_SIGNATURE
            self.auth.recorder.record("gateway_reply", reason, detail, f"{self.host}:{self.port}")
            raise GatewayUnreachable(detail)
        if resp.status != 200:
            raise GatewayUnreachable(f"gateway answered {resp.status} to {path}: {data[:200]!r}")
        return data

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def start_heartbeats(auth: ControlAuth, gateways: Sequence[tuple[str, int]], interval_s: float, *,
                     register: Callable[[], NodeRegister], heartbeat: Callable[..., Heartbeat],
                     reporter: CacheReporter, healthy: Callable[[], bool] | None = None) -> list[HeartbeatThread]:
    """One started `HeartbeatThread` per gateway `(host, port)` (`serve.sites.node_gateways`: the gateway, or with
    [topology] every region gateway that routes to the node). The first reports the prefix cache with `reporter`,
    each other with a `CacheReporter` of its own (each gateway keeps its own copy of the node's cache):
    `heartbeat(reporter=...)` builds the heartbeat for one of them."""
    beats = []
    for i, (host, port) in enumerate(gateways):
        own = reporter if i == 0 else CacheReporter()
        beat = HeartbeatThread(auth, host, port, interval_s, register=register,
                               heartbeat=functools.partial(heartbeat, reporter=own), reporter=own, healthy=healthy)
        beat.start()
        beats.append(beat)
    return beats
