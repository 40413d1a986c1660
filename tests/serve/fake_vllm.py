"""A fake vLLM instance for the vLLM adapter tests (no vLLM here): the OpenAI completions API with token-id
prompts and `return_token_ids`, /metrics, /health, /v1/models, the prfaas connector's /prfaas/telemetry, and a
ZMQ KV-event publisher.

    cluster = FakeCluster()                       # the "transport" the fakes share (sends seen by receivers)
    fake = FakeVllm(cluster, kv_port=free_port(), events_endpoint="tcp://127.0.0.1:P")
    fake.start() ... fake.url ... fake.calls ... fake.stop()

Tokens are a deterministic function of everything before them, `next_token(seq)`, so a prefill on one fake and
a decode of prompt + first token on another give exactly the tokens one colocated stream gives. A send
(`kv_transfer_params.prfaas.kind == "send"`) is recorded in the cluster under the peer's address; a receive
(`kind == "recv"`) succeeds only if a send of the same transfer id to THIS fake's kv port, of as many prompt
positions, was recorded — else it fails as vLLM fails a request whose KV load failed (HTTP 500).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

BLOCK_SIZE = 16
MAX_MODEL_LEN = 4096


def next_token(seq: list[int]) -> int:
    return (sum(t * (i + 1) for i, t in enumerate(seq[-64:])) * 31 + len(seq)) % 997 + 100


@dataclass
class FakeCluster:
    sends: dict[tuple[str, int, str], int] = field(default_factory=dict)  # (peer host, port, id) -> positions
    drop_next_sends: int = 0  # this many sends are lost (as a transfer that failed on the way)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Call:
    body: dict[str, Any]
    stream: bool
    finished: bool = False  # the whole answer was sent (set before its last token's chunk goes out)
    disconnected: bool = False  # the client closed the connection first (vLLM aborts the request)
    tokens: list[int] = field(default_factory=list)


class FakeVllm:
    def __init__(self, cluster: FakeCluster, *, kv_port: int, port: int = 0, events_endpoint: str | None = None,
                 step_s: float = 0.0, model: str = "fake-model", api_key: str | None = None) -> None:
        self.cluster = cluster
        self.kv_port = kv_port
        self.port = port
        self.events_endpoint = events_endpoint
        self.step_s = step_s
        self.model = model
        self.api_key = api_key  # as vLLM's --api-key: /v1/* needs `Authorization: Bearer KEY`
        self.unauthorized = 0
        self.waiting = 0
        self.stop_token: int | None = None  # an end-of-sequence token: generation stops after it ("stop")
        self.cut_stream_after: int | None = None  # the next stream's connection is cut after this many tokens
        self.kv_usage = 0.125
        self.prefill_hold_s = 0.0  # a non-streamed completion (a prefill that sends its state) takes this long more
        self.calls: list[Call] = []
        self.running = 0
        self.block_counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._pub: Any = None
        self._seq = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle (a thread with its own event loop) ------------------------------------------------
    def start(self) -> FakeVllm:
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=f"fake-vllm-{self.kv_port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake vLLM did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/v1/completions", self._completions), web.get("/metrics", self._metrics),
                        web.get("/health", self._health), web.get("/v1/models", self._models),
                        web.get("/prfaas/telemetry", self._telemetry)])
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.events_endpoint is not None and self._pub is None:
            import zmq

            self._pub = zmq.Context.instance().socket(zmq.PUB)
            self._pub.setsockopt(zmq.LINGER, 0)
            self._pub.connect(self.events_endpoint)  # vLLM connects to a non-wildcard endpoint

    def stop(self) -> None:
        """Stop serving (the instance is down); `start` again serves on the same port."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def close(self) -> None:
        self.stop()
        if self._pub is not None:
            self._pub.close(0)
            self._pub = None

    # --- KV events -------------------------------------------------------------------------------------
    def publish_stored(self, tokens: list[int]) -> None:
        """BlockStored events for the prompt's full 16-token blocks (as vLLM's prefix cache would)."""
        if self._pub is None:
            return
        n = len(tokens) // BLOCK_SIZE
        hashes = [self._block_hash(tokens[:(i + 1) * BLOCK_SIZE]) for i in range(n)]
        if not hashes:
            return
        event = {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": None,
                 "token_ids": tokens[:n * BLOCK_SIZE], "block_size": BLOCK_SIZE, "lora_id": None, "medium": "GPU",
                 "lora_name": None}
        self._send([event])

    def publish_removed(self, tokens: list[int], from_block: int) -> None:
        hashes = [self._block_hash(tokens[:(i + 1) * BLOCK_SIZE]) for i in range(from_block,
                                                                                   len(tokens) // BLOCK_SIZE)]
        self._send([{"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"}])

    @staticmethod
    def _block_hash(prefix: list[int]) -> bytes:
        import hashlib

        return hashlib.sha256(json.dumps(prefix).encode()).digest()[:16]  # opaque, as vLLM's are

    def _send(self, events: list[dict[str, Any]]) -> None:
        payload = msgspec.msgpack.encode([time.time(), events])
        self._pub.send_multipart((b"kv", self._seq.to_bytes(8, "big"), payload))
        self._seq += 1

    # --- HTTP ------------------------------------------------------------------------------------------
    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="")

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        self.unauthorized += 1
        return web.json_response({"error": "Unauthorized"}, status=401)

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model",
                                                              "max_model_len": MAX_MODEL_LEN}]})

    async def _metrics(self, _request: web.Request) -> web.Response:
        labels = f'{{engine="0",model_name="{self.model}"}}'
        text = "\n".join([
            "# HELP vllm:num_requests_running Running requests.", "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{labels} {float(self.running)}",
            "# HELP vllm:num_requests_waiting Waiting requests.", "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{labels} {float(self.waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV usage.", "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{labels} {self.kv_usage}", ""])
        return web.Response(text=text, content_type="text/plain")

    async def _telemetry(self, _request: web.Request) -> web.Response:
        snap = {"link_id": f"peer-of-{self.kv_port}", "time_s": time.monotonic(), "capacity_gbps": 10.0,
                "goodput_gbps": 1.5, "window_s": 1.0, "bytes_total": 12345, "transfers_total": 3,
                "transfers_failed": 0, "transfers_in_flight": 0, "bytes_in_flight": 0, "rtt_ms": 0.2,
                "retransmits_total": 0, "retransmit_rate": 0.0, "transfer_latency_p50_s": None,
                "transfer_latency_p99_s": None, "is_up": True}
        return web.json_response({"node_name": "fake", "kv_address": f"127.0.0.1:{self.kv_port}",
                                  "counters": {"bytes_sent": 12345}, "links": {"send": {"peer": snap}}})

    def _check_params(self, body: dict[str, Any]) -> str | None:
        params = (body.get("kv_transfer_params") or {}).get("prfaas")
        if params is None:
            return None
        if params["kind"] == "send":
            with self.cluster.lock:
                key = (params["peer_host"], params["peer_port"], params["transfer_id"])
                if self.cluster.drop_next_sends > 0:
                    self.cluster.drop_next_sends -= 1
                else:
                    self.cluster.sends[key] = len(body["prompt"])
            return None
        with self.cluster.lock:
            sent = self.cluster.sends.pop(("127.0.0.1", self.kv_port, params["transfer_id"]), None)
        if sent is None or sent != params["num_tokens"] or params["num_tokens"] != len(body["prompt"]) - 1:
            return f"KV load failed for {params['transfer_id']} (sent {sent}, expected {params['num_tokens']})"
        return None

    def _stops(self, body: dict[str, Any], token: int) -> bool:
        return token == self.stop_token and not body.get("ignore_eos")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.json()
        call = Call(body=body, stream=bool(body.get("stream")))
        self.calls.append(call)
        prompt = body.get("prompt")
        if not isinstance(prompt, list) or not body.get("return_token_ids"):
            return web.json_response({"error": {"message": "token-id prompts with return_token_ids only"}},
                                     status=400)
        if len(prompt) + int(body["max_tokens"]) > MAX_MODEL_LEN:
            return web.json_response({"error": {"message": "prompt too long"}}, status=400)
        failure = self._check_params(body)
        if failure is not None:
            return web.json_response({"error": {"message": failure}}, status=500)
        self.publish_stored(prompt)
        seq = list(prompt)
        if not call.stream:
            await asyncio.sleep(self.step_s + self.prefill_hold_s)
            tokens, reason = [], "length"
            for _ in range(int(body["max_tokens"])):
                tokens.append(next_token(seq))
                seq.append(tokens[-1])
                if self._stops(body, tokens[-1]):
                    reason = "stop"
                    break
            call.tokens, call.finished = tokens, True
            return web.json_response({"id": "cmpl-1", "object": "text_completion", "model": self.model,
                                      "choices": [{"index": 0, "text": "", "token_ids": tokens,
                                                   "finish_reason": reason}],
                                      "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(tokens)}})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        self.running += 1
        try:
            await response.prepare(request)
            n = int(body["max_tokens"])
            for i in range(n):
                if self.cut_stream_after is not None and i == self.cut_stream_after:
                    self.cut_stream_after = None
                    assert request.transport is not None
                    request.transport.close()  # as a vLLM that died mid-stream
                    raise ConnectionResetError("cut")
                await asyncio.sleep(self.step_s)
                token = next_token(seq)
                seq.append(token)
                call.tokens.append(token)
                stop = self._stops(body, token)
                reason = "stop" if stop else "length" if i == n - 1 else None
                call.finished = reason is not None  # before the write: the client may close right after it
                chunk = {"id": "cmpl-1", "object": "text_completion", "model": self.model,
                         "choices": [{"index": 0, "text": "", "token_ids": [token], "finish_reason": reason}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if stop:
                    break
            usage = {"id": "cmpl-1", "choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": n}}
            await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            call.disconnected = not call.finished  # a client that leaves after the finish chunk aborts nothing
            raise
        finally:
            self.running -= 1
        return response


def two_region_config(tmp_path: Path, fake: FakeVllm, gateway_ports: dict[str, int], *, heartbeat_s: float,
                      prfaas_extra: str = "") -> Any:
    """A deployment of vLLM adapter nodes behind `fake`: PrfaaS cluster pa (node pa-0) linked to regions ra and rb
    (decode nodes ra-d, rb-d), one gateway per region on `gateway_ports`; `prfaas_extra`: more keys for pa-0."""
    from prfaas.serve.config import load_config
    from prfaas.transport.ports import free_port

    def node(name: str, cluster: str, role: str, site: str, extra: str = "") -> str:
        return (f'\n[[nodes]]\nname = "{name}"\ncluster = "{cluster}"\nrole = "{role}"\nsite = "{site}"\n'
                f'engine = "vllm"\nvllm_url = "{fake.url}"\nkv_port = {free_port()}\n{extra}')

    text = f"""
[model]
num_layers = 4
hidden_size = 128
[gateway]
heartbeat_interval_s = {heartbeat_s}
[policy]
rebalance = false
[[topology.prfaas]]
name = "pa"
[[topology.pd]]
name = "ra"
instances = 2
prefill_instances = 1
[[topology.pd]]
name = "rb"
instances = 2
prefill_instances = 1
[[topology.links]]
prfaas = "pa"
pd = "ra"
capacity_gbps = 10
[[topology.links]]
prfaas = "pa"
pd = "rb"
capacity_gbps = 10
"""
    text += "".join(f'[[gateways]]\nregion = "{r}"\nport = {p}\n' for r, p in gateway_ports.items())
    text += node("pa-0", "prfaas", "prfaas_prefill", "pa", prfaas_extra)
    text += node("ra-d", "pd", "pd_decode", "ra") + node("rb-d", "pd", "pd_decode", "rb")
    path = tmp_path / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)
