"""A node process: a PrfaaS prefill node or a PD node (PD-P or PD-D, switchable at run time).

    node = NodeServer(cfg, "pd-1", backend, secret)  # backend loaded already; secret: `serve.deploy_secrets`
    await node.start()                             # control HTTP, KV receiver, register + heartbeats
    await node.wait_closed()                       # until stop() (SIGTERM / SIGINT in `serve_node`)

Endpoints and messages: see `serve.messages`. Every node has a prefill path and a decode path; the role only
says what the gateway routes to it. The prefill path streams each finished layer to the decode target's KV
receiver (`KvSender`, layer-wise), or keeps the state here for a colocated request. The decode path waits for
the state in the `StateInbox`, admits it into the model thread's continuous batch and streams `TokenChunk`s
(NDJSON) back. A role switch waits until nothing is in flight (drain), then switches.
Every endpoint but /health needs the gateway's control-plane signature (`serve.control_auth`; 401 without it),
every answer is signed back, and the node signs its register and heartbeat calls to the gateway (sent from a
thread of their own, `serve.liveness`, so that load cannot delay them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.state_layout import StateLayout
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.serve.admission import SHED_KIND, QueueDeadlinePassed, await_start
from prfaas.serve.attempts import AttemptTable, LiveAttempt, PrefillCancelled
from prfaas.serve.backend import Backend, BackendInputError, DecodeEvent
from prfaas.serve.cache_report import NO_REPORT, CacheReporter
from prfaas.serve.config import DeployConfig, NodeSection
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.inbox import StateInbox, StateNotArrived
from prfaas.serve.liveness import HeartbeatThread, start_heartbeats
from prfaas.serve.messages import (
    DecodeRequest,
    Heartbeat,
    NodeRegister,
    PrefillReply,
    PrefillRequest,
    ProtocolVersionError,
    RoleSwitch,
    RoleSwitchReply,
    TokenChunk,
    decode,
    encode,
)
from prfaas.serve.node_cancel import NodeCancellation
from prfaas.serve.node_http import error, reply, start_control
from prfaas.serve.prefill_order import prefill_cost_s, region_weights
from prfaas.serve.sites import node_gateways
from prfaas.serve.tls_setup import receiver_context, sender_context
from prfaas.serve.worker import ModelWorker
from prfaas.transport import KvReceiver, KvSender, PacingConfig, PeerAddress, ReceiverConfig, SenderConfig
from prfaas.transport.errors import TransportError
from prfaas.transport.testing import LinkShim

_log = logging.getLogger(__name__)


_reply = reply
_error = error


class NodeServer(NodeCancellation):
    def __init__(self, cfg: DeployConfig, name: str, backend: Backend, shared_secret: bytes) -> None:
        self.cfg = cfg
        self.shared_secret = shared_secret
        self.auth = ControlAuth(shared_secret, RefusalRecorder())
        self.section: NodeSection = cfg.node(name)
        self.role = self.section.role
        self.backend = backend
        self.worker = ModelWorker(backend, cfg.model.max_batch_size, self._on_events_threadsafe,
                                  region_weights=region_weights(cfg), preempt=cfg.policy.prefill_preemption)
        self.inbox = StateInbox()
        self.attempts = AttemptTable()
        self.decodes_cancelled_total = 0
        self.in_flight = 0
        self.queued_tokens = 0
        self.prefill_tokens_total = 0
        self._streams: dict[str, asyncio.Queue[DecodeEvent]] = {}
        self._allocated: dict[int, Any] = {}
        self._alloc_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = self.section.port
        self._liveness: list[HeartbeatThread] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.sender = KvSender(self._sender_config())
        self.cache_reporter = CacheReporter()
        self.receiver = KvReceiver(self._receiver_config(), self._allocate, self._on_state_complete,
                                   self._on_state_failed)

    # --- configuration ---------------------------------------------------------------------------
    def _sender_config(self) -> SenderConfig:
        t = self.cfg.transport
        link = self.cfg.egress_link()
        is_prfaas = self.section.cluster is ClusterKind.PRFAAS
        rate = gbps_to_bytes_per_s(link.capacity_gbps) if is_prfaas and link.capacity_gbps else None
        shim = LinkShim(one_way_delay_s=link.one_way_delay_s) if is_prfaas and link.one_way_delay_s > 0 else None
        return SenderConfig(shared_secret=self.shared_secret, node_name=self.section.name,
                            connections_per_peer=t.connections_per_peer, chunk_bytes=t.chunk_bytes,
                            transfer_deadline_s=t.transfer_deadline_s, pacing=PacingConfig(rate_bytes_per_s=rate),
                            link_capacity_gbps=link.capacity_gbps if is_prfaas else None, shim=shim,
                            ssl_context=sender_context(t, self.section.name))

    def _receiver_config(self) -> ReceiverConfig:
        t = self.cfg.transport
        return ReceiverConfig(shared_secret=self.shared_secret, host=self.section.host,
                              port=self.section.kv_port, memory_budget_bytes=t.memory_budget_bytes,
                              transfer_deadline_s=t.transfer_deadline_s,
                              ssl_context=receiver_context(t, self.section.name))

    @property
    def control_url(self) -> str:
        return f"http://{self.section.host}:{self._port}"

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.worker.start()
        self.receiver.start()
        routes = [web.post("/prefill", self.handle_prefill), web.post("/decode", self.handle_decode),
                  web.post("/role", self.handle_role), web.post("/abort", self.handle_abort),
                  web.get("/tables", self.handle_tables), web.get("/health", self.handle_health)]
        self._runner, self._port = await start_control(self.auth, self.section.host, self.section.port,
                                                       lambda: self.control_url, routes)
        self._liveness = self._start_liveness()
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        self._tasks.append(asyncio.create_task(self._trim_when_idle()))

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
        for beat in self._liveness:
            await asyncio.to_thread(beat.stop)
        if self._runner is not None:
            await self._runner.cleanup()
        self.sender.close()
        self.receiver.close()
        self.worker.stop()

    # --- registration and heartbeats ------------------------------------------------------------
    def _register_message(self) -> NodeRegister:
        return NodeRegister(name=self.section.name, cluster=self.section.cluster, role=self.role,
                            control_url=self.control_url, kv_host=self.section.host,
                            kv_port=self.receiver.address[1], max_batch=self.cfg.model.max_batch_size,
                            pid=os.getpid(), max_context_tokens=self.backend.max_context_tokens,
                            state_bytes_points=state_bytes_points(self.backend))

    def heartbeat(self, with_cache_report: bool = True, reporter: CacheReporter | None = None) -> Heartbeat:
        """The load snapshot (called from the heartbeat thread); only the heartbeats carry the cache report
        (its sequence advances with each one sent; `reporter`: the one of the gateway it goes to)."""
        links = list(self.sender.link_snapshots().values())
        reporter = reporter or self.cache_reporter
        cache = reporter.report(self.backend.cached_blocks()) if with_cache_report else NO_REPORT
        return Heartbeat(name=self.section.name, role=self.role,
                         queued_requests=self.worker.num_queued_jobs + self.worker.num_waiting_admissions,
                         queued_tokens=self.queued_tokens, running_batch=self.backend.num_running,
                         in_flight=self.in_flight, busy_s_total=self.worker.busy_s_total,
                         prefill_tokens_total=self.prefill_tokens_total, links=links,
                         cache_seq=cache.seq, cache_full=cache.is_full, cache_added=list(cache.added),
                         cache_removed=list(cache.removed))

    def _start_liveness(self) -> list[HeartbeatThread]:
        """Register and heartbeat from a thread of their own (`serve.liveness`): load cannot delay them. With
        [topology] a PrfaaS node does so to every region gateway that routes to it, each with its own cache
        report (`serve.sites.node_gateways`)."""
        return start_heartbeats(self.auth, node_gateways(self.cfg, self.section.name),
                                self.cfg.gateway.heartbeat_interval_s, register=self._register_message,
                                heartbeat=self.heartbeat, reporter=self.cache_reporter)

    async def _sweep_loop(self) -> None:
        while True:
            self.inbox.sweep(time.monotonic())
            await asyncio.sleep(self.cfg.gateway.heartbeat_interval_s)

    # --- KV receive (transport threads) ---------------------------------------------------------
    def _allocate(self, layout: StateLayout) -> Sequence[object]:
        state, views = self.backend.allocate(layout)
        with self._alloc_lock:
            self._allocated[id(layout)] = (state, time.monotonic())
            self._drop_stale_allocations()
        return views

    def _drop_stale_allocations(self) -> None:
        horizon = time.monotonic() - 2 * self.cfg.transport.transfer_deadline_s
        for key in [k for k, (_s, t) in self._allocated.items() if t < horizon]:
            del self._allocated[key]

    def _on_state_complete(self, request_id: str, layout: StateLayout, _buffers: list[memoryview]) -> None:
        with self._alloc_lock:
            state, _t = self._allocated.pop(id(layout))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._state_arrived, request_id, state)

    def _on_state_failed(self, request_id: str, exc: Exception) -> None:
        live = self.receiver.registry.live_layout_ids()
        with self._alloc_lock:  # the failed transfer's buffers are no longer needed
            for key in [k for k in self._allocated if k not in live]:
                del self._allocated[key]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.inbox.fail, request_id, f"transfer failed: {exc}")

    # --- prefill ---------------------------------------------------------------------------------
    async def handle_prefill(self, request: web.Request) -> web.Response:
        try:
            msg = decode(await request.read(), PrefillRequest)
        except ProtocolVersionError as exc:
            return _error("bad_request", str(exc), 400)
        duplicate = self.attempts.get(msg.request_id)
        if duplicate is not None:  # the same attempt twice runs once: answer as the first run does
            status, body = await asyncio.shield(duplicate.result)
            return web.Response(body=body, status=status, content_type="application/json")
        if self.attempts.was_aborted(msg.request_id):  # its abort overtook it
            return _error("cancelled", f"{msg.request_id} was aborted", 409)
        refusal = self.attempts.refusal(msg.request_id)
        if refusal is not None:
            return _error("attempt_live", refusal, 409)
        over_budget = self._prefill_over_budget(msg)
        if over_budget is not None:
            return _error("overloaded", over_budget, 503)
        live = self.attempts.open(msg.request_id)
        self.in_flight += 1
        self.queued_tokens += len(msg.token_ids)
        response = _error("unavailable", f"prefill of {msg.request_id} did not finish", 503)
        try:
            response = await self._prefill(msg, live)
            return response
        finally:
            self.in_flight -= 1
            reply_body = response.body
            self.attempts.close(msg.request_id, response.status,
                                bytes(reply_body) if isinstance(reply_body, (bytes, bytearray)) else b"")

    async def _prefill(self, msg: PrefillRequest, live: LiveAttempt) -> web.Response:
        arrived_s = time.monotonic()
        is_local = msg.decode_target.name == self.section.name
        transfer = None
        if not is_local:
            peer = PeerAddress(msg.decode_target.kv_host, msg.decode_target.kv_port)
            try:
                transfer = self.sender.begin(peer, msg.request_id, self.backend.expected_layout(len(msg.token_ids)))
            except TransportError as exc:
                return _error("transfer", str(exc), 502)
            live.transfer = transfer
        started: list[float] = []
        live.job_future = self.worker.submit(self._prefill_job(msg, transfer, started, live), region=msg.region,
                                             cost_s=prefill_cost_s(self.backend, len(msg.token_ids)),
                                             load=msg.region_load)
        try:
            output = await await_start(live.job_future, msg.start_within_s)
        except BackendInputError as exc:
            if transfer is not None:
                transfer.abort(str(exc))
            return _error("bad_request", str(exc), 400)
        except PrefillCancelled as exc:
            return self._prefill_cancelled(msg, transfer, str(exc), ran=bool(started))
        except QueueDeadlinePassed as exc:
            return self._shed(msg, transfer, exc)
        finally:
            self.queued_tokens -= len(msg.token_ids)
        if live.cancelled.is_set():
            return self._prefill_cancelled(msg, transfer, f"prefill of {msg.request_id} aborted", ran=True)
        prefill_done_s = time.monotonic()
        self.prefill_tokens_total += len(msg.token_ids) - output.num_cached_tokens
        transfer_bytes, transfer_s = 0, None
        if transfer is None:
            self.inbox.put(msg.request_id, output.state)
        else:
            try:
                report = await asyncio.wait_for(asyncio.wrap_future(transfer.future),
                                                self.cfg.transport.transfer_deadline_s)
            except (TransportError, TimeoutError) as exc:
                transfer.abort(str(exc))
                if live.cancelled.is_set():
                    return _error("cancelled", f"transfer of {msg.request_id} aborted", 409)
                return _error("transfer", f"transfer to {msg.decode_target.name} failed: {exc}", 502)
            finally:
                self.worker.submit(lambda: self.backend.release(msg.request_id))
            transfer_bytes = report.total_bytes
            transfer_s = report.finish_to_complete_s
        if transfer is None:
            self.worker.submit(lambda: self.backend.release(msg.request_id))
        start_s = started[0] if started else arrived_s
        return _reply(PrefillReply(request_id=msg.request_id, first_token=output.first_token,
                                   num_prompt_tokens=len(msg.token_ids), num_cached_tokens=output.num_cached_tokens,
                                   queue_s=start_s - arrived_s, prefill_s=prefill_done_s - start_s,
                                   transfer_bytes=transfer_bytes, transfer_s=transfer_s))

    def _shed(self, msg: PrefillRequest, transfer: Any, exc: QueueDeadlinePassed) -> web.Response:
        """The prefill was dropped from the queue before it started (admission control's start deadline)."""
        if transfer is not None:
            transfer.abort(f"shed: {exc}")
        _log.info("prefill %s shed: %s", msg.request_id, exc)
        return _error(SHED_KIND, f"{self.section.name} shed prefill {msg.request_id}: {exc}", 503)

    # --- decode ----------------------------------------------------------------------------------
    def _on_events_threadsafe(self, events: list[DecodeEvent]) -> None:
        if self._loop is not None and events:
            self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[DecodeEvent]) -> None:
        for event in events:
            queue = self._streams.get(event.request_id)
            if queue is not None:
                queue.put_nowait(event)

    async def handle_decode(self, request: web.Request) -> web.StreamResponse:
        try:
            msg = decode(await request.read(), DecodeRequest)
        except ProtocolVersionError as exc:
            return _error("bad_request", str(exc), 400)
        if self.attempts.was_aborted(msg.request_id):
            return _error("state_missing", f"{msg.request_id} was aborted", 409)
        self.in_flight += 1
        try:
            try:
                state = await self.inbox.take(msg.request_id, msg.state_wait_s)
            except StateNotArrived as exc:
                return _error("state_missing", str(exc), 409)
            return await self._stream_decode(request, msg, state)
        finally:
            self.in_flight -= 1

    async def _stream_decode(self, request: web.Request, msg: DecodeRequest, state: Any) -> web.StreamResponse:
        queue: asyncio.Queue[DecodeEvent] = asyncio.Queue()
        self._streams[msg.request_id] = queue
        self.worker.admit(msg.request_id, state, msg.first_token, msg.sampling)
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        finished = False
        try:
            await response.prepare(request)
            while not finished:
                events = [await queue.get()]
                while not queue.empty():
                    events.append(queue.get_nowait())
                chunk = _chunk(msg.request_id, events)
                finished = chunk.finish_reason is not None
                await response.write(encode(chunk) + b"\n")
            await response.write_eof()
        except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError: the gateway closed the stream
            if not finished:  # (a stream that was ending, by an abort or its last token, needs nothing more)
                self._decode_stream_lost(msg.request_id, exc)
            finished = True
        finally:
            self._streams.pop(msg.request_id, None)
            if not finished:
                self.worker.cancel(msg.request_id)
        return response

    # --- role switch, abort, health ------------------------------------------------------------
    async def handle_role(self, request: web.Request) -> web.Response:
        try:
            msg = decode(await request.read(), RoleSwitch)
        except ProtocolVersionError as exc:
            return _error("bad_request", str(exc), 400)
        if self.section.cluster is not ClusterKind.PD or msg.role not in (Role.PD_PREFILL, Role.PD_DECODE):
            return _error("bad_request", f"{self.section.name} cannot take role {msg.role.value}", 400)
        started = time.monotonic()
        while self.in_flight > 0 or self.backend.num_running > 0:
            if time.monotonic() - started > msg.drain_timeout_s:
                return _error("unavailable", f"drain did not finish in {msg.drain_timeout_s}s", 503)
            await asyncio.sleep(0.02)
        self.role = msg.role
        return _reply(RoleSwitchReply(name=self.section.name, role=self.role, drained_s=time.monotonic() - started))

    async def handle_health(self, _request: web.Request) -> web.Response:
        return _reply(self.heartbeat(with_cache_report=False))


def _chunk(request_id: str, events: list[DecodeEvent]) -> TokenChunk:
    tokens = [e.token_id for e in events if e.token_id is not None]
    last = events[-1]
    errors = [e.error for e in events if e.error is not None]
    return TokenChunk(request_id=request_id, token_ids=tokens, finish_reason=last.finish_reason,
                      error=errors[0] if errors else None)


def state_bytes_points(backend: Backend) -> list[tuple[int, int]]:
    """S_kv of this node's model at 1, powers of two up to its context, and the last position. Full-attention
    (linear in l) and linear-state (constant) layers interpolate exactly between them; a sliding window's cap
    (window - 1 kept tokens) falls inside one segment, where the interpolation is off by at most that segment's
    curvature."""
    limit = backend.max_context_tokens - 1
    lengths = sorted({1, limit, *(2**k for k in range(4, 31) if 2**k < limit)})
    return [(n, backend.expected_layout(n).total_bytes) for n in lengths]
