"""Cheap `ClusterView` snapshots for every routing decision, kept up to date incrementally.

The simulator calls the router once per request, so the snapshot must not cost O(instances) Python
work per decision beyond a tuple copy. `ViewBuilder` keeps each node's frozen `InstanceView` until the
node changes (`SimNode.touch` marks it dirty), and keeps, per (cluster, role), the tuple of instances
that can accept work, in snapshot order.

`IndexedClusterView` is a `ClusterView` whose `up_instances` answers from those tuples instead of
scanning: the same answer (a test checks it against the base class), O(1) instead of O(instances).
Every other method is the base class's.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import ClusterView, InstanceView
from prfaas.sim.node import SimNode

GroupKey = tuple[ClusterKind, Role]


def _no_groups() -> Mapping[GroupKey, tuple[InstanceView, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class IndexedClusterView(ClusterView):
    """A `ClusterView` with precomputed `up_instances` groups (see the module docstring)."""

    groups: Mapping[GroupKey, tuple[InstanceView, ...]] = field(default_factory=_no_groups)

    def up_instances(self, cluster: ClusterKind, role: Role) -> tuple[InstanceView, ...]:
        return self.groups.get((cluster, role), ())


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
        self._instances: tuple[InstanceView, ...] = ()

    def snapshot(self, links: Mapping[str, LinkSnapshot], time_s: float) -> IndexedClusterView:
        if self.dirty:
            self._refresh()
        return IndexedClusterView(instances=self._instances, links=links, time_s=time_s,
                                  groups=MappingProxyType(self._groups))

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
            if new is not None:
                changed.add(new)
                if old != new:
                    bisect.insort(self._members.setdefault(new, []), i)
            self._group_of[i] = new
        self.dirty.clear()
        views = self._views
        self._groups = dict(self._groups)  # snapshots already handed out keep their own mapping
        for key in changed:
            members = self._members.get(key, [])
            self._groups[key] = tuple(views[i] for i in members)
        self._instances = tuple(views)
