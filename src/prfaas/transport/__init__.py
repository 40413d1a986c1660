"""prfaas.transport: KV/linear state streaming over plain TCP (see docs/structure.md).

Layers (STYLE.md §7): `codec` (sans-I/O frames) -> `outbound` / `inbound` (per-transfer state
machines) -> `sender_conn` / `peer_pool` / `receiver_conn` / `receiver_registry` (blocking sockets
in threads) -> `KvSender` / `KvReceiver` (public API). Imports only `prfaas.core`, the stdlib,
msgspec and xxhash; no torch: it moves memoryviews.
"""

from prfaas.transport.config import ChecksumKind, PacingConfig, ReceiverConfig, SenderConfig, TransportLimits
from prfaas.transport.errors import (
    AuthFailed,
    FailureReason,
    FrameCorrupt,
    LimitExceeded,
    PeerUnavailable,
    ProtocolError,
    TransferFailed,
    TransportError,
)
from prfaas.transport.receiver import KvReceiver
from prfaas.transport.sender import KvSender, OutboundTransfer, PeerAddress, TransferReport

__all__ = [
    "AuthFailed", "ChecksumKind", "FailureReason", "FrameCorrupt", "KvReceiver", "KvSender", "LimitExceeded",
    "OutboundTransfer", "PacingConfig", "PeerAddress", "PeerUnavailable", "ProtocolError", "ReceiverConfig",
    "SenderConfig", "TransferFailed", "TransferReport", "TransportError", "TransportLimits",
]
