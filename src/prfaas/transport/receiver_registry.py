"""Receiver-side registry: every inbound transfer, the memory budget, and the peer sessions.

Admission and backpressure: a BEGIN is checked against the limits (declared total and per-tensor
bytes, tensor and chunk counts, chunk size, the whole memory budget) before anything is
allocated; a violation is answered with ABORT(LIMIT_EXCEEDED). An acceptable transfer is admitted
(the allocator is called, ADMIT sent) when the declared bytes of admitted, unfinished transfers
stay within `memory_budget_bytes`; otherwise it waits in FIFO order, and the sender sends no chunk
until it is admitted. A transfer completes only when every chunk was verified in place and the END
digest matches; then `on_complete(request_id, layout, buffers)` runs (on a transport thread) and
COMPLETE is sent; its budget is released when `on_complete` returns. Any failure calls
`on_failed(request_id, TransferFailed)` and the buffers are never handed out. Callbacks and the
allocator run without the registry lock held.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prfaas.core.link import LinkSnapshot
from prfaas.core.state_layout import StateLayout
from prfaas.transport.checksum import chunk_checksum
from prfaas.transport.codec import encode
from prfaas.transport.config import ChecksumKind, ReceiverConfig
from prfaas.transport.errors import FailureReason, FrameCorrupt, LimitExceeded, ProtocolError, TransferFailed
from prfaas.transport.frames import (
    Abort,
    Admit,
    Begin,
    ChunkAck,
    ChunkHeader,
    ChunkPayloadDone,
    Complete,
    End,
    Nack,
    NackReason,
)
from prfaas.transport.inbound import InboundPhase, InboundState, Verdict
from prfaas.transport.manifest import check_layout_limits
from prfaas.transport.receiver_conn import ReceiverConnection
from prfaas.transport.telemetry import LinkTelemetry

Allocator = Callable[[StateLayout], Sequence[object]]
OnComplete = Callable[[str, StateLayout, list[memoryview]], None]
OnFailed = Callable[[str, TransferFailed], None]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class InboundRecord:
    state: InboundState
    node_name: str
    declared_s: float
    admitted_s: float | None = None


class InboundRegistry:
    def __init__(self, config: ReceiverConfig, allocator: Allocator, on_complete: OnComplete,
                 on_failed: OnFailed | None, clock: Callable[[], float]) -> None:
        self.config = config
        self._allocator = allocator
        self._on_complete = on_complete
        self._on_failed = on_failed
        self._clock = clock
        self._lock = threading.Lock()
        self._transfers: dict[bytes, InboundRecord] = {}
        self._waiting: deque[bytes] = deque()
        self._budget_used_bytes = 0
        self._handing_over: set[int] = set()  # id() of the layouts of complete transfers in on_complete
        self._sessions: dict[bytes, list[ReceiverConnection]] = {}
        self._orphaned_since: dict[bytes, float] = {}  # session -> when its last connection went away
        self._telemetry: dict[str, LinkTelemetry] = {}
        self.num_rejected_connections = 0

    # -- connections -------------------------------------------------------------------------------

    def count_rejected_connection(self) -> None:
        with self._lock:
            self.num_rejected_connections += 1

    def add_connection(self, conn: ReceiverConnection) -> None:
        with self._lock:
            self._sessions.setdefault(conn.session_id, []).append(conn)
            self._orphaned_since.pop(conn.session_id, None)
            self._link(conn.node_name).is_up = True

    def remove_connection(self, conn: ReceiverConnection) -> None:
        with self._lock:
            conns = self._sessions.get(conn.session_id, [])
            if conn in conns:
                conns.remove(conn)
            if not conns:
                self._sessions.pop(conn.session_id, None)
                self._orphaned_since[conn.session_id] = self._clock()
            for record in self._transfers.values():
                record.state.release_claims(conn.conn_id)

    def connections(self) -> list[ReceiverConnection]:
        with self._lock:
            return [c for conns in self._sessions.values() for c in conns]

    def _send(self, session_id: bytes, frame: bytes, prefer: ReceiverConnection | None = None) -> None:
        with self._lock:
            conns = list(self._sessions.get(session_id, []))
        if prefer is not None and prefer.is_alive:
            conns.insert(0, prefer)
        for conn in conns:
            if conn.send(frame):
                return

    def _link(self, node_name: str) -> LinkTelemetry:
        link = self._telemetry.get(node_name)
        if link is None:
            link = LinkTelemetry(node_name, window_s=self.config.telemetry_window_s)
            self._telemetry[node_name] = link
        return link

    # -- BEGIN and admission -----------------------------------------------------------------------

    def _check_begin(self, begin: Begin) -> InboundState | None:
        limits = self.config.limits
        check_layout_limits(begin.layout, limits)
        if not limits.min_chunk_bytes <= begin.chunk_bytes <= limits.max_chunk_bytes:
            raise LimitExceeded(f"chunk size {begin.chunk_bytes} B outside "
                                f"{limits.min_chunk_bytes}..{limits.max_chunk_bytes}")
        if begin.num_chunks > limits.max_chunks:
            raise LimitExceeded(f"{begin.num_chunks} chunks > limit {limits.max_chunks}")
        if begin.total_bytes > self.config.memory_budget_bytes:
            raise LimitExceeded(f"transfer of {begin.total_bytes} B > memory budget "
                                f"{self.config.memory_budget_bytes} B")
        return InboundState(begin, b"")

    def on_begin(self, conn: ReceiverConnection, begin: Begin) -> None:
        try:
            state = self._check_begin(begin)
        except (LimitExceeded, ProtocolError) as exc:
            reason = FailureReason.LIMIT_EXCEEDED if isinstance(exc, LimitExceeded) else FailureReason.PROTOCOL
            conn.send(encode(Abort(begin.transfer_id, reason, str(exc))))
            return
        assert state is not None
        state.session_id = conn.session_id
        refused: str | None = None
        with self._lock:
            existing = self._transfers.get(begin.transfer_id)
            if existing is not None:  # BEGIN resent after a lost connection
                existing.state.session_id = conn.session_id
                admitted = existing.state.phase is InboundPhase.RECEIVING
            elif len(self._waiting) >= self.config.max_waiting_transfers:
                refused = f"{len(self._waiting)} transfers already wait for memory budget"
                admitted = False
            else:
                record = InboundRecord(state, conn.node_name, self._clock())
                self._transfers[begin.transfer_id] = record
                self._link(conn.node_name).transfer_started(begin.total_bytes)
                self._waiting.append(begin.transfer_id)
                admitted = False
            to_admit = self._pop_admissible() if existing is None and refused is None else []
        if refused is not None:
            conn.send(encode(Abort(begin.transfer_id, FailureReason.LIMIT_EXCEEDED, refused)))
        if admitted:
            conn.send(encode(Admit(begin.transfer_id)))
        self._admit(to_admit)

    def _pop_admissible(self) -> list[InboundRecord]:
        """Under the lock: reserve budget for waiting transfers, in FIFO order."""
        ready = []
        budget = self.config.memory_budget_bytes
        while self._waiting:
            record = self._transfers.get(self._waiting[0])
            if record is None:
                self._waiting.popleft()
                continue
            total = record.state.begin.total_bytes
            if self._budget_used_bytes + total > budget:
                break
            self._waiting.popleft()
            self._budget_used_bytes += total
            record.admitted_s = self._clock()
            ready.append(record)
        return ready

    def _admit(self, records: list[InboundRecord]) -> None:
        for record in records:
            state = record.state
            try:
                state.attach_buffers(self._allocator(state.begin.layout))
            except TransferFailed as exc:
                self._fail(record, exc)
                continue
            except Exception as exc:  # the application's allocator failed: report it, typed
                self._fail(record, TransferFailed(f"allocator failed: {exc}", reason=FailureReason.ALLOCATION))
                continue
            self._send(state.session_id, encode(Admit(state.transfer_id)))

    # -- chunks and END ----------------------------------------------------------------------------

    def claim(self, conn: ReceiverConnection,
              header: ChunkHeader) -> tuple[memoryview | None, ChecksumKind | None, bool]:
        """(destination or None to discard, its checksum kind, whether the transfer is receiving)."""
        with self._lock:
            record = self._transfers.get(header.transfer_id)
            if record is None or record.state.phase is not InboundPhase.RECEIVING:
                return None, None, False
            return record.state.claim(header, conn.conn_id), record.state.begin.checksum, True

    def on_payload(self, conn: ReceiverConnection, done: ChunkPayloadDone, sink: memoryview | None,
                   *, is_known: bool) -> None:
        header = done.header
        tid = header.transfer_id
        if not is_known:
            conn.send(encode(Nack(tid, header.seq, NackReason.UNKNOWN_TRANSFER)))
            return
        with self._lock:
            record = self._transfers.get(tid)
        if record is None:
            return
        actual = done.checksum
        if actual is None:
            actual = chunk_checksum(record.state.begin.checksum, sink) if sink is not None else header.checksum
        with self._lock:
            verdict = record.state.verify(header, conn.conn_id, actual) if sink is not None else Verdict.ACK
            if verdict is Verdict.ACK and sink is not None:
                self._link(record.node_name).record_delivered(header.length, self._clock())
        if verdict is Verdict.ACK:
            conn.defer(encode(ChunkAck(tid, header.seq)))
            self._maybe_complete(record, conn)
        elif verdict is Verdict.NACK:
            conn.defer(encode(Nack(tid, header.seq, NackReason.CHECKSUM_MISMATCH)))

    def on_end(self, conn: ReceiverConnection, end: End) -> None:
        with self._lock:
            record = self._transfers.get(end.transfer_id)
            if record is not None:
                record.state.session_id = conn.session_id
                record.state.on_end(end)
        if record is not None:
            self._maybe_complete(record, conn)

    def on_abort(self, abort: Abort) -> None:
        with self._lock:
            record = self._transfers.get(abort.transfer_id)
        if record is not None:
            self._fail(record, TransferFailed(f"sender aborted: {abort.message}", reason=abort.reason),
                       tell_peer=False)

    # -- outcomes ----------------------------------------------------------------------------------

    def _maybe_complete(self, record: InboundRecord, conn: ReceiverConnection) -> None:
        state = record.state
        with self._lock:
            if self._transfers.get(state.transfer_id) is not record:
                return
            try:
                if not state.is_complete():
                    return
            except FrameCorrupt as exc:
                corrupt: TransferFailed | None = TransferFailed(str(exc), reason=FailureReason.CORRUPTION)
            else:
                corrupt = None
                state.phase = InboundPhase.COMPLETE
                self._finish(record, is_ok=True, release_budget=False)  # released after the hand-over
                self._handing_over.add(id(state.begin.layout))
        if corrupt is not None:
            self._fail(record, corrupt)
            return
        self._hand_over(record, conn)

    def _hand_over(self, record: InboundRecord, conn: ReceiverConnection) -> None:
        state = record.state
        begin = state.begin
        if self.config.reverify_on_complete and not state.reverify():
            with self._lock:
                self._handing_over.discard(id(begin.layout))
            self._report_failure(record, TransferFailed("state changed after verification",
                                                        reason=FailureReason.CORRUPTION))
            return
        try:
            self._on_complete(begin.request_id, begin.layout, state.buffers)
        except Exception as exc:  # the application refused the state: tell both ends
            _log.exception("on_complete failed for request %r", begin.request_id)
            self._report_failure(record, TransferFailed(f"receiver application failed: {exc}",
                                                        reason=FailureReason.CANCELLED))
        else:
            self._send(state.session_id, encode(Complete(begin.transfer_id)), prefer=conn)
        with self._lock:
            self._handing_over.discard(id(begin.layout))
            self._budget_used_bytes -= begin.total_bytes
            to_admit = self._pop_admissible()
        self._admit(to_admit)

    def _finish(self, record: InboundRecord, *, is_ok: bool, release_budget: bool = True) -> None:
        """Under the lock: forget the transfer and (by default) give its budget back."""
        state = record.state
        del self._transfers[state.transfer_id]
        if record.admitted_s is not None and release_budget:
            self._budget_used_bytes -= state.begin.total_bytes
        latency_s = self._clock() - record.declared_s if is_ok else None
        self._link(record.node_name).transfer_finished(state.begin.total_bytes, is_ok=is_ok, latency_s=latency_s)

    def _fail(self, record: InboundRecord, error: TransferFailed, *, tell_peer: bool = True) -> None:
        with self._lock:
            if self._transfers.get(record.state.transfer_id) is not record:
                return
            record.state.phase = InboundPhase.FAILED
            self._finish(record, is_ok=False)
            to_admit = self._pop_admissible()
        if tell_peer:
            self._report_failure(record, error)
        elif self._on_failed is not None:
            self._on_failed(record.state.begin.request_id, error)
        self._admit(to_admit)

    def _report_failure(self, record: InboundRecord, error: TransferFailed) -> None:
        self._send(record.state.session_id, encode(Abort(record.state.transfer_id, error.reason, str(error))))
        if self._on_failed is not None:
            self._on_failed(record.state.begin.request_id, error)

    def tick(self, now_s: float) -> None:
        """Fail transfers past their deadline, waiting too long for memory budget, or whose sender vanished."""
        cfg = self.config
        with self._lock:
            records = list(self._transfers.values())
            orphaned = {sid for sid, since in self._orphaned_since.items() if now_s - since > cfg.orphan_timeout_s}
            live = {r.state.session_id for r in records}
            for sid in [s for s in self._orphaned_since if s not in live]:
                del self._orphaned_since[sid]  # nothing of that sender is left to fail
        for record in records:
            if record.state.session_id in orphaned:
                self._fail(record, TransferFailed(f"sender gone: no connection for {cfg.orphan_timeout_s} s",
                                                  reason=FailureReason.PEER_UNAVAILABLE), tell_peer=False)
            elif record.admitted_s is not None and now_s - record.admitted_s > cfg.transfer_deadline_s:
                self._fail(record, TransferFailed(f"not complete within {cfg.transfer_deadline_s} s",
                                                  reason=FailureReason.DEADLINE))
            elif record.admitted_s is None and now_s - record.declared_s > cfg.admission_timeout_s:
                self._fail(record, TransferFailed("memory budget busy for too long",
                                                  reason=FailureReason.LIMIT_EXCEEDED))

    def fail_all(self, error: TransferFailed) -> None:
        with self._lock:
            records = list(self._transfers.values())
        for record in records:
            self._fail(record, error)

    def snapshots(self, now_s: float) -> dict[str, LinkSnapshot]:
        with self._lock:
            return {name: link.snapshot(now_s) for name, link in self._telemetry.items()}

    def live_layout_ids(self) -> set[int]:
        """`id()` of the layouts of transfers not yet completed or failed (their allocations are still needed)."""
        with self._lock:
            return {id(record.state.begin.layout) for record in self._transfers.values()} | self._handing_over

    @property
    def budget_used_bytes(self) -> int:
        return self._budget_used_bytes
