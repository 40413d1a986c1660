"""Plain data the global scheduler reads and returns (DESIGN.md "Policy: pure, plans as data").

Contract shared by every driver (simulator, live gateway, planner what-ifs):

- A driver builds a `ClusterView` snapshot and a `RequestInfo`, calls `Router.route(req, view, now_s)`
  and executes the returned `RoutePlan`. When the request's prefill/transfer ends (well or badly) it calls
  `Router.observe(outcome, now_s)` exactly once per routed request.
- Every `window_s` the driver aggregates a `WindowStats` and calls `Rebalancer.step(window, view, now_s)`;
  it executes the `RebalancePlan`: drain each instance in `role_changes`, then switch its role, which is
  ready at `ready_at_s`; and installs `new_threshold_tokens` into the router (None = unchanged).
- The KV-cache index (`policy.kv_index.GlobalKvIndex`) is handed to routers that need it at
  construction; the driver tells it about inserts and evictions.

Everything here is frozen data or an enum; policy code takes time as an argument and never reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from prfaas.core.blocks import BLOCK_TOKENS as BLOCK_TOKENS  # re-exported: policy speaks of 512-token blocks
from prfaas.core.errors import PrfaasError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot

"""Tokens per prefix block (the Mooncake trace's hash-chain granularity)."""

PRFAAS_EGRESS_LINK_ID = "prfaas->pd"
"""Link id of the cross-cluster egress (PrfaaS cluster -> PD cluster) in `ClusterView.links`."""

PD_TO_PRFAAS_LINK_ID = "pd->prfaas"
"""Link id of the reverse direction (PD -> PrfaaS: cross-cluster prefix-cache transfers), if reported."""


class NoRouteError(PrfaasError):
    """No up instance can take the request (e.g. no PD-D node is up). The driver must reject it."""


# --- requests and the cluster snapshot ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the router knows about a request before prefill.

    `block_hashes` is the prompt's 512-token prefix hash chain (hash i covers tokens [0, 512*(i+1))),
    the last block possibly partial. `forced_cluster` is set when a header forces the prefill cluster.
    """

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    forced_cluster: ClusterKind | None = None

    def __post_init__(self) -> None:
        if self.input_tokens < 0 or self.output_tokens < 0:
            raise ValueError(f"request {self.request_id}: token counts must be >= 0")


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One instance at snapshot time. `free_kv_bytes` None = unknown; `pending_role` set while converting."""

    instance_id: str
    cluster: ClusterKind
    role: Role
    is_up: bool = True
    queued_requests: int = 0
    queued_tokens: int = 0  # prefill tokens waiting (prefill roles); prompt tokens to admit (decode)
    running_batch: int = 0
    max_batch: int = 1
    free_kv_bytes: int | None = None
    busy_until_s: float | None = None  # estimated time the current work ends; None = unknown
    pending_role: Role | None = None

    @property
    def is_converting(self) -> bool:
        return self.pending_role is not None

    @property
    def can_accept(self) -> bool:
        """Up, not draining, not mid-conversion."""
        return self.is_up and self.role is not Role.DRAINING and self.pending_role is None


LoadKey = tuple[float, float, str]


def load_key(inst: InstanceView) -> LoadKey:
    """Node-selection order within a (cluster, role) group, least loaded first (`policy.node_select`).

    Decode role: (occupancy = (running_batch + queued_requests) / max_batch, -free_kv_bytes (unknown = 0),
    instance_id). Prefill roles: (queued_tokens, queued_requests, instance_id). Instance ids are unique,
    so the order is total and deterministic.
    """
    if inst.role is Role.PD_DECODE:
        return ((inst.running_batch + inst.queued_requests) / max(inst.max_batch, 1), -(inst.free_kv_bytes or 0),
                inst.instance_id)
    return (inst.queued_tokens, inst.queued_requests, inst.instance_id)


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """Mean queue per up instance of one (cluster, role) group; zeros when the group is empty."""

    num_instances: int
    requests: float
    tokens: float


def _empty_links() -> Mapping[str, LinkSnapshot]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Read-only snapshot of both clusters and their links at `time_s`."""

    instances: tuple[InstanceView, ...]
    links: Mapping[str, LinkSnapshot] = field(default_factory=_empty_links)
    time_s: float = 0.0

    def by_role(self, role: Role) -> tuple[InstanceView, ...]:
        """Instances whose current role is `role`, in snapshot order (up or not)."""
        return tuple(i for i in self.instances if i.role is role)

    def up_instances(self, cluster: ClusterKind, role: Role) -> tuple[InstanceView, ...]:
        """Instances of `cluster` with `role` that can accept new work now."""
        return tuple(i for i in self.instances if i.cluster is cluster and i.role is role and i.can_accept)

    def has_up_instances(self, cluster: ClusterKind, role: Role) -> bool:
        """`bool(up_instances(cluster, role))`, without building the tuple (a driver's view may answer in O(1))."""
        return any(i.cluster is cluster and i.role is role and i.can_accept for i in self.instances)

    def ranked(self, cluster: ClusterKind, role: Role) -> Sequence[InstanceView]:
        """`up_instances(cluster, role)` sorted by `load_key`, least loaded first.

        This base version sorts on every call; a driver with many instances can subclass the view and
        answer from an index it keeps up to date (the simulator does: `sim.view`). Same answer either way.
        """
        return tuple(sorted(self.up_instances(cluster, role), key=load_key))

    def mean_queued(self, cluster: ClusterKind, role: Role) -> QueueLoad:
        """Mean `queued_requests` and `queued_tokens` over `up_instances(cluster, role)`."""
        nodes = self.up_instances(cluster, role)
        if not nodes:
            return QueueLoad(0, 0.0, 0.0)
        n = len(nodes)
        return QueueLoad(n, sum(i.queued_requests for i in nodes) / n, sum(i.queued_tokens for i in nodes) / n)

    def instance(self, instance_id: str) -> InstanceView | None:
        for inst in self.instances:
            if inst.instance_id == instance_id:
                return inst
        return None

    def count_role(self, role: Role, *, include_pending: bool = True) -> int:
        """Up instances that have (or, with `include_pending`, are converting to) `role`."""
        count = 0
        for inst in self.instances:
            if not inst.is_up:
                continue
            target = inst.pending_role if include_pending and inst.pending_role is not None else inst.role
            count += target is role
        return count

    @property
    def egress_link(self) -> LinkSnapshot | None:
        return self.links.get(PRFAAS_EGRESS_LINK_ID)


# --- routing decisions -----------------------------------------------------------------------------


class RouteReason(enum.Enum):
    """Why a request was routed where it was."""

    SHORT_LOCAL = "short_local"  # l <= t: PD-P
    LONG_OFFLOAD = "long_offload"  # l > t: PrfaaS
    ALL_LOCAL = "all_local"  # homogeneous baseline
    ALL_OFFLOAD = "all_offload"  # naive heterogeneous baseline
    LINK_CONGESTED_LOCAL = "link_congested_local"  # would offload, but the egress link is saturated
    PRFAAS_QUEUE_LOCAL = "prfaas_queue_local"  # would offload, but the PrfaaS queue is too deep
    PRFAAS_DOWN_LOCAL = "prfaas_down_local"  # would offload, but no PrfaaS node (or the link) is up
    CACHE_HIT_LOCAL = "cache_hit_local"  # cache-aware: a prefix hit made l <= t, prefill on PD-P
    CACHE_HIT_REMOTE = "cache_hit_remote"  # cache-aware: a prefix hit still left l > t, prefill on PrfaaS
    FORCED = "forced"  # a request header forced the cluster


@dataclass(frozen=True, slots=True)
class CacheTransferPlan:
    """Move a cached prefix across clusters before prefill (bandwidth-abundant regime only).

    Only the increment moves: blocks [start_block, end_block) of the request's hash chain, on top of the
    `start_block` blocks the destination already holds. Once it lands the destination holds
    `block_hashes[:end_block]` (what the driver inserts into the KV index).
    """

    source_cluster: ClusterKind
    source_instance_id: str
    dest_cluster: ClusterKind
    dest_instance_id: str
    num_blocks: int
    num_tokens: int
    bytes_estimate: int | None = None  # None when the router has no S_kv model
    start_block: int = 0  # blocks the destination already holds

    @property
    def end_block(self) -> int:
        return self.start_block + self.num_blocks


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Where a request's prefill and decode run, and why.

    `uncached_tokens` is what the prefill node computes; `cached_tokens` what it reuses (after any
    `cache_transfer`). `threshold_tokens` is the threshold in force when the decision was made
    (None for policies without one).
    """

    request_id: int
    prefill_instance_id: str
    prefill_cluster: ClusterKind
    decode_instance_id: str
    uncached_tokens: int
    cached_tokens: int
    reason: RouteReason
    threshold_tokens: int | None = None
    cache_transfer: CacheTransferPlan | None = None

    @property
    def is_offloaded(self) -> bool:
        return self.prefill_cluster is ClusterKind.PRFAAS


# --- outcomes and failures -------------------------------------------------------------------------


class FailureKind(enum.Enum):
    TRANSFER_FAILED = "transfer_failed"  # a KV stream broke or was corrupted
    TRANSFER_TIMEOUT = "transfer_timeout"
    PREFILL_NODE_LOST = "prefill_node_lost"
    DECODE_NODE_LOST = "decode_node_lost"
    LINK_DOWN = "link_down"
    OUT_OF_MEMORY = "out_of_memory"  # decode node had no room for the state


class FailureAction(enum.Enum):
    RETRY_OTHER_CONNECTION = "retry_other_connection"
    RECOMPUTE_LOCALLY = "recompute_locally"  # re-prefill on a PD-P node
    REPREFILL_ELSEWHERE = "reprefill_elsewhere"  # re-route from scratch (new decode node too)
    FAIL_REQUEST = "fail_request"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one routed request's prefill and transfer. Times in seconds, None = not reached."""

    request_id: int
    route: RoutePlan
    ok: bool
    prefill_queue_s: float | None = None
    prefill_s: float | None = None
    transfer_bytes: int = 0
    transfer_s: float | None = None
    failure: FailureKind | None = None
    attempt: int = 0  # 0 for the first try; retries count up

    def __post_init__(self) -> None:
        if self.ok == (self.failure is not None):
            raise ValueError(f"request {self.request_id}: ok={self.ok} contradicts failure={self.failure}")


# --- long-term loop --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Aggregates over [start_s, end_s) for the long-term rebalancer.

    Utilisations are busy fractions in [0, 1] averaged over the stage's up instances; queue depths are
    requests waiting at the window's end (or its mean; the driver documents which).
    `uncached_token_samples` are the uncached prefill lengths of requests that arrived in the window,
    so the planner can re-optimise t on the live distribution.
    """

    start_s: float
    end_s: float
    prfaas_prefill_util: float
    pd_prefill_util: float
    pd_decode_util: float
    prfaas_queue_requests: int = 0
    pd_prefill_queue_requests: int = 0
    pd_decode_queue_requests: int = 0
    num_arrivals: int = 0
    num_offloaded: int = 0
    mean_uncached_tokens: float | None = None
    uncached_token_samples: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.end_s < self.start_s:
            raise ValueError("window end_s must be >= start_s")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def offload_fraction(self) -> float | None:
        return self.num_offloaded / self.num_arrivals if self.num_arrivals else None


@dataclass(frozen=True, slots=True)
class RoleChange:
    """Convert `instance_id` from `from_role` to `to_role`: drain, then serve as `to_role` at `ready_at_s`."""

    instance_id: str
    from_role: Role
    to_role: Role
    ready_at_s: float  # estimate: expected drain end + conversion_s
    conversion_s: float = 0.0  # time the switch itself takes once drained
    drain_first: bool = True


class RebalanceReason(enum.Enum):
    PREFILL_BOUND = "prefill_bound"  # converted PD-D -> PD-P
    DECODE_BOUND = "decode_bound"  # converted PD-P -> PD-D
    BALANCED = "balanced"  # nothing to do
    THRESHOLD_ONLY = "threshold_only"  # counts unchanged, threshold re-optimised
    COOLDOWN = "cooldown"  # too soon after the last change
    CONVERSION_IN_PROGRESS = "conversion_in_progress"  # a previous conversion is not finished
    AT_MINIMUM = "at_minimum"  # would convert, but that would leave a role empty
    WARMING_UP = "warming_up"  # not enough observed windows yet


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """What the long-term loop decided at `decided_at_s`. `new_threshold_tokens` None = unchanged."""

    decided_at_s: float
    reason: RebalanceReason
    role_changes: tuple[RoleChange, ...] = ()
    new_threshold_tokens: int | None = None
    num_pd_prefill_target: int | None = None
    num_pd_decode_target: int | None = None


# --- protocols -------------------------------------------------------------------------------------


class Router(Protocol):
    """Global scheduler's per-request decision."""

    @property
    def name(self) -> str: ...

    def route(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        """Decide prefill and decode targets. Raises `NoRouteError` when nothing can take the request."""
        ...

    def observe(self, outcome: Outcome, now_s: float) -> None:
        """Feed back what happened; called exactly once per routed request (per attempt)."""
        ...

    def set_threshold(self, threshold_tokens: int) -> None:
        """Install a new base threshold (from the long-term loop). No-op for threshold-free policies."""
        ...

    @property
    def tick_interval_s(self) -> float | None:
        """How often the driver must call `tick` between arrivals; None: the policy needs no ticks."""
        ...

    def tick(self, view: ClusterView, now_s: float) -> None:
        """Periodic update without a request (a short-term loop must relax even when nothing arrives)."""
        ...


class Rebalancer(Protocol):
    """Long-term loop: role conversions inside the PD cluster and threshold re-optimisation."""

    def step(self, window: WindowStats, view: ClusterView, now_s: float) -> RebalancePlan: ...
