"""LRU prefix-block cache semantics and trace replay."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.prefix import BLOCK_TOKENS, LruBlockCache, replay_prefix_cache
from prfaas.workload.request import WorkloadRequest


def test_block_size_is_mooncakes() -> None:
    assert BLOCK_TOKENS == 512


def test_lookup_counts_leading_resident_blocks() -> None:
    cache = LruBlockCache(10)
    assert cache.lookup_prefix([1, 2, 3]) == 0
    cache.insert([1, 2, 3])
    assert cache.lookup_prefix([1, 2, 3, 4]) == 3
    assert cache.lookup_prefix([1, 2, 9, 3]) == 2
    assert cache.lookup_prefix([]) == 0
    assert len(cache) == 3


def test_lookup_has_no_side_effects() -> None:
    cache = LruBlockCache(10)
    cache.insert([1, 2])
    cache.insert([7, 8])
    before = cache.resident_lru_order()
    assert cache.lookup_prefix([1, 2]) == 2
    assert cache.resident_lru_order() == before


def test_chain_tail_is_evicted_before_its_head() -> None:
    cache = LruBlockCache(3)
    cache.insert([1, 2, 3])
    assert cache.resident_lru_order() == (3, 2, 1)
    cache.insert([4])
    assert 3 not in cache
    assert cache.lookup_prefix([1, 2, 3]) == 2


def test_reinsert_refreshes_recency() -> None:
    cache = LruBlockCache(4)
    cache.insert([1, 2])  # order 2, 1
    cache.insert([5, 6])  # order 2, 1, 6, 5
    cache.insert([1, 2])  # refreshed: 6, 5, 2, 1
    cache.insert([9])  # evicts 6
    assert cache.resident_lru_order() == (5, 2, 1, 9)
    assert cache.lookup_prefix([5, 6]) == 1


def test_prefix_rule_missing_head_hides_resident_tail() -> None:
    cache = LruBlockCache(4)
    cache.insert([1, 2, 3])  # 3, 2, 1
    cache.insert([9])  # 3, 2, 1, 9
    cache.insert([2, 3])  # touch 3 then 2: 1, 9, 3, 2
    cache.insert([7])  # evicts 1: 9, 3, 2, 7
    assert 2 in cache and 3 in cache
    assert cache.lookup_prefix([1, 2, 3]) == 0


def test_zero_and_unbounded_capacity() -> None:
    none = LruBlockCache(0)
    none.insert([1, 2, 3])
    assert len(none) == 0 and none.lookup_prefix([1]) == 0
    unbounded = LruBlockCache(None)
    for i in range(1000):
        unbounded.insert([i])
    assert len(unbounded) == 1000
    with pytest.raises(ConfigError):
        LruBlockCache(-1)


def _reference_lru_hits(chains: list[list[int]], capacity: int) -> list[int]:
    """Naive list model: most recent at the end, chains touched from tail to head."""
    resident: list[int] = []
    hits = []
    for chain in chains:
        n = 0
        for h in chain:
            if h not in resident:
                break
            n += 1
        hits.append(n)
        for h in reversed(chain):
            if h in resident:
                resident.remove(h)
            resident.append(h)
        del resident[: max(0, len(resident) - capacity)]
    return hits


def test_matches_a_naive_lru_on_random_chains() -> None:
    rng = np.random.default_rng(7)
    stems = [list(rng.integers(0, 40, size=8)) for _ in range(6)]
    chains = []
    for _ in range(300):
        stem = stems[int(rng.integers(0, len(stems)))]
        cut = int(rng.integers(1, len(stem) + 1))
        chains.append([int(h) for h in stem[:cut]] + [int(x) for x in rng.integers(100, 200, size=2)])
    for capacity in (0, 3, 12, 50):
        cache = LruBlockCache(capacity)
        hits = []
        for chain in chains:
            hits.append(cache.lookup_prefix(chain))
            cache.insert(chain)
        assert hits == _reference_lru_hits(chains, capacity)


def _req(rid: int, t: float, tokens: int, hashes: tuple[int, ...]) -> WorkloadRequest:
    return WorkloadRequest(rid, t, tokens, 10, hashes)


def test_replay_handles_partial_last_block_and_keeps_one_token() -> None:
    requests = [
        _req(3, 3.0, 700, (1, 2)),  # 2 hits, last block partial (188 tokens): 699 cached
        _req(0, 0.0, 1200, (1, 2, 3)),  # cold: nothing cached
        _req(2, 2.0, 1100, (1, 2, 4)),  # 2 hits: 1024 cached
        _req(1, 1.0, 1536, (1, 2, 3)),  # 3 whole blocks hit, capped at 1535
    ]
    replay = replay_prefix_cache(requests, capacity_blocks=100)
    assert replay.request_ids.tolist() == [0, 1, 2, 3]
    assert replay.cached_tokens.tolist() == [0, 1535, 1024, 699]
    assert replay.uncached_tokens.tolist() == [1200, 1, 76, 1]
    assert replay.token_hit_rate == pytest.approx((1535 + 1024 + 699) / (1200 + 1536 + 1100 + 700))
    assert replay.uncached_lengths.lengths.tolist() == [1, 76, 1200]
    assert replay.uncached_lengths.probs.tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert replay.uncached_by_request() == {0: 1200, 1: 1, 2: 76, 3: 1}


def test_replay_without_hashes_caches_nothing() -> None:
    replay = replay_prefix_cache([_req(0, 0.0, 900, ()), _req(1, 1.0, 900, ())], None)
    assert replay.cached_tokens.tolist() == [0, 0]
    assert replay.token_hit_rate == 0.0
    with pytest.raises(ConfigError, match="empty"):
        replay_prefix_cache([], 10)


def test_mooncake_replay_invariants(mooncake_requests: list[WorkloadRequest]) -> None:
    rates = []
    for capacity in (0, 1_000, 10_000, None):
        replay = replay_prefix_cache(mooncake_requests, capacity)
        inputs = replay.cached_tokens + replay.uncached_tokens
        assert np.all(replay.uncached_tokens >= 1)
        assert np.all((replay.cached_tokens % 512 == 0) | (replay.cached_tokens == inputs - 1))
        assert replay.uncached_lengths.mean() == pytest.approx(replay.uncached_tokens.mean())
        rates.append(replay.token_hit_rate)
    assert rates[0] == 0.0
    assert rates == sorted(rates)  # LRU is a stack algorithm: a bigger cache never hits less
    assert 0.30 < rates[-1] < 0.45  # the trace repeats 36.6% of its block references
