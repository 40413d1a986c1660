"""The sans-I/O codec: round trips, zero-copy sinks, and fuzzing (arbitrary bytes -> typed errors)."""

from __future__ import annotations

import contextlib
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_helpers import hybrid_layout

from prfaas.transport.checksum import RunningChecksum, chunk_checksum
from prfaas.transport.codec import HEADER_BYTES, FrameDecoder, encode, encode_chunk_header
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
    FrameType,
    Hello,
    Nack,
    NackReason,
    Ping,
    Pong,
)
from prfaas.transport.manifest import check_layout_limits, encode_layout, num_chunks, plan_chunks

LIMITS = TransportLimits()
TID = bytes(range(16))


def _all_frames() -> list:
    layout = hybrid_layout(np.random.default_rng(1))
    return [
        Hello(os.urandom(32), os.urandom(16), "prefill-0"),
        Challenge(os.urandom(32), os.urandom(32)),
        Auth(os.urandom(32)),
        AuthOk(1 << 22),
        Begin(TID, "req-ü-1", layout.total_bytes, num_chunks(layout, 4096), 4096, ChecksumKind.CRC32, layout),
        End(TID, 7, os.urandom(16)),
        Admit(TID),
        ChunkAck(TID, 3),
        Nack(TID, 4, NackReason.CHECKSUM_MISMATCH),
        Complete(TID),
        Abort(TID, FailureReason.DEADLINE, "too slow"),
        Ping(2**63),
        Pong(5),
    ]


def test_every_control_frame_round_trips_even_byte_by_byte() -> None:
    frames = _all_frames()
    wire = b"".join(encode(f) for f in frames)
    assert FrameDecoder(LIMITS).feed(wire) == frames
    dec = FrameDecoder(LIMITS, readahead_bytes=20)
    got = []
    for i in range(len(wire)):
        got += dec.feed(wire[i:i + 1])
    assert got == frames


def test_chunk_payload_lands_in_the_sink_without_staging() -> None:
    payload = os.urandom(100_000)
    header = ChunkHeader(TID, 9, 2, 4096, len(payload), 12345)
    wire = encode_chunk_header(header) + payload + encode(Complete(TID))
    dest = bytearray(len(payload))
    dec = FrameDecoder(LIMITS, readahead_bytes=1024)
    events, pos, reads_into_dest = [], 0, 0
    while True:
        ev = dec.next_event()
        if ev is not None:
            events.append(ev)
            if isinstance(ev, ChunkHeader):
                dec.set_payload_sink(memoryview(dest))
            continue
        if pos == len(wire):
            break
        buf = dec.get_buffer()
        reads_into_dest += buf.obj is dest
        n = min(len(buf), 7000, len(wire) - pos)
        buf[:n] = wire[pos:pos + n]
        pos += n
        dec.buffer_updated(n)
    assert events == [header, ChunkPayloadDone(header), Complete(TID)]
    assert bytes(dest) == payload
    assert reads_into_dest >= 10  # the bulk of the payload was read straight into place


def test_chunk_plan_covers_every_byte_once() -> None:
    layout = hybrid_layout(np.random.default_rng(2))
    plan = plan_chunks(layout, 4096)
    assert len(plan) == num_chunks(layout, 4096)
    covered = {}
    for c in plan:
        assert 0 < c.length <= 4096
        covered.setdefault(c.tensor_index, []).append((c.offset, c.length))
    for i, spec in enumerate(layout.tensors):
        spans = covered.get(i, [])
        assert sum(n for _, n in spans) == spec.nbytes
        assert [o for o, _ in spans] == list(range(0, spec.nbytes, 4096))


def test_bad_version_magic_type_and_crc_are_typed_errors() -> None:
    good = bytearray(encode(Ping(1)))
    for index, value, error in [(2, 9, ProtocolError), (0, 0, ProtocolError), (3, 99, ProtocolError),
                                (HEADER_BYTES, good[HEADER_BYTES] ^ 1, FrameCorrupt)]:
        bad = bytearray(good)
        bad[index] = value
        with pytest.raises(error):
            FrameDecoder(LIMITS).feed(bytes(bad))


def test_oversized_declarations_are_rejected_before_reading_them() -> None:
    limits = TransportLimits(max_chunk_bytes=1 << 20, max_meta_bytes=4096)
    header = encode_chunk_header(ChunkHeader(TID, 0, 0, 0, (1 << 20) + 1, 0))
    with pytest.raises(LimitExceeded):
        FrameDecoder(limits).feed(header)  # the payload was never sent
    big_meta = bytearray(encode(Ping(1)))
    big_meta[4:8] = (1 << 30).to_bytes(4, "little")
    with pytest.raises(LimitExceeded):
        FrameDecoder(limits).feed(bytes(big_meta[:HEADER_BYTES]))


def test_pre_auth_decoder_refuses_other_frames() -> None:
    dec = FrameDecoder(LIMITS, allowed=frozenset({FrameType.HELLO}), max_meta_bytes=256)
    with pytest.raises(ProtocolError, match="not allowed"):
        dec.feed(encode(Admit(TID)))
    with pytest.raises(ProtocolError):  # the decoder stays failed
        dec.feed(encode(Hello(b"a" * 32, b"s" * 16, "x")))


def test_begin_with_huge_tensor_is_a_limit_error() -> None:
    layout = hybrid_layout(np.random.default_rng(3))
    limits = TransportLimits(max_tensor_bytes=1024)
    frame = Begin(TID, "r", layout.total_bytes, 1, 4096, ChecksumKind.XXH3_64, layout)
    (decoded,) = FrameDecoder(limits).feed(encode(frame))  # structure is fine; the size is not
    assert isinstance(decoded, Begin) and decoded.layout == layout
    with pytest.raises(LimitExceeded):
        check_layout_limits(decoded.layout, limits)
    check_layout_limits(decoded.layout, TransportLimits())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        FrameDecoder(LIMITS).feed(data)


_CHUNK = encode_chunk_header(ChunkHeader(TID, 1, 0, 0, 5, 0)) + b"abcde"
_VALID = b"".join(encode(f) for f in _all_frames()) + _CHUNK


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(1, len(_VALID)))
def test_fuzz_mutated_valid_streams_give_typed_errors(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for index, value in flips:
        data[index] = value
    with contextlib.suppress(ProtocolError):
        FrameDecoder(LIMITS, readahead_bytes=64).feed(bytes(data[:cut]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_manifest_decoding(data: bytes) -> None:
    layout = hybrid_layout(np.random.default_rng(4))
    meta = encode_layout(layout)
    frame = bytearray(encode(Begin(TID, "r", 1, 1, 4096, ChecksumKind.XXH3_64, layout)))
    start = frame.index(meta)
    corrupted = bytes(frame[:start]) + data  # random manifest bytes, with a fixed-up header below
    meta_all = corrupted[HEADER_BYTES:]
    header = struct.pack("<2sBBIQI", b"PK", 1, FrameType.BEGIN, len(meta_all), 0, zlib.crc32(meta_all))
    with contextlib.suppress(ProtocolError):
        FrameDecoder(LIMITS).feed(header + meta_all)


@pytest.mark.parametrize("kind", list(ChecksumKind))
@pytest.mark.parametrize("readahead", [20, 4096, 1 << 20])
def test_running_checksum_while_receiving_matches_one_shot(kind: ChecksumKind, readahead: int) -> None:
    payload = os.urandom(300_001)
    header = ChunkHeader(TID, 0, 0, 0, len(payload), 0)
    wire = encode_chunk_header(header) + payload
    dest = bytearray(len(payload))
    dec = FrameDecoder(LIMITS, readahead_bytes=readahead)
    pos, done = 0, None
    while done is None:
        ev = dec.next_event()
        if isinstance(ev, ChunkHeader):
            dec.set_payload_sink(memoryview(dest), RunningChecksum(kind))
        elif isinstance(ev, ChunkPayloadDone):
            done = ev
        elif ev is None:
            buf = dec.get_buffer()
            n = min(len(buf), 9999, len(wire) - pos)
            buf[:n] = wire[pos:pos + n]
            pos += n
            dec.buffer_updated(n)
    assert bytes(dest) == payload
    assert done.checksum == chunk_checksum(kind, memoryview(payload))
