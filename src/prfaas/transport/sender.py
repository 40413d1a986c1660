"""KvSender: the prefill side of the KV transport.

    sender = KvSender(SenderConfig(shared_secret=secret, connections_per_peer=4))
    transfer = sender.begin(PeerAddress("10.0.0.2", 7700), request_id, layout)
    for each finished layer i:            # e.g. from a forward hook: layer-wise pipelining
        transfer.send_layer(i, views)     # memoryviews (or buffers) of that layer's tensors, layout order
    transfer.finish()
    report = transfer.result(timeout_s)   # TransferReport, or raises TransferFailed
    # asyncio: report = await asyncio.wrap_future(transfer.future)

The views must stay valid and unmodified until the transfer's future is done: chunks are sent from
them without a copy, and a retransmission reads them again. `send_layer` never blocks on the
network. One `PeerPool` per peer keeps `connections_per_peer` authenticated connections open.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from prfaas.core.link import LinkSnapshot
from prfaas.core.state_layout import StateLayout
from prfaas.transport.config import SenderConfig
from prfaas.transport.errors import PeerUnavailable
from prfaas.transport.frames import TRANSFER_ID_BYTES
from prfaas.transport.outbound import OutboundState
from prfaas.transport.peer_pool import PeerPool
from prfaas.transport.records import TransferRecord, TransferReport

__all__ = ["KvSender", "OutboundTransfer", "PeerAddress", "TransferReport"]


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a receiver listens."""

    host: str
    port: int

    @property
    def link_id(self) -> str:
        return f"{self.host}:{self.port}"


class OutboundTransfer:
    """Handle of one transfer; thread-safe."""

    def __init__(self, pool: PeerPool, record: TransferRecord) -> None:
        self._pool = pool
        self._record = record

    @property
    def request_id(self) -> str:
        return self._record.state.request_id

    @property
    def transfer_id(self) -> bytes:
        return self._record.state.transfer_id

    @property
    def future(self) -> Future[TransferReport]:
        """Resolves to a TransferReport or fails with TransferFailed; safe to wrap for asyncio."""
        return self._record.future

    def send_layer(self, layer_index: int, views: Sequence[object]) -> None:
        """Hand over one finished layer (its tensors in layout order). Raises ValueError on misuse."""
        self._pool.provide_layer(self._record, layer_index, list(views))

    def send_all(self, views: Sequence[object]) -> None:
        """Hand over every tensor of the layout at once (layout order), then finish()."""
        layout = self._record.state.layout
        if len(views) != len(layout.tensors):
            raise ValueError(f"layout has {len(layout.tensors)} tensors, got {len(views)} views")
        by_layer: dict[int, list[object]] = {}
        for spec, view in zip(layout.tensors, views, strict=True):
            by_layer.setdefault(spec.layer_index, []).append(view)
        for layer_index, layer_views in by_layer.items():
            self.send_layer(layer_index, layer_views)
        self.finish()

    def finish(self) -> None:
        """No more layers. Raises ValueError if a layer of the layout was never sent."""
        self._pool.finish(self._record)

    def abort(self, message: str = "aborted by the sender") -> None:
        self._pool.abort(self._record, message)

    def result(self, timeout_s: float | None = None) -> TransferReport:
        """Wait for the outcome: the report, or TransferFailed (TimeoutError if timeout_s passes first)."""
        return self._record.future.result(timeout_s)


class KvSender:
    """Streams request state to receivers; one connection pool per peer."""

    def __init__(self, config: SenderConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._pools: dict[PeerAddress, PeerPool] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _pool(self, peer: PeerAddress) -> PeerPool:
        with self._lock:
            if self._closed:
                raise PeerUnavailable("sender is closed")
            pool = self._pools.get(peer)
            if pool is None:
                pool = PeerPool(peer.host, peer.port, self.config, self._clock)
                self._pools[peer] = pool
            return pool

    def connect(self, peer: PeerAddress) -> None:
        """Open the peer's connection pool ahead of the first transfer (returns at once)."""
        self._pool(peer)

    def begin(self, peer: PeerAddress, request_id: str, layout: StateLayout) -> OutboundTransfer:
        """Declare a transfer; the BEGIN frame goes out at once, chunks follow admitted layers."""
        state = OutboundState(os.urandom(TRANSFER_ID_BYTES), request_id, layout,
                              chunk_bytes=self.config.chunk_bytes, checksum=self.config.checksum,
                              max_retransmits=self.config.max_retransmits_per_chunk)
        pool = self._pool(peer)
        return OutboundTransfer(pool, pool.start_transfer(state))

    def link_snapshot(self, peer: PeerAddress) -> LinkSnapshot:
        """Telemetry of the link to `peer` (acknowledged bytes, goodput, RTT, retransmissions)."""
        return self._pool(peer).snapshot()

    def link_snapshots(self) -> dict[str, LinkSnapshot]:
        with self._lock:
            pools = list(self._pools.values())
        return {pool.link_id: pool.snapshot() for pool in pools}

    def close(self, timeout_s: float = 2.0) -> None:
        """Fail what is in flight (SHUTDOWN), close every connection, join the threads."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.close(timeout_s)

    def __enter__(self) -> KvSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
