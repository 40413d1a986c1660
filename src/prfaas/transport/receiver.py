"""KvReceiver: the decode side of the KV transport.

    def allocate(layout: StateLayout) -> Sequence[memoryview]:   # one writable buffer per tensor
        ...                                                      # e.g. views of torch.empty tensors
    receiver = KvReceiver(ReceiverConfig(shared_secret=secret, host="0.0.0.0", port=7700),
                          allocate, on_complete=admit_request, on_failed=drop_request)
    host, port = receiver.start()
    ...
    receiver.close()

`allocate` is called only after the declared sizes passed the limits and the memory budget had
room. `on_complete(request_id, layout, buffers)` fires once every chunk and the whole-transfer
digest were verified; `on_failed(request_id, TransferFailed)` otherwise. Both run on transport
threads and should return quickly (hand the work to the engine's own loop).

Threads: one acceptor, one per connection, one janitor for deadlines. Shutdown is ordered: stop
accepting, fail unfinished transfers (SHUTDOWN), close connections, join threads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from prfaas.core.link import LinkSnapshot
from prfaas.transport.config import ReceiverConfig
from prfaas.transport.errors import FailureReason, TransferFailed
from prfaas.transport.receiver_conn import ReceiverConnection
from prfaas.transport.receiver_registry import Allocator, InboundRegistry, OnComplete, OnFailed

__all__ = ["Allocator", "KvReceiver", "OnComplete", "OnFailed"]

_ACCEPT_POLL_S = 0.1
_JANITOR_PERIOD_S = 0.05
_LINGER_S = 0.5  # at most this long waiting for senders to close their side on shutdown


class KvReceiver:
    def __init__(self, config: ReceiverConfig, allocator: Allocator, on_complete: OnComplete,
                 on_failed: OnFailed | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.registry = InboundRegistry(config, allocator, on_complete, on_failed, clock)
        self._listener: socket.socket | None = None
        self._conns: list[ReceiverConnection] = []
        self._next_conn_id = 0
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("receiver not started")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def num_rejected_connections(self) -> int:
        return self.registry.num_rejected_connections

    def start(self) -> tuple[str, int]:
        """Bind, listen and start serving; returns the bound (host, port)."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.config.port))
        listener.listen(128)
        listener.settimeout(_ACCEPT_POLL_S)
        self._listener = listener
        for target, name in ((self._accept_loop, "kv-accept"), (self._janitor_loop, "kv-janitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.address

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns = [c for c in self._conns if c.thread.is_alive()]
            if len(self._conns) >= self.config.max_connections or self._closed.is_set():
                sock.close()
                continue
            self._next_conn_id += 1
            conn = ReceiverConnection(self.registry, sock, self._next_conn_id, self.config)
            self._conns.append(conn)
            conn.thread.start()

    def _janitor_loop(self) -> None:
        while not self._closed.wait(_JANITOR_PERIOD_S):
            self.registry.tick(self._clock())

    def link_snapshots(self) -> dict[str, LinkSnapshot]:
        """Per sending node: verified bytes, goodput, transfer latency (BEGIN -> verified), RTT."""
        conns = self.registry.connections()
        now = self._clock()
        snapshots = self.registry.snapshots(now)
        for name, snap in list(snapshots.items()):
            infos = [i for c in conns if c.node_name == name and (i := c.tcp_info()) is not None]
            if infos:
                rtt_ms = sum(i.rtt_us for i in infos) / len(infos) / 1000
                retrans = sum(i.total_retrans for i in infos)
                snapshots[name] = _with_tcp(snap, rtt_ms, retrans, is_up=True)
            else:
                snapshots[name] = _with_tcp(snap, snap.rtt_ms, snap.retransmits_total, is_up=False)
        return snapshots

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, fail unfinished transfers, close connections, join threads."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._listener is not None:
            self._listener.close()
        self.registry.fail_all(TransferFailed("receiver shut down", reason=FailureReason.SHUTDOWN))
        conns = list(self._conns)
        for conn in conns:  # lingering close: the ABORTs just sent must not be dropped by a reset
            conn.shutdown_writes()
        linger_until_s = time.monotonic() + min(timeout_s, _LINGER_S)
        for conn in conns:
            if conn.thread.ident is not None:
                conn.thread.join(max(0.0, linger_until_s - time.monotonic()))
        for conn in conns:
            conn.close()
        for thread in [c.thread for c in conns if c.thread.ident is not None] + self._threads:
            thread.join(timeout_s)

    def __enter__(self) -> KvReceiver:
        if self._listener is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_tcp(snap: LinkSnapshot, rtt_ms: float | None, retrans: int, *, is_up: bool) -> LinkSnapshot:
    return replace(snap, rtt_ms=rtt_ms, retransmits_total=retrans, is_up=is_up)
