"""Transport configuration: frozen dataclasses, validated once at construction (STYLE.md §5).

`SenderConfig` goes to `KvSender`, `ReceiverConfig` to `KvReceiver`; `TransportLimits` bounds what a
peer may declare, `PacingConfig` caps the send rate of one peer link. Validation checks values only.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prfaas.core.errors import ConfigError
from prfaas.core.units import GIB_BYTES, KIB_BYTES, MIB_BYTES

if TYPE_CHECKING:
    from prfaas.transport.testing import LinkShim

MIN_SECRET_BYTES = 16


class ChecksumKind(enum.IntEnum):
    """Per-chunk checksum; the value is the wire code."""

    XXH3_64 = 1  # xxhash (pinned in the `transport` extra), ~10 GiB/s on one core
    CRC32 = 2  # zlib, stdlib only, ~4 GiB/s


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Upper bounds on what a peer may declare. Checked before anything is allocated."""

    max_transfer_bytes: int = 64 * GIB_BYTES
    max_tensor_bytes: int = 16 * GIB_BYTES
    max_tensors: int = 65_536
    max_chunks: int = 1 << 18  # per transfer (1 TiB at 4 MiB chunks); bounds the receiver's bookkeeping
    min_chunk_bytes: int = 1024
    max_chunk_bytes: int = 64 * MIB_BYTES
    max_meta_bytes: int = 4 * MIB_BYTES  # metadata of one frame (the BEGIN manifest is the largest)
    max_dims: int = 8
    max_request_id_bytes: int = 256

    def __post_init__(self) -> None:
        for name in ("max_transfer_bytes", "max_tensor_bytes", "max_tensors", "max_chunks", "min_chunk_bytes",
                     "max_chunk_bytes", "max_meta_bytes", "max_dims", "max_request_id_bytes"):
            _require(getattr(self, name) > 0, f"transport limit {name} must be > 0")
        _require(self.max_meta_bytes >= 1024, "transport limit max_meta_bytes must be >= 1024")


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """Token-bucket rate cap of one peer link (all its connections together). None = no cap."""

    rate_bytes_per_s: float | None = None
    burst_bytes: int = 256 * KIB_BYTES
    quantum_bytes: int = 64 * KIB_BYTES  # a paced chunk goes on the wire in pieces of this size

    def __post_init__(self) -> None:
        _require(self.rate_bytes_per_s is None or self.rate_bytes_per_s > 0, "pacing rate must be > 0")
        _require(self.burst_bytes > 0 and self.quantum_bytes > 0, "pacing burst and quantum must be > 0")


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """How a prefill node streams state to its peers."""

    shared_secret: bytes
    node_name: str = "prefill"
    connections_per_peer: int = 4
    chunk_bytes: int = 4 * MIB_BYTES
    checksum: ChecksumKind = ChecksumKind.XXH3_64
    pacing: PacingConfig = field(default_factory=PacingConfig)
    connect_timeout_s: float = 5.0
    handshake_timeout_s: float = 5.0
    transfer_deadline_s: float = 120.0  # begin() -> verified, or TransferFailed(DEADLINE)
    reconnect_deadline_s: float = 10.0  # no live connection this long -> pending transfers fail
    reconnect_backoff_min_s: float = 0.02
    reconnect_backoff_max_s: float = 1.0
    keepalive_interval_s: float = 15.0  # PING on idle connections (plus SO_KEEPALIVE)
    max_retransmits_per_chunk: int = 3
    socket_buffer_bytes: int | None = None
    ssl_context: ssl.SSLContext | None = None
    tls_server_hostname: str | None = None
    telemetry_window_s: float = 5.0
    link_capacity_gbps: float | None = None
    shim: LinkShim | None = None  # emulation only (transport.testing); None in production

    def __post_init__(self) -> None:
        _require(len(self.shared_secret) >= MIN_SECRET_BYTES,
                 f"shared_secret must be at least {MIN_SECRET_BYTES} bytes")
        _require(1 <= self.connections_per_peer <= 64, "connections_per_peer must be in 1..64")
        _require(self.chunk_bytes >= 1024, "chunk_bytes must be >= 1024")
        _require(self.max_retransmits_per_chunk >= 0, "max_retransmits_per_chunk must be >= 0")
        for name in ("connect_timeout_s", "handshake_timeout_s", "transfer_deadline_s",
                     "reconnect_deadline_s", "reconnect_backoff_min_s", "reconnect_backoff_max_s",
                     "keepalive_interval_s", "telemetry_window_s"):
            _require(getattr(self, name) > 0, f"{name} must be > 0")
        _require(len(self.node_name.encode()) <= 128, "node_name must be at most 128 bytes")


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """How a decode node accepts state: where it listens, what it admits, how much it buffers."""

    shared_secret: bytes
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port, see KvReceiver.address
    limits: TransportLimits = field(default_factory=TransportLimits)
    memory_budget_bytes: int = 8 * GIB_BYTES  # declared bytes of admitted, unfinished transfers
    handshake_timeout_s: float = 5.0
    transfer_deadline_s: float = 120.0  # admission -> verified, or the transfer is failed
    admission_timeout_s: float = 30.0  # how long a BEGIN may wait for memory budget
    orphan_timeout_s: float = 15.0  # sender without any connection this long -> its transfers fail, budget freed
    max_connections: int = 256
    max_waiting_transfers: int = 256  # declared transfers waiting for memory budget; more are refused
    ssl_context: ssl.SSLContext | None = None
    telemetry_window_s: float = 5.0
    socket_buffer_bytes: int | None = None
    reverify_on_complete: bool = False  # re-hash every chunk in place before on_complete (one more pass)

    def __post_init__(self) -> None:
        _require(len(self.shared_secret) >= MIN_SECRET_BYTES,
                 f"shared_secret must be at least {MIN_SECRET_BYTES} bytes")
        _require(0 <= self.port <= 65535, "port must be in 0..65535")
        _require(self.memory_budget_bytes > 0, "memory_budget_bytes must be > 0")
        _require(self.max_connections > 0 and self.max_waiting_transfers > 0,
                 "max_connections and max_waiting_transfers must be > 0")
        for name in ("handshake_timeout_s", "transfer_deadline_s", "admission_timeout_s", "orphan_timeout_s",
                     "telemetry_window_s"):
            _require(getattr(self, name) > 0, f"{name} must be > 0")
