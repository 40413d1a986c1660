"""Short-term control loop of `prfaas-bandwidth-aware`: scale the offload threshold with link and queue state.

The paper (arXiv 2604.15039 §3.4.3, short term) says to raise t when PrfaaS egress utilisation nears a limit or the
PrfaaS queue surges, and gives no numbers. Ours, all fields of `BandwidthAwareConfig`:

Signals, read from the `ClusterView` at each update:
    utilisation      egress goodput / capacity of link "prfaas->pd"
    rtt inflation    smoothed RTT / baseline RTT (configured, or the smallest RTT seen so far)
    retransmit rate  retransmitted / sent segments over the link's window
    transfer failure a failed offload transfer observed since the last update (optional)
    prfaas queue     requests waiting per up PrfaaS prefill node
    pd-p queue       prefill tokens waiting per up PD-P node (the counter-signal: what staying local costs)

Link and PrfaaS-queue signals are classified COOL / BAND / HOT against a low and a high mark (the
hysteresis band); the PD-P queue against a hold mark and a back-off mark. Once per update:

    link HOT    raise t' to fit the link: the smallest t' whose offloaded byte rate, estimated from the
                uncached lengths routed in the last `demand_window_s` (`policy.offload_demand`), is at most
                target_link_util x the available egress bandwidth B (the paper's ceiling B / S_kv(l_long)).
                B is the link capacity when known, and the measured goodput when the RTT or retransmit
                signal says the link is congested (or the capacity is unknown): a link that is queueing
                delivers exactly what it can. t' never drops while the link stays hot. Without demand data
                or an S_kv model, t' *= raise_factor instead.
    queue HOT   t' *= raise_factor (PrfaaS compute is the bottleneck, not bytes)
    BAND        hold; the cool and hot streaks reset
    COOL        after `recover_updates` cool updates in a row, t' *= relax_factor per update, down to t

A raise (link or queue HOT) needs `hot_updates` HOT updates in a row (the dwell before the first
raise; while the streak lasts each further HOT update raises again); a failed offload transfer raises at
once. Without the dwell, a mild drop (40 -> 8 Gbps in tests/sim scenario (a)) raised t on transient
bursts and cost up to +34% TTFT P90 against plain `prfaas`; with 3, at most +0.2% over 27 points
(`python benchmarks/bench_sim_link_drop_sweep.py [--hot-updates 1]`).

    PD-P queue >= pd_queue_hold_tokens       no raise this update (do not push more local than PD-P takes)
    PD-P queue >= pd_queue_backoff_tokens    t' *= relax_factor this update, whatever the link says: both
                                             stages are overloaded, and PD-P also serves every short request

t' is bounded: t <= t' <= t * max_threshold_scale. The effective threshold is `round(t * scale)`.
Nothing is ever forced wholly local: routing everything local on link saturation overloads PD-P (measured
in tests/sim scenario (a): TTFT P90 26 s against 17 s for plain `prfaas`). A link that is down is the
router's PRFAAS_DOWN_LOCAL, not this loop's business.

Updates happen at most once per `control_interval_s` (`is_due`): at routing time and on the router's
periodic `tick`, so dwell is time (updates x control_interval_s) even when no request arrives. A
missing signal (no link snapshot, unknown capacity, no RTT) counts as cool. Signals that stay inside
the band never move the threshold: that is the no-flapping rule.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, replace

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.policy.offload_demand import OffloadDemand, StateBytesFn
from prfaas.policy.types import ClusterView


class ControlMode(enum.Enum):
    NORMAL = "normal"  # threshold at its base value
    RAISED = "raised"  # threshold scaled up


class CongestionCause(enum.Enum):
    NONE = "none"
    LINK = "link"  # utilisation, RTT, retransmissions or transfer failures
    QUEUE = "queue"  # PrfaaS queue depth


class SignalLevel(enum.IntEnum):
    COOL = 0
    BAND = 1
    HOT = 2


class PdPressure(enum.Enum):
    FREE = "free"  # PD-P can take more
    HOLD = "hold"  # no further raise
    BACKOFF = "backoff"  # lower the raise


@dataclass(frozen=True, slots=True)
class BandwidthAwareConfig:
    """Every knob of the short-term loop, with its default and meaning."""

    control_interval_s: float = 0.5
    """Minimum time between two controller updates."""
    util_low: float = 0.60
    """Egress utilisation at or below which the link counts as cool."""
    util_high: float = 0.90
    """Egress utilisation at or above which the link counts as hot (the threshold is raised to fit it)."""
    target_link_util: float = 0.80
    """A link-sized raise aims the offloaded byte rate at this fraction of the available bandwidth."""
    demand_window_s: float = 30.0
    """Window of routed requests' uncached lengths used to estimate the offload byte rate per threshold."""
    rtt_inflation_low: float = 1.3
    """RTT / baseline RTT at or below which the link counts as cool."""
    rtt_inflation_high: float = 2.0
    """RTT / baseline RTT at or above which the link counts as hot (queues building in the network)."""
    rtt_baseline_ms: float | None = None
    """Baseline RTT; None learns it as the smallest RTT seen."""
    retransmit_low: float = 0.001
    """Retransmit rate at or below which the link counts as cool."""
    retransmit_high: float = 0.01
    """Retransmit rate at or above which the link counts as hot."""
    queue_low_per_instance: float = 1.0
    """PrfaaS queued requests per up node at or below which the queue counts as cool."""
    queue_high_per_instance: float = 4.0
    """PrfaaS queued requests per up node at or above which the threshold is raised."""
    pd_queue_hold_tokens: float = 32_000.0
    """Prefill tokens waiting per up PD-P node at or above which the threshold is not raised further."""
    pd_queue_backoff_tokens: float = 64_000.0
    """Prefill tokens waiting per up PD-P node at or above which a raise is backed off (x relax_factor)."""
    raise_factor: float = 1.25
    """Threshold scale multiplier per queue-HOT update (and per link-HOT update without demand data)."""
    relax_factor: float = 0.9
    """Threshold scale multiplier per COOL update once recovered, and per PD-P back-off update (floor 1)."""
    max_threshold_scale: float = 2.0
    """Upper bound of the scale (t_effective <= t * max_threshold_scale)."""
    recover_updates: int = 3
    """Consecutive COOL updates needed before relaxing (dwell time = this x control_interval_s)."""
    hot_updates: int = 3
    """Consecutive HOT updates needed before a raise (dwell, as for relaxing: a short burst moves nothing)."""
    failure_counts_as_hot: bool = True
    """Whether a failed offload transfer makes the next update HOT on the link."""

    def __post_init__(self) -> None:
        _ordered("util", self.util_low, self.util_high)
        _ordered("rtt_inflation", self.rtt_inflation_low, self.rtt_inflation_high)
        _ordered("retransmit", self.retransmit_low, self.retransmit_high)
        _ordered("queue", self.queue_low_per_instance, self.queue_high_per_instance)
        _ordered("pd_queue", self.pd_queue_hold_tokens, self.pd_queue_backoff_tokens)
        if not 0.0 < self.target_link_util <= 1.0:
            raise ValueError("target_link_util must be in (0, 1]")
        if self.control_interval_s < 0 or self.demand_window_s <= 0:
            raise ValueError("need control_interval_s >= 0 and demand_window_s > 0")
        if self.raise_factor <= 1.0 or not 0.0 < self.relax_factor < 1.0:
            raise ValueError("need raise_factor > 1 and 0 < relax_factor < 1")
        if self.max_threshold_scale < 1.0 or self.recover_updates < 1 or self.hot_updates < 1:
            raise ValueError("need max_threshold_scale >= 1, recover_updates >= 1 and hot_updates >= 1")
        if self.rtt_baseline_ms is not None and self.rtt_baseline_ms <= 0:
            raise ValueError("rtt_baseline_ms must be positive when set")


def _ordered(name: str, *marks: float) -> None:
    if any(a >= b for a, b in itertools.pairwise(marks)) or marks[0] < 0:
        raise ValueError(f"{name} marks must be >= 0 and strictly increasing (low < high)")


@dataclass(frozen=True, slots=True)
class BandwidthSignals:
    """The controller's inputs at one instant (None = not measured)."""

    utilisation: float | None = None
    rtt_ms: float | None = None
    retransmit_rate: float = 0.0
    queue_per_instance: float = 0.0
    capacity_gbps: float | None = None
    goodput_gbps: float | None = None
    pd_queue_tokens_per_instance: float = 0.0


def read_signals(view: ClusterView) -> BandwidthSignals:
    """Extract the signals from a snapshot (egress link, PrfaaS and PD-P prefill queues)."""
    queue = view.mean_queued(ClusterKind.PRFAAS, Role.PRFAAS_PREFILL).requests
    pd_tokens = view.mean_queued(ClusterKind.PD, Role.PD_PREFILL).tokens
    link = view.egress_link
    if link is None:
        return BandwidthSignals(queue_per_instance=queue, pd_queue_tokens_per_instance=pd_tokens)
    return BandwidthSignals(link.utilisation, link.rtt_ms, link.retransmit_rate, queue, link.capacity_gbps,
                            link.goodput_gbps, pd_tokens)


@dataclass(frozen=True, slots=True)
class ControllerState:
    """What the controller holds between updates (also what gets logged)."""

    mode: ControlMode = ControlMode.NORMAL
    cause: CongestionCause = CongestionCause.NONE
    threshold_scale: float = 1.0
    cool_streak: int = 0
    hot_streak: int = 0
    last_update_s: float | None = None
    rtt_baseline_ms: float | None = None
    available_gbps: float | None = None  # B used by the last link-sized raise
    pd_pressure: PdPressure = PdPressure.FREE


class BandwidthController:
    """Hysteresis controller; `update` is the only mutator of the scale and is deterministic in its inputs.

    `state_bytes` is S_kv(l) (bytes); without it link raises fall back to `raise_factor` steps.
    `record_request` feeds the demand window (the router calls it for every routed request).
    """

    def __init__(self, config: BandwidthAwareConfig | None = None, state_bytes: StateBytesFn | None = None
                 ) -> None:
        self.config = config or BandwidthAwareConfig()
        self.state_bytes = state_bytes
        self.demand = OffloadDemand(self.config.demand_window_s)
        self._state = ControllerState(rtt_baseline_ms=self.config.rtt_baseline_ms)
        self._failure_pending = False

    @property
    def state(self) -> ControllerState:
        return self._state

    def effective_threshold(self, base_threshold_tokens: int) -> int:
        return round(base_threshold_tokens * self._state.threshold_scale)

    def record_request(self, now_s: float, uncached_tokens: int, shipped_tokens: int | None = None) -> None:
        self.demand.record(now_s, uncached_tokens, shipped_tokens)

    def note_transfer_failure(self) -> None:
        """An offload transfer failed; counts as a HOT link signal at the next update (if configured)."""
        if self.config.failure_counts_as_hot:
            self._failure_pending = True

    def is_due(self, now_s: float) -> bool:
        last = self._state.last_update_s
        return last is None or now_s - last >= self.config.control_interval_s

    def update(self, signals: BandwidthSignals, now_s: float, base_threshold_tokens: int = 0) -> ControllerState:
        """Fold in the signals if `control_interval_s` passed since the last update; return the state."""
        if not self.is_due(now_s):
            return self._state
        state = self._state
        baseline = _learn_baseline(state.rtt_baseline_ms, signals.rtt_ms, self.config.rtt_baseline_ms)
        link_level, congested = self._link_level(signals, baseline)
        queue_level = _level(signals.queue_per_instance, self.config.queue_low_per_instance,
                             self.config.queue_high_per_instance)
        failed, self._failure_pending = self._failure_pending, False
        state = replace(state, last_update_s=now_s, rtt_baseline_ms=baseline,
                        pd_pressure=self._pd_pressure(signals.pd_queue_tokens_per_instance))
        available = _available_gbps(signals, congested) if link_level is SignalLevel.HOT else None
        self._state = self._step(state, link_level, queue_level, available, base_threshold_tokens, now_s,
                                 skip_dwell=failed)
        return self._state

    # --- classification ----------------------------------------------------------------------------
    def _link_level(self, s: BandwidthSignals, baseline_ms: float | None) -> tuple[SignalLevel, bool]:
        """The link's level, and whether a congestion signal (RTT, retransmits, failure) is hot."""
        c = self.config
        congestion = [_level(s.retransmit_rate, c.retransmit_low, c.retransmit_high)]
        if s.rtt_ms is not None and baseline_ms:
            congestion.append(_level(s.rtt_ms / baseline_ms, c.rtt_inflation_low, c.rtt_inflation_high))
        if self._failure_pending:
            congestion.append(SignalLevel.HOT)
        congested = max(congestion) is SignalLevel.HOT
        levels = list(congestion)
        if s.utilisation is not None:
            levels.append(_level(s.utilisation, c.util_low, c.util_high))
        return max(levels), congested

    def _pd_pressure(self, tokens_per_instance: float) -> PdPressure:
        c = self.config
        if tokens_per_instance >= c.pd_queue_backoff_tokens:
            return PdPressure.BACKOFF
        return PdPressure.HOLD if tokens_per_instance >= c.pd_queue_hold_tokens else PdPressure.FREE

    # --- transitions -------------------------------------------------------------------------------
    def _step(self, state: ControllerState, link: SignalLevel, queue: SignalLevel, available_gbps: float | None,
              base: int, now_s: float, *, skip_dwell: bool = False) -> ControllerState:
        level = max(link, queue)
        if level is SignalLevel.HOT:
            state = replace(state, hot_streak=state.hot_streak + 1, cool_streak=0)
            if state.hot_streak < self.config.hot_updates and not skip_dwell:  # not hot for long enough: hold
                return self._limited(state, state.threshold_scale)
            cause = CongestionCause.LINK if link >= queue else CongestionCause.QUEUE
            scale = state.threshold_scale
            if link is SignalLevel.HOT:
                scale = max(scale, self._link_fit_scale(state.threshold_scale, available_gbps, base, now_s))
            if queue is SignalLevel.HOT:
                scale = max(scale, state.threshold_scale * self.config.raise_factor)
            state = replace(state, cause=cause, available_gbps=available_gbps)
            return self._limited(state, scale)
        if level is SignalLevel.BAND:
            state = replace(state, cool_streak=0, hot_streak=0)
        else:
            state = self._relaxed(replace(state, cool_streak=state.cool_streak + 1, hot_streak=0))
        return self._limited(state, state.threshold_scale)

    def _link_fit_scale(self, scale: float, available_gbps: float | None, base: int, now_s: float) -> float:
        """Scale at which the recent demand fits target_link_util x B; a raise_factor step without data."""
        c = self.config
        fit = None
        if self.state_bytes is not None and available_gbps is not None and base > 0:
            budget = c.target_link_util * gbps_to_bytes_per_s(available_gbps)
            fit = self.demand.fit_threshold(budget, base, round(base * c.max_threshold_scale), self.state_bytes,
                                            now_s)
        if fit is None:
            return scale * c.raise_factor
        return fit / base

    def _limited(self, state: ControllerState, proposed: float) -> ControllerState:
        """Apply the PD-P counter-signal and the bounds to a proposed scale."""
        c = self.config
        if state.pd_pressure is PdPressure.BACKOFF:
            proposed = state.threshold_scale * c.relax_factor
        elif state.pd_pressure is PdPressure.HOLD:
            proposed = min(proposed, state.threshold_scale)
        scale = min(max(proposed, 1.0), c.max_threshold_scale)
        if scale <= 1.0:
            return replace(state, mode=ControlMode.NORMAL, cause=CongestionCause.NONE, threshold_scale=1.0)
        return replace(state, mode=ControlMode.RAISED, threshold_scale=scale)

    def _relaxed(self, state: ControllerState) -> ControllerState:
        if state.mode is ControlMode.NORMAL or state.cool_streak < self.config.recover_updates:
            return state
        return replace(state, threshold_scale=state.threshold_scale * self.config.relax_factor)


def _available_gbps(s: BandwidthSignals, congested: bool) -> float | None:
    """B: the capacity when known; the measured goodput when the link is congested or capacity unknown."""
    available = s.capacity_gbps if s.capacity_gbps is not None and s.capacity_gbps > 0 else None
    if (congested or available is None) and s.goodput_gbps is not None:
        available = s.goodput_gbps if available is None else min(available, s.goodput_gbps)
    return available


def _level(value: float, low: float, high: float) -> SignalLevel:
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
