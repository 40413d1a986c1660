"""`ViewBuilder`: each node's frozen `InstanceView` and each (cluster, role) group's members and ranking, kept up
to date incrementally from `SimNode.touch` reports; the snapshots it hands out are `sim.view`'s (see there).

Its own module so that `prfaas.native` compiles it (the hot part of a routing decision) while `sim.view`, whose
classes subclass `ClusterView` and whose `release_view` counts CPython references, stays interpreted.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import InstanceView, load_key
from prfaas.sim.node import SimNode
from prfaas.sim.view import (
    _GROUP_ID_BY_ID,
    _NO_GROUP,
    GROUP_KEYS,
    IndexedClusterView,
    LiveClusterView,
    RankEntry,
    Snapshottable,
    _pick,
)


class ViewBuilder:
    """Incrementally maintained views of `nodes` (their order is the snapshot order)."""

    def __init__(self, nodes: Sequence[SimNode]) -> None:
        self._nodes = list(nodes)
        self.dirty: set[int] = set(range(len(self._nodes)))
        for i, node in enumerate(self._nodes):
            node.attach(self.dirty, i)
        n_groups = len(GROUP_KEYS)
        self._views: list[InstanceView] = [node.view() for node in self._nodes]
        self._group_of: list[int] = [_NO_GROUP] * len(self._nodes)
        self.members: list[list[int]] = [[] for _ in range(n_groups)]  # node indices, ascending
        self._entries: list[RankEntry | None] = [None] * len(self._nodes)
        self._sorted: list[list[RankEntry]] = [[] for _ in range(n_groups)]
        self._group_tuples: list[tuple[InstanceView, ...] | None] = [()] * n_groups  # None: stale
        self._rank_tuples: list[tuple[RankEntry, ...] | None] = [()] * n_groups
        self._instances: tuple[InstanceView, ...] | None = None
        self._alone = (self,)  # what `live` hands its view: this builder holds every cluster kind
        self._owns_all: Mapping[ClusterKind, ViewBuilder] = MappingProxyType(dict.fromkeys(ClusterKind, self))

    # --- snapshots -------------------------------------------------------------------------------
    def snapshot(self, links: Mapping[str, LinkSnapshot], time_s: float) -> IndexedClusterView:
        """A materialised snapshot (may be kept)."""
        if self.dirty:
            self._refresh()
        return self.materialise(links, time_s)

    def live(self, links: Mapping[str, Snapshottable], time_s: float) -> LiveClusterView:
        """An on-demand snapshot; pass it to `release` as soon as the policy returned."""
        if self.dirty:
            self._refresh()
        return LiveClusterView(self._alone, self._owns_all, links, time_s, self.materialise)

    def refresh(self) -> None:
        """Bring the kept views up to date with the touched nodes (what `snapshot` and `live` do first)."""
        if self.dirty:
            self._refresh()

    def materialise(self, links: Mapping[str, LinkSnapshot], time_s: float) -> IndexedClusterView:
        groups = {}
        ranks = {}
        for gid, key in enumerate(GROUP_KEYS):
            if self.members[gid]:
                groups[key] = self.group_tuple(gid)
                ranks[key] = self.rank_tuple(gid)
        return IndexedClusterView(instances=self.instances_tuple(), links=links, time_s=time_s,
                                  groups=MappingProxyType(groups), ranks=MappingProxyType(ranks))

    # --- cached immutable parts (valid until the next refresh that changes them) -----------------
    def instances_tuple(self) -> tuple[InstanceView, ...]:
        if self._instances is None:
            self._instances = tuple(self._views)
        return self._instances

    def group_tuple(self, gid: int) -> tuple[InstanceView, ...]:
        cached = self._group_tuples[gid]
        if cached is None:
            cached = _pick(self._views, self.members[gid])
            self._group_tuples[gid] = cached
        return cached

    def rank_tuple(self, gid: int) -> tuple[RankEntry, ...]:
        cached = self._rank_tuples[gid]
        if cached is None:
            cached = tuple(self._sorted[gid])
            self._rank_tuples[gid] = cached
        return cached

    # --- incremental update ----------------------------------------------------------------------
    def _refresh(self) -> None:
        views = self._views
        nodes = self._nodes
        group_of = self._group_of
        group_tuples = self._group_tuples
        rank_tuples = self._rank_tuples
        members = self.members
        ranks = self._sorted
        entries = self._entries
        gid_by_id = _GROUP_ID_BY_ID
        draining = Role.DRAINING
        insort = bisect.insort
        for i in sorted(self.dirty):
            view = nodes[i].view()
            views[i] = view
            old = group_of[i]
            if view.is_up and view.role is not draining and view.pending_role is None:  # view.can_accept
                new = gid_by_id[(id(view.cluster), id(view.role))]
            else:
                new = _NO_GROUP
            if old != _NO_GROUP:
                group_tuples[old] = None
                rank_tuples[old] = None
                if old != new:
                    members[old].remove(i)
                entry = entries[i]
                if entry is not None:  # out of the old group's ranking
                    ranked = ranks[old]
                    pos = bisect.bisect_left(ranked, entry)
                    assert ranked[pos][3] is entry[3]  # the view (a compiled build boxes the tuple anew)
                    del ranked[pos]
                    entries[i] = None
            if new != _NO_GROUP:
                group_tuples[new] = None
                rank_tuples[new] = None
                if old != new:
                    insort(members[new], i)
                k0, k1, instance_id = load_key(view)
                entry = (k0, k1, instance_id, view)
                insort(ranks[new], entry)
                entries[i] = entry
            group_of[i] = new
        self.dirty.clear()
        self._instances = None
