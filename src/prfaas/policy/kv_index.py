"""Global KV-cache index: which 512-token prefix blocks each node holds, and the longest cached prefix.

The paper's global KVCache manager (arXiv 2604.15039, architecture) as metadata only; the blocks live in the nodes'
hybrid prefix cache pools. The driver (simulator or gateway) keeps this index in step with the nodes:

    add_node(id, cluster, capacity_blocks)   once per node (capacity in blocks, LRU beyond it)
    insert(id, hashes)  -> evicted hashes   after a prefill on `id` finished (or a cache transfer landed)
    touch(id, hashes)                        a cached prefix was reused (refreshes recency)
    evict(id, hashes) / remove_node(id)      the node dropped blocks / the node was lost

Hashes form a chain: hash i identifies the prefix of tokens [0, 512*(i+1)), so a prefix hit of k blocks
means the node holds hashes 0..k-1. Lookups (`node_prefix_blocks`, `longest_prefix_blocks`,
`best_prefix_node`) are side-effect free.

Eviction order: a chain is touched tail first, head last, so the least recently used entry is the tail
of the oldest chain; evicting tails before heads keeps the surviving blocks usable prefixes. A chain
longer than a node's capacity is inserted only up to that capacity (the head is what later requests hit).

Ties between nodes are broken by instance id (sorted), never by set order, so results are deterministic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.types import BLOCK_TOKENS


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """Longest prefix found on one node (`instance_id` None when no node of the cluster holds block 0)."""

    instance_id: str | None
    num_blocks: int


def cached_tokens_for(num_blocks: int, input_tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Prompt tokens a prefix hit of `num_blocks` blocks saves.

    Capped at `input_tokens - 1`: at least one token is always computed, so prefill yields logits.
    """
    if input_tokens <= 0:
        return 0
    return max(0, min(num_blocks * block_tokens, input_tokens - 1))


class _NodeCache:
    """LRU set of block hashes of one node; the OrderedDict's first entry is the least recently used."""

    __slots__ = ("blocks", "capacity_blocks", "cluster")

    def __init__(self, cluster: ClusterKind, capacity_blocks: int) -> None:
        self.cluster = cluster
        self.capacity_blocks = capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()


class GlobalKvIndex:
    """Per-node LRU block sets plus a reverse map from block hash to the nodes holding it."""

    def __init__(self, block_tokens: int = BLOCK_TOKENS) -> None:
        if block_tokens <= 0:
            raise ValueError("block_tokens must be positive")
        self.block_tokens = block_tokens
        self._nodes: dict[str, _NodeCache] = {}
        self._holders: dict[int, set[str]] = {}

    # --- membership --------------------------------------------------------------------------------
    def add_node(self, instance_id: str, cluster: ClusterKind, capacity_blocks: int) -> None:
        if instance_id in self._nodes:
            raise ValueError(f"node {instance_id!r} is already in the KV index")
        if capacity_blocks < 0:
            raise ValueError(f"node {instance_id!r}: capacity_blocks must be >= 0")
        self._nodes[instance_id] = _NodeCache(cluster, capacity_blocks)

    def remove_node(self, instance_id: str) -> tuple[int, ...]:
        """Forget a node and everything it held; returns the dropped hashes (LRU first)."""
        node = self._node(instance_id)
        dropped = tuple(node.blocks)
        self.evict(instance_id, dropped)
        del self._nodes[instance_id]
        return dropped

    def has_node(self, instance_id: str) -> bool:
        return instance_id in self._nodes

    def nodes(self, cluster: ClusterKind | None = None) -> tuple[str, ...]:
        """Node ids (sorted), optionally of one cluster."""
        return tuple(sorted(i for i, n in self._nodes.items() if cluster is None or n.cluster is cluster))

    def cluster_of(self, instance_id: str) -> ClusterKind:
        return self._node(instance_id).cluster

    def num_blocks(self, instance_id: str) -> int:
        return len(self._node(instance_id).blocks)

    def total_blocks(self) -> int:
        return sum(len(n.blocks) for n in self._nodes.values())

    def holders(self, block_hash: int) -> frozenset[str]:
        """Nodes holding `block_hash` (empty when none)."""
        held = self._holders.get(block_hash)
        return frozenset(held) if held else frozenset()

    def contains(self, instance_id: str, block_hash: int) -> bool:
        return block_hash in self._node(instance_id).blocks

    # --- updates -----------------------------------------------------------------------------------
    def insert(self, instance_id: str, hashes: Sequence[int]) -> tuple[int, ...]:
        """Record that `instance_id` now holds the chain `hashes`; returns the hashes evicted to make room."""
        node = self._node(instance_id)
        chain = tuple(hashes[: node.capacity_blocks])
        for block_hash in reversed(chain):
            if block_hash in node.blocks:
                node.blocks.move_to_end(block_hash)
            else:
                node.blocks[block_hash] = None
                self._holders.setdefault(block_hash, set()).add(instance_id)
        evicted: list[int] = []
        while len(node.blocks) > node.capacity_blocks:
            block_hash, _ = node.blocks.popitem(last=False)
            self._drop_holder(block_hash, instance_id)
            evicted.append(block_hash)
        return tuple(evicted)

    def touch(self, instance_id: str, hashes: Sequence[int]) -> None:
        """Refresh recency of the held blocks among `hashes` (tail first, like `insert`)."""
        node = self._node(instance_id)
        for block_hash in reversed(tuple(hashes)):
            if block_hash in node.blocks:
                node.blocks.move_to_end(block_hash)

    def evict(self, instance_id: str, hashes: Iterable[int]) -> None:
        """The node dropped these blocks (unknown hashes are ignored)."""
        node = self._node(instance_id)
        for block_hash in hashes:
            if block_hash in node.blocks:
                del node.blocks[block_hash]
                self._drop_holder(block_hash, instance_id)

    def sync(self, instance_id: str, hashes: Iterable[int]) -> None:
        """The node reported exactly these blocks: drop what it no longer holds, add what it holds (up to
        its capacity; recency of blocks already known is kept)."""
        node = self._node(instance_id)
        held = set(hashes)
        self.evict(instance_id, [h for h in node.blocks if h not in held])
        missing = [h for h in held if h not in node.blocks]
        for block_hash in missing[: max(0, node.capacity_blocks - len(node.blocks))]:
            node.blocks[block_hash] = None
            node.blocks.move_to_end(block_hash, last=False)  # unknown recency: first to go
            self._holders.setdefault(block_hash, set()).add(instance_id)

    # --- lookups (side-effect free) ----------------------------------------------------------------
    def node_prefix_blocks(self, instance_id: str, hashes: Sequence[int]) -> int:
        """Number of leading blocks of `hashes` that `instance_id` holds."""
        blocks = self._node(instance_id).blocks
        count = 0
        for block_hash in hashes:
            if block_hash not in blocks:
                break
            count += 1
        return count

    def best_prefix_node(self, cluster: ClusterKind, hashes: Sequence[int]) -> PrefixHit:
        """The node of `cluster` with the longest prefix of `hashes` (smallest id on ties)."""
        if not hashes:
            return PrefixHit(None, 0)
        candidates = {i for i in self._holders.get(hashes[0], ()) if self._nodes[i].cluster is cluster}
        if not candidates:
            return PrefixHit(None, 0)
        depth = 1
        while depth < len(hashes):
            survivors = candidates & self._holders.get(hashes[depth], set())
            if not survivors:
                break
            candidates = survivors
            depth += 1
        return PrefixHit(min(candidates), depth)

    def longest_prefix_blocks(self, cluster: ClusterKind, hashes: Sequence[int]) -> int:
        """Longest prefix of `hashes`, in blocks, held by one node of `cluster`."""
        return self.best_prefix_node(cluster, hashes).num_blocks

    def prefix_blocks_by_node(self, cluster: ClusterKind, hashes: Sequence[int]) -> dict[str, int]:
        """Prefix length of `hashes` on every node of `cluster` (a fresh dict; 0 for nodes with no hit)."""
        return {i: self.node_prefix_blocks(i, hashes) for i in self.nodes(cluster)}

    # --- internals ---------------------------------------------------------------------------------
    def _node(self, instance_id: str) -> _NodeCache:
        try:
            return self._nodes[instance_id]
        except KeyError:
            raise KeyError(f"node {instance_id!r} is not in the KV index") from None

    def _drop_holder(self, block_hash: int, instance_id: str) -> None:
        holders = self._holders.get(block_hash)
        if holders is None:
            return
        holders.discard(instance_id)
        if not holders:
            del self._holders[block_hash]
