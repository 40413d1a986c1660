"""Cheap `ClusterView` snapshots for every routing decision, kept up to date incrementally.

The simulator calls the router once per request, so a snapshot must not cost O(instances) Python work
per decision. `ViewBuilder` keeps each node's frozen `InstanceView` until the node changes
(`SimNode.touch` marks it dirty) and, per (cluster, role) group, the indices of the instances that can
accept work (snapshot order) and their rank entries sorted by `policy.types.load_key` (updated by
bisection for each changed node). The immutable tuples the views hand out (a group's instances, its
ranking, all instances) are cached per group and rebuilt, at C speed, only for groups that changed since.

Two kinds of snapshot, answering exactly like a plain `ClusterView` (tests/sim/test_view.py):

- `snapshot(links, time_s)` -> `IndexedClusterView`: everything materialised; what `Simulator.view()`
  returns and what may be kept.
- `live(links, time_s)` -> `LiveClusterView`: answers each question on demand from the builder's state
  (no O(instances) work unless a question needs it: `has_up_instances` and `ranked` are O(1) plus a
  cached tuple), link snapshots are taken on first use. Valid only while nothing changes: the driver
  calls `release_view(view)` right after the policy returned, which materialises the view (as `snapshot`
  would have) if the policy kept a reference to it or to one of its parts (CPython reference counts;
  deterministic), so a kept view never changes under its holder.

The multi-site simulator's router sees its PD cluster plus one PrfaaS cluster, each with its own builder;
`live_view(builders, owner, links, time_s, materialise)` is the same on-demand view over both (clusters of
different `ClusterKind`s, so each (cluster, role) group is one builder's cached tuples; the tuple of all
instances is built only if asked), sealed into the merged snapshot (`MultiSiteSimulator._merged`) when kept.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, overload

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import ClusterView, InstanceView

if TYPE_CHECKING:
    from prfaas.policy.sites import SitesView
    from prfaas.sim.view_builder import ViewBuilder

GroupKey = tuple[ClusterKind, Role]
RankEntry = tuple[float, float, str, InstanceView]  # load_key + the view (ids are unique: views never compared)

GROUP_KEYS: tuple[GroupKey, ...] = tuple((c, r) for c in ClusterKind for r in Role)
_GROUP_ID: dict[GroupKey, int] = {key: gid for gid, key in enumerate(GROUP_KEYS)}
# the same by the members' ids: enum members hash in Python (`Enum.__hash__`), ints in C; members are singletons
_GROUP_ID_BY_ID: dict[tuple[int, int], int] = {(id(c), id(r)): gid for (c, r), gid in _GROUP_ID.items()}


def group_id(cluster: ClusterKind, role: Role) -> int:
    """`_GROUP_ID[(cluster, role)]`, hashing the members' ids (enum members hash in Python, ints in C)."""
    gid = _GROUP_ID_BY_ID.get((id(cluster), id(role)))
    return gid if gid is not None else _GROUP_ID[(cluster, role)]


_NO_GROUP = -1


class Snapshottable(Protocol):
    """A simulated link: what `LiveClusterView` snapshots on first use."""

    def snapshot(self) -> LinkSnapshot: ...


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


@dataclass(frozen=True, slots=True)
class IndexedClusterView(ClusterView):
    """A `ClusterView` with precomputed `up_instances` groups and rankings (see the module docstring)."""

    groups: Mapping[GroupKey, tuple[InstanceView, ...]] = field(default_factory=_no_groups)
    ranks: Mapping[GroupKey, tuple[RankEntry, ...]] = field(default_factory=_no_ranks)

    def up_instances(self, cluster: ClusterKind, role: Role) -> tuple[InstanceView, ...]:
        return self.groups.get((cluster, role), ())

    def has_up_instances(self, cluster: ClusterKind, role: Role) -> bool:
        return bool(self.groups.get((cluster, role)))

    def ranked(self, cluster: ClusterKind, role: Role) -> Sequence[InstanceView]:
        return RankedViews(self.ranks.get((cluster, role), ()))


class _LiveLinks(Mapping[str, LinkSnapshot]):
    """Link snapshots taken on first access (part of a `LiveClusterView`, sealed with it)."""

    __slots__ = ("_links", "_taken")

    def __init__(self, links: Mapping[str, Snapshottable]) -> None:
        self._links = links
        self._taken: dict[str, LinkSnapshot] = {}

    def __getitem__(self, link_id: str) -> LinkSnapshot:
        snap = self._taken.get(link_id)
        if snap is None:
            snap = self._links[link_id].snapshot()
            self._taken[link_id] = snap
        return snap

    def get(self, link_id: str, default: Any = None) -> Any:
        if link_id in self._links:
            return self[link_id]
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(self._links)

    def __len__(self) -> int:
        return len(self._links)

    def seal(self) -> Mapping[str, LinkSnapshot]:
        return MappingProxyType({link_id: self[link_id] for link_id in self._links})


Materialise = Callable[[Mapping[str, LinkSnapshot], float], "IndexedClusterView"]


class LiveClusterView(ClusterView):
    """A `ClusterView` answering from the current state of one or more `ViewBuilder`s; see the module docstring.

    Several builders: the multi-site simulator's region view (its PD cluster plus one PrfaaS cluster), where the
    builders hold clusters of disjoint `ClusterKind`s, so no (cluster, role) group spans two: `owner` names the
    builder of each kind and `materialise(links, time_s)` is the merged snapshot the view seals into. Not a
    dataclass instance like its base (it sets no base field): `instances` and `links` are properties, computed on
    demand until `release_view` seals the view.
    """

    __slots__ = ("_builders", "_cache", "_links_live", "_materialise", "_owner", "_time_s")
    _builders: tuple[ViewBuilder, ...]
    _cache: IndexedClusterView | None
    _links_live: _LiveLinks
    _materialise: Materialise
    _owner: Mapping[ClusterKind, ViewBuilder]
    _time_s: float

    def __init__(self, builders: tuple[ViewBuilder, ...], owner: Mapping[ClusterKind, ViewBuilder],
                 links: Mapping[str, Snapshottable], time_s: float, materialise: Materialise) -> None:
        object.__setattr__(self, "_builders", builders)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_links_live", _LiveLinks(links))
        object.__setattr__(self, "_time_s", time_s)
        object.__setattr__(self, "_materialise", materialise)
        object.__setattr__(self, "_cache", None)  # the sealed IndexedClusterView, once sealed

    @property
    def instances(self) -> tuple[InstanceView, ...]:
        if self._cache is not None:
            return self._cache.instances
        builders = self._builders
        if len(builders) == 1:
            return builders[0].instances_tuple()
        out: tuple[InstanceView, ...] = ()
        for builder in builders:
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
            object.__setattr__(self, "_cache", self._materialise(self._links_live.seal(), self._time_s))

    def __repr__(self) -> str:
        return f"LiveClusterView(time_s={self._time_s}, sealed={self._cache is not None})"


def release_view(view: LiveClusterView) -> None:
    """Seal `view` if anything besides the caller still refers to it or to its link mapping (call it right after
    the policy returned, with the caller's own reference the only other one). Interpreted on purpose
    (`prfaas.native` leaves this module out, so these frames are CPython's: a compiled function holds no
    reference to its arguments)."""
    # Expected references: the caller's variable, this frame's argument and getrefcount's argument (the view);
    # the view's own slot and getrefcount's argument (the link mapping). Any other count seals too: a compiled
    # caller may pass a borrowed reference, which makes the counts lower by one, so a count below the expected
    # one cannot vouch for an unkept view.
    if sys.getrefcount(view) != 3 or sys.getrefcount(view._links_live) != 2:
        view._seal()


def release_sites_view(view: SitesView) -> None:
    """Take every link snapshot of the site selector's `view` now if anything besides the caller still refers to it
    or to its links (as `release_view` does for a routing view; the same counts, the same rule)."""
    if sys.getrefcount(view) != 3 or sys.getrefcount(view.links) != 2:
        links = view.links
        if isinstance(links, _LiveLinks):
            object.__setattr__(view, "links", links.seal())


def live_view(builders: Sequence[ViewBuilder], owner: Mapping[ClusterKind, ViewBuilder],
              links: Mapping[str, Snapshottable], time_s: float, materialise: Materialise) -> LiveClusterView:
    """A `LiveClusterView` over several builders (clusters of disjoint kinds), each brought up to date first."""
    for builder in builders:
        builder.refresh()
    return LiveClusterView(tuple(builders), owner, links, time_s, materialise)
