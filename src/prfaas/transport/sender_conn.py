"""One sender-side TCP connection: a writer thread and a reader thread around a blocking socket.

The writer takes work from its peer pool (control frames first, then chunks of any transfer,
already checksummed by the pool's hasher thread), and writes the header and then the payload
straight from the producer's memoryview (paced in quanta when a rate cap is set). The reader turns
the receiver's frames into pool events. Either thread reports a broken connection to the pool,
which requeues that connection's unacknowledged chunks on the others.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prfaas.transport.codec import encode, encode_chunk_header
from prfaas.transport.errors import TransportError
from prfaas.transport.frames import ChunkHeader, Ping
from prfaas.transport.tcpinfo import TcpInfo
from prfaas.transport.wire import NO_TRANSFER, FrameReader, close_quietly, shutdown_writes_quietly

if TYPE_CHECKING:
    from prfaas.transport.peer_pool import PeerPool
    from prfaas.transport.records import TransferRecord


COALESCE_MAX_BYTES = 64 * 1024
"""A chunk payload up to this size is copied behind its header and written with it in one call."""


class ControlKind(enum.Enum):
    BEGIN = "begin"
    END = "end"
    ABORT = "abort"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class ControlWork:
    kind: ControlKind
    transfer_id: bytes
    frame: bytes


@dataclass(frozen=True, slots=True)
class ChunkWork:
    transfer: TransferRecord
    seq: int
    ready_at_s: float


Work = ControlWork | ChunkWork


class SenderConnection:
    """Connection `index` (0..N-1) of a peer link; `conn_id` is unique over reconnects."""

    def __init__(
        self, pool: PeerPool, index: int, conn_id: int, sock: socket.socket, reader: FrameReader
    ) -> None:
        self.pool = pool
        self.index = index
        self.conn_id = conn_id
        self.sock = sock
        self.reader = reader
        self.is_alive = True
        self.inflight: set[tuple[bytes, int]] = set()
        self.payload_bytes_sent = 0
        self.last_send_s = pool.clock()
        self.last_tcp: TcpInfo | None = None
        self._threads = [
            threading.Thread(target=self._write_loop, name=f"kv-send-{index}", daemon=True),
            threading.Thread(target=self._read_loop, name=f"kv-recv-{index}", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float) -> None:
        for thread in self._threads:
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(timeout_s)

    def close(self) -> None:
        close_quietly(self.sock)

    def shutdown_writes(self) -> None:
        """Send FIN after whatever is already queued in the kernel; the reader keeps reading."""
        shutdown_writes_quietly(self.sock)

    def join_reader(self, timeout_s: float) -> None:
        """Wait (bounded) for the reader thread to see the receiver close its side."""
        reader = self._threads[1]
        if reader.ident is not None and reader is not threading.current_thread():
            reader.join(timeout_s)

    # -- threads -----------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                work = self.pool.take_work(self)
                if work is None:
                    return
                if isinstance(work, ControlWork):
                    try:
                        self.sock.sendall(work.frame)
                    finally:
                        self.pool.control_written()
                else:
                    self._send_chunk(work)
                self.last_send_s = self.pool.clock()
        except (OSError, TransportError) as exc:
            self.pool.on_connection_lost(self, exc)

    def _read_loop(self) -> None:
        try:
            while True:
                self.pool.on_event(self, self.reader.next_event())
        except (OSError, TransportError) as exc:
            self.pool.on_connection_lost(self, exc)

    # -- chunks ------------------------------------------------------------------------------------

    def _send_chunk(self, work: ChunkWork) -> None:
        state = work.transfer.state
        payload = state.payload(work.seq)
        checksum = state.checksum_of(work.seq)
        assert checksum is not None, "the pool's hasher checksums a chunk before it is queued"
        ref = state.chunks[work.seq]
        header = ChunkHeader(state.transfer_id, work.seq, ref.tensor_index, ref.offset, ref.length, checksum)
        cut = None
        shim = self.pool.shim
        if shim is not None:
            _sleep_until(self.pool, shim.hold_until_s(work.ready_at_s))
            if state.is_done:
                return
            payload = shim.payload_for(state.transfer_id, work.seq, payload)
            cut = shim.cut_point(self.index, self.payload_bytes_sent, ref.length)
        frame_head = encode_chunk_header(header)
        if cut is None and ref.length <= COALESCE_MAX_BYTES and self.pool.pacing_quantum_bytes is None:
            # a small tensor (conv state, a 0-d counter): one write and one segment instead of two
            self.sock.sendall(frame_head + payload)
            self.payload_bytes_sent += ref.length
            return
        self.sock.sendall(frame_head)
        if cut is not None:
            self._send_payload(payload[:cut])
            close_quietly(self.sock)
            raise ConnectionAbortedError(f"link shim cut connection {self.index} inside chunk {work.seq}")
        self._send_payload(payload)
        self.payload_bytes_sent += ref.length

    def _send_payload(self, payload: memoryview) -> None:
        quantum = self.pool.pacing_quantum_bytes
        if quantum is None:
            self.sock.sendall(payload)
            return
        for start in range(0, payload.nbytes, quantum):
            piece = payload[start:start + quantum]
            wait_s = self.pool.reserve_tokens(piece.nbytes)
            if wait_s > 0:
                time.sleep(wait_s)
            self.sock.sendall(piece)

    def ping(self, token: int) -> ControlWork:
        return ControlWork(ControlKind.PING, NO_TRANSFER, encode(Ping(token)))


def _sleep_until(pool: PeerPool, deadline_s: float) -> None:
    delay_s = deadline_s - pool.clock()
    if delay_s > 0:
        time.sleep(delay_s)
