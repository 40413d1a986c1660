"""Prefix-cache hit modelling: how many prompt tokens still need prefill after a prefix-cache hit.

Two models, both in whole 512-token blocks (`BLOCK_TOKENS`, the Mooncake block size):

1. A fixed hit rate h (`uncached_after_hit_rate`): a prompt of L tokens has its first
   `floor(h * L / 512) * 512` tokens cached, capped at L - 1, so

       uncached(L) = L - min(512 * floor(h * L / 512), L - 1)

   h = 0 leaves every length unchanged; h = 1 leaves the last partial block (or one token when L is a
   multiple of 512). The rounding down to whole blocks is why short prompts gain nothing from small h.

2. Replaying the trace's `block_hashes` through an LRU cache of a given number of blocks
   (`replay_prefix_cache`). Requests are replayed in arrival order; each one first looks its chain up, then
   inserts it (its blocks become resident for later requests). Prefix rule: block i counts as a hit only if
   blocks 0..i-1 all hit. The last block may be partial, so the cached tokens of a request are

       cached = min(512 * num_hit_blocks, input_tokens - 1)

   i.e. at least one token is always computed (the one whose logits start decode).

   Eviction order: `insert` touches a chain from its last block to its first, so a chain's head is more
   recently used than its tail and the tail is evicted first; evicting a head would make the rest of the
   chain unreachable under the prefix rule.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.empirical import merged_distribution
from prfaas.workload.request import BLOCK_TOKENS, WorkloadRequest

__all__ = [
    "BLOCK_TOKENS",
    "LruBlockCache",
    "PrefixReplay",
    "cached_tokens_for",
    "replay_prefix_cache",
    "uncached_after_hit_rate",
]


def cached_tokens_for(input_tokens: int, num_hit_blocks: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Prompt tokens served from cache when the first `num_hit_blocks` blocks hit (never all of them)."""
    return max(0, min(num_hit_blocks * block_tokens, input_tokens - 1))


def uncached_after_hit_rate(dist: DiscreteLengthDistribution, hit_rate: float,
                            block_tokens: int = BLOCK_TOKENS) -> DiscreteLengthDistribution:
    """Distribution of uncached prompt lengths when a fraction `hit_rate` of each prompt is cached
    (rounded down to whole blocks, at least one token left; see the module docstring)."""
    if not 0.0 <= hit_rate <= 1.0:
        raise ConfigError(f"prefix-cache hit rate must be in [0, 1], got {hit_rate}")
    if block_tokens < 1:
        raise ConfigError(f"block_tokens must be >= 1, got {block_tokens}")
    lengths = np.rint(dist.lengths).astype(np.int64)
    # 1e-9 guards floor() against h*L landing a hair below a block boundary in floating point
    hit_blocks = np.floor(hit_rate * lengths / block_tokens + 1e-9).astype(np.int64)
    cached = np.clip(np.minimum(hit_blocks * block_tokens, lengths - 1), 0, None)
    name = f"{dist.name} uncached after {hit_rate:.0%} prefix hits"
    return merged_distribution(lengths - cached, dist.probs, name)


class LruBlockCache:
    """Resident prefix blocks, evicted least-recently-used first. `capacity_blocks=None` never evicts.

    `lookup_prefix` is side-effect free; `insert` makes a chain resident and most recently used.
    """

    __slots__ = ("_blocks", "capacity_blocks")

    def __init__(self, capacity_blocks: int | None) -> None:
        if capacity_blocks is not None and capacity_blocks < 0:
            raise ConfigError(f"prefix cache capacity must be >= 0 blocks, got {capacity_blocks}")
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self._blocks

    def lookup_prefix(self, hashes: Sequence[int]) -> int:
        """Number of leading blocks of the chain that are resident (stops at the first miss)."""
        num_hit = 0
        for h in hashes:
            if h not in self._blocks:
                break
            num_hit += 1
        return num_hit

    def insert(self, hashes: Sequence[int]) -> None:
        """Make every block of the chain resident and most recently used, head most recent of all."""
        if self.capacity_blocks == 0:
            return
        blocks = self._blocks
        for h in reversed(hashes):
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        if self.capacity_blocks is not None:
            while len(blocks) > self.capacity_blocks:
                blocks.popitem(last=False)

    def resident_lru_order(self) -> tuple[int, ...]:
        """Resident hashes, least recently used first (the next to be evicted comes first)."""
        return tuple(self._blocks)


@dataclass(frozen=True, slots=True)
class PrefixReplay:
    """Per-request outcome of replaying a workload through a prefix cache (requests in arrival order)."""

    request_ids: NDArray[np.int64]
    cached_tokens: NDArray[np.int64]
    uncached_tokens: NDArray[np.int64]
    uncached_lengths: DiscreteLengthDistribution
    token_hit_rate: float  # sum(cached) / sum(input)
    capacity_blocks: int | None

    def uncached_by_request(self) -> dict[int, int]:
        """request_id -> uncached prompt tokens (for the simulator's per-request routing)."""
        return dict(zip(self.request_ids.tolist(), self.uncached_tokens.tolist(), strict=True))


def replay_prefix_cache(requests: Sequence[WorkloadRequest], capacity_blocks: int | None) -> PrefixReplay:
    """Replay the requests' block chains, in arrival order, through one `LruBlockCache`."""
    if not requests:
        raise ConfigError("cannot replay an empty workload through a prefix cache")
    ordered = sorted(requests, key=lambda r: r.arrival_s)
    cache = LruBlockCache(capacity_blocks)
    cached = np.empty(len(ordered), dtype=np.int64)
    inputs = np.empty(len(ordered), dtype=np.int64)
    for i, r in enumerate(ordered):
        cached[i] = cached_tokens_for(r.input_tokens, cache.lookup_prefix(r.block_hashes))
        inputs[i] = r.input_tokens
        cache.insert(r.block_hashes)
    uncached = inputs - cached
    name = f"uncached after LRU({capacity_blocks} blocks)"
    uncached_dist = DiscreteLengthDistribution.from_samples(uncached.astype(np.float64), name=name)
    return PrefixReplay(
        request_ids=np.fromiter((r.request_id for r in ordered), dtype=np.int64, count=len(ordered)),
        cached_tokens=cached,
        uncached_tokens=uncached,
        uncached_lengths=uncached_dist,
        token_hit_rate=float(cached.sum() / inputs.sum()),
        capacity_blocks=capacity_blocks,
    )
