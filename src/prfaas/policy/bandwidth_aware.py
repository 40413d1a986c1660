"""Short-term control loop of `prfaas-bandwidth-aware`: scale the offload threshold with link and queue state.

The paper (PAPER.md §6) says to raise t when PrfaaS egress utilisation nears a limit or the PrfaaS queue
surges, and gives no numbers (§11). Ours, all fields of `BandwidthAwareConfig`:

Signals, read from the `ClusterView` at each update:
    utilisation      egress goodput / capacity of link "prfaas->pd"
    rtt inflation    smoothed RTT / baseline RTT (configured, or the smallest RTT seen so far)
    retransmit rate  retransmitted / sent segments over the link's window
    queue depth      requests waiting per up PrfaaS prefill node
    transfer failure a failed offload transfer observed since the last update (optional)

Each signal is classified against a low and a high mark (the hysteresis band) and, for utilisation
and queue depth, a saturation mark:

    level      condition                                   action (once per update)
    SATURATED  util >= util_saturated or queue >= q_sat    route every long request locally (LOCAL_ONLY)
    HOT        any signal >= its high mark                 scale *= raise_factor (<= max_threshold_scale)
    BAND       otherwise, some signal above its low mark   hold: nothing changes, the cool streak resets
    COOL       every signal <= its low mark                after `recover_updates` cool updates in a row:
                                                           leave LOCAL_ONLY (keeping the raised scale),
                                                           then scale *= relax_factor each cool update,
                                                           down to 1 (NORMAL)

The effective threshold is `round(t * scale)`. Updates happen at most once per `control_interval_s`
(the router calls `update` on every request; earlier calls return the current state unchanged), so
an "update" is the unit of dwell. A missing signal (no link snapshot, unknown capacity, no RTT) counts
as cool. Signals that stay inside the band never move the threshold: that is the no-flapping rule.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, replace

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.types import ClusterView


class ControlMode(enum.Enum):
    NORMAL = "normal"  # threshold at its base value
    RAISED = "raised"  # threshold scaled up
    LOCAL_ONLY = "local_only"  # nothing offloaded until the signals cool down


class CongestionCause(enum.Enum):
    NONE = "none"
    LINK = "link"  # utilisation, RTT, retransmissions or transfer failures
    QUEUE = "queue"  # PrfaaS queue depth


class SignalLevel(enum.IntEnum):
    COOL = 0
    BAND = 1
    HOT = 2
    SATURATED = 3


@dataclass(frozen=True, slots=True)
class BandwidthAwareConfig:
    """Every knob of the short-term loop, with its default and meaning."""

    control_interval_s: float = 0.5
    """Minimum time between two controller updates."""
    util_low: float = 0.60
    """Egress utilisation at or below which the link counts as cool."""
    util_high: float = 0.85
    """Egress utilisation at or above which the threshold is raised."""
    util_saturated: float = 0.97
    """Egress utilisation at or above which every long request stays local."""
    rtt_inflation_low: float = 1.3
    """RTT / baseline RTT at or below which the link counts as cool."""
    rtt_inflation_high: float = 2.0
    """RTT / baseline RTT at or above which the threshold is raised (queues building in the network)."""
    rtt_baseline_ms: float | None = None
    """Baseline RTT; None learns it as the smallest RTT seen."""
    retransmit_low: float = 0.001
    """Retransmit rate at or below which the link counts as cool."""
    retransmit_high: float = 0.01
    """Retransmit rate at or above which the threshold is raised."""
    queue_low_per_instance: float = 1.0
    """PrfaaS queued requests per up node at or below which the queue counts as cool."""
    queue_high_per_instance: float = 4.0
    """PrfaaS queued requests per up node at or above which the threshold is raised."""
    queue_saturated_per_instance: float = 16.0
    """PrfaaS queued requests per up node at or above which every long request stays local."""
    raise_factor: float = 1.25
    """Threshold scale multiplier per HOT update."""
    relax_factor: float = 0.9
    """Threshold scale multiplier per COOL update once recovered (floored at 1)."""
    max_threshold_scale: float = 8.0
    """Upper bound of the scale (t_effective <= t * max_threshold_scale)."""
    recover_updates: int = 3
    """Consecutive COOL updates needed before relaxing (dwell time = this x control_interval_s)."""
    failure_counts_as_hot: bool = True
    """Whether a failed offload transfer makes the next update HOT on the link."""

    def __post_init__(self) -> None:
        _ordered("util", self.util_low, self.util_high, self.util_saturated)
        _ordered("rtt_inflation", self.rtt_inflation_low, self.rtt_inflation_high)
        _ordered("retransmit", self.retransmit_low, self.retransmit_high)
        _ordered("queue", self.queue_low_per_instance, self.queue_high_per_instance,
                 self.queue_saturated_per_instance)
        if self.control_interval_s < 0:
            raise ValueError("control_interval_s must be >= 0")
        if self.raise_factor <= 1.0 or not 0.0 < self.relax_factor < 1.0:
            raise ValueError("need raise_factor > 1 and 0 < relax_factor < 1")
        if self.max_threshold_scale < 1.0 or self.recover_updates < 1:
            raise ValueError("need max_threshold_scale >= 1 and recover_updates >= 1")
        if self.rtt_baseline_ms is not None and self.rtt_baseline_ms <= 0:
            raise ValueError("rtt_baseline_ms must be positive when set")


def _ordered(name: str, *marks: float) -> None:
    if any(a >= b for a, b in itertools.pairwise(marks)) or marks[0] < 0:
        raise ValueError(f"{name} marks must be >= 0 and strictly increasing (low < high < saturated)")


@dataclass(frozen=True, slots=True)
class BandwidthSignals:
    """The controller's inputs at one instant (None = not measured)."""

    utilisation: float | None = None
    rtt_ms: float | None = None
    retransmit_rate: float = 0.0
    queue_per_instance: float = 0.0


def read_signals(view: ClusterView) -> BandwidthSignals:
    """Extract the signals from a snapshot (egress link + PrfaaS prefill queues)."""
    link = view.egress_link
    nodes = view.up_instances(ClusterKind.PRFAAS, Role.PRFAAS_PREFILL)
    queue = sum(n.queued_requests for n in nodes) / len(nodes) if nodes else 0.0
    if link is None:
        return BandwidthSignals(queue_per_instance=queue)
    return BandwidthSignals(link.utilisation, link.rtt_ms, link.retransmit_rate, queue)


@dataclass(frozen=True, slots=True)
class ControllerState:
    """What the controller holds between updates (also what gets logged)."""

    mode: ControlMode = ControlMode.NORMAL
    cause: CongestionCause = CongestionCause.NONE
    threshold_scale: float = 1.0
    cool_streak: int = 0
    last_update_s: float | None = None
    rtt_baseline_ms: float | None = None


class BandwidthController:
    """Hysteresis controller; `update` is the only mutator and is deterministic in its inputs."""

    def __init__(self, config: BandwidthAwareConfig | None = None) -> None:
        self.config = config or BandwidthAwareConfig()
        self._state = ControllerState(rtt_baseline_ms=self.config.rtt_baseline_ms)
        self._failure_pending = False

    @property
    def state(self) -> ControllerState:
        return self._state

    def effective_threshold(self, base_threshold_tokens: int) -> int:
        return round(base_threshold_tokens * self._state.threshold_scale)

    def note_transfer_failure(self) -> None:
        """An offload transfer failed; counts as a HOT link signal at the next update (if configured)."""
        if self.config.failure_counts_as_hot:
            self._failure_pending = True

    def update(self, signals: BandwidthSignals, now_s: float) -> ControllerState:
        """Fold in the signals if `control_interval_s` passed since the last update; return the state."""
        state = self._state
        if state.last_update_s is not None and now_s - state.last_update_s < self.config.control_interval_s:
            return state
        baseline = _learn_baseline(state.rtt_baseline_ms, signals.rtt_ms, self.config.rtt_baseline_ms)
        link_level = self._link_level(signals, baseline)
        queue_level = self._queue_level(signals.queue_per_instance)
        self._failure_pending = False
        state = replace(state, last_update_s=now_s, rtt_baseline_ms=baseline)
        self._state = self._step(state, link_level, queue_level)
        return self._state

    # --- classification ----------------------------------------------------------------------------
    def _link_level(self, s: BandwidthSignals, baseline_ms: float | None) -> SignalLevel:
        c = self.config
        levels = [_level(s.retransmit_rate, c.retransmit_low, c.retransmit_high, None)]
        if s.utilisation is not None:
            levels.append(_level(s.utilisation, c.util_low, c.util_high, c.util_saturated))
        if s.rtt_ms is not None and baseline_ms:
            levels.append(_level(s.rtt_ms / baseline_ms, c.rtt_inflation_low, c.rtt_inflation_high, None))
        if self._failure_pending:
            levels.append(SignalLevel.HOT)
        return max(levels)

    def _queue_level(self, queue_per_instance: float) -> SignalLevel:
        c = self.config
        return _level(queue_per_instance, c.queue_low_per_instance, c.queue_high_per_instance,
                      c.queue_saturated_per_instance)

    # --- transitions -------------------------------------------------------------------------------
    def _step(self, state: ControllerState, link: SignalLevel, queue: SignalLevel) -> ControllerState:
        level = max(link, queue)
        cause = CongestionCause.LINK if link >= queue else CongestionCause.QUEUE
        if level is SignalLevel.SATURATED:
            return replace(state, mode=ControlMode.LOCAL_ONLY, cause=cause, cool_streak=0)
        if level is SignalLevel.HOT:
            return self._raise(state, cause)
        if level is SignalLevel.BAND:
            return replace(state, cool_streak=0)
        return self._relax(replace(state, cool_streak=state.cool_streak + 1))

    def _raise(self, state: ControllerState, cause: CongestionCause) -> ControllerState:
        if state.mode is ControlMode.LOCAL_ONLY:
            return replace(state, cause=cause, cool_streak=0)
        scale = min(state.threshold_scale * self.config.raise_factor, self.config.max_threshold_scale)
        return replace(state, mode=ControlMode.RAISED, cause=cause, threshold_scale=scale, cool_streak=0)

    def _relax(self, state: ControllerState) -> ControllerState:
        if state.mode is ControlMode.NORMAL or state.cool_streak < self.config.recover_updates:
            return state
        if state.mode is ControlMode.LOCAL_ONLY:
            return replace(state, mode=ControlMode.RAISED)
        scale = state.threshold_scale * self.config.relax_factor
        if scale <= 1.0:
            return replace(state, mode=ControlMode.NORMAL, cause=CongestionCause.NONE, threshold_scale=1.0)
        return replace(state, threshold_scale=scale)


def _level(value: float, low: float, high: float, saturated: float | None) -> SignalLevel:
    if saturated is not None and value >= saturated:
        return SignalLevel.SATURATED
    if value >= high:
        return SignalLevel.HOT
    if value > low:
        return SignalLevel.BAND
    return SignalLevel.COOL


def _learn_baseline(
    current_ms: float | None, rtt_ms: float | None, configured_ms: float | None
) -> float | None:
    if configured_ms is not None:
        return configured_ms
    if rtt_ms is None or rtt_ms <= 0:
        return current_ms
    return rtt_ms if current_ms is None else min(current_ms, rtt_ms)
