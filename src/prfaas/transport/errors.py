"""Typed errors of the KV transport (STYLE.md §15).

Every failure that crosses the transport boundary is one of these. Hierarchy:

    TransportError(PrfaasError)
      ProtocolError        the peer sent bytes that are not a valid frame sequence
        FrameCorrupt       a checksum over frame metadata or chunk data did not match
        LimitExceeded      a declared size is above a configured limit (nothing was allocated)
      AuthFailed           the HMAC challenge-response failed (either side)
      PeerUnavailable     no connection to the peer could be (re)established in time
      TransferFailed       a transfer ended without being verified; `reason` says why
"""

from __future__ import annotations

import enum

from prfaas.core.errors import PrfaasError


class TransportError(PrfaasError):
    """Base of every transport error."""


class ProtocolError(TransportError):
    """Bytes that do not form a valid frame, or a frame that is not allowed at this point."""


class FrameCorrupt(ProtocolError):
    """A checksum (frame metadata, chunk payload or whole transfer) did not match."""


class LimitExceeded(ProtocolError):
    """A declared length or size is above the receiver's configured limit."""


class AuthFailed(TransportError):
    """The peer did not prove knowledge of the shared secret (or we could not prove ours)."""


class PeerUnavailable(TransportError):
    """No connection to the peer could be established or kept within the deadline."""


class FailureReason(enum.IntEnum):
    """Why a transfer failed; also the wire code of ABORT frames (one byte)."""

    UNKNOWN = 0
    DEADLINE = 1
    PEER_UNAVAILABLE = 2
    LIMIT_EXCEEDED = 3
    AUTH_FAILED = 4
    CORRUPTION = 5  # a chunk kept arriving corrupted, or the whole-transfer digest did not match
    PROTOCOL = 6
    ALLOCATION = 7  # the receiver's allocator refused or returned unusable buffers
    CANCELLED = 8  # the sender or receiver was closed, or the application aborted
    SHUTDOWN = 9


class TransferFailed(TransportError):
    """A transfer ended without a verified result. The receiver never hands out its buffers."""

    def __init__(self, message: str, *, reason: FailureReason = FailureReason.UNKNOWN) -> None:
        super().__init__(message)
        self.reason = reason
