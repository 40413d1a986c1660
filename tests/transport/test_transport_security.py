"""Authentication, declared-size limits, memory-budget backpressure and TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from transport_helpers import SECRET, Sink, as_bytes, hybrid_layout, random_buffers

from prfaas.core.state_layout import StateLayout
from prfaas.transport import (
    FailureReason,
    KvReceiver,
    KvSender,
    PeerAddress,
    ReceiverConfig,
    SenderConfig,
    TransferFailed,
    TransportLimits,
)
from prfaas.transport.codec import FrameDecoder, encode
from prfaas.transport.config import ChecksumKind
from prfaas.transport.frames import Begin, Hello
from prfaas.transport.manifest import num_chunks

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def _layout() -> tuple[StateLayout, list[np.ndarray]]:
    rng = np.random.default_rng(21)
    layout = hybrid_layout(rng)
    return layout, random_buffers(layout, rng)


def test_wrong_secret_is_rejected_and_nothing_is_allocated(receiver: KvReceiver, sink: Sink) -> None:
    layout, arrays = _layout()
    config = SenderConfig(shared_secret=b"not-the-secret-xxxxxxxxxxxxxxxxx", connections_per_peer=2)
    with KvSender(config) as sender:
        transfer = sender.begin(PeerAddress(*receiver.address), "intruder", layout)
        transfer.send_all([memoryview(a) for a in arrays])
        with pytest.raises(TransferFailed) as info:
            transfer.result(10)
    assert info.value.reason is FailureReason.AUTH_FAILED
    assert _eventually(lambda: receiver.num_rejected_connections >= 1)  # counted after the ABORT went out
    assert sink.allocations == [] and sink.completed == {}


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline_s:
        time.sleep(0.01)
    return condition()


def _raw_connect(receiver: KvReceiver) -> socket.socket:
    sock = socket.create_connection(receiver.address, timeout=5)
    sock.settimeout(5)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_unauthenticated_begin_is_disconnected_before_any_allocation(receiver: KvReceiver, sink: Sink) -> None:
    layout, _ = _layout()
    begin = Begin(b"t" * 16, "sneaky", layout.total_bytes, num_chunks(layout, 4096), 4096,
                  ChecksumKind.XXH3_64, layout)
    with _raw_connect(receiver) as sock:
        sock.sendall(encode(begin))  # skips the handshake entirely
        assert _read_until_closed(sock) == b""  # closed without a word
    with _raw_connect(receiver) as sock:  # a HELLO whose name claims a huge length
        hello = bytearray(encode(Hello(b"n" * 32, b"s" * 16, "x" * 100)))
        hello[4:8] = (10**6).to_bytes(4, "little")
        sock.sendall(bytes(hello))
        assert _read_until_closed(sock) == b""
    time.sleep(0.1)
    assert sink.allocations == [] and receiver.registry.connections() == []


def test_forged_auth_proof_gets_an_auth_abort(receiver: KvReceiver, sink: Sink) -> None:
    from prfaas.transport.frames import Abort, Auth, Challenge

    with _raw_connect(receiver) as sock:
        sock.sendall(encode(Hello(b"n" * 32, b"s" * 16, "forger")))
        decoder = FrameDecoder(TransportLimits())
        events: list[object] = []
        while not events:
            events = decoder.feed(sock.recv(4096))
        assert isinstance(events[0], Challenge)
        sock.sendall(encode(Auth(b"\0" * 32)))
        events = decoder.feed(_read_until_closed(sock))
    assert isinstance(events[0], Abort) and events[0].reason is FailureReason.AUTH_FAILED
    assert sink.allocations == []


@pytest.mark.parametrize("limits,budget", [
    (TransportLimits(max_transfer_bytes=64 * 1024), 1 << 30),  # whole transfer too big
    (TransportLimits(max_tensor_bytes=4096), 1 << 30),  # one tensor too big
    (TransportLimits(), 64 * 1024),  # bigger than the whole memory budget
])
def test_oversized_declarations_are_rejected_without_allocation(limits: TransportLimits, budget: int) -> None:
    sink = Sink()
    config = ReceiverConfig(shared_secret=SECRET, limits=limits, memory_budget_bytes=budget)
    layout, arrays = _layout()
    with KvReceiver(config, sink.allocate, sink.on_complete, sink.on_failed) as rx, \
            KvSender(SenderConfig(shared_secret=SECRET, connections_per_peer=1)) as sender:
        transfer = sender.begin(PeerAddress(*rx.address), "huge", layout)
        transfer.send_all([memoryview(a) for a in arrays])
        with pytest.raises(TransferFailed) as info:
            transfer.result(10)
    assert info.value.reason is FailureReason.LIMIT_EXCEEDED
    assert sink.allocations == []


def test_memory_budget_queues_transfers_until_budget_frees() -> None:
    sink = Sink()
    layout, arrays = _layout()
    gate = threading.Event()
    admitted_while_first_held: list[int] = []

    def slow_complete(request_id: str, lay: StateLayout, buffers: list[memoryview]) -> None:
        if request_id == "first":
            admitted_while_first_held.append(len(sink.allocations))
            gate.wait(5)
        sink.on_complete(request_id, lay, buffers)

    config = ReceiverConfig(shared_secret=SECRET, memory_budget_bytes=int(layout.total_bytes * 1.5))
    with KvReceiver(config, sink.allocate, slow_complete, sink.on_failed) as rx, \
            KvSender(SenderConfig(shared_secret=SECRET, connections_per_peer=2)) as sender:
        peer = PeerAddress(*rx.address)
        first = sender.begin(peer, "first", layout)
        first.send_all([memoryview(a) for a in arrays])
        time.sleep(0.2)
        second = sender.begin(peer, "second", layout)
        second.send_all([memoryview(a) for a in arrays])
        time.sleep(0.3)
        assert len(sink.allocations) == 1  # the second waits: budget holds only one
        gate.set()
        first.result(10)
        second.result(10)
    assert admitted_while_first_held == [1]
    assert sink.completed["second"] == as_bytes(arrays)


def test_allocator_buffers_of_the_wrong_size_fail_the_transfer() -> None:
    sink = Sink()
    layout, arrays = _layout()

    def bad_allocate(lay: StateLayout) -> list[memoryview]:
        return [memoryview(bytearray(1)) for _ in lay.tensors]

    with KvReceiver(ReceiverConfig(shared_secret=SECRET), bad_allocate, sink.on_complete, sink.on_failed) as rx, \
            KvSender(SenderConfig(shared_secret=SECRET, connections_per_peer=1)) as sender:
        transfer = sender.begin(PeerAddress(*rx.address), "badalloc", layout)
        transfer.send_all([memoryview(a) for a in arrays])
        with pytest.raises(TransferFailed) as info:
            transfer.result(10)
    assert info.value.reason is FailureReason.ALLOCATION
    assert "badalloc" in sink.failed


def _make_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a test certificate")
def test_tls_round_trip(tmp_path: Path) -> None:
    cert, key = _make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    sink = Sink()
    layout, arrays = _layout()
    rx_config = ReceiverConfig(shared_secret=SECRET, ssl_context=server_ctx)
    tx_config = SenderConfig(shared_secret=SECRET, ssl_context=client_ctx, connections_per_peer=2)
    with KvReceiver(rx_config, sink.allocate, sink.on_complete, sink.on_failed) as rx, KvSender(tx_config) as tx:
        transfer = tx.begin(PeerAddress(*rx.address), "tls", layout)
        transfer.send_all([memoryview(a) for a in arrays])
        transfer.result(20)
    assert sink.completed["tls"] == as_bytes(arrays)


def test_too_many_waiting_transfers_are_refused() -> None:
    sink = Sink()
    layout, arrays = _layout()
    config = ReceiverConfig(shared_secret=SECRET, memory_budget_bytes=int(layout.total_bytes * 1.5),
                            max_waiting_transfers=1)
    views = [memoryview(a) for a in arrays]
    first_layer = [v for v, spec in zip(views, layout.tensors, strict=True) if spec.layer_index == 0]
    with KvReceiver(config, sink.allocate, sink.on_complete, sink.on_failed) as rx, \
            KvSender(SenderConfig(shared_secret=SECRET, connections_per_peer=2)) as sender:
        peer = PeerAddress(*rx.address)
        held = sender.begin(peer, "held", layout)  # admitted, but its producer is slow: holds the budget
        held.send_layer(0, first_layer)
        time.sleep(0.2)
        waiting = sender.begin(peer, "waiting", layout)
        waiting.send_all(views)
        time.sleep(0.2)
        refused = sender.begin(peer, "refused", layout)
        refused.send_all(views)
        with pytest.raises(TransferFailed) as info:
            refused.result(10)
        assert info.value.reason is FailureReason.LIMIT_EXCEEDED
        for layer in layout.layer_indices[1:]:
            held.send_layer(layer, [v for v, spec in zip(views, layout.tensors, strict=True)
                                    if spec.layer_index == layer])
        held.finish()
        held.result(10)
        waiting.result(10)
    assert sorted(sink.completed) == ["held", "waiting"]


def test_a_vanished_sender_is_failed_and_its_budget_freed(sink: Sink) -> None:
    import os

    from prfaas.transport.frames import SESSION_ID_BYTES
    from prfaas.transport.wire import client_handshake

    layout, _ = _layout()
    config = ReceiverConfig(shared_secret=SECRET, orphan_timeout_s=0.3)
    with KvReceiver(config, sink.allocate, sink.on_complete, sink.on_failed) as rx:
        sock = _raw_connect(rx)
        client_handshake(sock, secret=SECRET, node_name="crashing", session_id=os.urandom(SESSION_ID_BYTES),
                         limits=TransportLimits(), timeout_s=5)
        sock.sendall(encode(Begin(b"v" * 16, "vanishing", layout.total_bytes, num_chunks(layout, 4096), 4096,
                                  ChecksumKind.XXH3_64, layout)))
        deadline = time.monotonic() + 30  # anti-hang bound
        while not sink.allocations and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rx.registry.budget_used_bytes == layout.total_bytes  # admitted, buffers allocated
        sock.close()  # the sender dies without an ABORT (a crashed PrfaaS node)
        assert sink.done.wait(5)
        error = sink.failed["vanishing"]
        assert isinstance(error, TransferFailed) and error.reason is FailureReason.PEER_UNAVAILABLE
        assert rx.registry.budget_used_bytes == 0  # long before the 120 s transfer deadline
