"""Sans-I/O codec of the KV wire protocol: frames to bytes and bytes to frames. No sockets, no clock.

Every frame starts with a fixed 20-byte header, then `meta_len` bytes of type-specific metadata,
then (CHUNK only) `payload_len` raw bytes:

    0      2     3      4           8                  16          20
    +------+-----+------+-----------+------------------+-----------+----------+---------+
    | "PK" | ver | type | meta_len  | payload_len      | meta_crc  | meta ... | payload |
    +------+-----+------+-----------+------------------+-----------+----------+---------+
      u16    u8    u8     u32 LE      u64 LE             crc32(meta)

The decoder is driven like an asyncio BufferedProtocol: `get_buffer()` hands out the memory the next
read must fill, `buffer_updated(n)` records it, and `next_event()` returns the next complete frame or
None. After a `ChunkHeader` event the owner calls `set_payload_sink(view)` with the exact destination
of the payload (a slice of the receiver's pre-allocated buffer) or None to discard it; from then on
`get_buffer()` returns slices of that view, so payload bytes go from the socket straight into place.
Bytes read ahead with a header are copied into the sink (at most `readahead_bytes` per frame).
`ChunkPayloadDone` follows once the payload is in place. Any invalid input raises a ProtocolError
subclass, after which the decoder stays failed.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Any

from prfaas.transport.checksum import RunningChecksum
from prfaas.transport.config import ChecksumKind, TransportLimits
from prfaas.transport.errors import FailureReason, FrameCorrupt, LimitExceeded, ProtocolError
from prfaas.transport.frames import (
    Abort,
    Admit,
    Auth,
    AuthOk,
    Begin,
    Challenge,
    ChunkAck,
    ChunkHeader,
    ChunkPayloadDone,
    Complete,
    End,
    Event,
    Frame,
    FrameType,
    Hello,
    Nack,
    NackReason,
    Ping,
    Pong,
)
from prfaas.transport.manifest import decode_layout, encode_layout

MAGIC = b"PK"
VERSION = 1
HEADER = struct.Struct("<2sBBIQI")
HEADER_BYTES = HEADER.size  # 20
MAX_ABORT_MESSAGE_BYTES = 1024
PRE_AUTH_MAX_META_BYTES = 256
SINK_READ_BYTES = 256 * 1024
"""At most this much payload per read: the running checksum then hashes bytes that are still in the L2 cache."""

_HELLO = struct.Struct("<32s16sH")
_CHALLENGE = struct.Struct("<32s32s")
_AUTH = struct.Struct("<32s")
_AUTH_OK = struct.Struct("<Q")
_BEGIN = struct.Struct("<16sQIQBH")
_CHUNK = struct.Struct("<16sIIQQ")
_END = struct.Struct("<16sI16s")
_TID = struct.Struct("<16s")
_TID_SEQ = struct.Struct("<16sI")
_NACK = struct.Struct("<16sIB")
_ABORT = struct.Struct("<16sB")
_TOKEN = struct.Struct("<Q")


# ----------------------------------------------------------------------------------------- encode


def _frame(kind: FrameType, meta: bytes, payload_len: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, len(meta), payload_len, zlib.crc32(meta)) + meta


def _meta_of(frame: Frame) -> tuple[FrameType, bytes]:
    match frame:
        case Hello():
            name = frame.node_name.encode()
            return FrameType.HELLO, _HELLO.pack(frame.client_nonce, frame.session_id, len(name)) + name
        case Challenge():
            return FrameType.CHALLENGE, _CHALLENGE.pack(frame.server_nonce, frame.server_proof)
        case Auth():
            return FrameType.AUTH, _AUTH.pack(frame.client_proof)
        case AuthOk():
            return FrameType.AUTH_OK, _AUTH_OK.pack(frame.max_chunk_bytes)
        case Begin():
            rid = frame.request_id.encode()
            fixed = _BEGIN.pack(frame.transfer_id, frame.total_bytes, frame.num_chunks, frame.chunk_bytes,
                                frame.checksum, len(rid))
            return FrameType.BEGIN, fixed + rid + encode_layout(frame.layout)
        case End():
            return FrameType.END, _END.pack(frame.transfer_id, frame.num_chunks, frame.digest)
        case Admit():
            return FrameType.ADMIT, _TID.pack(frame.transfer_id)
        case ChunkAck():
            return FrameType.CHUNK_ACK, _TID_SEQ.pack(frame.transfer_id, frame.seq)
        case Nack():
            return FrameType.NACK, _NACK.pack(frame.transfer_id, frame.seq, frame.reason)
        case Complete():
            return FrameType.COMPLETE, _TID.pack(frame.transfer_id)
        case Abort():
            text = frame.message.encode()[:MAX_ABORT_MESSAGE_BYTES]
            return FrameType.ABORT, _ABORT.pack(frame.transfer_id, frame.reason) + text
        case Ping():
            return FrameType.PING, _TOKEN.pack(frame.token)
        case Pong():
            return FrameType.PONG, _TOKEN.pack(frame.token)
        case ChunkHeader():
            raise TypeError("use encode_chunk_header for CHUNK frames")
    raise TypeError(f"not a frame: {frame!r}")


def encode(frame: Frame) -> bytes:
    """The complete bytes of a frame without payload."""
    kind, meta = _meta_of(frame)
    return _frame(kind, meta)


def encode_chunk_header(header: ChunkHeader) -> bytes:
    """Header and metadata of a CHUNK frame; the caller sends `header.length` payload bytes after it."""
    meta = _CHUNK.pack(header.transfer_id, header.seq, header.tensor_index, header.offset, header.checksum)
    return _frame(FrameType.CHUNK, meta, header.length)


# ----------------------------------------------------------------------------------------- decode


def _unpack(layout: struct.Struct, meta: bytes, kind: FrameType) -> tuple[Any, ...]:
    if len(meta) != layout.size:
        raise ProtocolError(f"{kind.name} metadata has {len(meta)} bytes, expected {layout.size}")
    return layout.unpack(meta)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not valid UTF-8") from None


def _decode_hello(meta: bytes) -> Hello:
    if len(meta) < _HELLO.size:
        raise ProtocolError("HELLO metadata too short")
    nonce, session, name_len = _HELLO.unpack_from(meta)
    if len(meta) != _HELLO.size + name_len:
        raise ProtocolError("HELLO name length mismatch")
    return Hello(nonce, session, _text(meta[_HELLO.size:], "HELLO node name"))


def _decode_begin(meta: bytes, limits: TransportLimits) -> Begin:
    if len(meta) < _BEGIN.size:
        raise ProtocolError("BEGIN metadata too short")
    tid, total, n_chunks, chunk_bytes, checksum, rid_len = _BEGIN.unpack_from(meta)
    if rid_len > limits.max_request_id_bytes or _BEGIN.size + rid_len > len(meta):
        raise LimitExceeded(f"BEGIN request id of {rid_len} B is too long or truncated")
    try:
        kind = ChecksumKind(checksum)
    except ValueError:
        raise ProtocolError(f"BEGIN names unknown checksum kind {checksum}") from None
    rid = _text(meta[_BEGIN.size:_BEGIN.size + rid_len], "request id")
    layout = decode_layout(meta[_BEGIN.size + rid_len:])
    return Begin(tid, rid, total, n_chunks, chunk_bytes, kind, layout)


def _decode_abort(meta: bytes) -> Abort:
    if len(meta) < _ABORT.size or len(meta) > _ABORT.size + MAX_ABORT_MESSAGE_BYTES:
        raise ProtocolError("ABORT metadata has a bad length")
    tid, reason = _ABORT.unpack_from(meta)
    try:
        why = FailureReason(reason)
    except ValueError:
        why = FailureReason.UNKNOWN
    return Abort(tid, why, meta[_ABORT.size:].decode(errors="replace"))


def _decode_nack(meta: bytes) -> Nack:
    tid, seq, reason = _unpack(_NACK, meta, FrameType.NACK)
    try:
        return Nack(tid, seq, NackReason(reason))
    except ValueError:
        raise ProtocolError(f"NACK with unknown reason {reason}") from None


def decode_meta(kind: FrameType, meta: bytes, payload_len: int, limits: TransportLimits) -> Frame:
    """Decode the metadata of one frame whose header has already been validated."""
    match kind:
        case FrameType.HELLO:
            return _decode_hello(meta)
        case FrameType.CHALLENGE:
            return Challenge(*_unpack(_CHALLENGE, meta, kind))
        case FrameType.AUTH:
            return Auth(*_unpack(_AUTH, meta, kind))
        case FrameType.AUTH_OK:
            return AuthOk(*_unpack(_AUTH_OK, meta, kind))
        case FrameType.BEGIN:
            return _decode_begin(meta, limits)
        case FrameType.CHUNK:
            tid, seq, tensor, offset, checksum = _unpack(_CHUNK, meta, kind)
            return ChunkHeader(tid, seq, tensor, offset, payload_len, checksum)
        case FrameType.END:
            return End(*_unpack(_END, meta, kind))
        case FrameType.ADMIT:
            return Admit(*_unpack(_TID, meta, kind))
        case FrameType.CHUNK_ACK:
            return ChunkAck(*_unpack(_TID_SEQ, meta, kind))
        case FrameType.NACK:
            return _decode_nack(meta)
        case FrameType.COMPLETE:
            return Complete(*_unpack(_TID, meta, kind))
        case FrameType.ABORT:
            return _decode_abort(meta)
        case FrameType.PING:
            return Ping(*_unpack(_TOKEN, meta, kind))
        case FrameType.PONG:
            return Pong(*_unpack(_TOKEN, meta, kind))
    raise ProtocolError(f"unhandled frame type {kind!r}")


class _Target(enum.Enum):
    STAGING = 1
    SINK = 2
    DISCARD = 3


class FrameDecoder:
    """Incremental frame decoder; see the module docstring for the driving loop."""

    def __init__(self, limits: TransportLimits, *, allowed: frozenset[FrameType] | None = None,
                 max_meta_bytes: int | None = None, readahead_bytes: int = 64 * 1024) -> None:
        self._limits = limits
        self._allowed = allowed
        self._max_meta = limits.max_meta_bytes if max_meta_bytes is None else max_meta_bytes
        self._readahead = max(HEADER_BYTES, readahead_bytes)
        self._buf = bytearray(self._readahead)
        self._start = 0
        self._end = 0
        self._header: tuple[FrameType, int, int, int] | None = None  # kind, meta_len, payload_len, crc
        self._chunk: ChunkHeader | None = None
        self._sink: memoryview | None = None
        self._hasher: RunningChecksum | None = None
        self._done = 0
        self._target = _Target.STAGING
        self._scratch: bytearray | None = None
        self._failed: ProtocolError | None = None

    def authenticated(self, allowed: frozenset[FrameType] | None, max_meta_bytes: int | None = None) -> None:
        """Widen the accepted frame types and metadata size once the peer has authenticated."""
        self._allowed = allowed
        self._max_meta = self._limits.max_meta_bytes if max_meta_bytes is None else max_meta_bytes

    @property
    def is_reading_payload(self) -> bool:
        """The next buffer from get_buffer() is chunk payload (the sink, or scratch to discard into)."""
        return self._chunk is not None

    @property
    def awaiting_sink(self) -> bool:
        return self._chunk is not None and self._sink is None and self._target is not _Target.DISCARD

    # -- reading side -----------------------------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """The writable memory the next read should fill (never empty)."""
        self._raise_if_failed()
        if self._chunk is not None:
            assert self._start == self._end, "next_event() must be drained before get_buffer()"
            if self._sink is not None:
                self._target = _Target.SINK
                return self._sink[self._done:self._done + SINK_READ_BYTES]
            self._target = _Target.DISCARD
            if self._scratch is None:
                self._scratch = bytearray(256 * 1024)
            return memoryview(self._scratch)[: min(len(self._scratch), self._chunk.length - self._done)]
        self._target = _Target.STAGING
        if self._start == self._end:
            self._start = self._end = 0
        need = HEADER_BYTES if self._header is None else HEADER_BYTES + self._header[1]
        want = max(need, self._readahead)
        if self._start + want > len(self._buf):
            self._compact(want)
        return memoryview(self._buf)[self._end:self._start + want]

    def buffer_updated(self, num_bytes: int) -> None:
        """Record that the last buffer from get_buffer() received `num_bytes` bytes."""
        if self._target is _Target.STAGING:
            self._end += num_bytes
            return
        if self._target is _Target.SINK and self._hasher is not None and self._sink is not None:
            self._hasher.update(self._sink[self._done:self._done + num_bytes])
        self._done += num_bytes

    def set_payload_sink(self, sink: memoryview | None, hasher: RunningChecksum | None = None) -> None:
        """Where the payload of the last ChunkHeader goes (None discards it); `hasher`, if given,
        checksums the payload piece by piece as it lands (reported in ChunkPayloadDone)."""
        if self._chunk is None:
            raise RuntimeError("no chunk payload is pending")
        if sink is not None and sink.nbytes != self._chunk.length:
            raise ValueError(f"payload sink has {sink.nbytes} B, chunk has {self._chunk.length} B")
        self._sink = sink
        self._hasher = hasher if sink is not None else None
        self._target = _Target.SINK if sink is not None else _Target.DISCARD

    def next_event(self) -> Event | None:
        """The next complete frame or payload-done event, or None when more bytes are needed."""
        self._raise_if_failed()
        try:
            if self._chunk is not None:
                return self._drain_payload()
            return self._parse_frame()
        except ProtocolError as exc:
            self._failed = exc
            raise

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Pure convenience: decode all of `data`, discarding chunk payloads."""
        events: list[Event] = []
        view = memoryview(data).cast("B") if memoryview(data).nbytes else memoryview(b"")
        pos = 0
        while True:
            event = self.next_event()
            if event is not None:
                events.append(event)
                if isinstance(event, ChunkHeader):
                    self.set_payload_sink(None)
                continue
            if pos >= len(view):
                return events
            buf = self.get_buffer()
            n = min(len(buf), len(view) - pos)
            buf[:n] = view[pos:pos + n]
            pos += n
            self.buffer_updated(n)

    # -- internals ---------------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _compact(self, want: int) -> None:
        size = self._end - self._start
        if want > len(self._buf):
            new = bytearray(want)
            new[:size] = self._buf[self._start:self._end]
            self._buf = new
        else:
            self._buf[:size] = self._buf[self._start:self._end]
        self._start, self._end = 0, size

    def _parse_header(self) -> tuple[FrameType, int, int, int]:
        magic, version, kind, meta_len, payload_len, crc = HEADER.unpack_from(self._buf, self._start)
        if magic != MAGIC:
            raise ProtocolError("bad frame magic")
        if version != VERSION:
            raise ProtocolError(f"unsupported protocol version {version} (this end speaks {VERSION})")
        try:
            ftype = FrameType(kind)
        except ValueError:
            raise ProtocolError(f"unknown frame type {kind}") from None
        if self._allowed is not None and ftype not in self._allowed:
            raise ProtocolError(f"frame {ftype.name} is not allowed here")
        if meta_len > self._max_meta:
            raise LimitExceeded(f"frame metadata of {meta_len} B > limit {self._max_meta} B")
        if ftype is FrameType.CHUNK:
            if not 0 < payload_len <= self._limits.max_chunk_bytes:
                raise LimitExceeded(f"chunk of {payload_len} B outside 1..{self._limits.max_chunk_bytes}")
        elif payload_len != 0:
            raise ProtocolError(f"frame {ftype.name} may not carry a payload")
        return ftype, meta_len, payload_len, crc

    def _parse_frame(self) -> Event | None:
        available = self._end - self._start
        if self._header is None:
            if available < HEADER_BYTES:
                return None
            self._header = self._parse_header()
        kind, meta_len, payload_len, crc = self._header
        if available < HEADER_BYTES + meta_len:
            return None
        begin = self._start + HEADER_BYTES
        meta = bytes(self._buf[begin:begin + meta_len])
        if zlib.crc32(meta) != crc:
            raise FrameCorrupt(f"{kind.name} metadata checksum mismatch")
        frame = decode_meta(kind, meta, payload_len, self._limits)
        self._start = begin + meta_len
        self._header = None
        if isinstance(frame, ChunkHeader):
            self._chunk, self._sink, self._done = frame, None, 0
            self._target = _Target.STAGING
        return frame

    def _drain_payload(self) -> Event | None:
        chunk = self._chunk
        assert chunk is not None
        if self.awaiting_sink:
            raise RuntimeError("set_payload_sink() must follow a ChunkHeader event")
        leftover = self._end - self._start
        if leftover:
            n = min(leftover, chunk.length - self._done)
            if self._sink is not None:
                self._sink[self._done:self._done + n] = self._buf[self._start:self._start + n]
                if self._hasher is not None:
                    self._hasher.update(self._sink[self._done:self._done + n])
            self._start += n
            self._done += n
        if self._done < chunk.length:
            return None
        checksum = self._hasher.value() if self._hasher is not None else None
        self._chunk, self._sink, self._done, self._hasher = None, None, 0, None
        self._target = _Target.STAGING
        return ChunkPayloadDone(chunk, checksum)
