"""Prefix-cache (KV) indexes per site for the multi-site simulator: one `GlobalKvIndex` per PrfaaS cluster and per
PD region, as the live system keeps one index per regional gateway (`serve.sites`).

    kv = SiteKvIndexes.for_clusters(cluster_of_node)    # every node's blocks live in its own cluster's index
    kv.insert("A-0", hashes)                            # node operations go to the node's cluster's index
    kv.cluster_prefix_blocks("A", hashes)               # longest prefix held by one node of cluster A
    kv.scoped(["us", "A", "B"])                         # what region us's gateway knows: its PD nodes and the
                                                        # nodes of the PrfaaS clusters linked to it

`SiteKvIndexes` is a `GlobalKvIndex` (the simulator and the routers take one), every public method answered from
the member indexes; its own base state stays empty. A scoped view shares the member indexes (a PrfaaS node's
blocks are stored once, seen by every region linked to its cluster, as its cache reports reach every such
gateway) and knows nothing of the other clusters: a prefix cached in region eu's PD nodes is not cached for us,
a prefix cached at PrfaaS cluster A is cached at A only. Lookups stay side-effect free; ties between clusters
are broken by instance id, as inside one index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.kv_index import GlobalKvIndex, PrefixHit
from prfaas.policy.types import BLOCK_TOKENS


class SiteKvIndexes(GlobalKvIndex):
    """One `GlobalKvIndex` per cluster behind the `GlobalKvIndex` interface (module docstring)."""

    def __init__(self, cluster_of_node: Mapping[str, str], members: Mapping[str, GlobalKvIndex],
                 block_tokens: int = BLOCK_TOKENS) -> None:
        super().__init__(block_tokens)
        self.cluster_of_node = cluster_of_node
        self.members = dict(members)

    @classmethod
    def for_clusters(cls, cluster_of_node: Mapping[str, str], block_tokens: int = BLOCK_TOKENS) -> SiteKvIndexes:
        """An empty index per cluster named in `cluster_of_node` (node id -> cluster name)."""
        clusters = dict.fromkeys(cluster_of_node.values())
        return cls(cluster_of_node, {c: GlobalKvIndex(block_tokens) for c in clusters}, block_tokens)

    def scoped(self, clusters: Iterable[str]) -> SiteKvIndexes:
        """A view over `clusters` only, sharing their indexes (updates through either are seen by both)."""
        names = [c for c in clusters if c in self.members]
        return SiteKvIndexes(self.cluster_of_node, {c: self.members[c] for c in names}, self.block_tokens)

    def cluster(self, name: str) -> GlobalKvIndex:
        return self.members[name]

    def cluster_prefix_blocks(self, name: str, hashes: Sequence[int]) -> int:
        """Longest prefix of `hashes`, in blocks, held by one node of cluster `name` (0 if not in this view)."""
        index = self.members.get(name)
        if index is None or not hashes:
            return 0
        return max((index.longest_prefix_blocks(kind, hashes) for kind in ClusterKind), default=0)

    def _owner(self, instance_id: str) -> GlobalKvIndex:
        cluster = self.cluster_of_node.get(instance_id)
        index = self.members.get(cluster) if cluster is not None else None
        if index is None:
            raise KeyError(f"node {instance_id!r} is not in the KV index")
        return index

    # --- membership --------------------------------------------------------------------------------
    def add_node(self, instance_id: str, cluster: ClusterKind, capacity_blocks: int) -> None:
        self._owner(instance_id).add_node(instance_id, cluster, capacity_blocks)

    def remove_node(self, instance_id: str) -> tuple[int, ...]:
        return self._owner(instance_id).remove_node(instance_id)

    def has_node(self, instance_id: str) -> bool:
        cluster = self.cluster_of_node.get(instance_id)
        index = self.members.get(cluster) if cluster is not None else None
        return index is not None and index.has_node(instance_id)

    def nodes(self, cluster: ClusterKind | None = None) -> tuple[str, ...]:
        return tuple(sorted(n for index in self.members.values() for n in index.nodes(cluster)))

    def cluster_of(self, instance_id: str) -> ClusterKind:
        return self._owner(instance_id).cluster_of(instance_id)

    def num_blocks(self, instance_id: str) -> int:
        return self._owner(instance_id).num_blocks(instance_id)

    def total_blocks(self) -> int:
        return sum(index.total_blocks() for index in self.members.values())

    def holders(self, block_hash: int) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for index in self.members.values():
            held = index.holders(block_hash)
            if held:
                out = out | held if out else held
        return out

    def contains(self, instance_id: str, block_hash: int) -> bool:
        return self._owner(instance_id).contains(instance_id, block_hash)

    # --- updates -----------------------------------------------------------------------------------
    def insert(self, instance_id: str, hashes: Sequence[int]) -> tuple[int, ...]:
        return self._owner(instance_id).insert(instance_id, hashes)

    def touch(self, instance_id: str, hashes: Sequence[int]) -> None:
        self._owner(instance_id).touch(instance_id, hashes)

    def evict(self, instance_id: str, hashes: Iterable[int]) -> None:
        self._owner(instance_id).evict(instance_id, hashes)

    def sync(self, instance_id: str, hashes: Iterable[int]) -> None:
        self._owner(instance_id).sync(instance_id, hashes)

    # --- lookups (side-effect free) ----------------------------------------------------------------
    def node_prefix_blocks(self, instance_id: str, hashes: Sequence[int]) -> int:
        return self._owner(instance_id).node_prefix_blocks(instance_id, hashes)

    def best_prefix_node(self, cluster: ClusterKind, hashes: Sequence[int]) -> PrefixHit:
        best = PrefixHit(None, 0)
        for index in self.members.values():
            hit = index.best_prefix_node(cluster, hashes)
            if hit.instance_id is None:
                continue
            if best.instance_id is None or (hit.num_blocks, best.instance_id) > (best.num_blocks, hit.instance_id):
                best = hit
        return best

    def longest_prefix_blocks(self, cluster: ClusterKind, hashes: Sequence[int]) -> int:
        return self.best_prefix_node(cluster, hashes).num_blocks

    def prefix_blocks_by_node(self, cluster: ClusterKind, hashes: Sequence[int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for index in self.members.values():
            out.update(index.prefix_blocks_by_node(cluster, hashes))
        return dict(sorted(out.items()))
