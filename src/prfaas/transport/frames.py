"""The frames of the KV wire protocol, as plain data (no encoding here; see `codec`).

Direction and purpose:

    sender -> receiver   Hello, Auth, Begin, ChunkHeader (+ payload), End, Abort, Ping
    receiver -> sender   Challenge, AuthOk, Admit, ChunkAck, Nack, Complete, Abort, Pong

A transfer is identified by a 16-byte random `transfer_id` chosen by the sender; chunk, end, ack and
abort frames carry it, so the chunks of one transfer may travel over any connection of the peer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from prfaas.core.state_layout import StateLayout
from prfaas.transport.config import ChecksumKind
from prfaas.transport.errors import FailureReason

TRANSFER_ID_BYTES = 16
SESSION_ID_BYTES = 16


class FrameType(enum.IntEnum):
    """One byte on the wire."""

    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    AUTH_OK = 4
    BEGIN = 5
    CHUNK = 6
    END = 7
    ADMIT = 8
    CHUNK_ACK = 9
    NACK = 10
    COMPLETE = 11
    ABORT = 12
    PING = 13
    PONG = 14


class NackReason(enum.IntEnum):
    CHECKSUM_MISMATCH = 1
    UNKNOWN_TRANSFER = 2


@dataclass(frozen=True, slots=True)
class Hello:
    client_nonce: bytes
    session_id: bytes  # one per sender pool: groups the N connections of a peer link
    node_name: str


@dataclass(frozen=True, slots=True)
class Challenge:
    server_nonce: bytes
    server_proof: bytes


@dataclass(frozen=True, slots=True)
class Auth:
    client_proof: bytes


@dataclass(frozen=True, slots=True)
class AuthOk:
    max_chunk_bytes: int


@dataclass(frozen=True, slots=True)
class Begin:
    transfer_id: bytes
    request_id: str
    total_bytes: int
    num_chunks: int
    chunk_bytes: int
    checksum: ChecksumKind
    layout: StateLayout


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """Followed on the wire by exactly `length` payload bytes."""

    transfer_id: bytes
    seq: int
    tensor_index: int
    offset: int
    length: int
    checksum: int


@dataclass(frozen=True, slots=True)
class ChunkPayloadDone:
    """Decoder event: the payload of `header` has been written to its sink (or discarded).

    `checksum` is the checksum of the bytes as they arrived, when the sink came with a
    RunningChecksum (computed piece by piece while receiving); None otherwise."""

    header: ChunkHeader
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class End:
    transfer_id: bytes
    num_chunks: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Admit:
    transfer_id: bytes


@dataclass(frozen=True, slots=True)
class ChunkAck:
    transfer_id: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    transfer_id: bytes
    seq: int
    reason: NackReason


@dataclass(frozen=True, slots=True)
class Complete:
    transfer_id: bytes


@dataclass(frozen=True, slots=True)
class Abort:
    transfer_id: bytes
    reason: FailureReason
    message: str


@dataclass(frozen=True, slots=True)
class Ping:
    token: int


@dataclass(frozen=True, slots=True)
class Pong:
    token: int


Frame = (
    Hello | Challenge | Auth | AuthOk | Begin | ChunkHeader | End | Admit | ChunkAck | Nack
    | Complete | Abort | Ping | Pong
)
Event = Frame | ChunkPayloadDone
