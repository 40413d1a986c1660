r"""Sender-side state machine of one transfer (pure: no sockets, no threads, no clock).

Lifecycle:  AWAITING_ADMIT --admit()--> STREAMING --complete()--> COMPLETE
                 \__________________________\______fail()______> FAILED

Per chunk:  WAITING (its layer not produced yet, or not admitted) -> READY (may be sent) ->
IN_FLIGHT (on a connection) -> ACKED. A NACK or a lost connection puts an IN_FLIGHT chunk back to
READY, so the transfer resumes from the last acknowledged chunk; each retransmission counts, and a
chunk that needs more than `max_retransmits` retransmissions after a NACK fails the transfer.
The owner serialises calls (one lock per peer link).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from prfaas.core.state_layout import StateLayout
from prfaas.transport.checksum import transfer_digest
from prfaas.transport.config import ChecksumKind
from prfaas.transport.errors import FailureReason, TransferFailed
from prfaas.transport.frames import Begin, End
from prfaas.transport.manifest import as_byte_view, plan_chunks


class Phase(enum.Enum):
    AWAITING_ADMIT = "awaiting_admit"
    STREAMING = "streaming"
    COMPLETE = "complete"
    FAILED = "failed"


class ChunkState(enum.IntEnum):
    WAITING = 0
    READY = 1
    IN_FLIGHT = 2
    ACKED = 3


class OutboundState:
    def __init__(self, transfer_id: bytes, request_id: str, layout: StateLayout, *, chunk_bytes: int,
                 checksum: ChecksumKind, max_retransmits: int) -> None:
        self.transfer_id = transfer_id
        self.request_id = request_id
        self.layout = layout
        self.chunk_bytes = chunk_bytes
        self.checksum_kind = checksum
        self.max_retransmits = max_retransmits
        self.chunks = plan_chunks(layout, chunk_bytes)
        self.phase = Phase.AWAITING_ADMIT
        self.is_finished = False  # finish() called: no more layers
        self.is_end_queued = False
        self.num_retransmitted = 0
        self.num_acked = 0
        self.acked_bytes = 0
        self._views: list[memoryview | None] = [None] * len(layout.tensors)
        self._state = bytearray(len(self.chunks))
        self._checksums: list[int | None] = [None] * len(self.chunks)
        self._num_checksums = 0
        self._nacks = [0] * len(self.chunks)
        self._tensor_seqs: list[list[int]] = [[] for _ in layout.tensors]
        for chunk in self.chunks:
            self._tensor_seqs[chunk.tensor_index].append(chunk.seq)
        self._layer_tensors: dict[int, list[int]] = {}
        for index, spec in enumerate(layout.tensors):
            self._layer_tensors.setdefault(spec.layer_index, []).append(index)
        self._provided_layers: set[int] = set()

    # -- frames ------------------------------------------------------------------------------------

    def begin_frame(self) -> Begin:
        return Begin(self.transfer_id, self.request_id, self.layout.total_bytes, len(self.chunks),
                     self.chunk_bytes, self.checksum_kind, self.layout)

    def end_frame(self) -> End:
        assert self._num_checksums == len(self.chunks)
        return End(self.transfer_id, len(self.chunks), transfer_digest(c or 0 for c in self._checksums))

    # -- producer side -----------------------------------------------------------------------------

    def provide_layer(self, layer_index: int, views: Sequence[object]) -> list[int]:
        """Register a finished layer's tensors (layout order); return the chunks now READY."""
        if self.is_finished:
            raise ValueError("send_layer after finish()")
        tensors = self._layer_tensors.get(layer_index)
        if tensors is None:
            raise ValueError(f"layer {layer_index} is not in the layout")
        if layer_index in self._provided_layers:
            raise ValueError(f"layer {layer_index} was already sent")
        if len(views) != len(tensors):
            raise ValueError(f"layer {layer_index} has {len(tensors)} tensors, got {len(views)} views")
        for tensor_index, view in zip(tensors, views, strict=True):
            flat = as_byte_view(view)
            spec = self.layout.tensors[tensor_index]
            if flat.nbytes != spec.nbytes:
                raise ValueError(f"tensor {spec.name!r} of layer {layer_index}: {flat.nbytes} B, "
                                 f"layout says {spec.nbytes} B")
            self._views[tensor_index] = flat
        self._provided_layers.add(layer_index)
        return self._release(tensors) if self.phase is Phase.STREAMING else []

    def finish(self) -> None:
        missing = set(self._layer_tensors) - self._provided_layers
        if missing:
            raise ValueError(f"finish() before layers {sorted(missing)[:8]} were sent")
        self.is_finished = True

    def admit(self) -> list[int]:
        """The receiver admitted the transfer; return the chunks now READY."""
        if self.phase is not Phase.AWAITING_ADMIT:
            return []
        self.phase = Phase.STREAMING
        provided = [t for layer in self._provided_layers for t in self._layer_tensors[layer]]
        return self._release(provided)

    def _release(self, tensors: list[int]) -> list[int]:
        ready = []
        for tensor_index in tensors:
            for seq in self._tensor_seqs[tensor_index]:
                if self._state[seq] == ChunkState.WAITING:
                    self._state[seq] = ChunkState.READY
                    ready.append(seq)
        return ready

    # -- wire side ---------------------------------------------------------------------------------

    def is_sendable(self, seq: int) -> bool:
        return self.phase is Phase.STREAMING and self._state[seq] == ChunkState.READY

    def payload(self, seq: int) -> memoryview:
        chunk = self.chunks[seq]
        view = self._views[chunk.tensor_index]
        assert view is not None
        return view[chunk.offset:chunk.offset + chunk.length]

    def checksum_of(self, seq: int) -> int | None:
        return self._checksums[seq]

    def mark_in_flight(self, seq: int) -> None:
        self._state[seq] = ChunkState.IN_FLIGHT

    def record_checksum(self, seq: int, checksum: int) -> None:
        """The payload checksum, computed once by whoever sends the chunk first."""
        if self._checksums[seq] is None:
            self._checksums[seq] = checksum
            self._num_checksums += 1

    def is_end_ready(self) -> bool:
        """finish() was called and every chunk's checksum is known: END may go out."""
        return (self.is_finished and not self.is_end_queued and self.phase is Phase.STREAMING
                and self._num_checksums == len(self.chunks))

    def on_ack(self, seq: int) -> int:
        """Return the bytes newly acknowledged (0 for a duplicate)."""
        if seq >= len(self.chunks) or self._state[seq] == ChunkState.ACKED:
            return 0
        self._state[seq] = ChunkState.ACKED
        self.num_acked += 1
        self.acked_bytes += self.chunks[seq].length
        return self.chunks[seq].length

    def on_nack(self, seq: int) -> bool:
        """A chunk arrived corrupted. Return True if it should be resent; raise when out of retries."""
        if seq >= len(self.chunks) or self._state[seq] == ChunkState.ACKED:
            return False
        self._nacks[seq] += 1
        if self._nacks[seq] > self.max_retransmits:
            raise TransferFailed(f"chunk {seq} of request {self.request_id!r} arrived corrupted "
                                 f"{self._nacks[seq]} times", reason=FailureReason.CORRUPTION)
        return self._requeue(seq)

    def on_connection_lost(self, seqs: Sequence[int]) -> list[int]:
        """Chunks that were in flight on a lost connection go back to READY; return them."""
        return [seq for seq in seqs if self._requeue(seq)]

    def _requeue(self, seq: int) -> bool:
        if self._state[seq] != ChunkState.IN_FLIGHT:
            return False
        self._state[seq] = ChunkState.READY
        self.num_retransmitted += 1
        return True

    @property
    def is_done(self) -> bool:
        return self.phase in (Phase.COMPLETE, Phase.FAILED)
