"""Cheap `ClusterView` snapshots for every routing decision, kept up to date incrementally.

The simulator calls the router once per request, so the snapshot must not cost O(instances) Python
work per decision beyond a tuple copy. `ViewBuilder` keeps each node's frozen `InstanceView` until the
node changes (`SimNode.touch` marks it dirty), and keeps, per (cluster, role), the tuple of instances
that can accept work, in snapshot order.

`IndexedClusterView` is a `ClusterView` whose `up_instances` answers from those tuples instead of
scanning: the same answer (a test checks it against the base class), O(1) instead of O(instances).
Likewise `ranked` (the groups in `policy.types.load_key` order, for node selection) answers from a
sorted list per group that `ViewBuilder` keeps up to date by bisection for each changed node, copied
into the snapshot (a C-level tuple copy) only for groups that changed. Every other method is the base
class's.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import overload

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import ClusterView, InstanceView, load_key
from prfaas.sim.node import SimNode

GroupKey = tuple[ClusterKind, Role]
RankEntry = tuple[float, float, str, InstanceView]  # load_key + the view (ids are unique: views never compared)


def _no_groups() -> Mapping[GroupKey, tuple[InstanceView, ...]]:
    return MappingProxyType({})


def _no_ranks() -> Mapping[GroupKey, tuple[RankEntry, ...]]:
    return MappingProxyType({})


class RankedViews(Sequence[InstanceView]):
    """A read-only sequence of the views in sorted rank entries (no copy)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: tuple[RankEntry, ...]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> InstanceView: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[InstanceView]: ...
    def __getitem__(self, index: int | slice) -> InstanceView | Sequence[InstanceView]:
        if isinstance(index, slice):
            return tuple(e[3] for e in self._entries[index])
        return self._entries[index][3]

    def __iter__(self) -> Iterator[InstanceView]:
        for entry in self._entries:
            yield entry[3]


def _pick(views: list[InstanceView], indices: list[int]) -> tuple[InstanceView, ...]:
    """`tuple(views[i] for i in indices)` at C speed."""
    if len(indices) > 1:
        picked: tuple[InstanceView, ...] = operator.itemgetter(*indices)(views)
        return picked
    return (views[indices[0]],) if indices else ()


def _entry(view: InstanceView) -> RankEntry:
    k0, k1, instance_id = load_key(view)
    return (k0, k1, instance_id, view)


@dataclass(frozen=True, slots=True)
class IndexedClusterView(ClusterView):
    """A `ClusterView` with precomputed `up_instances` groups (see the module docstring)."""

    groups: Mapping[GroupKey, tuple[InstanceView, ...]] = field(default_factory=_no_groups)
    ranks: Mapping[GroupKey, tuple[RankEntry, ...]] = field(default_factory=_no_ranks)

    def up_instances(self, cluster: ClusterKind, role: Role) -> tuple[InstanceView, ...]:
        return self.groups.get((cluster, role), ())

    def ranked(self, cluster: ClusterKind, role: Role) -> Sequence[InstanceView]:
        return RankedViews(self.ranks.get((cluster, role), ()))


def _group_of(view: InstanceView) -> GroupKey | None:
    return (view.cluster, view.role) if view.can_accept else None


class ViewBuilder:
    """Incrementally maintained views of `nodes` (their order is the snapshot order)."""

    def __init__(self, nodes: Sequence[SimNode]) -> None:
        self._nodes = list(nodes)
        self.dirty: set[int] = set(range(len(self._nodes)))
        for i, node in enumerate(self._nodes):
            node.attach(self.dirty, i)
        self._views: list[InstanceView] = [node.view() for node in self._nodes]
        self._group_of: list[GroupKey | None] = [None] * len(self._nodes)
        self._members: dict[GroupKey, list[int]] = {}
        self._groups: dict[GroupKey, tuple[InstanceView, ...]] = {}
        self._entries: list[RankEntry | None] = [None] * len(self._nodes)
        self._sorted: dict[GroupKey, list[RankEntry]] = {}
        self._ranks: dict[GroupKey, tuple[RankEntry, ...]] = {}
        self._instances: tuple[InstanceView, ...] = ()

    def snapshot(self, links: Mapping[str, LinkSnapshot], time_s: float) -> IndexedClusterView:
        if self.dirty:
            self._refresh()
        return IndexedClusterView(instances=self._instances, links=links, time_s=time_s,
                                  groups=MappingProxyType(self._groups), ranks=MappingProxyType(self._ranks))

    def _refresh(self) -> None:
        changed: set[GroupKey] = set()
        for i in sorted(self.dirty):
            view = self._nodes[i].view()
            self._views[i] = view
            old, new = self._group_of[i], _group_of(view)
            if old is not None:
                changed.add(old)
                if old != new:
                    self._members[old].remove(i)
                self._unrank(old, i)
            if new is not None:
                changed.add(new)
                if old != new:
                    bisect.insort(self._members.setdefault(new, []), i)
                entry = _entry(view)
                bisect.insort(self._sorted.setdefault(new, []), entry)
                self._entries[i] = entry
            self._group_of[i] = new
        self.dirty.clear()
        views = self._views
        self._groups = dict(self._groups)  # snapshots already handed out keep their own mapping
        self._ranks = dict(self._ranks)
        for key in changed:
            members = self._members.get(key, [])
            self._groups[key] = _pick(views, members)
            self._ranks[key] = tuple(self._sorted.get(key, ()))
        self._instances = tuple(views)

    def _unrank(self, group: GroupKey, i: int) -> None:
        entry = self._entries[i]
        if entry is None:
            return
        ranked = self._sorted[group]
        pos = bisect.bisect_left(ranked, entry)
        assert ranked[pos] is entry
        del ranked[pos]
        self._entries[i] = None
