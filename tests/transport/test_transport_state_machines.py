"""Pure parts: outbound/inbound state machines, token bucket, telemetry, TCP_INFO (no threads)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from transport_helpers import hybrid_layout, layer_views, random_buffers

from prfaas.transport.checksum import chunk_checksum
from prfaas.transport.config import ChecksumKind
from prfaas.transport.errors import FailureReason, FrameCorrupt, ProtocolError, TransferFailed
from prfaas.transport.frames import ChunkHeader, End
from prfaas.transport.inbound import InboundPhase, InboundState, Verdict
from prfaas.transport.outbound import OutboundState
from prfaas.transport.pacing import TokenBucket
from prfaas.transport.tcpinfo import read_tcp_info
from prfaas.transport.telemetry import LinkTelemetry

TID = b"x" * 16


def _pair(chunk_bytes: int = 4096, max_retransmits: int = 2) -> tuple[OutboundState, list[np.ndarray]]:
    rng = np.random.default_rng(31)
    layout = hybrid_layout(rng, num_layers=3, huge_elems=1 << 12)
    arrays = random_buffers(layout, rng)
    out = OutboundState(TID, "r", layout, chunk_bytes=chunk_bytes, checksum=ChecksumKind.XXH3_64,
                        max_retransmits=max_retransmits)
    return out, arrays


def _header(out: OutboundState, seq: int, checksum: int | None = None) -> ChunkHeader:
    ref = out.chunks[seq]
    value = chunk_checksum(ChecksumKind.XXH3_64, out.payload(seq)) if checksum is None else checksum
    return ChunkHeader(TID, seq, ref.tensor_index, ref.offset, ref.length, value)


def test_chunks_become_ready_only_when_layer_given_and_admitted() -> None:
    out, arrays = _pair()
    first = out.layout.layer_indices[0]
    assert out.provide_layer(first, layer_views(out.layout, arrays, first)) == []  # not admitted yet
    ready = out.admit()
    assert ready and all(out.chunks[s].tensor_index < 3 for s in ready)
    second = out.layout.layer_indices[1]
    more = out.provide_layer(second, layer_views(out.layout, arrays, second))
    assert more and set(more).isdisjoint(ready)
    with pytest.raises(ValueError):
        out.provide_layer(second, layer_views(out.layout, arrays, second))


def test_lost_connection_requeues_only_unacked_chunks_and_end_waits_for_checksums() -> None:
    out, arrays = _pair()
    out.admit()
    for layer in out.layout.layer_indices:
        out.provide_layer(layer, layer_views(out.layout, arrays, layer))
    out.finish()
    seqs = list(range(len(out.chunks)))
    for seq in seqs:
        out.mark_in_flight(seq)
    assert not out.is_end_ready()
    for seq in seqs:
        out.record_checksum(seq, 1)
    assert out.is_end_ready()
    out.on_ack(seqs[0])
    assert out.on_connection_lost(seqs) == seqs[1:]
    assert out.num_retransmitted == len(seqs) - 1


def test_nack_retries_are_bounded() -> None:
    out, arrays = _pair(max_retransmits=1)
    out.admit()
    out.provide_layer(0, layer_views(out.layout, arrays, 0))
    out.mark_in_flight(0)
    assert out.on_nack(0) is True
    out.mark_in_flight(0)
    with pytest.raises(TransferFailed) as info:
        out.on_nack(0)
    assert info.value.reason is FailureReason.CORRUPTION


def _inbound(out: OutboundState) -> InboundState:
    inbound = InboundState(out.begin_frame(), b"s")
    inbound.attach_buffers([bytearray(t.nbytes) for t in out.layout.tensors])
    assert inbound.phase is InboundPhase.RECEIVING
    return inbound


def _deliver(inbound: InboundState, out: OutboundState, seq: int, conn: int, corrupt: bool = False) -> Verdict:
    header = _header(out, seq)
    sink = inbound.claim(header, conn)
    if sink is None:
        return inbound.verify(header, conn, header.checksum)
    sink[:] = out.payload(seq)
    if corrupt:
        sink[0] ^= 1
    return inbound.verify(header, conn, chunk_checksum(ChecksumKind.XXH3_64, sink))


def test_inbound_verifies_every_chunk_and_the_whole_transfer() -> None:
    out, arrays = _pair()
    out.admit()
    for layer in out.layout.layer_indices:
        out.provide_layer(layer, layer_views(out.layout, arrays, layer))
    out.finish()
    inbound = _inbound(out)
    for seq in range(len(out.chunks)):
        out.record_checksum(seq, _header(out, seq).checksum)
    assert _deliver(inbound, out, 0, conn=1, corrupt=True) is Verdict.NACK
    for seq in reversed(range(len(out.chunks))):
        assert _deliver(inbound, out, seq, conn=2) is Verdict.ACK
    assert _deliver(inbound, out, 0, conn=3) is Verdict.ACK  # duplicate: discarded, re-acked
    assert not inbound.is_complete()  # END not seen yet
    inbound.on_end(out.end_frame())
    assert inbound.is_complete()
    assert [bytes(b) for b in inbound.buffers] == [a.tobytes() for a in arrays]


def test_inbound_rejects_wrong_digest_and_off_plan_chunks() -> None:
    out, arrays = _pair()
    out.admit()
    for layer in out.layout.layer_indices:
        out.provide_layer(layer, layer_views(out.layout, arrays, layer))
    inbound = _inbound(out)
    for seq in range(len(out.chunks)):
        _deliver(inbound, out, seq, conn=1)
    inbound.on_end(End(TID, len(out.chunks), b"\0" * 16))
    with pytest.raises(FrameCorrupt):
        inbound.is_complete()
    bad = _header(out, 1)
    with pytest.raises(ProtocolError):
        inbound.claim(ChunkHeader(TID, 1, bad.tensor_index, bad.offset + 1, bad.length, 0), 1)


def test_superseded_claim_is_stale() -> None:
    out, arrays = _pair()
    out.admit()
    out.provide_layer(0, layer_views(out.layout, arrays, 0))
    inbound = _inbound(out)
    header = _header(out, 0)
    assert inbound.claim(header, 1) is not None
    sink = inbound.claim(header, 2)  # a retransmission on another connection takes over
    assert sink is not None
    sink[:] = out.payload(0)
    assert inbound.verify(header, 1, header.checksum) is Verdict.STALE
    assert inbound.verify(header, 2, header.checksum) is Verdict.ACK


def test_token_bucket_spaces_reservations_at_the_rate() -> None:
    bucket = TokenBucket(rate_bytes_per_s=1000.0, burst_bytes=100, now_s=0.0)
    assert bucket.reserve(100, 0.0) == 0.0  # the burst
    assert bucket.reserve(100, 0.0) == pytest.approx(0.1)
    assert bucket.reserve(100, 0.0) == pytest.approx(0.2)  # debt accumulates for concurrent senders
    assert bucket.reserve(50, 10.0) == 0.0  # refilled, capped at burst
    total_wait = sum(bucket.reserve(100, 10.0) for _ in range(10))
    assert total_wait == pytest.approx(sum(0.05 + 0.1 * k for k in range(10)), abs=1e-9)


def test_telemetry_goodput_window_latency_and_retransmit_rate() -> None:
    tel = LinkTelemetry("a->b", window_s=2.0, capacity_gbps=1.0)
    tel.transfer_started(1000)
    tel.record_delivered(125_000_000, now_s=1.0)  # 1 Gbit in the window
    tel.transfer_finished(1000, is_ok=True, latency_s=0.5)
    tel.record_tcp(rtt_ms=0.3, retrans_total=0, segs_out_total=0, now_s=0.0)
    tel.record_tcp(rtt_ms=0.4, retrans_total=5, segs_out_total=100, now_s=1.0)
    snap = tel.snapshot(2.0)
    assert snap.goodput_gbps == pytest.approx(0.5)
    assert snap.utilisation == pytest.approx(0.5)
    assert snap.transfers_in_flight == 0 and snap.transfers_total == 1
    assert snap.transfer_latency_p50_s == 0.5 and snap.rtt_ms == 0.4
    assert snap.retransmit_rate == pytest.approx(0.05)
    assert tel.snapshot(3.5).goodput_gbps == 0.0  # the delivery left the window
    assert tel.snapshot(3.5).rtt_ms is None  # idle for a window: the kernel's RTT is a stale sample
    tel.transfer_started(1000)  # a transfer in flight (even one stuck on a slow link) makes it current
    assert tel.snapshot(3.5).rtt_ms == 0.4


@pytest.mark.network
def test_tcp_info_on_a_loopback_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=5) as client:
        conn, _ = server.accept()
        with conn:
            client.sendall(b"x" * 100_000)
            conn.recv(65536)
            info = read_tcp_info(client)
    if not hasattr(socket, "TCP_INFO"):
        assert info is None
        return
    assert info is not None and info.rtt_us > 0 and info.snd_cwnd > 0
    assert info.segs_out is not None and info.segs_out > 0
