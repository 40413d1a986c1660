"""What the connector's scheduler half tells its worker half each step (crosses vLLM's process boundary
pickled, so plain dataclasses of builtins)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SendTask:
    """Stream positions [start, num_tokens) of `req_id` to the peer as this step's forward computes them."""

    req_id: str
    transfer_id: str
    peer_host: str
    peer_port: int
    start: int
    num_tokens: int
    block_ids: tuple[tuple[int, ...], ...]  # per KV-cache group


@dataclass(frozen=True, slots=True)
class LoadTask:
    """Write the transfer `transfer_id` (positions [start, num_tokens)) into the blocks of `req_id`."""

    req_id: str
    transfer_id: str
    start: int
    num_tokens: int
    block_ids: tuple[tuple[int, ...], ...]
    wait_s: float


@dataclass(slots=True)
class StepMeta:
    sends: list[SendTask] = field(default_factory=list)
    loads: list[LoadTask] = field(default_factory=list)
