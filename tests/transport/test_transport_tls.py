"""Mutual TLS on the KV transport: the dev CA's files, full transfers over TLS 1.3, and refusals of peers
whose certificates another CA signed (either side), of a sender without a certificate, and of plaintext."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from transport_helpers import SECRET, Sink, as_bytes, hybrid_layout, layer_views, random_buffers

from prfaas.core.errors import ConfigError
from prfaas.transport import (
    FailureReason,
    KvReceiver,
    KvSender,
    PeerAddress,
    ReceiverConfig,
    SenderConfig,
    TransferFailed,
)
from prfaas.transport.codec import encode
from prfaas.transport.frames import Hello
from prfaas.transport.testing import LinkShim
from prfaas.transport.tls import (
    NodeCert,
    TlsFiles,
    check_files,
    client_context,
    server_context,
    write_dev_ca,
)

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

KIB = 1024


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    return write_dev_ca(tmp_path_factory.mktemp("ca"), [NodeCert("prefill-0"), NodeCert("decode-0", ("10.1.2.3",))])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    return write_dev_ca(tmp_path_factory.mktemp("other"), [NodeCert("prefill-0"), NodeCert("decode-0")])


def _receiver(files: TlsFiles, sink: Sink) -> KvReceiver:
    config = ReceiverConfig(shared_secret=SECRET, ssl_context=server_context(files), transfer_deadline_s=20.0)
    return KvReceiver(config, sink.allocate, sink.on_complete, sink.on_failed)


def _sender(context: ssl.SSLContext, **overrides: object) -> KvSender:
    base: dict[str, object] = {"shared_secret": SECRET, "ssl_context": context, "chunk_bytes": 64 * KIB,
                               "transfer_deadline_s": 20.0, "connections_per_peer": 2}
    base.update(overrides)
    return KvSender(SenderConfig(**base))  # type: ignore[arg-type]


def _send(sender: KvSender, rx: KvReceiver, request_id: str, seed: int) -> tuple[object, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    layout = hybrid_layout(rng, num_layers=9)
    arrays = random_buffers(layout, rng)
    transfer = sender.begin(PeerAddress(*rx.address), request_id, layout)
    for layer in layout.layer_indices:
        transfer.send_layer(layer, layer_views(layout, arrays, layer))
    transfer.finish()
    return transfer, arrays


# -- the dev CA --------------------------------------------------------------------------------------


def test_dev_ca_writes_owner_only_keys_and_certificates_with_the_node_hosts(ca_dir: dict[str, TlsFiles]) -> None:
    files = ca_dir["decode-0"]
    folder = files.ca_file.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in (files.key_file, ca_dir["prefill-0"].key_file, folder / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    assert cert.issuer == ca.subject and cert.issuer != cert.subject
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"decode-0", "localhost"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(h)
                                                               for h in ("127.0.0.1", "::1", "10.1.2.3")}


def test_private_key_files_stay_owner_only_when_rewritten_over_a_wider_file(tmp_path: Path) -> None:
    key = tmp_path / "n-key.pem"
    key.write_text("old")
    key.chmod(0o644)
    write_dev_ca(tmp_path, [NodeCert("n")])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_missing_or_broken_tls_files_are_one_line_config_errors(ca_dir: dict[str, TlsFiles], tmp_path: Path) -> None:
    good = ca_dir["decode-0"]
    missing = TlsFiles(good.ca_file, tmp_path / "nope.pem", good.key_file)
    with pytest.raises(ConfigError, match="tls_cert_file for node 'decode-0'") as info:
        check_files(missing, "decode-0")
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        server_context(TlsFiles(good.ca_file, garbage, good.key_file))


def test_contexts_require_tls13_and_a_peer_certificate(ca_dir: dict[str, TlsFiles]) -> None:
    for context in (server_context(ca_dir["decode-0"]), client_context(ca_dir["prefill-0"])):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_3
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert len(context.get_ca_certs()) == 1  # the deployment CA only, never the system store


# -- transfers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_connections", [1, 4])
def test_full_transfer_over_mutual_tls_is_bit_exact(ca_dir: dict[str, TlsFiles], num_connections: int) -> None:
    sink = Sink()
    with _receiver(ca_dir["decode-0"], sink) as rx, \
            _sender(client_context(ca_dir["prefill-0"]), connections_per_peer=num_connections) as tx:
        transfers = [_send(tx, rx, f"tls-{i}", seed=40 + i) for i in range(3)]
        for transfer, _ in transfers:
            transfer.result(20)  # type: ignore[attr-defined]
        versions = {c.sock.version() for c in rx.registry.connections()}  # type: ignore[attr-defined]
    assert versions == {"TLSv1.3"}
    for i, (_, arrays) in enumerate(transfers):
        assert sink.completed[f"tls-{i}"] == as_bytes(arrays)


def test_tls_connection_cut_mid_chunk_resumes_on_another(ca_dir: dict[str, TlsFiles]) -> None:
    sink = Sink()
    shim = LinkShim(cut_after_bytes=((0, 100 * KIB + 1234), (1, 150 * KIB)))
    with _receiver(ca_dir["decode-0"], sink) as rx, _sender(client_context(ca_dir["prefill-0"]), shim=shim) as tx:
        transfer, arrays = _send(tx, rx, "tls-cut", seed=51)
        report = transfer.result(20)  # type: ignore[attr-defined]
    assert report.retransmitted_chunks >= 1
    assert sink.completed["tls-cut"] == as_bytes(arrays)


def test_receiver_shutdown_reaches_a_tls_sender_as_an_abort(ca_dir: dict[str, TlsFiles]) -> None:
    """The lingering close (TCP FIN, TLS left intact) still delivers the receiver's ABORTs."""
    sink = Sink()
    rx = _receiver(ca_dir["decode-0"], sink)
    rx.start()
    shim = LinkShim(one_way_delay_s=1.0)
    with _sender(client_context(ca_dir["prefill-0"]), shim=shim, reconnect_deadline_s=30.0) as tx:
        transfer, _ = _send(tx, rx, "tls-stopped", seed=52)
        deadline_s = time.monotonic() + 20
        while not sink.allocations and time.monotonic() < deadline_s:
            time.sleep(0.01)
        assert sink.allocations
        rx.close()
        with pytest.raises(TransferFailed) as info:
            transfer.result(20)  # type: ignore[attr-defined]
    assert info.value.reason is FailureReason.SHUTDOWN  # the ABORT, not the 30 s reconnect deadline


# -- refusals ----------------------------------------------------------------------------------------


def _counted_rejection(rx: KvReceiver, timeout_s: float = 10.0) -> bool:
    """The receiver counted a rejected connection within `timeout_s`. It counts in its own thread after it refused
    the peer, which the peer may learn first (with TLS 1.3 the client's handshake completes before the server has
    checked its certificate): poll, do not read once."""
    deadline_s = time.monotonic() + timeout_s
    while rx.num_rejected_connections < 1 and time.monotonic() < deadline_s:
        time.sleep(0.01)
    return rx.num_rejected_connections >= 1


def _assert_refused(rx: KvReceiver, tx: KvSender, sink: Sink, request_id: str) -> None:
    transfer, _ = _send(tx, rx, request_id, seed=60)
    with pytest.raises(TransferFailed) as info:
        transfer.result(30)  # type: ignore[attr-defined]
    assert info.value.reason is FailureReason.AUTH_FAILED, info.value
    assert sink.allocations == [] and sink.completed == {}


def test_sender_with_a_certificate_from_another_ca_is_refused(ca_dir: dict[str, TlsFiles],
                                                              other_ca: dict[str, TlsFiles]) -> None:
    sink = Sink()
    # trusts the right CA (so it accepts the receiver) but presents a certificate another CA signed
    stranger = TlsFiles(ca_dir["prefill-0"].ca_file, other_ca["prefill-0"].cert_file, other_ca["prefill-0"].key_file)
    with _receiver(ca_dir["decode-0"], sink) as rx, _sender(client_context(stranger)) as tx:
        _assert_refused(rx, tx, sink, "stranger")
        assert _counted_rejection(rx)


def test_receiver_with_a_certificate_from_another_ca_is_refused(ca_dir: dict[str, TlsFiles],
                                                                other_ca: dict[str, TlsFiles]) -> None:
    sink = Sink()
    with _receiver(other_ca["decode-0"], sink) as rx, _sender(client_context(ca_dir["prefill-0"])) as tx:
        _assert_refused(rx, tx, sink, "rogue-receiver")


def test_sender_without_a_client_certificate_is_refused(ca_dir: dict[str, TlsFiles]) -> None:
    sink = Sink()
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(ca_dir["prefill-0"].ca_file))
    with _receiver(ca_dir["decode-0"], sink) as rx, _sender(anonymous) as tx:
        _assert_refused(rx, tx, sink, "anonymous")


def test_plaintext_peer_gets_no_challenge_from_a_tls_receiver(ca_dir: dict[str, TlsFiles]) -> None:
    sink = Sink()
    with _receiver(ca_dir["decode-0"], sink) as rx:
        with socket.create_connection(rx.address, timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(encode(Hello(bytes(16), bytes(16), "plaintext")))
            answer = b""
            try:
                while chunk := sock.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert _counted_rejection(rx)
    assert answer == b"" or answer[0] == 0x15  # nothing, or a TLS alert record: never a CHALLENGE frame
    assert sink.allocations == []


@pytest.mark.parametrize("tls_at", ["receiver", "sender"])
def test_tls_on_one_end_only_fails_the_transfer_with_a_hint(ca_dir: dict[str, TlsFiles], tls_at: str) -> None:
    sink = Sink()
    rx_context = server_context(ca_dir["decode-0"]) if tls_at == "receiver" else None
    rx = KvReceiver(ReceiverConfig(shared_secret=SECRET, ssl_context=rx_context), sink.allocate, sink.on_complete,
                    sink.on_failed)
    tx_context = client_context(ca_dir["prefill-0"]) if tls_at == "sender" else None
    with rx, _sender(tx_context, reconnect_deadline_s=0.5) as tx:  # type: ignore[arg-type]
        transfer, _ = _send(tx, rx, "half-tls", seed=61)
        with pytest.raises(TransferFailed) as info:
            transfer.result(30)  # type: ignore[attr-defined]
        assert info.value.reason is FailureReason.PEER_UNAVAILABLE
        assert _counted_rejection(rx)
    assert sink.allocations == []
