"""Loopback transfers: bit-exact round trips over 1 and 4 connections, layer-wise pipelining,
corruption repaired or reported, connections killed mid-transfer, deadlines, asyncio use."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from transport_helpers import SECRET, Sink, as_bytes, hybrid_layout, layer_views, random_buffers

from prfaas.transport import (
    FailureReason,
    KvReceiver,
    KvSender,
    PeerAddress,
    ReceiverConfig,
    SenderConfig,
    TransferFailed,
)
from prfaas.transport.testing import LinkShim

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

KIB = 1024


def _config(**overrides: object) -> SenderConfig:
    base: dict[str, object] = {"shared_secret": SECRET, "chunk_bytes": 64 * KIB, "transfer_deadline_s": 20.0}
    base.update(overrides)
    return SenderConfig(**base)  # type: ignore[arg-type]


def _peer(receiver: KvReceiver) -> PeerAddress:
    return PeerAddress(*receiver.address)


def _send_layerwise(sender: KvSender, peer: PeerAddress, request_id: str, seed: int) -> tuple[object, list]:
    rng = np.random.default_rng(seed)
    layout = hybrid_layout(rng)
    arrays = random_buffers(layout, rng)
    transfer = sender.begin(peer, request_id, layout)
    for layer in layout.layer_indices:
        transfer.send_layer(layer, layer_views(layout, arrays, layer))
    transfer.finish()
    return transfer, arrays


@pytest.mark.parametrize("num_connections", [1, 4])
def test_random_hybrid_layouts_round_trip_bit_exact(receiver: KvReceiver, sink: Sink, num_connections: int) -> None:
    with KvSender(_config(connections_per_peer=num_connections)) as sender:
        sent = {}
        for i in range(3):
            transfer, arrays = _send_layerwise(sender, _peer(receiver), f"req-{i}", seed=10 + i)
            sent[f"req-{i}"] = (transfer, arrays)
        for request_id, (transfer, arrays) in sent.items():
            report = transfer.result(20)  # type: ignore[attr-defined]
            assert report.total_bytes == sum(a.nbytes for a in arrays)
            assert report.retransmitted_chunks == 0
            assert sink.completed[request_id] == as_bytes(arrays)
        snap = sender.link_snapshot(_peer(receiver))
    assert snap.transfers_total == 3 and snap.transfers_failed == 0
    assert snap.bytes_total == sum(t.result().total_bytes for t, _ in sent.values())  # type: ignore[attr-defined]
    assert not sink.failed


def test_four_connections_stripe_a_large_state(receiver: KvReceiver, sink: Sink) -> None:
    rng = np.random.default_rng(5)
    layout = hybrid_layout(rng, num_layers=3, huge_elems=1 << 21)  # two 4 MiB tensors
    arrays = random_buffers(layout, rng)
    with KvSender(_config(connections_per_peer=4)) as sender:
        peer = _peer(receiver)
        sender.connect(peer)
        deadline = time.monotonic() + 5
        while sender.link_snapshot(peer).is_up is False and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # let all four connections come up
        transfer = sender.begin(peer, "big", layout)
        transfer.send_all([memoryview(a) for a in arrays])
        report = transfer.result(20)
    assert sink.completed["big"] == as_bytes(arrays)
    assert report.connections_used > 1


def test_layers_sent_before_admission_and_in_any_order(receiver: KvReceiver, sink: Sink) -> None:
    rng = np.random.default_rng(6)
    layout = hybrid_layout(rng)
    arrays = random_buffers(layout, rng)
    with KvSender(_config()) as sender:
        transfer = sender.begin(_peer(receiver), "ooo", layout)
        for layer in reversed(layout.layer_indices):
            transfer.send_layer(layer, layer_views(layout, arrays, layer))
            time.sleep(0.002)
        transfer.finish()
        transfer.result(20)
    assert sink.completed["ooo"] == as_bytes(arrays)


def test_finish_before_all_layers_is_a_usage_error(receiver: KvReceiver) -> None:
    rng = np.random.default_rng(7)
    layout = hybrid_layout(rng)
    with KvSender(_config()) as sender:
        transfer = sender.begin(_peer(receiver), "partial", layout)
        with pytest.raises(ValueError, match="finish"):
            transfer.finish()
        with pytest.raises(ValueError, match="tensors"):
            transfer.send_layer(0, [])
        transfer.abort()
        with pytest.raises(TransferFailed):
            transfer.result(5)


def test_corrupted_chunks_are_detected_and_retransmitted(receiver: KvReceiver, sink: Sink) -> None:
    shim = LinkShim(corrupt_seqs=frozenset({0, 3, 5}), corrupt_attempts=2)
    with KvSender(_config(shim=shim, connections_per_peer=2)) as sender:
        transfer, arrays = _send_layerwise(sender, _peer(receiver), "corrupt", seed=11)
        report = transfer.result(20)  # type: ignore[attr-defined]
    assert report.retransmitted_chunks == 6  # each listed chunk corrupted twice, then clean
    assert sink.completed["corrupt"] == as_bytes(arrays)


def test_persistent_corruption_fails_the_transfer_and_is_never_handed_out(receiver: KvReceiver, sink: Sink) -> None:
    shim = LinkShim(corrupt_seqs=frozenset({2}), corrupt_attempts=100)
    with KvSender(_config(shim=shim, max_retransmits_per_chunk=2)) as sender:
        transfer, _ = _send_layerwise(sender, _peer(receiver), "rotten", seed=12)
        with pytest.raises(TransferFailed) as info:
            transfer.result(20)  # type: ignore[attr-defined]
    assert info.value.reason is FailureReason.CORRUPTION
    assert sink.done.wait(5)
    assert "rotten" in sink.failed and "rotten" not in sink.completed


@pytest.mark.parametrize("num_connections", [1, 4])
def test_connection_cut_mid_chunk_resumes_on_another(receiver: KvReceiver, sink: Sink, num_connections: int) -> None:
    cuts = tuple((i, 100 * KIB + 1234) for i in range(num_connections))  # every connection dies once
    shim = LinkShim(cut_after_bytes=cuts)
    with KvSender(_config(shim=shim, connections_per_peer=num_connections)) as sender:
        transfer, arrays = _send_layerwise(sender, _peer(receiver), "cut", seed=13)
        report = transfer.result(20)  # type: ignore[attr-defined]
    assert report.retransmitted_chunks >= 1
    assert sink.completed["cut"] == as_bytes(arrays)


def test_receiver_gone_fails_within_the_reconnect_deadline(sink: Sink) -> None:
    rx = KvReceiver(ReceiverConfig(shared_secret=SECRET), sink.allocate, sink.on_complete, sink.on_failed)
    rx.start()
    peer = PeerAddress(*rx.address)
    config = _config(reconnect_deadline_s=0.5, shim=LinkShim(one_way_delay_s=0.3))
    with KvSender(config) as sender:
        transfer, _ = _send_layerwise(sender, peer, "orphan", seed=14)
        time.sleep(0.1)
        rx.close()  # receiver dies mid-transfer and never comes back
        with pytest.raises(TransferFailed) as info:  # anti-hang: TimeoutError (not TransferFailed) after 30 s
            transfer.result(30)  # type: ignore[attr-defined]
    assert info.value.reason in (FailureReason.PEER_UNAVAILABLE, FailureReason.SHUTDOWN)


def test_receiver_shutdown_tells_the_sender_at_once(sink: Sink) -> None:
    rx = KvReceiver(ReceiverConfig(shared_secret=SECRET), sink.allocate, sink.on_complete, sink.on_failed)
    rx.start()
    config = _config(reconnect_deadline_s=30.0, shim=LinkShim(one_way_delay_s=1.0), connections_per_peer=2)
    with KvSender(config) as sender:
        transfer, _ = _send_layerwise(sender, PeerAddress(*rx.address), "stopped", seed=17)
        deadline_s = time.monotonic() + 30  # anti-hang bound
        while not sink.allocations and time.monotonic() < deadline_s:  # BEGIN admitted, chunks held back
            time.sleep(0.01)
        assert sink.allocations
        rx.close()
        with pytest.raises(TransferFailed) as info:  # anti-hang bound below the 30 s reconnect deadline
            transfer.result(20)  # type: ignore[attr-defined]
    assert info.value.reason is FailureReason.SHUTDOWN  # the receiver's ABORT, not a reconnect-deadline failure
    assert "stopped" in sink.failed and "stopped" not in sink.completed


def test_transfer_deadline_is_enforced(receiver: KvReceiver, sink: Sink) -> None:
    config = _config(transfer_deadline_s=0.3, shim=LinkShim(one_way_delay_s=2.0))
    with KvSender(config) as sender:
        transfer, _ = _send_layerwise(sender, _peer(receiver), "slow", seed=15)
        with pytest.raises(TransferFailed) as info:
            transfer.result(10)  # type: ignore[attr-defined]
        assert info.value.reason is FailureReason.DEADLINE
        assert sink.done.wait(5) and "slow" in sink.failed  # the receiver was told (ABORT) and freed it
    assert receiver.registry.budget_used_bytes == 0


def test_result_can_be_awaited_from_asyncio(receiver: KvReceiver, sink: Sink) -> None:
    async def main() -> int:
        with KvSender(_config()) as sender:
            transfer, _ = _send_layerwise(sender, _peer(receiver), "async", seed=16)
            report = await asyncio.wait_for(asyncio.wrap_future(transfer.future), 20)  # type: ignore[attr-defined]
            return report.num_chunks

    assert asyncio.run(main()) > 0
    assert "async" in sink.completed
