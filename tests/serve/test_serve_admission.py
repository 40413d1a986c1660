"""Admission control and liveness under load, through the real gateway and nodes (issue 11).

One stub-model deployment with small bounds serves the module: the debug stall hook holds a prefill node's model
thread (a request "stuck" after its first layer), which fills its queue deterministically.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import get_json, metrics, ready_deployment

from prfaas.serve.cache_report import CacheReporter
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.launcher import Launcher
from prfaas.serve.liveness import HeartbeatThread
from prfaas.serve.messages import Heartbeat, HeartbeatReply, NodeRegister, RegisterReply, encode
from prfaas.serve.signing import HEADER_NONCE

pytestmark = pytest.mark.network

STALL_S = 6.0
ADMIT_TOML = """
[model]
name = "stub"

[gateway]
port = 0
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
allow_debug_hooks = true

[admission]
max_in_flight = 4
node_max_queued_requests = 3
node_max_queued_tokens = 1000
queue_deadline_s = 3.0
retry_after_s = 3

[policy]
rebalance = false
"""
PROMPT = list(range(1, 65))
BIG_PROMPT = list(range(1, 1201))  # above node_max_queued_tokens: one such request fills a node


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("admit"), ADMIT_TOML) as launcher:
        yield launcher


def _complete(dep: Launcher, route: str, stall_s: float = 0.0,
              prompt: list[int] = PROMPT) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one completion (urllib: HTTPError carries the refused answer's headers)."""
    import urllib.error
    import urllib.request

    body = f'{{"model": "default", "prompt": {prompt}, "max_tokens": 2}}'.encode()
    headers = {"content-type": "application/json", "x-prfaas-route": route}
    if stall_s:
        headers["x-prfaas-debug-stall-s"] = str(stall_s)
    req = urllib.request.Request(f"{dep.url}/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _instances(dep: Launcher) -> dict[str, dict[str, Any]]:
    cluster = get_json(f"{dep.url}/admin/cluster", dep.admin_headers())
    return {i["instance_id"]: i for i in cluster["instances"]}


def _wait(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached (anti-hang timeout)"
        time.sleep(0.05)


def _idle(dep: Launcher) -> bool:
    return all(i["queued_requests"] == 0 and i["queued_tokens"] == 0 and i["is_up"] for i in _instances(dep).values())


def _fill(pool: ThreadPoolExecutor, dep: Launcher, route: str, node: str, n: int,
          prompt: list[int] = PROMPT) -> list[Future[Any]]:
    """`n` stalled requests on `node`, waited for until the gateway counts them in the node's queue."""
    futures = [pool.submit(_complete, dep, route, STALL_S, prompt) for _ in range(n)]

    def queued() -> bool:
        answered = [f.result() for f in futures if f.done()]
        assert not answered, f"a stalled request was answered early: {answered}; {_instances(dep)}"
        return bool(_instances(dep)[node]["queued_requests"] >= n)

    _wait(queued)
    return futures


def test_full_nodes_refuse_at_once_with_429_and_retry_after(dep: Launcher) -> None:
    _wait(lambda: _idle(dep))
    before = metrics(dep.url).get('prfaas_admission_refused_total{reason="nodes_full"}', 0.0)
    with ThreadPoolExecutor(4) as pool:
        # one long prompt on each prefill node: both above their token bound
        held = _fill(pool, dep, "prfaas", "prfaas-0", 1, BIG_PROMPT) + _fill(pool, dep, "local", "pd-0", 1, BIG_PROMPT)
        status, headers, body = _complete(dep, "local")
        results = [f.result(timeout=120) for f in held]
    assert status == 429, body
    assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "3"
    assert b'"code":"rate_limit_exceeded"' in body and b'"type":"rate_limit_error"' in body
    assert b"queue bound" in body
    assert metrics(dep.url)['prfaas_admission_refused_total{reason="nodes_full"}'] == before + 1
    assert [r[0] for r in results] == [200, 200]  # the admitted ones were served


def test_queue_deadline_sheds_instead_of_keeping(dep: Launcher) -> None:
    _wait(lambda: _idle(dep))
    shed_before = metrics(dep.url).get("prfaas_admission_shed_total", 0.0)
    with ThreadPoolExecutor(4) as pool:
        held = _fill(pool, dep, "prfaas", "prfaas-0", 1)  # holds prfaas-0's model thread for STALL_S
        waiting = pool.submit(_complete, dep, "prfaas")  # cannot start within queue_deadline_s (2 s < 4 s)
        status, headers, body = waiting.result(timeout=120)
        first = held[0].result(timeout=120)
    assert first[0] == 200
    assert status == 503, body
    assert b'"code":"server_overloaded"' in body and b"shed" in body
    assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "3"
    counters = metrics(dep.url)
    assert counters["prfaas_admission_shed_total"] == shed_before + 1
    assert counters.get('prfaas_failed_attempts_total{kind="prefill_node_lost"}', 0.0) == 0.0  # never retried
    log = (dep.run_dir / "prfaas-0.log").read_text(encoding="utf-8")
    assert "shed" in log


def test_in_flight_bound_refuses_with_429(dep: Launcher) -> None:
    _wait(lambda: _idle(dep))
    before = metrics(dep.url).get('prfaas_admission_refused_total{reason="in_flight"}', 0.0)
    with ThreadPoolExecutor(4) as pool:
        # 4 admitted (the bound), 2 per prefill node: below the nodes' bounds (3 requests, 1000 tokens)
        held = [pool.submit(_complete, dep, route, STALL_S) for route in ("prfaas", "local") * 2]
        _wait(lambda: metrics(dep.url).get("prfaas_requests_in_flight", 0.0) >= 4)
        status, _headers, body = _complete(dep, "local")
        results = [f.result(timeout=120) for f in held]
    assert status == 429, body
    assert b"in flight" in body
    assert metrics(dep.url)['prfaas_admission_refused_total{reason="in_flight"}'] == before + 1
    assert sorted(r[0] for r in results) == [200, 200, 503, 503]  # the second on each node is shed: none lost
    assert metrics(dep.url)["prfaas_requests_in_flight"] == 0.0  # every ticket released


def test_saturated_nodes_keep_their_heartbeats(dep: Launcher) -> None:
    """Both prefill nodes' model threads busy and their queues full while a flood of refused requests hits the
    gateway, for 3x the heartbeat timeout: every node stays in routing all along."""
    _wait(lambda: _idle(dep))
    timeout_s = dep.cfg.gateway.heartbeat_timeout_s
    seen_down: list[str] = []
    seen_busy = 0
    with ThreadPoolExecutor(16) as pool:
        end = time.monotonic() + 3 * timeout_s
        while time.monotonic() < end:
            held = [pool.submit(_complete, dep, r, STALL_S) for r in ("prfaas", "local")]
            flood = [pool.submit(_complete, dep, "local") for _ in range(8)]
            round_end = time.monotonic() + STALL_S / 2
            while time.monotonic() < round_end:
                inst = _instances(dep)
                seen_down += [n for n, i in inst.items() if not i["is_up"]]
                seen_busy += any(i["queued_requests"] > 0 for i in inst.values())
                time.sleep(0.1)
            for f in held + flood:
                assert f.result(timeout=120)[0] in (200, 429, 503)
    assert seen_busy > 0
    assert seen_down == []
    log = (dep.run_dir / "gateway.log").read_text(encoding="utf-8")
    assert "missed its heartbeats" not in log


def test_a_stopped_node_still_leaves_routing(dep: Launcher) -> None:
    _wait(lambda: _idle(dep))
    proc = dep.procs["pd-1"]
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        _wait(lambda: not _instances(dep)["pd-1"]["is_up"])
        status, headers, body = _complete(dep, "local")
        assert status == 503, body  # no decode node: no capacity at all
        assert b"server_overloaded" in body
        assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "3"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _wait(lambda: _instances(dep)["pd-1"]["is_up"])
    assert _complete(dep, "local")[0] == 200


# --- the heartbeat thread alone -----------------------------------------------------------------------------


class _FakeGateway(BaseHTTPRequestHandler):
    auth: ControlAuth
    beats: list[float]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        is_beat = self.path.endswith("heartbeat")
        if is_beat:
            self.beats.append(time.monotonic())
        body = encode(HeartbeatReply(known=True) if is_beat else RegisterReply(accepted=True))
        self.send_response(200)
        for key, value in self.auth.reply_header(self.headers[HEADER_NONCE], 200).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_heartbeat_thread_beats_while_the_interpreter_is_busy(tmp_path: Path) -> None:
    """A Python thread spinning on the GIL and a blocked event loop do not stop the beats."""
    import asyncio

    auth = ControlAuth(b"x" * 32, RefusalRecorder())
    beats: list[float] = []
    handler = type("Handler", (_FakeGateway,), {"auth": auth, "beats": beats})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    register = NodeRegister(name="n", cluster="pd", role="pd_decode", control_url="http://127.0.0.1:9",  # type: ignore[arg-type]
                            kv_host="127.0.0.1", kv_port=9, max_batch=1, pid=1, max_context_tokens=16)
    beat = HeartbeatThread(auth, "127.0.0.1", server.server_address[1], 0.05, register=lambda: register,
                           heartbeat=lambda: Heartbeat(name="n", role=register.role), reporter=CacheReporter())
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    beat.start()
    try:
        _wait(lambda: len(beats) >= 1)
        loop = asyncio.new_event_loop()
        start = len(beats)
        loop.run_until_complete(asyncio.sleep(0))
        loop.call_soon(time.sleep, 1.0)  # the event loop blocked for 1 s
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        assert len(beats) - start >= 5  # the 0.05 s interval kept going meanwhile
    finally:
        stop.set()
        beat.stop()
        server.shutdown()


def test_streams_release_their_admission_when_done_or_left(dep: Launcher) -> None:
    import http.client
    import json
    from urllib.parse import urlsplit

    _wait(lambda: _idle(dep))
    host = urlsplit(dep.url)
    body = json.dumps({"model": "default", "prompt": PROMPT, "max_tokens": 2, "stream": True})
    for stall_s, leave in ((0.0, False), (STALL_S, True)):
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=120)
        conn.request("POST", "/v1/completions", body=body, headers={
            "content-type": "application/json", "x-prfaas-route": "local", "x-prfaas-debug-stall-s": str(stall_s)})
        resp = conn.getresponse()
        assert resp.status == 200
        if leave:  # the client goes away while its prefill is stalled
            _wait(lambda: metrics(dep.url).get("prfaas_requests_in_flight", 0.0) == 1.0)
        else:
            assert b"[DONE]" in resp.read()
        conn.close()
        _wait(lambda: metrics(dep.url).get("prfaas_requests_in_flight", -1.0) == 0.0)
