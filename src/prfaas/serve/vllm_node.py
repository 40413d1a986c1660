"""A vLLM adapter node: a prfaas node process whose compute is one vLLM instance reached over HTTP.

    node = VllmNodeServer(cfg, "pd-1", secret)   # cfg.node("pd-1").engine == "vllm"
    await node.start(); await node.wait_closed()

To the gateway it is a node like `serve.node.NodeServer`: the same control endpoints (/prefill /decode /abort
/role /health /tables), the same signatures (`serve.node_http`), the same register + heartbeat thread
(`serve.liveness`), the same messages. Behind them (docs/vllm.md):

- /prefill: each waits for its turn into vLLM (`serve.vllm_turns`: the prompt tokens inside vLLM stay within
  `vllm_prefill_tokens`, and the waiting prefills enter in the regions' fair order, as our engine's worker runs
  them); the wait is the reply's `queue_s`, `prefill_s` counts from the turn.
- /prefill, decode on another node: one non-streaming completion, `max_tokens: 1`, with
  `kv_transfer_params = SendParams(transfer_id=attempt id, peer = the target's kv_host:kv_port)`
  (`integrations.vllm.params`); the prfaas connector inside vLLM streams the state to the target's connector
  while vLLM computes the prompt. The first token comes back in `choices[0].token_ids`.
- /prefill, colocated (the target is this node): ONE streaming completion for the whole request; its first token
  is the reply, and the stream is kept (swept after `KEPT_TTL_S`) for the /decode that follows.
- /decode of a transferred request: a streaming completion of prompt + first token with
  `kv_transfer_params = RecvParams(transfer_id, num_tokens=len(prompt))`; vLLM loads the prompt's state from
  the transfer and generates from there. Its SSE chunks become our `TokenChunk` NDJSON. Until vLLM sends a first
  chunk nothing is answered, so a failed or missing transfer (vLLM refuses the request) is a 409
  `state_missing` as on our nodes: the gateway's failure policy retries or fails it.
- /abort cancels the pending call or stream: its HTTP connection to vLLM closes, and vLLM aborts the request.
- /role: the connector runs `kv_both`, so a P/D role change is routing only: accepted at once, nothing drains.
- heartbeats: load from vLLM's /metrics, link telemetry from the connector's /prfaas/telemetry
  (`serve.vllm_metrics`), prefix-cache contents from vLLM's KV events (`serve.vllm_events`) or, without them,
  the 512-token blocks of the prompts this node prefilled. While vLLM does not answer /metrics the node sends no
  heartbeat, so the gateway takes it out of routing after `heartbeat_timeout_s`; it registers again once vLLM is
  back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from prfaas.core.blocks import block_hash_chain
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.integrations.vllm.params import RecvParams, SendParams, to_params
from prfaas.perf.arch import s_kv_bytes
from prfaas.serve.admission import SHED_KIND
from prfaas.serve.cache_report import NO_REPORT, CacheReporter
from prfaas.serve.config import DeployConfig, NodeSection
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.liveness import HeartbeatThread, start_heartbeats
from prfaas.serve.messages import (
    AbortReply,
    AbortRequest,
    DecodeRequest,
    Heartbeat,
    NodeRegister,
    NodeTables,
    PrefillReply,
    PrefillRequest,
    ProtocolVersionError,
    RoleSwitch,
    RoleSwitchReply,
    TokenChunk,
    decode,
    encode,
)
from prfaas.serve.node_http import error, reply, start_control
from prfaas.serve.prefill_order import region_weights
from prfaas.serve.sites import node_gateways
from prfaas.serve.vllm_arch import served_arch
from prfaas.serve.vllm_events import KvEventSubscriber, PrefixTracker
from prfaas.serve.vllm_http import VllmClient, VllmError, VllmTokens, completion_body
from prfaas.serve.vllm_metrics import VllmLoad, cache_block_tokens, parse_metrics, parse_telemetry
from prfaas.serve.vllm_turns import DEFAULT_BUDGET_TOKENS, PrefillTurns, TurnDeadlinePassed, TurnWithdrawn

_log = logging.getLogger(__name__)

KEPT_TTL_S = 120.0  # a colocated stream nobody decodes is closed after this long (its gateway gave up)
PREFILLED_BLOCKS_MAX = 65_536  # without KV events: how many prefilled 512-token blocks the cache report names
ABORTED_MAX = 4096
CANCELLED = "cancelled"
ENGINE_ERROR = "engine_error"
_END = None  # a pump's end-of-stream marker


@dataclass(slots=True)
class _Pump:
    """One vLLM stream read by a task into a queue (VllmTokens, a VllmError, or _END)."""

    task: asyncio.Task[None] | None = None
    queue: asyncio.Queue[VllmTokens | VllmError | None] = field(default_factory=asyncio.Queue)
    created_s: float = field(default_factory=time.monotonic)
    head: VllmTokens | None = None  # read by the colocated prefill beyond its first token, not yet passed on

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class VllmNodeServer:
    def __init__(self, cfg: DeployConfig, name: str, shared_secret: bytes, vllm_api_key: str | None = None) -> None:
        self.cfg = cfg
        self.section: NodeSection = cfg.node(name)
        if self.section.engine != "vllm" or self.section.vllm_url is None:
            raise ValueError(f"node {name} is not an engine = \"vllm\" node")
        self.role = self.section.role
        self.auth = ControlAuth(shared_secret, RefusalRecorder())
        self._vllm_headers = {"authorization": f"Bearer {vllm_api_key}"} if vllm_api_key else {}
        self.cache_reporter = CacheReporter()
        self.tracker = PrefixTracker() if self.section.kv_events_endpoint else None
        self._prefilled: OrderedDict[int, None] = OrderedDict()  # guarded: the heartbeat thread reads it
        self._prefilled_lock = threading.Lock()
        self.arch = None if self.section.state_bytes_model is None else served_arch(self.section.state_bytes_model)
        self.load = VllmLoad()
        self.links: list[LinkSnapshot] = []
        self.cache_block_tokens = 0  # vLLM's KV block size (positions), from the connector's telemetry
        self.vllm_up = False
        self._last_poll_error = ""
        self.model: str | None = self.section.vllm_model
        self.max_context_tokens = 0
        self.in_flight = 0
        self.queued_tokens = 0
        budget = self.section.vllm_prefill_tokens
        self.turns = PrefillTurns(DEFAULT_BUDGET_TOKENS if budget is None else budget, region_weights(cfg))
        self.busy_s_total = 0.0
        self.decodes_cancelled_total = 0
        self.prefills_cancelled_total = 0
        self._calls: dict[str, asyncio.Task[VllmTokens]] = {}
        self._kept: dict[str, _Pump] = {}  # colocated streams waiting for their /decode
        self._decoding: dict[str, _Pump] = {}
        self._aborted: OrderedDict[str, None] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._client: VllmClient | None = None
        self._subscriber: KvEventSubscriber | None = None
        self._runner: web.AppRunner | None = None
        self._port = self.section.port
        self._liveness: list[HeartbeatThread] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    @property
    def control_url(self) -> str:
        return f"http://{self.section.host}:{self._port}"

    @property
    def client(self) -> VllmClient:
        assert self._client is not None, "start() first"
        return self._client

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._vllm_headers)
        assert self.section.vllm_url is not None
        self._client = VllmClient(self._session, self.section.vllm_url, self.model,
                                  timeout_s=self.cfg.gateway.request_timeout_s)
        if self.tracker is not None and self.section.kv_events_endpoint is not None:
            host = urlsplit(self.section.vllm_url).hostname or "127.0.0.1"
            self._subscriber = KvEventSubscriber(self.section.kv_events_endpoint, host, self.tracker)
            self._subscriber.start()
        routes = [web.post("/prefill", self.handle_prefill), web.post("/decode", self.handle_decode),
                  web.post("/role", self.handle_role), web.post("/abort", self.handle_abort),
                  web.get("/tables", self.handle_tables), web.get("/health", self.handle_health)]
        self._runner, self._port = await start_control(self.auth, self.section.host, self.section.port,
                                                       lambda: self.control_url, routes)
        await self.poll_once()
        self._tasks.append(asyncio.create_task(self._poll_loop()))
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        # to the gateway, or with [topology] to every region gateway that routes to this node (`serve.sites`)
        self._liveness = start_heartbeats(self.auth, node_gateways(self.cfg, self.section.name),
                                          self.cfg.gateway.heartbeat_interval_s, register=self._register_message,
                                          heartbeat=self.heartbeat, reporter=self.cache_reporter,
                                          healthy=self._is_ready)

    def stop(self) -> None:
        self._stop.set()

    async def wait_closed(self) -> None:
        await self._stop.wait()
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pump in [*self._kept.values(), *self._decoding.values()]:
            pump.cancel()
        for call in self._calls.values():
            call.cancel()
        for beat in self._liveness:
            await asyncio.to_thread(beat.stop)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._subscriber is not None:
            self._subscriber.close()
        if self._session is not None:
            await self._session.close()

    # --- vLLM's state: /v1/models, /metrics, connector telemetry ---------------------------------
    def _is_ready(self) -> bool:
        return self.vllm_up and self.model is not None

    async def poll_once(self) -> None:
        """One look at the instance: is it up (its /metrics answers), its load, its links, its model."""
        assert self._session is not None and self.section.vllm_url is not None
        base = self.section.vllm_url.rstrip("/")
        timeout = aiohttp.ClientTimeout(total=max(1.0, self.cfg.gateway.heartbeat_timeout_s / 2))
        try:
            async with self._session.get(f"{base}/metrics", timeout=timeout) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise VllmError(resp.status, f"/metrics answered {resp.status}")
            load = parse_metrics(text)
            if self.model is None or not self.max_context_tokens:
                await self._learn_model()
        except (aiohttp.ClientError, OSError, TimeoutError, VllmError, ValueError) as exc:
            if self.vllm_up or str(exc) != self._last_poll_error:  # once per outage and per new reason
                _log.warning("vLLM at %s is not serving (the node stays out of routing): %s", base, exc)
            self.vllm_up, self._last_poll_error = False, str(exc)
            return
        self._last_poll_error = ""
        if not self.vllm_up:
            _log.info("vLLM at %s is up (model %s, context %d)", base, self.model, self.max_context_tokens)
        self.load, self.vllm_up = load, True
        if self.section.telemetry_url is not None:
            self.links = await self._telemetry(timeout)

    def skip_tokens(self, held_tokens: int, num_tokens: int) -> int:
        """Prompt positions the decode node holds, in whole vLLM blocks (the connector's telemetry says their
        size; every instance of a deployment serves the same checkpoint), at most all but the last position."""
        block = self.cache_block_tokens
        if not block or held_tokens <= 0:
            return 0
        held = min(held_tokens, num_tokens - 1)
        return held - held % block

    async def _learn_model(self) -> None:
        models = await self.client.models()
        if not models:
            raise VllmError(503, "GET /v1/models lists no model")
        card = next((m for m in models if m.get("id") == self.model), models[0])
        self.model = self.model or str(card["id"])
        self.client.model = self.model
        max_len = card.get("max_model_len")
        self.max_context_tokens = int(max_len) if isinstance(max_len, int) and max_len > 0 else 1 << 20

    async def _telemetry(self, timeout: aiohttp.ClientTimeout) -> list[LinkSnapshot]:
        assert self._session is not None and self.section.telemetry_url is not None
        url = self.section.telemetry_url.rstrip("/") + "/prfaas/telemetry"
        try:
            async with self._session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    return []
                doc = await resp.json(content_type=None)
                self.cache_block_tokens = cache_block_tokens(doc)
                return parse_telemetry(doc)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            _log.debug("connector telemetry at %s: %s", url, exc)
            return []

    async def _poll_loop(self) -> None:
        interval_s = self.cfg.gateway.heartbeat_interval_s
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            await self.poll_once()
            now = time.monotonic()
            if self.vllm_up and self.load.running > 0:  # busy: vLLM ran something over the interval
                self.busy_s_total += now - last
            last = now

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.gateway.heartbeat_interval_s)
            horizon = time.monotonic() - KEPT_TTL_S
            for rid in [r for r, p in self._kept.items() if p.created_s < horizon]:
                _log.info("colocated stream %s was never decoded: closed", rid)
                self._kept.pop(rid).cancel()

    # --- registration and heartbeats (heartbeat thread) ------------------------------------------
    def _register_message(self) -> NodeRegister:
        return NodeRegister(name=self.section.name, cluster=self.section.cluster, role=self.role,
                            control_url=self.control_url, kv_host=self.section.kv_host or self.section.host,
                            kv_port=self.section.kv_port, max_batch=self.cfg.model.max_batch_size, pid=os.getpid(),
                            max_context_tokens=self.max_context_tokens, engine="vllm",
                            state_bytes_points=self.state_bytes_points())

    def state_bytes_points(self) -> list[tuple[int, int]]:
        """S_kv(l) of the served architecture (`state_bytes_model`) at the lengths our nodes report; none without."""
        if self.arch is None or self.max_context_tokens < 2:
            return []
        limit = self.max_context_tokens - 1
        lengths = sorted({1, limit, *(2**k for k in range(4, 31) if 2**k < limit)})
        return [(n, s_kv_bytes(self.arch, n)) for n in lengths]

    def shipped_bytes(self, num_tokens: int, skip_tokens: int = 0) -> int:
        """S_kv of the positions a transfer ships (0 when the architecture is not configured)."""
        if self.arch is None:
            return 0
        return s_kv_bytes(self.arch, num_tokens) - (s_kv_bytes(self.arch, skip_tokens) if skip_tokens else 0)

    def cached_blocks(self) -> frozenset[int]:
        if self.tracker is not None:
            return self.tracker.held()
        with self._prefilled_lock:
            return frozenset(self._prefilled)

    def heartbeat(self, with_cache_report: bool = True, reporter: CacheReporter | None = None) -> Heartbeat:
        """The load snapshot; only heartbeats carry the cache report (`reporter`: the one of the gateway it goes
        to, `serve.liveness.start_heartbeats`)."""
        load = self.load
        reporter = reporter or self.cache_reporter
        cache = reporter.report(self.cached_blocks()) if with_cache_report else NO_REPORT
        # queued: vLLM's waiting requests and the prefills waiting here for their turn into vLLM
        return Heartbeat(name=self.section.name, role=self.role, queued_requests=load.waiting + self.turns.waiting,
                         queued_tokens=self.queued_tokens, running_batch=load.running, in_flight=self.in_flight,
                         busy_s_total=self.busy_s_total, prefill_tokens_total=load.computed_prompt_tokens_total,
                         links=list(self.links), cache_seq=cache.seq, cache_full=cache.is_full,
                         cache_added=list(cache.added), cache_removed=list(cache.removed))

    def _remember_prefilled(self, tokens: Sequence[int]) -> None:
        if self.tracker is not None:
            return
        hashes = block_hash_chain(tokens, include_partial=False)
        with self._prefilled_lock:
            for h in hashes:
                self._prefilled[h] = None
                self._prefilled.move_to_end(h)
            while len(self._prefilled) > PREFILLED_BLOCKS_MAX:
                self._prefilled.popitem(last=False)

    # --- prefill ---------------------------------------------------------------------------------
    async def handle_prefill(self, request: web.Request) -> web.Response:
        try:
            msg = decode(await request.read(), PrefillRequest)
        except ProtocolVersionError as exc:
            return error("bad_request", str(exc), 400)
        if msg.request_id in self._aborted:
            return error(CANCELLED, f"{msg.request_id} was aborted", 409)
        if msg.request_id in self._calls or msg.request_id in self._kept:
            return error("attempt_live", f"{msg.request_id} is already running here", 409)
        if not self._is_ready():
            return error("unavailable", f"{self.section.name}: vLLM at {self.section.vllm_url} is not up", 503)
        self.in_flight += 1
        self.queued_tokens += len(msg.token_ids)
        try:
            async with self.turns.turn(msg.request_id, msg.region or "", len(msg.token_ids), msg.region_load,
                                       msg.start_within_s) as queue_s:
                if msg.decode_target.name == self.section.name:
                    return await self._prefill_colocated(msg, queue_s)
                return await self._prefill_remote(msg, queue_s)
        except TurnWithdrawn:  # aborted while it waited for its turn: vLLM never saw it
            self.prefills_cancelled_total += 1
            return error(CANCELLED, f"prefill of {msg.request_id} aborted", 409)
        except TurnDeadlinePassed as exc:  # as our node sheds a prefill that did not start in time
            _log.info("prefill %s shed: %s", msg.request_id, exc)
            return error(SHED_KIND, f"{self.section.name} shed prefill {msg.request_id}: {exc}", 503)
        finally:
            self.in_flight -= 1
            self.queued_tokens -= len(msg.token_ids)

    async def _prefill_remote(self, msg: PrefillRequest, queue_s: float = 0.0) -> web.Response:
        target = msg.decode_target
        skip = self.skip_tokens(target.cached_tokens, len(msg.token_ids))
        params = to_params(SendParams(transfer_id=msg.request_id, peer_host=target.kv_host,
                                      peer_port=target.kv_port, skip_tokens=skip))
        body = completion_body(self.client.model or "", msg.token_ids, msg.sampling, max_tokens=1, stream=False,
                               kv_params=params)
        started_s = time.monotonic()
        call = asyncio.create_task(self.client.complete(body))
        self._calls[msg.request_id] = call
        try:
            await asyncio.wait({call})
        except asyncio.CancelledError:
            call.cancel()  # the handler itself was cancelled: the vLLM request goes too
            raise
        finally:
            self._calls.pop(msg.request_id, None)
        if call.cancelled():
            self.prefills_cancelled_total += 1
            return error(CANCELLED, f"prefill of {msg.request_id} aborted", 409)
        exc = call.exception()
        if exc is not None:
            return self._prefill_failed(msg, exc)
        tokens = call.result()
        if not tokens.token_ids:
            return error("transfer", f"vLLM returned no first token for {msg.request_id}", 502)
        # max_tokens 1 ends with "length"; "stop" means the first token ended the request (EOS / a stop token)
        finish = "stop" if tokens.finish_reason == "stop" else None
        return self._prefill_reply(msg, tokens.token_ids[0], tokens.cached_tokens, time.monotonic() - started_s,
                                   transfer_s=0.0, transfer_bytes=self.shipped_bytes(len(msg.token_ids), skip),
                                   finish_reason=finish, skip_tokens=skip, queue_s=queue_s)

    async def _prefill_colocated(self, msg: PrefillRequest, queue_s: float = 0.0) -> web.Response:
        body = completion_body(self.client.model or "", msg.token_ids, msg.sampling,
                               max_tokens=msg.sampling.max_tokens, stream=True, kv_params=None)
        started_s = time.monotonic()
        pump = self._start_pump(body)
        self._kept[msg.request_id] = pump
        try:
            first = await self._next_tokens(pump)
        except asyncio.CancelledError:
            self._kept.pop(msg.request_id, None)
            pump.cancel()
            raise
        if isinstance(first, VllmError) or first is None:
            self._kept.pop(msg.request_id, None)
            pump.cancel()
            if msg.request_id in self._aborted:
                self.prefills_cancelled_total += 1
                return error(CANCELLED, f"prefill of {msg.request_id} aborted", 409)
            return self._prefill_failed(msg, first or VllmError(502, "vLLM ended the stream without a token"))
        finish = None
        if first.finish_reason is not None and len(first.token_ids) == 1:  # the request ended with its first token
            self._kept.pop(msg.request_id, None)
            pump.cancel()
            finish = first.finish_reason if first.finish_reason == "stop" else "length"
        else:
            pump.head = VllmTokens(first.token_ids[1:], first.finish_reason)  # what /decode passes on first
        return self._prefill_reply(msg, first.token_ids[0], first.cached_tokens, time.monotonic() - started_s,
                                   transfer_s=None, finish_reason=finish, queue_s=queue_s)

    def _prefill_reply(self, msg: PrefillRequest, first_token: int, cached: int | None, prefill_s: float, *,
                       transfer_s: float | None, transfer_bytes: int = 0,
                       finish_reason: str | None = None, skip_tokens: int = 0,
                       queue_s: float = 0.0) -> web.Response:
        self._remember_prefilled(msg.token_ids)
        return reply(PrefillReply(request_id=msg.request_id, first_token=first_token,
                                  num_prompt_tokens=len(msg.token_ids), num_cached_tokens=cached or 0, queue_s=queue_s,
                                  prefill_s=prefill_s, transfer_bytes=transfer_bytes,
                                  transfer_s=transfer_s, finish_reason=finish_reason, skip_tokens=skip_tokens))

    def _prefill_failed(self, msg: PrefillRequest, exc: BaseException) -> web.Response:
        if isinstance(exc, VllmError) and exc.is_input_error:
            return error("bad_request", f"vLLM refused the prompt: {exc}", 400)
        if isinstance(exc, VllmError) and exc.status == 0:
            self.vllm_up = False  # the heartbeats stop until /metrics answers again
            return error("unavailable", f"{self.section.name}: {exc}", 503)
        _log.warning("prefill of %s failed on vLLM: %s", msg.request_id, exc)
        return error("transfer", f"{self.section.name}: vLLM prefill failed: {exc}", 502)

    # --- vLLM streams ----------------------------------------------------------------------------
    def _start_pump(self, body: dict[str, object]) -> _Pump:
        pump = _Pump()

        async def run() -> None:
            try:
                async for part in self.client.stream(body):
                    pump.queue.put_nowait(part)
                    if part.finish_reason is not None:
                        break
            except VllmError as exc:
                pump.queue.put_nowait(exc)
            finally:
                pump.queue.put_nowait(_END)

        pump.task = asyncio.create_task(run())
        return pump

    @staticmethod
    async def _next_tokens(pump: _Pump) -> VllmTokens | VllmError | None:
        """The next chunk that carries tokens or a finish (usage-only chunks are skipped)."""
        while True:
            item = await pump.queue.get()
            if item is None or isinstance(item, VllmError) or item.token_ids or item.finish_reason is not None:
                return item

    # --- decode ----------------------------------------------------------------------------------
    async def handle_decode(self, request: web.Request) -> web.StreamResponse:
        try:
            msg = decode(await request.read(), DecodeRequest)
        except ProtocolVersionError as exc:
            return error("bad_request", str(exc), 400)
        rid = msg.request_id
        if rid in self._aborted:
            return error("state_missing", f"{rid} was aborted", 409)
        pump = self._kept.pop(rid, None)
        if pump is None:
            prompt = msg.prompt_token_ids
            if prompt is None or len(prompt) != msg.num_prompt_tokens:
                return error("bad_request", f"{self.section.name} is a vLLM node: its /decode needs the prompt's "
                             f"{msg.num_prompt_tokens} prompt_token_ids", 400)
            if msg.sampling.max_tokens <= 1:
                return error("bad_request", "nothing to decode (max_tokens <= 1)", 400)
            params = to_params(RecvParams(transfer_id=rid, num_tokens=len(prompt),
                                          skip_tokens=min(msg.skip_tokens, len(prompt)),
                                          wait_s=msg.state_wait_s))
            body = completion_body(self.client.model or "", [*prompt, msg.first_token], msg.sampling,
                                   max_tokens=msg.sampling.max_tokens - 1, stream=True, kv_params=params)
            pump = self._start_pump(body)
        self._decoding[rid] = pump
        self.in_flight += 1
        try:
            return await self._stream_decode(request, rid, pump)
        finally:
            self.in_flight -= 1
            self._decoding.pop(rid, None)
            pump.cancel()

    async def _stream_decode(self, request: web.Request, rid: str, pump: _Pump) -> web.StreamResponse:
        first: VllmTokens | VllmError | None
        if pump.head is not None and (pump.head.token_ids or pump.head.finish_reason is not None):
            first, pump.head = pump.head, None
        else:
            first = await self._next_tokens(pump)
        if first is None or isinstance(first, VllmError):  # nothing was generated: as a state that did not arrive
            if rid in self._aborted:
                return error("state_missing", f"{rid} was aborted", 409)
            reason = first if first is not None else "vLLM ended the stream without a token"
            _log.warning("decode of %s failed before its first token: %s", rid, reason)
            if isinstance(first, VllmError) and first.status == 0:
                self.vllm_up = False
                return error("unavailable", f"{self.section.name}: {first}", 503)
            return error("state_missing", f"{self.section.name}: vLLM decode of {rid} failed: {reason}", 409)
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        item: VllmTokens | VllmError | None = first
        try:
            await response.prepare(request)
            while True:
                if item is None or (isinstance(item, VllmError) and item.status == 0):
                    # vLLM went away mid-stream: end without a finish, the gateway re-prefills elsewhere (policy)
                    _log.warning("decode of %s lost its vLLM stream: %s", rid, item or "ended without a finish")
                    break  # (whether vLLM is down is /metrics' to say: the next poll)
                chunk = _token_chunk(rid, item)
                await response.write(encode(chunk) + b"\n")
                if chunk.finish_reason is not None:
                    break
                item = await self._next_tokens(pump)
            await response.write_eof()
        except ConnectionResetError as exc:  # the gateway closed the stream: a cancel (vLLM aborts on close)
            _log.info("decode of %s cancelled: the gateway closed its stream (%s)", rid, type(exc).__name__)
            self.decodes_cancelled_total += 1
        return response

    # --- role, abort, health, tables ---------------------------------------------------------------
    async def handle_role(self, request: web.Request) -> web.Response:
        """The connector is kv_both: a P/D role is only what the gateway routes here, so it changes at once."""
        try:
            msg = decode(await request.read(), RoleSwitch)
        except ProtocolVersionError as exc:
            return error("bad_request", str(exc), 400)
        if self.section.cluster is not ClusterKind.PD or msg.role not in (Role.PD_PREFILL, Role.PD_DECODE):
            return error("bad_request", f"{self.section.name} cannot take role {msg.role.value}", 400)
        self.role = msg.role
        return reply(RoleSwitchReply(name=self.section.name, role=self.role, drained_s=0.0))

    async def handle_abort(self, request: web.Request) -> web.Response:
        try:
            msg = decode(await request.read(), AbortRequest)
        except ProtocolVersionError as exc:
            return error("bad_request", str(exc), 400)
        return reply(AbortReply(found=self.abort(msg.request_id)))

    def abort(self, rid: str) -> bool:
        """End the attempt wherever it is here: the pending call or stream closes its connection to vLLM."""
        self._aborted[rid] = None
        while len(self._aborted) > ABORTED_MAX:
            self._aborted.popitem(last=False)
        found = self.turns.withdraw(rid)
        call = self._calls.get(rid)
        if call is not None:
            call.cancel()
            found = True
        kept = self._kept.pop(rid, None)
        if kept is not None:
            kept.cancel()
            found = True
        pump = self._decoding.get(rid)
        if pump is not None:
            pump.cancel()
            pump.queue.put_nowait(VllmTokens((), CANCELLED))
            self.decodes_cancelled_total += 1
            found = True
        return found

    async def handle_health(self, _request: web.Request) -> web.Response:
        return reply(self.heartbeat(with_cache_report=False))

    async def handle_tables(self, _request: web.Request) -> web.Response:
        return reply(self.tables())

    def tables(self) -> NodeTables:
        return NodeTables(name=self.section.name, live_attempts=len(self._calls) + len(self._kept),
                          queued_jobs=0, waiting_admissions=0, running_batch=self.load.running,
                          decode_streams=len(self._decoding), inbox_states=len(self._kept), inbox_bytes=0,
                          waiting_admission_bytes=0, pending_allocations=0, receiver_budget_used_bytes=0,
                          queued_tokens=self.queued_tokens, in_flight=self.in_flight,
                          prefills_cancelled_total=self.prefills_cancelled_total,
                          decodes_cancelled_total=self.decodes_cancelled_total)


def _token_chunk(rid: str, item: VllmTokens | VllmError) -> TokenChunk:
    if isinstance(item, VllmError):
        return TokenChunk(request_id=rid, token_ids=[], finish_reason=ENGINE_ERROR, error=str(item))
    reason = item.finish_reason
    if reason is not None and reason not in ("stop", "length", CANCELLED):
        reason = "stop"  # vLLM's "abort" and others end the request as a stop would
    return TokenChunk(request_id=rid, token_ids=list(item.token_ids), finish_reason=reason)


async def serve_vllm_node(cfg: DeployConfig, name: str, secret: bytes) -> None:
    """Run one adapter node until SIGTERM / SIGINT (`serve.main`)."""
    import signal

    from prfaas.serve.deploy_secrets import load_vllm_api_key

    node = VllmNodeServer(cfg, name, secret, load_vllm_api_key(cfg.node(name), os.environ))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stop)
    await node.start()
    _log.info("vLLM node %s serving on %s in front of %s", name, node.control_url, node.section.vllm_url)
    await node.wait_closed()
    _log.info("vLLM node %s stopped", name)
