"""The connection pool of one peer link and the transfers in flight on it.

The pool keeps `connections_per_peer` authenticated connections open (keep-alive), reconnecting
with exponential backoff. Transfers share one work queue: control frames (BEGIN, END, ABORT) go
first, chunks are taken by whichever connection's writer is free, which stripes them over the
connections. All transfer state changes happen under the pool's condition lock; futures are
settled after it is released. A maintenance thread connects, enforces deadlines and samples
TCP_INFO for telemetry.

Failure semantics: a lost connection's unacknowledged chunks (and an unanswered BEGIN or END) are
requeued on the others, so the transfer resumes from the last acknowledged chunk. A transfer
fails with TransferFailed when its deadline passes, when no connection could be kept for
`reconnect_deadline_s`, when authentication fails, or when the receiver aborts it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from prfaas.core.link import LinkSnapshot
from prfaas.transport.checksum import chunk_checksum
from prfaas.transport.codec import encode
from prfaas.transport.config import SenderConfig
from prfaas.transport.errors import (
    AuthFailed,
    FailureReason,
    PeerUnavailable,
    TransferFailed,
    TransportError,
)
from prfaas.transport.frames import (
    SESSION_ID_BYTES,
    Abort,
    Admit,
    ChunkAck,
    Complete,
    Event,
    Nack,
    Pong,
)
from prfaas.transport.outbound import OutboundState, Phase
from prfaas.transport.pacing import TokenBucket
from prfaas.transport.records import TransferRecord, TransferReport
from prfaas.transport.sender_conn import ChunkWork, ControlKind, ControlWork, SenderConnection, Work
from prfaas.transport.tcpinfo import read_tcp_info
from prfaas.transport.telemetry import LinkTelemetry
from prfaas.transport.testing import ShimRuntime
from prfaas.transport.wire import NO_TRANSFER, open_connection

_log = logging.getLogger(__name__)
_MAINTENANCE_PERIOD_S = 0.05
_TCP_SAMPLE_PERIOD_S = 0.5
_DRAIN_S = 0.5


Settlement = tuple[Future[TransferReport], TransferReport | TransferFailed]


LINK_DOWN_GRACE_S = 2.0
"""Seconds without any connection before the link is reported down (covers the first connect and a reconnect)."""


class PeerPool:
    def __init__(self, host: str, port: int, config: SenderConfig, clock: Callable[[], float]) -> None:
        self.host, self.port = host, port
        self.link_id = f"{host}:{port}"
        self.config = config
        self.clock = clock
        self.shim: ShimRuntime | None = config.shim.start() if config.shim is not None else None
        pacing = config.pacing
        self._bucket = (TokenBucket(pacing.rate_bytes_per_s, pacing.burst_bytes, clock())
                        if pacing.rate_bytes_per_s is not None else None)
        self.pacing_quantum_bytes = pacing.quantum_bytes if self._bucket is not None else None
        self._bucket_lock = threading.Lock()
        self._cond = threading.Condition()
        self._controls: deque[ControlWork] = deque()
        self._controls_writing = 0  # taken by a writer, not yet on the socket (close waits for them)
        self._chunks: deque[ChunkWork] = deque()
        self._to_hash: deque[ChunkWork] = deque()
        self._conns: dict[int, SenderConnection] = {}
        self._all_conns: list[SenderConnection] = []
        self._transfers: dict[bytes, TransferRecord] = {}
        self._settle: list[Settlement] = []
        self._session_id = os.urandom(SESSION_ID_BYTES)
        self._next_conn_id = 0
        self._closed = False
        self._down_since_s: float | None = clock()
        self._closed_tcp = [0, 0]  # retransmits, segments out of connections already closed
        self.telemetry = LinkTelemetry(self.link_id, window_s=config.telemetry_window_s,
                                       capacity_gbps=config.link_capacity_gbps)
        self._thread = threading.Thread(target=self._maintain, name=f"kv-pool-{self.link_id}", daemon=True)
        self._hasher = threading.Thread(target=self._hash_loop, name=f"kv-hash-{self.link_id}", daemon=True)
        self._thread.start()
        self._hasher.start()

    # -- transfers (called by OutboundTransfer) ----------------------------------------------------

    def start_transfer(self, state: OutboundState) -> TransferRecord:
        now = self.clock()
        record = TransferRecord(state, Future(), now, now + self.config.transfer_deadline_s)
        with self._cond:
            if self._closed:
                raise PeerUnavailable(f"sender link {self.link_id} is closed")
            self._transfers[state.transfer_id] = record
            self.telemetry.transfer_started(state.layout.total_bytes)
            self._control(ControlKind.BEGIN, state.transfer_id, encode(state.begin_frame()))
            self._cond.notify_all()
        return record

    def provide_layer(self, record: TransferRecord, layer_index: int, views: list[object]) -> None:
        with self._cond:
            if record.state.is_done:
                return
            self._enqueue(record, record.state.provide_layer(layer_index, views))

    def finish(self, record: TransferRecord) -> None:
        with self._cond:
            if record.state.is_done:
                return
            record.state.finish()
            record.finished_s = self.clock()
            self._maybe_end(record)

    def abort(self, record: TransferRecord, message: str) -> None:
        with self._cond:
            self._fail(record, TransferFailed(message, reason=FailureReason.CANCELLED))
        self._flush()

    def _enqueue(self, record: TransferRecord, seqs: list[int], *, front: bool = False) -> None:
        """Under the lock: chunks whose checksum is known go to the writers, the others to the hasher."""
        now = self.clock()
        state = record.state
        items = [ChunkWork(record, seq, now) for seq in seqs if state.checksum_of(seq) is not None]
        self._to_hash.extend(ChunkWork(record, seq, now) for seq in seqs if state.checksum_of(seq) is None)
        if front:
            self._chunks.extendleft(reversed(items))
        else:
            self._chunks.extend(items)
        if seqs:
            self._cond.notify_all()

    def _hash_loop(self) -> None:
        """Checksum chunks ahead of the writers (xxhash releases the GIL), then hand them over."""
        while True:
            with self._cond:
                while not self._closed and not self._to_hash:
                    self._cond.wait()
                if self._closed:
                    return
                work = self._to_hash.popleft()
            state = work.transfer.state
            if state.is_done:
                continue
            checksum = chunk_checksum(state.checksum_kind, state.payload(work.seq))
            with self._cond:
                state.record_checksum(work.seq, checksum)
                if state.is_sendable(work.seq):
                    self._chunks.append(work)
                    self._cond.notify_all()
                self._maybe_end(work.transfer)

    def _maybe_end(self, record: TransferRecord) -> None:
        if record.state.is_end_ready():
            record.state.is_end_queued = True
            self._control(ControlKind.END, record.state.transfer_id, encode(record.state.end_frame()))

    def _control(self, kind: ControlKind, transfer_id: bytes, frame: bytes) -> None:
        self._controls.append(ControlWork(kind, transfer_id, frame))
        self._cond.notify_all()

    # -- connection callbacks ----------------------------------------------------------------------

    def reserve_tokens(self, num_bytes: int) -> float:
        assert self._bucket is not None
        with self._bucket_lock:
            return self._bucket.reserve(num_bytes, self.clock())

    def take_work(self, conn: SenderConnection) -> Work | None:
        """Block until there is something for this connection to send; None: the connection must stop."""
        with self._cond:
            while not self._closed and conn.is_alive:
                if self._controls:
                    work = self._controls.popleft()
                    self._controls_writing += 1
                    self._note_carrier(work, conn)
                    self._cond.notify_all()
                    return work
                while self._chunks:
                    chunk = self._chunks.popleft()
                    state = chunk.transfer.state
                    if state.is_sendable(chunk.seq):
                        state.mark_in_flight(chunk.seq)
                        conn.inflight.add((state.transfer_id, chunk.seq))
                        chunk.transfer.connections_used.add(conn.index)
                        return chunk
                idle_s = self.clock() - conn.last_send_s
                if idle_s >= self.config.keepalive_interval_s:
                    return conn.ping(self._next_conn_id)
                self._cond.wait(self.config.keepalive_interval_s - idle_s)
            return None

    def control_written(self) -> None:
        """A writer finished (or gave up on) writing a control frame it took with `take_work`."""
        with self._cond:
            self._controls_writing -= 1
            self._cond.notify_all()

    def _note_carrier(self, work: ControlWork, conn: SenderConnection) -> None:
        record = self._transfers.get(work.transfer_id)
        if record is None:
            return
        if work.kind is ControlKind.BEGIN:
            record.begin_conn = conn.conn_id
        elif work.kind is ControlKind.END:
            record.end_conn = conn.conn_id

    def on_event(self, conn: SenderConnection, event: Event) -> None:
        with self._cond:
            self._handle(conn, event)
        self._flush()

    def _handle(self, conn: SenderConnection, event: Event) -> None:
        if isinstance(event, Pong):
            return
        tid = getattr(event, "transfer_id", NO_TRANSFER)
        record = self._transfers.get(tid)
        if isinstance(event, ChunkAck | Nack):
            conn.inflight.discard((tid, event.seq))
        if record is None:
            return  # late answer for a finished transfer
        state = record.state
        if isinstance(event, Admit):
            record.begin_conn = None
            self._enqueue(record, state.admit())
            self._maybe_end(record)
        elif isinstance(event, ChunkAck):
            self.telemetry.record_delivered(state.on_ack(event.seq), self.clock())
        elif isinstance(event, Nack):
            try:
                if state.on_nack(event.seq):
                    self._enqueue(record, [event.seq], front=True)
            except TransferFailed as exc:
                self._fail(record, exc)
        elif isinstance(event, Complete):
            self._complete(record)
        elif isinstance(event, Abort):
            self._fail(record, TransferFailed(f"receiver aborted: {event.message}", reason=event.reason),
                       tell_peer=False)

    def on_connection_lost(self, conn: SenderConnection, exc: BaseException) -> None:
        with self._cond:
            if not conn.is_alive:
                return
            conn.is_alive = False
            self._conns.pop(conn.index, None)
            self._absorb_tcp(conn)
            if isinstance(exc, AuthFailed):
                self._fail_all(TransferFailed(str(exc), reason=FailureReason.AUTH_FAILED))
            self._requeue_from(conn)
            self._cond.notify_all()
        conn.close()
        self._flush()

    def _requeue_from(self, conn: SenderConnection) -> None:
        by_transfer: dict[bytes, list[int]] = {}
        for tid, seq in sorted(conn.inflight):
            by_transfer.setdefault(tid, []).append(seq)
        conn.inflight.clear()
        for tid, seqs in by_transfer.items():
            record = self._transfers.get(tid)
            if record is not None:
                self._enqueue(record, record.state.on_connection_lost(seqs), front=True)
        for record in self._transfers.values():
            tid = record.state.transfer_id
            if record.begin_conn == conn.conn_id and record.state.phase is Phase.AWAITING_ADMIT:
                record.begin_conn = None
                self._control(ControlKind.BEGIN, tid, encode(record.state.begin_frame()))
            if record.end_conn == conn.conn_id:
                record.end_conn = None
                self._control(ControlKind.END, tid, encode(record.state.end_frame()))

    # -- outcomes ----------------------------------------------------------------------------------

    def _complete(self, record: TransferRecord) -> None:
        state = record.state
        state.phase = Phase.COMPLETE
        del self._transfers[state.transfer_id]
        now = self.clock()
        duration_s = now - record.started_s
        # COMPLETE means every chunk was verified, even if some acks are still on other connections
        self.telemetry.record_delivered(state.layout.total_bytes - state.acked_bytes, now)
        self.telemetry.transfer_finished(state.layout.total_bytes, is_ok=True, latency_s=duration_s)
        finished_s = record.finished_s if record.finished_s is not None else now
        report = TransferReport(state.request_id, self.link_id, state.layout.total_bytes, len(state.chunks),
                                duration_s, now - finished_s, state.num_retransmitted,
                                len(record.connections_used))
        self._settle.append((record.future, report))

    def _fail(self, record: TransferRecord, error: TransferFailed, *, tell_peer: bool = True) -> None:
        state = record.state
        if state.is_done:
            return
        state.phase = Phase.FAILED
        self._transfers.pop(state.transfer_id, None)
        self.telemetry.transfer_finished(state.layout.total_bytes, is_ok=False, latency_s=None)
        if tell_peer and self._conns:
            abort = Abort(state.transfer_id, error.reason, str(error))
            self._control(ControlKind.ABORT, state.transfer_id, encode(abort))
        self._settle.append((record.future, error))

    def _fail_all(self, error: TransferFailed) -> None:
        for record in list(self._transfers.values()):
            self._fail(record, error, tell_peer=False)

    def _flush(self) -> None:
        with self._cond:
            settle, self._settle = self._settle, []
        for future, outcome in settle:
            if isinstance(outcome, TransferReport):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

    # -- maintenance -------------------------------------------------------------------------------

    def _maintain(self) -> None:
        backoff_s = self.config.reconnect_backoff_min_s
        next_attempt_s = 0.0
        next_sample_s = 0.0
        while True:
            with self._cond:
                if self._closed:
                    return
                missing = [i for i in range(self.config.connections_per_peer) if i not in self._conns]
                self._check_deadlines()
            self._flush()
            now = self.clock()
            if missing and now >= next_attempt_s:
                if self._connect_missing(missing):
                    backoff_s = self.config.reconnect_backoff_min_s
                else:
                    next_attempt_s = self.clock() + backoff_s
                    backoff_s = min(2 * backoff_s, self.config.reconnect_backoff_max_s)
            if now >= next_sample_s:
                self.sample_tcp()
                next_sample_s = now + _TCP_SAMPLE_PERIOD_S
            with self._cond:
                if not self._closed:
                    self._cond.wait(_MAINTENANCE_PERIOD_S)

    def _check_deadlines(self) -> None:
        now = self.clock()
        for record in list(self._transfers.values()):
            if now > record.deadline_s:
                state = record.state
                message = (f"request {state.request_id!r} not verified within "
                           f"{self.config.transfer_deadline_s} s ({state.num_acked}/{len(state.chunks)} "
                           "chunks acknowledged)")
                self._fail(record, TransferFailed(message, reason=FailureReason.DEADLINE))
        if self._conns:
            self._down_since_s = None
        elif self._down_since_s is None:
            self._down_since_s = now
        elif now - self._down_since_s > self.config.reconnect_deadline_s and self._transfers:
            self._fail_all(TransferFailed(f"no connection to {self.link_id} for "
                                          f"{self.config.reconnect_deadline_s} s",
                                          reason=FailureReason.PEER_UNAVAILABLE))
        # a pool still opening (or re-opening) its connections is not "down" yet: only after the grace period
        # without one does the scheduler see the link as down (and route locally)
        self.telemetry.is_up = bool(self._conns) or (
            self._down_since_s is not None and now - self._down_since_s < LINK_DOWN_GRACE_S)

    def _connect_missing(self, missing: list[int]) -> bool:
        for index in missing:
            try:
                conn = self._connect(index)
            except AuthFailed as exc:
                with self._cond:
                    self._fail_all(TransferFailed(str(exc), reason=FailureReason.AUTH_FAILED))
                self._flush()
                return False
            except (OSError, TransportError) as exc:
                _log.info("connection %d to %s failed: %s", index, self.link_id, exc)
                return False
            with self._cond:
                if self._closed:
                    conn.close()
                    return True
                self._conns[index] = conn
                self._all_conns = [c for c in self._all_conns if c.is_alive] + [conn]
                self._down_since_s = None
                self._cond.notify_all()
            conn.start()
        return True

    def _connect(self, index: int) -> SenderConnection:
        sock, reader = open_connection(self.host, self.port, self.config, self._session_id)
        with self._cond:
            self._next_conn_id += 1
            conn_id = self._next_conn_id
        return SenderConnection(self, index, conn_id, sock, reader)

    # -- telemetry and shutdown --------------------------------------------------------------------

    def sample_tcp(self) -> None:
        with self._cond:
            conns = list(self._conns.values())
        for conn in conns:
            conn.last_tcp = read_tcp_info(conn.sock) or conn.last_tcp
        with self._cond:
            live = [c.last_tcp for c in self._conns.values() if c.last_tcp is not None]
            retrans = self._closed_tcp[0] + sum(t.total_retrans for t in live)
            segs = self._closed_tcp[1] + sum(t.segs_out or 0 for t in live)
            # with no live connection keep the last RTT seen (is_up says the link is down)
            rtt_ms = sum(t.rtt_us for t in live) / len(live) / 1000 if live else self.telemetry.rtt_ms
            self.telemetry.record_tcp(rtt_ms=rtt_ms, retrans_total=retrans, segs_out_total=segs,
                                      now_s=self.clock())

    def _absorb_tcp(self, conn: SenderConnection) -> None:
        info = read_tcp_info(conn.sock) or conn.last_tcp
        if info is not None:
            self._closed_tcp[0] += info.total_retrans
            self._closed_tcp[1] += info.segs_out or 0

    def snapshot(self) -> LinkSnapshot:
        self.sample_tcp()
        with self._cond:
            return self.telemetry.snapshot(self.clock())

    def close(self, timeout_s: float) -> None:
        """Ordered shutdown: fail what is in flight, drain the ABORTs (bounded), close, join."""
        with self._cond:
            closing = TransferFailed(f"sender link {self.link_id} closed", reason=FailureReason.SHUTDOWN)
            for record in list(self._transfers.values()):
                self._fail(record, closing)
            drain_until_s = self.clock() + min(timeout_s, _DRAIN_S)
            while ((self._controls and self._conns) or self._controls_writing) and self.clock() < drain_until_s:
                self._cond.wait(0.01)
            self._closed = True
            conns = list(self._all_conns)
            self._cond.notify_all()
        self._flush()
        # Lingering close: FIN after what is queued (an abortive close with unread acks in the socket would
        # send RST, and the receiver's kernel would drop an ABORT it has not read yet), then wait for the
        # receiver to close its side, bounded, before closing ours.
        for conn in conns:
            conn.is_alive = False
            conn.shutdown_writes()
        linger_until_s = self.clock() + min(timeout_s, _DRAIN_S)
        for conn in conns:
            conn.join_reader(max(0.0, linger_until_s - self.clock()))
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.join(timeout_s)
        self._thread.join(timeout_s)
        self._hasher.join(timeout_s)
