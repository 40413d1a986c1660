"""Receiver-side state machine of one transfer (pure: no sockets, no threads, no clock).

Lifecycle:  PENDING (declared, waiting for memory budget) --attach_buffers()--> RECEIVING
            --every chunk verified and END digest matches--> COMPLETE;  any error -> FAILED.

A chunk header is checked against the chunk plan derived from the manifest (exact tensor, offset,
length) before its payload is given a destination. A chunk is "claimed" by the connection that
carries it; its payload is hashed in place and only then marked verified. A chunk that is already
verified is discarded, never rewritten, so verified bytes stay verified. The buffers are handed
out only on COMPLETE. The owner serialises calls.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from prfaas.transport.checksum import chunk_checksum, transfer_digest
from prfaas.transport.errors import FailureReason, FrameCorrupt, ProtocolError, TransferFailed
from prfaas.transport.frames import Begin, ChunkHeader, End
from prfaas.transport.manifest import as_byte_view, plan_chunks


class InboundPhase(enum.Enum):
    PENDING = "pending"
    RECEIVING = "receiving"
    COMPLETE = "complete"
    FAILED = "failed"


class Verdict(enum.Enum):
    ACK = "ack"  # verified (now or before): acknowledge
    NACK = "nack"  # checksum mismatch: ask for a retransmission
    STALE = "stale"  # another connection took the chunk over: say nothing


class InboundState:
    def __init__(self, begin: Begin, session_id: bytes) -> None:
        self.begin = begin
        self.session_id = session_id
        self.chunks = plan_chunks(begin.layout, begin.chunk_bytes)
        if begin.num_chunks != len(self.chunks) or begin.total_bytes != begin.layout.total_bytes:
            raise ProtocolError("BEGIN totals do not match its manifest")
        self.phase = InboundPhase.PENDING
        self.buffers: list[memoryview] = []
        self.verified_bytes = 0
        self._verified = bytearray(len(self.chunks))
        self._num_verified = 0
        self._checksums = [0] * len(self.chunks)
        self._claims: dict[int, int] = {}
        self._end: End | None = None

    @property
    def transfer_id(self) -> bytes:
        return self.begin.transfer_id

    def attach_buffers(self, buffers: Sequence[object]) -> None:
        """Validate the allocator's buffers (one per tensor, exact size, writable) and start receiving."""
        specs = self.begin.layout.tensors
        if len(buffers) != len(specs):
            raise TransferFailed(f"allocator returned {len(buffers)} buffers for {len(specs)} tensors",
                                 reason=FailureReason.ALLOCATION)
        views = []
        for spec, buffer in zip(specs, buffers, strict=True):
            try:
                view = as_byte_view(buffer, writable=True)
            except (TypeError, ValueError) as exc:
                message = f"buffer for {spec.name!r}: {exc}"
                raise TransferFailed(message, reason=FailureReason.ALLOCATION) from None
            if view.nbytes != spec.nbytes:
                raise TransferFailed(f"buffer for {spec.name!r} has {view.nbytes} B, needs {spec.nbytes} B",
                                     reason=FailureReason.ALLOCATION)
            views.append(view)
        self.buffers = views
        self.phase = InboundPhase.RECEIVING

    def claim(self, header: ChunkHeader, conn_id: int) -> memoryview | None:
        """Where this chunk's payload goes; None means discard (already verified)."""
        if header.seq >= len(self.chunks):
            raise ProtocolError(f"chunk seq {header.seq} outside the plan of {len(self.chunks)}")
        ref = self.chunks[header.seq]
        if (ref.tensor_index, ref.offset, ref.length) != (header.tensor_index, header.offset, header.length):
            raise ProtocolError(f"chunk {header.seq} does not match the plan")
        if self._verified[header.seq]:
            return None
        self._claims[header.seq] = conn_id
        return self.buffers[ref.tensor_index][ref.offset:ref.offset + ref.length]

    def verify(self, header: ChunkHeader, conn_id: int, actual_checksum: int) -> Verdict:
        """Record the checksum computed over the payload written in place."""
        if self._verified[header.seq]:
            return Verdict.ACK
        if self._claims.get(header.seq) != conn_id:
            return Verdict.STALE
        del self._claims[header.seq]
        if actual_checksum != header.checksum:
            return Verdict.NACK
        self._verified[header.seq] = 1
        self._num_verified += 1
        self._checksums[header.seq] = actual_checksum
        self.verified_bytes += header.length
        return Verdict.ACK

    def release_claims(self, conn_id: int) -> None:
        """A connection died: its partial chunks are unverified and may be claimed again."""
        for seq in [s for s, c in self._claims.items() if c == conn_id]:
            del self._claims[seq]

    def on_end(self, end: End) -> None:
        if end.num_chunks != len(self.chunks):
            raise ProtocolError("END chunk count does not match BEGIN")
        self._end = end

    def is_complete(self) -> bool:
        """True once every chunk is verified and END's digest matches; raises FrameCorrupt if not."""
        if self._end is None or self._num_verified < len(self.chunks):
            return False
        if transfer_digest(self._checksums) != self._end.digest:
            raise FrameCorrupt(f"whole-transfer digest mismatch for request {self.begin.request_id!r}")
        return True

    def reverify(self) -> bool:
        """Hash every chunk in place again and compare with what was verified on arrival."""
        kind = self.begin.checksum
        for ref in self.chunks:
            data = self.buffers[ref.tensor_index][ref.offset:ref.offset + ref.length]
            if chunk_checksum(kind, data) != self._checksums[ref.seq]:
                return False
        return True
