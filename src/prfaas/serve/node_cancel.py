"""A node's side of cancellation: `/abort` ends an attempt wherever it is, and `/tables` shows what is held.

    POST /abort  AbortRequest(request_id)   -> AbortReply(found)     # signed, like every control call
    GET  /tables                            -> NodeTables            # signed; the leak check of tests

An abort of an attempt id (`serve.attempts`):
- prefill queued: the job leaves the model thread's queue (its handler answers 409 `cancelled`);
- prefill running: the per-layer hook raises at the next layer (`LiveAttempt.check`);
- transfer streaming: the sender aborts it (the receiver is told and frees its buffers);
- state waiting in the inbox, or a decode waiting for it: dropped / answered 409;
- decode running: the model thread removes it from the batch before its next step, and its stream ends with
  finish reason `cancelled`.
A gateway that closes a decode stream (its client went away) is a cancel too, logged at INFO, never a traceback.
Also here: the prefill job with its per-layer cancel check, the node's budgets (`serve.budgets`) and `/tables`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from prfaas.serve.attempts import AttemptTable, LiveAttempt, PrefillCancelled
from prfaas.serve.backend import Backend, DecodeEvent
from prfaas.serve.budgets import prefill_refusal, state_refusal
from prfaas.serve.inbox import StateInbox, state_nbytes
from prfaas.serve.memory import trim
from prfaas.serve.messages import (
    AbortReply,
    AbortRequest,
    ErrorReply,
    NodeTables,
    PrefillRequest,
    ProtocolVersionError,
    decode,
    encode,
)
from prfaas.serve.worker import ModelWorker

if TYPE_CHECKING:
    from prfaas.serve.config import DeployConfig, NodeSection
    from prfaas.transport import KvReceiver

ABORT_WAIT_S = 5.0  # how long an abort waits for a running prefill layer to end
CANCELLED = "cancelled"  # finish reason of a decode stream ended by an abort
_log = logging.getLogger(__name__)
_JSON = "application/json"


class NodeCancellation:
    """Mixed into `NodeServer` (which owns these attributes)."""

    cfg: DeployConfig
    section: NodeSection
    backend: Backend
    worker: ModelWorker
    inbox: StateInbox
    attempts: AttemptTable
    receiver: KvReceiver
    in_flight: int
    queued_tokens: int
    decodes_cancelled_total: int
    _streams: dict[str, asyncio.Queue[DecodeEvent]]
    _allocated: dict[int, Any]

    async def handle_abort(self, request: web.Request) -> web.Response:
        try:
            msg = decode(await request.read(), AbortRequest)
        except ProtocolVersionError as exc:
            return _message(ErrorReply(kind="bad_request", message=str(exc)), 400)
        rid = msg.request_id
        found = await self._abort_prefill(rid) | self._abort_decode(rid)
        return _message(AbortReply(found=found))

    async def _abort_prefill(self, attempt_id: str) -> bool:
        """Cancel the attempt's prefill; answers once its model-thread job stopped (within one layer), so that a
        retry the gateway starts after this answer never runs next to it."""
        live = self.attempts.cancel(attempt_id)
        if live is None:
            return False
        if live.transfer is not None:
            live.transfer.abort(f"{attempt_id} aborted by the gateway")
        job = live.job_future
        if job is not None and not self.worker.withdraw(job, PrefillCancelled(f"{attempt_id} aborted while queued")):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), ABORT_WAIT_S)
        return True

    def _abort_decode(self, request_id: str) -> bool:
        self.attempts.mark_aborted(request_id)  # a state arriving later is dropped
        found = request_id in self._streams or request_id in self.inbox
        self.worker.cancel(request_id)
        self.inbox.abort(request_id)
        queue = self._streams.get(request_id)
        if queue is not None:  # ends the stream at once; the model thread drops it before its next step
            queue.put_nowait(DecodeEvent(request_id, None, CANCELLED))
            self.decodes_cancelled_total += 1
        return found

    def _prefill_job(self, msg: PrefillRequest, transfer: Any, started: list[float],
                     live: LiveAttempt) -> Callable[[], Any]:
        stall_s = msg.debug_stall_s if self.cfg.gateway.allow_debug_hooks and transfer is not None else 0.0

        def on_layer(layer_index: int, views: Sequence[memoryview]) -> None:
            live.check()  # an aborted prefill stops within one layer
            if transfer is not None:
                transfer.send_layer(layer_index, views)
            if stall_s > 0 and not stalled:
                stalled.append(True)
                live.wait(stall_s)  # test hook: a transfer stuck after its first layer (an abort ends it)

        stalled: list[bool] = []

        def job() -> Any:
            live.check()  # aborted while queued
            started.append(time.monotonic())
            span = self.attempts.started(live)
            try:
                output = self.backend.prefill(msg.request_id, msg.token_ids, msg.sampling, on_layer)
                if transfer is not None:
                    transfer.finish()
                return output
            finally:
                span.end_s = time.monotonic()

        return job

    def _prefill_cancelled(self, msg: PrefillRequest, transfer: Any, message: str, *, ran: bool) -> web.Response:
        if transfer is not None:
            transfer.abort(message)
        if ran:  # a prefill that started may hold its state in the prefix pool until released
            self.worker.submit(lambda: self.backend.release(msg.request_id))
        _log.info("prefill of %s cancelled", msg.request_id)
        return _message(ErrorReply(kind=CANCELLED, message=message), 409)

    def _decode_stream_lost(self, request_id: str, exc: BaseException) -> None:
        """The gateway closed the decode stream (its client went away): a cancel, not a node failure."""
        _log.info("decode of %s cancelled: the gateway closed its stream (%s)", request_id, type(exc).__name__)
        self.worker.cancel(request_id)
        self.decodes_cancelled_total += 1

    # --- budgets (`serve.budgets`) -----------------------------------------------------------------
    def waiting_state_bytes(self) -> int:
        return self.inbox.num_bytes + self.worker.waiting_admission_bytes

    def _prefill_over_budget(self, msg: PrefillRequest) -> str | None:
        refusal = prefill_refusal(self.cfg.budgets, self.queued_tokens, len(msg.token_ids))
        if refusal is None and msg.decode_target.name == self.section.name:  # colocated: the state stays here
            state_bytes = self.backend.expected_layout(len(msg.token_ids)).total_bytes
            refusal = state_refusal(self.cfg.budgets, self.waiting_state_bytes(), state_bytes)
        return refusal

    def _state_arrived(self, request_id: str, state: Any) -> None:
        """Event loop: a transferred state lands in the inbox, or is refused when the inbox is over budget."""
        if self.attempts.was_aborted(request_id):  # its abort overtook it
            return
        refusal = state_refusal(self.cfg.budgets, self.waiting_state_bytes(), state_nbytes(state))
        if refusal is None:
            self.inbox.put(request_id, state)
        else:
            _log.warning("state of %s dropped: %s", request_id, refusal)
            self.inbox.refuse(request_id, refusal)

    # --- memory ------------------------------------------------------------------------------------
    async def _trim_when_idle(self, interval_s: float = 2.0) -> None:
        """Once the node drained (nothing in flight, nothing held), give freed request memory back (`serve.memory`)."""
        was_busy = False
        while True:
            await asyncio.sleep(interval_s)
            tables = self.tables()
            busy = bool(tables.in_flight or tables.running_batch or tables.queued_jobs or tables.inbox_states)
            if was_busy and not busy:
                self.worker.submit(trim)  # the model thread: never while it allocates
            was_busy = busy

    # --- tables --------------------------------------------------------------------------------------
    async def handle_tables(self, _request: web.Request) -> web.Response:
        return _message(self.tables())

    def tables(self) -> NodeTables:
        return NodeTables(name=self.section.name, live_attempts=len(self.attempts),
                          queued_jobs=self.worker.num_queued_jobs,
                          waiting_admissions=self.worker.num_waiting_admissions,
                          running_batch=self.backend.num_running, decode_streams=len(self._streams),
                          inbox_states=len(self.inbox), inbox_bytes=self.inbox.num_bytes,
                          waiting_admission_bytes=self.worker.waiting_admission_bytes,
                          pending_allocations=len(self._allocated),
                          receiver_budget_used_bytes=self.receiver.registry.budget_used_bytes,
                          queued_tokens=self.queued_tokens, in_flight=self.in_flight,
                          prefills_cancelled_total=self.attempts.cancelled_total,
                          decodes_cancelled_total=self.decodes_cancelled_total,
                          prefill_preemptions_total=self.worker.preemptions_total,
                          prefill_spans=self.attempts.span_rows())


def _message(message: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(message), status=status, content_type=_JSON)
