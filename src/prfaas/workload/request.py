"""One request of a workload: when it arrives, how long its prompt and answer are, and its prefix blocks.

Contract:
- `input_tokens >= 1` (a prompt has at least one token), `output_tokens >= 0`, `arrival_s >= 0`.
- `block_hashes` is the prompt's 512-token prefix-block hash chain (`prefix.BLOCK_TOKENS`): entry i stands for
  prompt tokens [512*i, 512*(i+1)) *and everything before them*, so two requests that share their first k
  hashes share their first k blocks of prompt. It never has more entries than the prompt has blocks
  (ceil(input_tokens / 512)); it is empty when unknown.
- `session_id` groups the requests of one conversation/session when known (synthetic prefix chains set it).

Requests are plain immutable data; readers and generators build them, nobody mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.core.blocks import BLOCK_TOKENS


def num_blocks_for(num_tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Blocks a prompt of `num_tokens` tokens spans (the last one may be partial)."""
    return -(-num_tokens // block_tokens)


@dataclass(frozen=True, slots=True)
class WorkloadRequest:
    """A request as the planner, simulator and load generator see it."""

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    session_id: int | None = None

    def __post_init__(self) -> None:
        if self.input_tokens < 1:
            raise ValueError(f"request {self.request_id}: input_tokens must be >= 1, got {self.input_tokens}")
        if self.output_tokens < 0:
            raise ValueError(f"request {self.request_id}: output_tokens must be >= 0, "
                             f"got {self.output_tokens}")
        if not self.arrival_s >= 0.0:
            raise ValueError(f"request {self.request_id}: arrival_s must be >= 0, got {self.arrival_s}")
        if len(self.block_hashes) > num_blocks_for(self.input_tokens):
            raise ValueError(
                f"request {self.request_id}: {len(self.block_hashes)} block hashes for a "
                f"{self.input_tokens}-token prompt (at most {num_blocks_for(self.input_tokens)})"
            )

    @property
    def total_tokens(self) -> int:
        """Prompt plus answer: the context the request occupies at the end of decode."""
        return self.input_tokens + self.output_tokens
