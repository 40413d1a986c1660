"""Synthetic prefix-block chains for synthetic requests: sessions that share prompt prefixes.

Model (`SyntheticPrefixes`), applied to requests in arrival order. A request of L tokens spans
nb = ceil(L / 512) blocks; its chain is

    blocks [0, g)     the system prompt, common to every request:  g = min(system_prompt_tokens // 512, nb)
    blocks [g, s)     its session's history:  s = max(g, min(floor(shared_fraction * L / 512), nb))
    blocks [s, nb)    new to this request (fresh ids)

Each request picks its session uniformly among `num_sessions` (the rng decides). A session's history is one
fixed chain, so a later request of the same session re-uses as many of its blocks as both prompts cover:
longer prompts extend the session's chain, the way a conversation's history grows. Ids are small integers,
assigned in first-use order (system prompt 0..g-1 first), like the remapped ids of the Mooncake traces.
With many requests per session, about `shared_fraction` of each prompt's whole blocks repeat earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.request import BLOCK_TOKENS, num_blocks_for


@dataclass(frozen=True, slots=True)
class SyntheticPrefixes:
    """Parameters of the session model above."""

    num_sessions: int
    shared_fraction: float
    system_prompt_tokens: int = 0

    def __post_init__(self) -> None:
        if self.num_sessions < 1:
            raise ConfigError(f"num_sessions must be >= 1, got {self.num_sessions}")
        if not 0.0 <= self.shared_fraction <= 1.0:
            raise ConfigError(f"shared_fraction must be in [0, 1], got {self.shared_fraction}")
        if self.system_prompt_tokens < 0:
            raise ConfigError(f"system_prompt_tokens must be >= 0, got {self.system_prompt_tokens}")


class _ChainBuilder:
    """Hands out block ids; one per run of `assign_chains`, never shared."""

    def __init__(self, params: SyntheticPrefixes) -> None:
        self.params = params
        self.num_system_blocks = params.system_prompt_tokens // BLOCK_TOKENS
        self.next_id = self.num_system_blocks
        self.session_blocks: dict[int, list[int]] = {}

    def _fresh(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def chain(self, input_tokens: int, session_id: int) -> tuple[int, ...]:
        nb = num_blocks_for(input_tokens)
        g = min(self.num_system_blocks, nb)
        s = max(g, min(math.floor(self.params.shared_fraction * input_tokens / BLOCK_TOKENS + 1e-9), nb))
        history = self.session_blocks.setdefault(session_id, [])
        while g + len(history) < s:
            history.append(self._fresh())
        own = [self._fresh() for _ in range(nb - s)]
        return (*range(g), *history[: s - g], *own)


def assign_chains(params: SyntheticPrefixes, input_tokens: NDArray[np.int64], rng: np.random.Generator
                  ) -> tuple[list[int], list[tuple[int, ...]]]:
    """(session id, block chain) for each request, given in arrival order."""
    sessions = rng.integers(0, params.num_sessions, size=input_tokens.size).tolist()
    builder = _ChainBuilder(params)
    chains = [builder.chain(int(n), s) for n, s in zip(input_tokens.tolist(), sessions, strict=True)]
    return sessions, chains
