"""One receiver-side TCP connection, served by one thread.

The thread authenticates the peer first (nothing else is read before the HMAC handshake succeeds,
and only handshake frames with tiny metadata are accepted until then), then reads frames and hands
them to the registry. A chunk's payload is received straight into the destination slice the
registry returns. Frames to the sender (acks, admissions, completions) may be written by other
threads too, so writes go through a per-connection lock.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import TYPE_CHECKING

from prfaas.transport.checksum import RunningChecksum
from prfaas.transport.codec import encode
from prfaas.transport.config import ReceiverConfig
from prfaas.transport.errors import TransportError
from prfaas.transport.frames import Abort, Begin, ChunkHeader, ChunkPayloadDone, End, Event, Ping, Pong
from prfaas.transport.tcpinfo import TcpInfo, read_tcp_info
from prfaas.transport.wire import (
    FrameReader,
    close_quietly,
    configure_socket,
    server_handshake,
    shutdown_writes_quietly,
)

if TYPE_CHECKING:
    from prfaas.transport.receiver_registry import InboundRegistry

_log = logging.getLogger(__name__)


class ReceiverConnection:
    def __init__(self, registry: InboundRegistry, sock: socket.socket, conn_id: int,
                 config: ReceiverConfig) -> None:
        self.registry = registry
        self.sock = sock
        self.conn_id = conn_id
        self.config = config
        self.session_id = b""
        self.node_name = ""
        self.is_alive = True
        self._send_lock = threading.Lock()
        self._deferred: list[bytes] = []  # acks written with the next frame or before the next blocking recv
        self._sink: tuple[memoryview | None, bool] = (None, False)
        self.thread = threading.Thread(target=self._run, name=f"kv-in-{conn_id}", daemon=True)

    def send(self, frame: bytes) -> bool:
        """Write one frame (after any deferred ones); False if the connection is broken (its reader will notice)."""
        with self._send_lock:
            try:
                self.sock.sendall(self._take_deferred() + frame)
                return True
            except OSError:
                return False

    def defer(self, frame: bytes) -> None:
        """Queue an acknowledgement; it goes out with the next write, or before this connection's thread next
        blocks in recv (so acks of small chunks that arrived together leave in one write)."""
        with self._send_lock:
            self._deferred.append(frame)

    def flush_deferred(self) -> None:
        """Write the queued acknowledgements. Raises OSError if the connection broke."""
        with self._send_lock:
            if self._deferred:
                self.sock.sendall(self._take_deferred())

    def _take_deferred(self) -> bytes:
        frames, self._deferred = self._deferred, []
        return b"".join(frames)

    def tcp_info(self) -> TcpInfo | None:
        return read_tcp_info(self.sock)

    def close(self) -> None:
        self.is_alive = False
        close_quietly(self.sock)

    def shutdown_writes(self) -> None:
        """FIN after what is already queued; the reader runs on until the sender closes its side."""
        shutdown_writes_quietly(self.sock)

    def _run(self) -> None:
        try:
            reader = self._authenticate()
        except (OSError, TransportError, ssl.SSLError) as exc:
            self.registry.count_rejected_connection()
            _log.info("rejected KV connection %d: %s", self.conn_id, exc)
            self.close()
            return
        self.registry.add_connection(self)
        try:
            while self.is_alive:
                self._dispatch(reader.next_event(), reader)
        except (OSError, TransportError) as exc:
            _log.debug("KV connection %d closed: %s", self.conn_id, exc)
        finally:
            self.is_alive = False
            self.registry.remove_connection(self)
            close_quietly(self.sock)

    def _authenticate(self) -> FrameReader:
        configure_socket(self.sock, self.config.socket_buffer_bytes)
        if self.config.ssl_context is not None:
            self.sock.settimeout(self.config.handshake_timeout_s)
            self.sock = self.config.ssl_context.wrap_socket(self.sock, server_side=True)
        hello, reader = server_handshake(self.sock, secret=self.config.shared_secret,
                                         limits=self.config.limits, timeout_s=self.config.handshake_timeout_s)
        self.session_id = hello.session_id
        self.node_name = hello.node_name
        reader.before_recv = self.flush_deferred
        return reader

    def _dispatch(self, event: Event, reader: FrameReader) -> None:
        registry = self.registry
        if isinstance(event, ChunkHeader):
            sink, kind, is_known = registry.claim(self, event)
            reader.decoder.set_payload_sink(sink, RunningChecksum(kind) if sink is not None and kind else None)
            self._sink = (sink, is_known)
        elif isinstance(event, ChunkPayloadDone):
            sink, is_known = self._sink
            self._sink = (None, False)
            registry.on_payload(self, event, sink, is_known=is_known)
        elif isinstance(event, Begin):
            registry.on_begin(self, event)
        elif isinstance(event, End):
            registry.on_end(self, event)
        elif isinstance(event, Abort):
            registry.on_abort(event)
        elif isinstance(event, Ping):
            self.send(encode(Pong(event.token)))
