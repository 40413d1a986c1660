"""A simulated instance (node): its role, up/down state, servers, and the `InstanceView` it shows the policy.

A node holds a `PrefillServer` while its role is a prefill role and a `DecodeServer` while it decodes.
Role conversion (long-term loop): the node gets `pending_role` (it accepts no new work), drains, and
switches once it is idle, nothing is inbound and `ready_at_s` has passed; the new role gets a fresh server.

Views are cached: every state change goes through the simulator, which calls `touch()`; `view()`
rebuilds the frozen `InstanceView` only for touched nodes, so a routing decision costs O(changed nodes).

`InstanceView` fields as the simulator fills them:
    prefill roles  queued_requests = waiting requests (queued or paused by a preemption); queued_tokens =
                   uncached tokens waiting plus the running prefill's; running_batch = 1 while prefilling;
                   max_batch = 1; busy_until_s (the running prefill's end)
    decode role    queued_requests = requests waiting for a slot plus requests routed here whose state
                   has not arrived yet; queued_tokens = their prompt tokens; running_batch; max_batch = BS_max
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.policy.types import InstanceView

PREFILL_ROLES = (Role.PRFAAS_PREFILL, Role.PD_PREFILL)

# `InstanceView` built field by field through its slot descriptors: a third of the frozen dataclass
# `__init__`'s cost (keyword parsing and `object.__setattr__` per field), same object; ~4 per decision.
_VIEW_FIELDS = ("instance_id", "cluster", "role", "is_up", "queued_requests", "queued_tokens", "running_batch",
                "max_batch", "free_kv_bytes", "busy_until_s", "pending_role")
assert tuple(f.name for f in fields(InstanceView)) == _VIEW_FIELDS, "InstanceView changed: update _make_view"
(_set_id, _set_cluster, _set_role, _set_up, _set_qr, _set_qt, _set_rb, _set_mb, _set_free, _set_busy,
 _set_pending) = (getattr(InstanceView, name).__set__ for name in _VIEW_FIELDS)
_new_view = object.__new__


def _make_view(instance_id: str, cluster: ClusterKind, role: Role, is_up: bool, queued_requests: int,
               queued_tokens: int, running_batch: int, max_batch: int, busy_until_s: float | None,
               pending_role: Role | None) -> InstanceView:
    """`InstanceView(...)` with these fields (and `free_kv_bytes=None`), without the dataclass `__init__`."""
    view: InstanceView = _new_view(InstanceView)
    _set_id(view, instance_id)
    _set_cluster(view, cluster)
    _set_role(view, role)
    _set_up(view, is_up)
    _set_qr(view, queued_requests)
    _set_qt(view, queued_tokens)
    _set_rb(view, running_batch)
    _set_mb(view, max_batch)
    _set_free(view, None)
    _set_busy(view, busy_until_s)
    _set_pending(view, pending_role)
    return view


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Static description of one instance (e.g. 8 GPUs) in the simulated deployment."""

    instance_id: str
    cluster: ClusterKind
    role: Role
    prefill_cost: PrefillCostModel | None
    decode_cost: DecodeCostModel | None = None
    max_batch: int = 1
    cache_blocks: int = 0

    def __post_init__(self) -> None:
        if self.role in PREFILL_ROLES and self.prefill_cost is None:
            raise ValueError(f"{self.instance_id}: a prefill role needs a prefill cost model")
        if self.role is Role.PD_DECODE and self.decode_cost is None:
            raise ValueError(f"{self.instance_id}: a decode role needs a decode cost model")
        if self.cluster is ClusterKind.PRFAAS and self.role is not Role.PRFAAS_PREFILL:
            raise ValueError(f"{self.instance_id}: PrfaaS nodes only prefill")
        if self.max_batch < 1 or self.cache_blocks < 0:
            raise ValueError(f"{self.instance_id}: max_batch must be >= 1 and cache_blocks >= 0")


class SimNode:
    """Mutable state of one simulated instance."""

    __slots__ = ("_dirty_index", "_dirty_sink", "_load_index", "_load_sink", "_view", "decode", "inbound_requests",
                 "inbound_tokens", "is_up", "pending_role", "prefill", "ready_at_s", "role", "spec")

    def __init__(self, spec: NodeSpec) -> None:
        from prfaas.sim.servers import DecodeServer, PrefillServer

        self.spec = spec
        self.role = spec.role
        self.pending_role: Role | None = None
        self.ready_at_s = 0.0
        self.is_up = True
        self.prefill: PrefillServer | None = None
        self.decode: DecodeServer | None = None
        self.inbound_requests = 0
        self.inbound_tokens = 0
        self._view: InstanceView | None = None
        self._dirty_sink: set[int] | None = None
        self._dirty_index = 0
        self._load_sink: set[int] | None = None
        self._load_index = 0

    def attach(self, dirty_sink: set[int], index: int) -> None:
        """Report every future `touch()` as `index` into `dirty_sink` (the simulator's view builder)."""
        self._dirty_sink = dirty_sink
        self._dirty_index = index

    def attach_load(self, load_sink: set[int], index: int) -> None:
        """Also report every future `touch()` as `index` into `load_sink` (`sim.multisite_load.SiteLoad`)."""
        self._load_sink = load_sink
        self._load_index = index

    @property
    def instance_id(self) -> str:
        return self.spec.instance_id

    @property
    def cluster(self) -> ClusterKind:
        return self.spec.cluster

    @property
    def is_idle(self) -> bool:
        busy_prefill = self.prefill is not None and not self.prefill.is_idle
        busy_decode = self.decode is not None and not self.decode.is_idle
        return not busy_prefill and not busy_decode and self.inbound_requests == 0

    def touch(self) -> None:
        self._view = None
        if self._dirty_sink is not None:
            self._dirty_sink.add(self._dirty_index)
        if self._load_sink is not None:
            self._load_sink.add(self._load_index)

    @property
    def is_dirty(self) -> bool:
        return self._view is None

    def view(self) -> InstanceView:
        if self._view is None:
            self._view = self._build_view()
        return self._view

    def _build_view(self) -> InstanceView:
        spec = self.spec
        if self.prefill is not None:
            srv = self.prefill
            running = srv.current
            running_tokens = running.uncached_tokens if running is not None else 0
            return _make_view(spec.instance_id, spec.cluster, self.role, self.is_up, srv.num_queued,
                              srv.queued_tokens + running_tokens, int(running is not None), 1, srv.busy_until_s,
                              self.pending_role)
        if self.decode is not None:
            dec = self.decode
            return _make_view(spec.instance_id, spec.cluster, self.role, self.is_up,
                              len(dec.waiting) + self.inbound_requests, dec.waiting_tokens + self.inbound_tokens,
                              dec.batch_size, dec.max_batch, None, self.pending_role)
        return _make_view(spec.instance_id, spec.cluster, self.role, self.is_up, 0, 0, 0, spec.max_batch, None,
                          self.pending_role)
