"""Blocking-socket glue: socket options, a frame reader over a decoder, and the auth handshake.

The reader drives the sans-I/O `FrameDecoder` with `recv_into`, so chunk payloads land directly in
the buffer the decoder hands out. The handshake (see `auth`) runs with a timeout and a decoder that
accepts only handshake frames with tiny metadata, so an unauthenticated peer cannot make this end
allocate anything or touch a transfer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

from prfaas.transport import auth
from prfaas.transport.codec import PRE_AUTH_MAX_META_BYTES, FrameDecoder, encode
from prfaas.transport.config import SenderConfig, TransportLimits
from prfaas.transport.errors import AuthFailed, FailureReason, PeerUnavailable, ProtocolError
from prfaas.transport.frames import (
    TRANSFER_ID_BYTES,
    Abort,
    Auth,
    AuthOk,
    Challenge,
    Event,
    FrameType,
    Hello,
)

SENDER_FRAMES = frozenset({FrameType.BEGIN, FrameType.CHUNK, FrameType.END, FrameType.ABORT, FrameType.PING})
RECEIVER_FRAMES = frozenset({FrameType.ADMIT, FrameType.CHUNK_ACK, FrameType.NACK, FrameType.COMPLETE,
                             FrameType.ABORT, FrameType.PONG})
NO_TRANSFER = bytes(TRANSFER_ID_BYTES)
_T = TypeVar("_T")
_CLIENT_PRE_AUTH_META_BYTES = 2048  # a CHALLENGE, or an ABORT with its message


def configure_socket(sock: socket.socket, buffer_bytes: int | None) -> None:
    """Low-latency control frames, kernel keep-alive, optional socket buffer sizes."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    if buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)


class FrameReader:
    """Pull events from a socket through a decoder. Raises ConnectionError on EOF."""

    def __init__(self, sock: socket.socket, decoder: FrameDecoder) -> None:
        self.sock = sock
        self.decoder = decoder
        self.before_recv: Callable[[], None] | None = None  # e.g. flush deferred acks before blocking

    def next_event(self) -> Event:
        decoder = self.decoder
        while True:
            event = decoder.next_event()
            if event is not None:
                return event
            if self.before_recv is not None:
                self.before_recv()
            buffer = decoder.get_buffer()
            n = self._fill(buffer) if decoder.is_reading_payload else self.sock.recv_into(buffer)
            if n == 0:
                raise ConnectionResetError("peer closed the connection")
            decoder.buffer_updated(n)

    def _fill(self, buffer: memoryview) -> int:
        """Payload bytes are all expected: fill the whole piece before going back through the decoder (a TLS
        socket hands out one 16 KiB record per call). Returns what was read (0 only at EOF on the first read)."""
        recv_into = self.sock.recv_into
        n, size = 0, buffer.nbytes
        while n < size:
            got = recv_into(buffer[n:])
            if got == 0:
                return n
            n += got
        return n


def _shutdown_tcp(sock: socket.socket, how: int) -> None:
    """`shutdown(2)` on the TCP socket itself. NOTE(tls): `SSLSocket.shutdown` would drop the TLS object, after
    which a reader still running on the socket would take ciphertext for frames, and TLS has no half-close
    (close_notify ends both directions). A bare TCP FIN keeps TLS intact: the peer reads every record
    already sent and then an EOF, which the protocol's own END/COMPLETE accounting makes harmless."""
    socket.socket.shutdown(sock, how)


def shutdown_writes_quietly(sock: socket.socket) -> None:
    """Half-close: FIN after what is already queued, the peer may still send; errors mean it is already gone."""
    with contextlib.suppress(OSError):
        _shutdown_tcp(sock, socket.SHUT_WR)


def close_quietly(sock: socket.socket) -> None:
    """Shut down both directions (wakes threads blocked on it) and close; errors are expected here."""
    with contextlib.suppress(OSError):  # already closed or reset: nothing left to wake
        _shutdown_tcp(sock, socket.SHUT_RDWR)
    sock.close()


def wrap_client_tls(sock: socket.socket, config: SenderConfig, host: str) -> socket.socket:
    """TLS handshake as the sender, bounded by `handshake_timeout_s`. A receiver certificate the deployment CA
    did not sign (or for another host) raises AuthFailed; a peer that hangs up raises PeerUnavailable."""
    assert config.ssl_context is not None
    sock.settimeout(config.handshake_timeout_s)
    try:
        return config.ssl_context.wrap_socket(sock, server_hostname=config.tls_server_hostname or host)
    except ssl.SSLCertVerificationError as exc:
        raise AuthFailed(f"TLS: receiver {host} presented a certificate the deployment CA does not vouch for: "
                         f"{exc.verify_message}") from None
    except (ssl.SSLEOFError, TimeoutError, ConnectionError) as exc:
        raise PeerUnavailable(f"TLS handshake with receiver {host} failed: {exc} (is TLS off at the receiver?)") \
            from None
    except ssl.SSLError as exc:
        raise AuthFailed(f"TLS handshake with receiver {host} failed: {exc}") from None


def client_handshake(sock: socket.socket, *, secret: bytes, node_name: str, session_id: bytes,
                     limits: TransportLimits, timeout_s: float) -> tuple[AuthOk, FrameReader]:
    """Authenticate to a receiver. Raises AuthFailed, PeerUnavailable or ProtocolError."""
    sock.settimeout(timeout_s)
    decoder = FrameDecoder(limits, allowed=frozenset({FrameType.CHALLENGE, FrameType.ABORT}),
                           max_meta_bytes=_CLIENT_PRE_AUTH_META_BYTES)
    reader = FrameReader(sock, decoder)
    client_nonce = auth.make_nonce()
    try:
        sock.sendall(encode(Hello(client_nonce, session_id, node_name)))
        challenge = _expect(reader.next_event(), Challenge)
        expected = auth.server_proof(secret, client_nonce, challenge.server_nonce)
        if not auth.proofs_match(expected, challenge.server_proof):
            raise AuthFailed("receiver could not prove the shared secret")
        sock.sendall(encode(Auth(auth.client_proof(secret, client_nonce, challenge.server_nonce))))
        decoder.authenticated(frozenset({FrameType.AUTH_OK, FrameType.ABORT}), _CLIENT_PRE_AUTH_META_BYTES)
        ok = _expect(reader.next_event(), AuthOk)
    except (TimeoutError, ConnectionError, ssl.SSLEOFError) as exc:
        hint = "" if isinstance(sock, ssl.SSLSocket) else " (a receiver that requires TLS resets plaintext senders)"
        raise PeerUnavailable(f"handshake with receiver failed: {exc}{hint}") from None
    except ssl.SSLError as exc:  # TLS 1.3: the receiver's verdict on our certificate arrives with the first read
        raise AuthFailed(f"TLS: receiver refused this sender's certificate: {exc}") from None
    decoder.authenticated(RECEIVER_FRAMES)
    sock.settimeout(None)
    return ok, reader


def open_connection(host: str, port: int, config: SenderConfig,
                    session_id: bytes) -> tuple[socket.socket, FrameReader]:
    """Connect, optionally wrap in TLS, and authenticate. Raises OSError or a TransportError."""
    sock = socket.create_connection((host, port), timeout=config.connect_timeout_s)
    try:
        configure_socket(sock, config.socket_buffer_bytes)
        if config.ssl_context is not None:
            sock = wrap_client_tls(sock, config, host)
        _, reader = client_handshake(sock, secret=config.shared_secret, node_name=config.node_name,
                                     session_id=session_id, limits=TransportLimits(),
                                     timeout_s=config.handshake_timeout_s)
    except BaseException:
        close_quietly(sock)
        raise
    return sock, reader


def _expect(event: Event, kind: type[_T]) -> _T:
    if isinstance(event, Abort):
        if event.reason is FailureReason.AUTH_FAILED:
            raise AuthFailed(f"receiver rejected authentication: {event.message}")
        raise ProtocolError(f"receiver aborted the handshake: {event.message}")
    if not isinstance(event, kind):
        raise ProtocolError(f"expected {kind.__name__} during the handshake, got {type(event).__name__}")
    return event


def server_handshake(sock: socket.socket, *, secret: bytes, limits: TransportLimits,
                     timeout_s: float) -> tuple[Hello, FrameReader]:
    """Authenticate a sender before reading anything else. Raises AuthFailed or ProtocolError."""
    sock.settimeout(timeout_s)
    decoder = FrameDecoder(limits, allowed=frozenset({FrameType.HELLO}),
                           max_meta_bytes=PRE_AUTH_MAX_META_BYTES)
    reader = FrameReader(sock, decoder)
    hello = _expect(reader.next_event(), Hello)
    server_nonce = auth.make_nonce()
    proof = auth.server_proof(secret, hello.client_nonce, server_nonce)
    sock.sendall(encode(Challenge(server_nonce, proof)))
    decoder.authenticated(frozenset({FrameType.AUTH}), PRE_AUTH_MAX_META_BYTES)
    answer = _expect(reader.next_event(), Auth)
    expected = auth.client_proof(secret, hello.client_nonce, server_nonce)
    if not auth.proofs_match(expected, answer.client_proof):
        with contextlib.suppress(OSError):  # the peer may be gone; it is rejected either way
            sock.sendall(encode(Abort(NO_TRANSFER, FailureReason.AUTH_FAILED, "authentication failed")))
        raise AuthFailed(f"sender {hello.node_name[:64]!r} failed authentication")
    sock.sendall(encode(AuthOk(limits.max_chunk_bytes)))
    decoder.authenticated(SENDER_FRAMES)
    sock.settimeout(None)
    return hello, reader
