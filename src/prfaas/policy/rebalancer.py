"""Long-term loop: convert PD nodes between PD-P and PD-D, then re-optimise t (arXiv 2604.15039 §3.4.3, long term).

Called once per window by the driver: `step(window, view, now_s) -> RebalancePlan`. The paper gives no
numbers; ours are the fields of `RebalancerConfig`. Per step:

1. Forget finished conversions (the view shows the node in its new role, or the node is gone). While a
   conversion is pending (ours, or any node DRAINING / with a `pending_role`) -> CONVERSION_IN_PROGRESS,
   and the window is not folded into the averages (it mixes two configurations).
2. Fold the window into exponentially weighted averages (`ewma_alpha`) of utilisation and of queued
   requests per instance, and keep its uncached-length samples (last `length_history_windows` windows).
3. Fewer than `min_windows` windows folded since start or the last conversion -> WARMING_UP.
4. Within `cooldown_s` after the last conversion became ready -> COOLDOWN.
5. A stage is hot when its averaged utilisation >= `hot_util` or its queue per instance >=
   `hot_queue_per_instance`. Prefill is hot when the PD-P stage or the PrfaaS stage is (an extra PD-P
   node lets t move load off PrfaaS). Exactly one side hot -> convert one node from the other side:
      prefill hot -> PD-D -> PD-P (PREFILL_BOUND);  decode hot -> PD-P -> PD-D (DECODE_BOUND)
   unless the donor role would fall below its minimum (`min_pd_prefill` / `min_pd_decode`, >= 1, so the
   last PD-P or PD-D is never converted) -> AT_MINIMUM, or the donor stage's projected utilisation
   u * n / (n - 1) would exceed `max_donor_util_after` (it would only move the bottleneck) -> BALANCED.
   Both or neither hot -> BALANCED.
6. The donor node is the up, accepting one with the least work (decode: running + queued requests;
   prefill: queued tokens), ties by id. It drains first; `ready_at_s` = its `busy_until_s` (or now) +
   `conversion_s`.
7. Re-optimise t for the counts after the plan with the injected `reoptimise(n_p, n_d, lengths)`,
   lengths being the recent uncached-length samples (None when fewer than `min_length_samples`, so the
   planner uses its own distribution). A new t within `threshold_min_change` (relative) of the current
   one is not installed. Skipped while WARMING_UP or CONVERSION_IN_PROGRESS (the conversion step itself
   already re-optimised for the target counts). A BALANCED step that changes t reports THRESHOLD_ONLY;
   other reasons keep their reason and may still carry a new t.

State kept between steps: the averages, the recent samples, pending conversions, the threshold in force.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prfaas.core.lifecycle import Role
from prfaas.policy.types import (
    ClusterView,
    InstanceView,
    RebalancePlan,
    RebalanceReason,
    RoleChange,
    WindowStats,
)
from prfaas.workload.distribution import DiscreteLengthDistribution

_NO_REOPTIMISE = frozenset({RebalanceReason.WARMING_UP, RebalanceReason.CONVERSION_IN_PROGRESS})

Reoptimiser = Callable[[int, int, DiscreteLengthDistribution | None], int]
"""reoptimise(n_pd_prefill, n_pd_decode, uncached_lengths or None) -> best threshold in tokens."""


@dataclass(frozen=True, slots=True)
class RebalancerConfig:
    """Every knob of the long-term loop."""

    hot_util: float = 0.90
    """Averaged stage utilisation at or above which the stage is the bottleneck."""
    hot_queue_per_instance: float = 2.0
    """Averaged queued requests per instance at or above which the stage is the bottleneck."""
    max_donor_util_after: float = 0.80
    """The donor stage's projected utilisation after giving up a node must stay at or below this."""
    ewma_alpha: float = 0.5
    """Weight of the newest window in the averages (1 = no smoothing)."""
    min_windows: int = 2
    """Windows folded (since start or since the last conversion) before converting."""
    conversion_s: float = 30.0
    """Time a role switch takes once the node has drained."""
    cooldown_s: float = 120.0
    """Minimum time between a conversion becoming ready and the next conversion decision."""
    min_pd_prefill: int = 1
    """PD-P nodes never go below this (>= 1)."""
    min_pd_decode: int = 1
    """PD-D nodes never go below this (>= 1)."""
    threshold_min_change: float = 0.05
    """Relative change of t below which a re-optimised t is not installed."""
    length_history_windows: int = 4
    """Windows of uncached-length samples handed to the planner."""
    min_length_samples: int = 50
    """Fewer samples than this: the planner gets None and uses its own distribution."""

    def __post_init__(self) -> None:
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        if self.min_pd_prefill < 1 or self.min_pd_decode < 1:
            raise ValueError("min_pd_prefill and min_pd_decode must be >= 1 (never convert the last node)")
        if min(self.conversion_s, self.cooldown_s, self.threshold_min_change) < 0:
            raise ValueError("conversion_s, cooldown_s and threshold_min_change must be >= 0")
        if self.min_windows < 1 or self.length_history_windows < 1 or self.min_length_samples < 1:
            raise ValueError("min_windows, length_history_windows and min_length_samples must be >= 1")
        if self.hot_util <= 0 or self.hot_queue_per_instance <= 0 or self.max_donor_util_after <= 0:
            raise ValueError("hot_util, hot_queue_per_instance and max_donor_util_after must be positive")


@dataclass(frozen=True, slots=True)
class StageAverages:
    """Smoothed load of the three stages (utilisation and queued requests per instance)."""

    prfaas_util: float
    pd_prefill_util: float
    pd_decode_util: float
    prfaas_queue: float
    pd_prefill_queue: float
    pd_decode_queue: float


class PdRebalancer:
    """The long-term loop; `step` is its only mutator."""

    def __init__(self, config: RebalancerConfig | None = None, *, reoptimise: Reoptimiser | None = None,
                 threshold_tokens: int | None = None) -> None:
        self.config = config or RebalancerConfig()
        self.reoptimise = reoptimise
        self._threshold_tokens = threshold_tokens
        self._averages: StageAverages | None = None
        self._windows_folded = 0
        self._samples: deque[tuple[int, ...]] = deque(maxlen=self.config.length_history_windows)
        self._pending: dict[str, RoleChange] = {}
        self._last_ready_s: float | None = None

    @property
    def threshold_tokens(self) -> int | None:
        return self._threshold_tokens

    @property
    def pending_changes(self) -> tuple[RoleChange, ...]:
        return tuple(self._pending[k] for k in sorted(self._pending))

    @property
    def averages(self) -> StageAverages | None:
        return self._averages

    def step(self, window: WindowStats, view: ClusterView, now_s: float) -> RebalancePlan:
        self._forget_finished(view)
        n_p = view.count_role(Role.PD_PREFILL)
        n_d = view.count_role(Role.PD_DECODE)
        self._samples.append(window.uncached_token_samples)
        if self._pending or _conversion_visible(view):
            return self._finish(now_s, RebalanceReason.CONVERSION_IN_PROGRESS, (), n_p, n_d)
        self._fold(window, view)
        if self._windows_folded < self.config.min_windows:
            return self._finish(now_s, RebalanceReason.WARMING_UP, (), n_p, n_d)
        if self._last_ready_s is not None and now_s < self._last_ready_s + self.config.cooldown_s:
            return self._finish(now_s, RebalanceReason.COOLDOWN, (), n_p, n_d)
        reason, change = self._decide(view, now_s, n_p, n_d)
        if change is None:
            return self._finish(now_s, reason, (), n_p, n_d)
        self._pending[change.instance_id] = change
        self._last_ready_s = change.ready_at_s
        self._averages = None
        self._windows_folded = 0
        if change.to_role is Role.PD_PREFILL:
            n_p, n_d = n_p + 1, n_d - 1
        else:
            n_p, n_d = n_p - 1, n_d + 1
        return self._finish(now_s, reason, (change,), n_p, n_d)

    # --- phases ------------------------------------------------------------------------------------
    def _forget_finished(self, view: ClusterView) -> None:
        for instance_id, change in list(self._pending.items()):
            inst = view.instance(instance_id)
            is_switched = inst is not None and inst.role is change.to_role and not inst.is_converting
            if inst is None or not inst.is_up or is_switched:
                del self._pending[instance_id]

    def _fold(self, window: WindowStats, view: ClusterView) -> None:
        fresh = _window_averages(window, view)
        old = self._averages
        a = self.config.ewma_alpha
        if old is not None:
            fresh = StageAverages(*(a * f + (1 - a) * o for f, o in zip(_fields(fresh), _fields(old),
                                                                         strict=True)))
        self._averages = fresh
        self._windows_folded += 1

    def _decide(self, view: ClusterView, now_s: float, n_p: int, n_d: int
                ) -> tuple[RebalanceReason, RoleChange | None]:
        avg = self._averages
        assert avg is not None
        c = self.config
        prefill_hot = self._is_hot(avg.pd_prefill_util, avg.pd_prefill_queue) or self._is_hot(
            avg.prfaas_util, avg.prfaas_queue)
        decode_hot = self._is_hot(avg.pd_decode_util, avg.pd_decode_queue)
        if prefill_hot == decode_hot:
            return RebalanceReason.BALANCED, None
        if prefill_hot:
            donor_role, to_role, reason, n_donor, floor, util = (
                Role.PD_DECODE, Role.PD_PREFILL, RebalanceReason.PREFILL_BOUND, n_d, c.min_pd_decode,
                avg.pd_decode_util)
        else:
            donor_role, to_role, reason, n_donor, floor, util = (
                Role.PD_PREFILL, Role.PD_DECODE, RebalanceReason.DECODE_BOUND, n_p, c.min_pd_prefill,
                avg.pd_prefill_util)
        if n_donor - 1 < floor:
            return RebalanceReason.AT_MINIMUM, None
        if util * n_donor / (n_donor - 1) > c.max_donor_util_after:
            return RebalanceReason.BALANCED, None
        donor = _pick_donor(view, donor_role)
        if donor is None:
            return RebalanceReason.AT_MINIMUM, None
        drained_at_s = max(now_s, donor.busy_until_s if donor.busy_until_s is not None else now_s)
        return reason, RoleChange(donor.instance_id, donor_role, to_role, drained_at_s + c.conversion_s,
                                  conversion_s=c.conversion_s)

    def _is_hot(self, util: float, queue_per_instance: float) -> bool:
        return util >= self.config.hot_util or queue_per_instance >= self.config.hot_queue_per_instance

    def _finish(self, now_s: float, reason: RebalanceReason, changes: tuple[RoleChange, ...],
                n_p: int, n_d: int) -> RebalancePlan:
        new_threshold = None
        if reason not in _NO_REOPTIMISE:
            new_threshold = self._reoptimised_threshold(n_p, n_d)
        if new_threshold is not None and reason is RebalanceReason.BALANCED:
            reason = RebalanceReason.THRESHOLD_ONLY
        return RebalancePlan(now_s, reason, changes, new_threshold, n_p, n_d)

    def _reoptimised_threshold(self, n_p: int, n_d: int) -> int | None:
        if self.reoptimise is None or n_p < 1 or n_d < 1:
            return None
        samples = [s for window in self._samples for s in window]
        lengths = None
        if len(samples) >= self.config.min_length_samples:
            lengths = DiscreteLengthDistribution.from_samples(samples, name="live-uncached")
        new = int(self.reoptimise(n_p, n_d, lengths))
        current = self._threshold_tokens
        if current is not None and abs(new - current) <= self.config.threshold_min_change * max(current, 1):
            return None
        self._threshold_tokens = new
        return new


def _fields(avg: StageAverages) -> tuple[float, ...]:
    return (avg.prfaas_util, avg.pd_prefill_util, avg.pd_decode_util,
            avg.prfaas_queue, avg.pd_prefill_queue, avg.pd_decode_queue)


def _window_averages(window: WindowStats, view: ClusterView) -> StageAverages:
    def per_instance(queued: int, role: Role) -> float:
        return queued / max(view.count_role(role, include_pending=False), 1)

    return StageAverages(
        prfaas_util=window.prfaas_prefill_util,
        pd_prefill_util=window.pd_prefill_util,
        pd_decode_util=window.pd_decode_util,
        prfaas_queue=per_instance(window.prfaas_queue_requests, Role.PRFAAS_PREFILL),
        pd_prefill_queue=per_instance(window.pd_prefill_queue_requests, Role.PD_PREFILL),
        pd_decode_queue=per_instance(window.pd_decode_queue_requests, Role.PD_DECODE),
    )


def _conversion_visible(view: ClusterView) -> bool:
    return any(i.role is Role.DRAINING or i.is_converting for i in view.instances)


def _pick_donor(view: ClusterView, role: Role) -> InstanceView | None:
    candidates = [i for i in view.by_role(role) if i.can_accept]
    if not candidates:
        return None
    if role is Role.PD_DECODE:
        return min(candidates, key=lambda i: (i.running_batch + i.queued_requests, i.instance_id))
    return min(candidates, key=lambda i: (i.queued_tokens, i.queued_requests, i.instance_id))
