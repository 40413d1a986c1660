"""On-demand routing views over several clusters' `ViewBuilder`s (`sim.multisite`'s `region_view`).

A region's router sees its PD cluster plus one PrfaaS cluster. Materialising that merged snapshot for every
decision copies every instance of both clusters (O(instances) per request). `MergedLiveView` answers like
the materialised `IndexedClusterView` the multi-site simulator builds (`MultiSiteSimulator._merged`), on
demand, when the clusters' instances are of different `ClusterKind`s, so no (cluster, role) group spans two
builders: each group's up instances and ranking are its builder's cached tuples, link snapshots are taken
on first use, the tuple of all instances is built only if asked. Like `sim.view.LiveClusterView` it is valid
while nothing changes: the simulator passes it to `ViewBuilder.release` right after the router returned,
which seals it (materialised, exactly as the merged snapshot would have been) if the router kept it or its
link mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import ClusterView, InstanceView
from prfaas.sim.view import IndexedClusterView, RankedViews, Snapshottable, ViewBuilder, _LiveLinks, group_id

Materialise = Callable[[Mapping[str, LinkSnapshot]], IndexedClusterView]


class MergedLiveView(ClusterView):
    """A `ClusterView` over `builders` (of disjoint cluster kinds, in snapshot order); see the module docstring."""

    __slots__ = ("_builders", "_cache", "_links_live", "_materialise", "_owner", "_time_s")
    _builders: tuple[ViewBuilder, ...]
    _cache: IndexedClusterView | None
    _links_live: _LiveLinks
    _materialise: Materialise
    _owner: Mapping[ClusterKind, ViewBuilder]
    _time_s: float

    def __init__(self, builders: Sequence[ViewBuilder], owner: Mapping[ClusterKind, ViewBuilder],
                 links: Mapping[str, Snapshottable], time_s: float, materialise: Materialise) -> None:
        """`owner`: the builder holding each cluster kind's instances; `materialise(links)`: the sealed view."""
        for builder in builders:
            builder.refresh()
        object.__setattr__(self, "_builders", tuple(builders))
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_links_live", _LiveLinks(links))
        object.__setattr__(self, "_time_s", time_s)
        object.__setattr__(self, "_materialise", materialise)
        object.__setattr__(self, "_cache", None)

    @property
    def instances(self) -> tuple[InstanceView, ...]:
        if self._cache is not None:
            return self._cache.instances
        out: tuple[InstanceView, ...] = ()
        for builder in self._builders:
            out += builder.instances_tuple()
        return out

    @property
    def links(self) -> Mapping[str, LinkSnapshot]:
        if self._cache is not None:
            return self._cache.links
        return self._links_live

    @property
    def time_s(self) -> float:
        return self._time_s

    def up_instances(self, cluster: ClusterKind, role: Role) -> tuple[InstanceView, ...]:
        if self._cache is not None:
            return self._cache.up_instances(cluster, role)
        builder = self._owner.get(cluster)
        return builder.group_tuple(group_id(cluster, role)) if builder is not None else ()

    def has_up_instances(self, cluster: ClusterKind, role: Role) -> bool:
        if self._cache is not None:
            return self._cache.has_up_instances(cluster, role)
        builder = self._owner.get(cluster)
        return builder is not None and bool(builder.members[group_id(cluster, role)])

    def ranked(self, cluster: ClusterKind, role: Role) -> Sequence[InstanceView]:
        if self._cache is not None:
            return self._cache.ranked(cluster, role)
        builder = self._owner.get(cluster)
        return RankedViews(builder.rank_tuple(group_id(cluster, role)) if builder is not None else ())

    def _seal(self) -> None:
        if self._cache is None:
            object.__setattr__(self, "_cache", self._materialise(self._links_live.seal()))

    def __repr__(self) -> str:
        return f"MergedLiveView(time_s={self._time_s}, sealed={self._cache is not None})"
