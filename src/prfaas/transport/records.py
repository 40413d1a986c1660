"""What the sender keeps per transfer (`TransferRecord`) and reports when it is verified (`TransferReport`)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from prfaas.transport.outbound import OutboundState


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What a verified transfer cost."""

    request_id: str
    peer: str
    total_bytes: int
    num_chunks: int
    duration_s: float  # begin() -> receiver verified everything
    finish_to_complete_s: float  # finish() -> verified: the tail left after the last layer
    retransmitted_chunks: int
    connections_used: int


@dataclass(slots=True)
class TransferRecord:
    state: OutboundState
    future: Future[TransferReport]
    started_s: float
    deadline_s: float
    finished_s: float | None = None
    begin_conn: int | None = None  # connection that carried the unanswered BEGIN
    end_conn: int | None = None  # connection that carried the unanswered END
    connections_used: set[int] = field(default_factory=set)
