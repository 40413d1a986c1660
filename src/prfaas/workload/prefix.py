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

Both models also give the joint (uncached, cached) split per request as `PrefixHits`
(`hits_after_hit_rate`, `PrefixReplay.hits`): the planner routes on the uncached length, costs the
prefill as the uncached tokens computed on top of the cached ones (`t_prefill_s(u, c)`) and ships the
whole prompt's state S_kv(u + c) unless the decode side holds the prefix, when only the increment
S_kv(u + c) - S_kv(c) + S_kv(0) crosses (docs/prefix-hit-cost-model.md).
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
    "PrefixHits",
    "PrefixReplay",
    "cached_tokens_for",
    "hits_after_hit_rate",
    "replay_prefix_cache",
    "uncached_after_hit_rate",
]


def cached_tokens_for(input_tokens: int, num_hit_blocks: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Prompt tokens served from cache when the first `num_hit_blocks` blocks hit (never all of them)."""
    return max(0, min(num_hit_blocks * block_tokens, input_tokens - 1))


@dataclass(frozen=True, slots=True)
class PrefixHits:
    """Requests as (uncached, cached) token pairs with probabilities (pairs need not be unique).

    `uncached_lengths` (the routing variable L of the planner) merges pairs of equal uncached length;
    `per_support` averages any per-pair quantity over the pairs behind each of its support points.
    `decode_holds_prefix`: the decode side already holds each cached prefix, so an offloaded request
    ships only the increment (the paper's PD-cluster pool); False: the whole prompt's state ships.
    """

    uncached_tokens: NDArray[np.int64]
    cached_tokens: NDArray[np.int64]
    probs: NDArray[np.float64]
    name: str
    decode_holds_prefix: bool = False

    def __post_init__(self) -> None:
        n = self.uncached_tokens.size
        if self.cached_tokens.shape != (n,) or self.probs.shape != (n,) or n == 0:
            raise ConfigError("prefix hits: uncached, cached and probs must be non-empty and of equal size")
        if np.any(self.uncached_tokens < 1) or np.any(self.cached_tokens < 0):
            raise ConfigError("prefix hits: uncached tokens must be >= 1 and cached tokens >= 0")

    def uncached_lengths(self) -> DiscreteLengthDistribution:
        return merged_distribution(self.uncached_tokens, self.probs, self.name)

    def with_decode_holds_prefix(self, holds: bool) -> PrefixHits:
        return PrefixHits(self.uncached_tokens, self.cached_tokens, self.probs, self.name, holds)

    def per_support(self, values: NDArray[np.float64], dist: DiscreteLengthDistribution) -> NDArray[np.float64]:
        """E[value | uncached = l_k] for each support point l_k of `dist` (= `uncached_lengths()`)."""
        index = np.searchsorted(dist.lengths, self.uncached_tokens.astype(np.float64))
        if np.any(index >= dist.lengths.size) or np.any(dist.lengths[np.minimum(index, dist.lengths.size - 1)]
                                                          != self.uncached_tokens):
            raise ValueError("the distribution's support is not this workload's uncached lengths")
        mass = np.bincount(index, weights=self.probs, minlength=dist.lengths.size)
        total = np.bincount(index, weights=self.probs * values, minlength=dist.lengths.size)
        return np.asarray(total / np.where(mass > 0, mass, 1.0), dtype=np.float64)

    @property
    def token_hit_rate(self) -> float:
        """sum(cached) / sum(input), weighted by probability."""
        total = float(np.dot(self.probs, self.uncached_tokens + self.cached_tokens))
        return float(np.dot(self.probs, self.cached_tokens)) / total


def cached_after_hit_rate(input_tokens: NDArray[np.int64], hit_rate: float,
                          block_tokens: int = BLOCK_TOKENS) -> NDArray[np.int64]:
    """Cached prefix of each prompt when a fraction `hit_rate` is cached (whole blocks, one token left)."""
    if not 0.0 <= hit_rate <= 1.0:
        raise ConfigError(f"prefix-cache hit rate must be in [0, 1], got {hit_rate}")
    if block_tokens < 1:
        raise ConfigError(f"block_tokens must be >= 1, got {block_tokens}")
    # 1e-9 guards floor() against h*L landing a hair below a block boundary in floating point
    hit_blocks = np.floor(hit_rate * input_tokens / block_tokens + 1e-9).astype(np.int64)
    return np.asarray(np.clip(np.minimum(hit_blocks * block_tokens, input_tokens - 1), 0, None), dtype=np.int64)


def hits_after_hit_rate(dist: DiscreteLengthDistribution, hit_rate: float,
                        block_tokens: int = BLOCK_TOKENS) -> PrefixHits:
    """(uncached, cached) pairs when a fraction `hit_rate` of each prompt of `dist` is cached."""
    lengths = np.rint(dist.lengths).astype(np.int64)
    cached = cached_after_hit_rate(lengths, hit_rate, block_tokens)
    name = f"{dist.name} uncached after {hit_rate:.0%} prefix hits"
    return PrefixHits(lengths - cached, cached, np.asarray(dist.probs, dtype=np.float64), name)


def uncached_after_hit_rate(dist: DiscreteLengthDistribution, hit_rate: float,
                            block_tokens: int = BLOCK_TOKENS) -> DiscreteLengthDistribution:
    """Distribution of uncached prompt lengths when a fraction `hit_rate` of each prompt is cached
    (rounded down to whole blocks, at least one token left; see the module docstring)."""
    return hits_after_hit_rate(dist, hit_rate, block_tokens).uncached_lengths()


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

    def hits(self) -> PrefixHits:
        """Each replayed request as one equally likely (uncached, cached) pair."""
        n = self.uncached_tokens.size
        return PrefixHits(self.uncached_tokens, self.cached_tokens, np.full(n, 1.0 / n),
                          self.uncached_lengths.name)

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
