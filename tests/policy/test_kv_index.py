"""GlobalKvIndex: LRU per node, tail-first eviction, longest prefix per node and per cluster."""

from __future__ import annotations

import pytest

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.kv_index import GlobalKvIndex, PrefixHit, cached_tokens_for

PD, PF = ClusterKind.PD, ClusterKind.PRFAAS


def _index() -> GlobalKvIndex:
    index = GlobalKvIndex()
    index.add_node("pdp0", PD, capacity_blocks=6)
    index.add_node("pdp1", PD, capacity_blocks=6)
    index.add_node("pf0", PF, capacity_blocks=6)
    return index


def test_longest_prefix_per_node_and_cluster() -> None:
    index = _index()
    index.insert("pdp0", (1, 2, 3))
    index.insert("pdp1", (1, 2, 3, 4, 5))
    index.insert("pf0", (1, 9))
    query = (1, 2, 3, 4, 5, 6)
    assert index.node_prefix_blocks("pdp0", query) == 3
    assert index.node_prefix_blocks("pdp1", query) == 5
    assert index.longest_prefix_blocks(PD, query) == 5
    assert index.best_prefix_node(PD, query) == PrefixHit("pdp1", 5)
    assert index.longest_prefix_blocks(PF, query) == 1
    assert index.prefix_blocks_by_node(PD, query) == {"pdp0": 3, "pdp1": 5}
    # a chain that diverges after the first block matches only the shared head
    assert index.longest_prefix_blocks(PD, (1, 7, 3)) == 1
    assert index.best_prefix_node(PD, (42,)) == PrefixHit(None, 0)
    assert index.best_prefix_node(PD, ()) == PrefixHit(None, 0)


def test_prefix_must_be_contiguous_on_one_node() -> None:
    index = _index()
    index.insert("pdp0", (1, 2))
    index.evict("pdp0", (2,))
    assert index.node_prefix_blocks("pdp0", (1, 2, 3)) == 1
    index.insert("pdp1", (5, 6))  # the rest of the chain, but not its head
    # blocks held on different nodes do not combine into a longer prefix
    assert index.longest_prefix_blocks(PD, (1, 5, 6)) == 1
    assert index.node_prefix_blocks("pdp1", (1, 5, 6)) == 0


def test_ties_go_to_smallest_id() -> None:
    index = _index()
    index.insert("pdp1", (1, 2))
    index.insert("pdp0", (1, 2))
    assert index.best_prefix_node(PD, (1, 2, 3)) == PrefixHit("pdp0", 2)


def test_lru_evicts_tails_of_the_oldest_chain_first() -> None:
    index = _index()
    assert index.insert("pdp0", (1, 2, 3)) == ()
    assert index.insert("pdp0", (10, 11, 12)) == ()
    evicted = index.insert("pdp0", (20, 21))
    # the oldest chain loses its tail, so its head stays a usable prefix
    assert evicted == (3, 2)
    assert index.node_prefix_blocks("pdp0", (1, 2, 3)) == 1
    assert index.num_blocks("pdp0") == 6
    # touching the first chain makes the second one the eviction victim
    index.touch("pdp0", (1,))
    assert index.insert("pdp0", (30,)) == (12,)


def test_reinsert_refreshes_recency_without_duplicates() -> None:
    index = _index()
    index.insert("pdp0", (1, 2, 3))
    index.insert("pdp0", (4, 5, 6))
    assert index.insert("pdp0", (1, 2, 3)) == ()
    assert index.num_blocks("pdp0") == 6
    assert index.insert("pdp0", (7,)) == (6,)


def test_chain_longer_than_capacity_keeps_its_head() -> None:
    index = GlobalKvIndex()
    index.add_node("n", PD, capacity_blocks=3)
    assert index.insert("n", tuple(range(10))) == ()
    assert index.node_prefix_blocks("n", tuple(range(10))) == 3


def test_remove_node_and_leak_check() -> None:
    index = _index()
    index.insert("pdp0", (1, 2, 3))
    index.insert("pdp1", (1, 2))
    assert index.remove_node("pdp0") == (3, 2, 1)
    assert not index.has_node("pdp0")
    assert index.longest_prefix_blocks(PD, (1, 2, 3)) == 2
    index.evict("pdp1", (1, 2, 99))
    assert index.longest_prefix_blocks(PD, (1, 2, 3)) == 0
    assert index.total_blocks() == 0
    assert index._holders == {}  # no reverse-map entry left behind


def test_errors() -> None:
    index = _index()
    with pytest.raises(ValueError, match="already"):
        index.add_node("pdp0", PD, 1)
    with pytest.raises(KeyError, match="not in the KV index"):
        index.insert("nope", (1,))
    with pytest.raises(ValueError):
        GlobalKvIndex(block_tokens=0)


def test_cached_tokens_keep_one_token_to_compute() -> None:
    assert cached_tokens_for(2, 4096) == 1024
    assert cached_tokens_for(3, 1024) == 1023  # whole prompt cached: recompute the last token
    assert cached_tokens_for(0, 100) == 0
    assert cached_tokens_for(5, 0) == 0


def test_sync_replaces_a_nodes_blocks_with_what_it_reported() -> None:
    index = GlobalKvIndex()
    index.add_node("a", ClusterKind.PD, capacity_blocks=3)
    index.add_node("b", ClusterKind.PD, capacity_blocks=3)
    index.insert("a", [1, 2, 3])
    index.insert("b", [1])
    index.sync("a", [2, 3, 4, 5])  # 1 is gone; 4 and 5 are new, but only one fits the capacity
    held = {h for h in range(10) if index.contains("a", h)}
    assert {2, 3} <= held and 1 not in held and len(held) == 3
    assert index.holders(1) == frozenset({"b"})  # the other node's copy is untouched
    index.sync("a", [])
    assert index.num_blocks("a") == 0 and index.holders(2) == frozenset()
