"""The fair-share link model as it was before the incremental rewrite (O(flows) per event), kept as the
reference that tests/sim/test_link_incremental.py compares the new `sim.link` against, event by event.
`set_release` (a paused or resumed prefill's release rate) was added with the prefill preemption: here it is just a
new cap followed by the same full water-fill."""


from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from prfaas.core.link import LinkSnapshot
from prfaas.core.units import bytes_per_s_to_gbps, gbps_to_bytes_per_s
from prfaas.sim.events import EventLoop, EventPriority

_EPS_BYTES = 1e-6


@dataclass(slots=True, eq=False)
class Transfer:
    """One transfer on a link. `release_rate_bytes_per_s` None = all bytes available now."""

    transfer_id: int
    total_bytes: float
    on_delivered: Callable[[Transfer], None]
    release_rate_bytes_per_s: float | None = None
    sent_bytes: float = 0.0
    rate_bytes_per_s: float = 0.0
    start_s: float = 0.0
    last_byte_s: float | None = None
    owner: object = field(default=None)

    @property
    def remaining_bytes(self) -> float:
        return max(self.total_bytes - self.sent_bytes, 0.0)


def water_fill(capacity: float, caps: list[float | None]) -> list[float]:
    """Max-min fair rates for flows with optional per-flow caps sharing `capacity`."""
    n = len(caps)
    rates = [0.0] * n
    if n == 0 or capacity <= 0:
        return rates
    limits = [float("inf") if c is None else c for c in caps]
    order = sorted(range(n), key=limits.__getitem__)
    left = capacity
    for pos, i in enumerate(order):
        share = left / (n - pos)
        rate = min(share, limits[i])
        rates[i] = rate
        left -= rate
    return rates


class SimLink:
    """A directed link on the simulator's virtual clock."""

    def __init__(self, loop: EventLoop, link_id: str, capacity_gbps: float, latency_s: float = 0.0,
                 window_s: float = 1.0, buffer_s: float = 0.05) -> None:
        if capacity_gbps < 0:
            raise ValueError(f"link {link_id}: capacity_gbps must be >= 0, got {capacity_gbps}")
        if latency_s < 0:
            raise ValueError(f"link {link_id}: latency_s must be >= 0, got {latency_s}")
        self.loop = loop
        self.link_id = link_id
        self.capacity_gbps = capacity_gbps
        self.latency_s = latency_s
        self.window_s = window_s
        self.buffer_s = buffer_s
        self._flows: list[Transfer] = []
        self._last_s = loop.now_s
        self._version = 0
        self._next_id = 0
        self.bytes_sent_total = 0.0
        self.transfers_total = 0
        self.transfers_failed = 0
        # (time_s, cumulative bytes at time_s, total rate from time_s on), trimmed to the window.
        self._recent: deque[tuple[float, float, float]] = deque([(self._last_s, 0.0, 0.0)])
        self.rate_history: list[tuple[float, float]] = [(self._last_s, 0.0)]  # (time_s, bytes/s from then)
        self.capacity_history: list[tuple[float, float]] = [(self._last_s, capacity_gbps)]

    # --- public operations -----------------------------------------------------------------------
    @property
    def num_in_flight(self) -> int:
        return len(self._flows)

    def start(self, total_bytes: float, on_delivered: Callable[[Transfer], None],
              release_rate_bytes_per_s: float | None = None, owner: object = None) -> Transfer:
        """Begin a transfer now; `on_delivered(transfer)` runs `latency_s` after its last byte leaves."""
        self._advance()
        self._next_id += 1
        flow = Transfer(self._next_id, max(float(total_bytes), 0.0), on_delivered, release_rate_bytes_per_s,
                        start_s=self.loop.now_s, owner=owner)
        self._flows.append(flow)
        self._reschedule()
        return flow

    def release_all(self, flow: Transfer) -> None:
        """The producing prefill finished: every byte of `flow` is now available."""
        if flow.release_rate_bytes_per_s is None:
            return
        self._advance()
        flow.release_rate_bytes_per_s = None
        self._reschedule()

    def set_release(self, flow: Transfer, rate_bytes_per_s: float) -> None:
        """The producing prefill's release rate changed (0.0: paused); only before `release_all`."""
        if flow.release_rate_bytes_per_s is None:
            raise ValueError("already fully released")
        self._advance()
        flow.release_rate_bytes_per_s = rate_bytes_per_s
        self._reschedule()

    def abort(self, flow: Transfer) -> None:
        """Drop an unfinished transfer (its producer or consumer failed); counted as failed."""
        if flow not in self._flows:
            return
        self._advance()
        self._flows.remove(flow)
        self.transfers_failed += 1
        self._reschedule()

    def set_capacity(self, capacity_gbps: float) -> None:
        if capacity_gbps < 0:
            raise ValueError(f"link {self.link_id}: capacity_gbps must be >= 0")
        self._advance()
        self.capacity_gbps = capacity_gbps
        self.capacity_history.append((self.loop.now_s, capacity_gbps))
        self._reschedule()

    def snapshot(self) -> LinkSnapshot:
        now = self.loop.now_s
        in_flight = sum(f.total_bytes for f in self._flows)  # declared bytes not yet delivered
        return LinkSnapshot(
            link_id=self.link_id, time_s=now, capacity_gbps=self.capacity_gbps,
            goodput_gbps=bytes_per_s_to_gbps(self.goodput_bytes_per_s()), window_s=self.window_s,
            bytes_total=int(self._cum_at(now)),
            transfers_total=self.transfers_total, transfers_failed=self.transfers_failed,
            transfers_in_flight=len(self._flows), bytes_in_flight=int(in_flight),
            rtt_ms=1000.0 * self.rtt_s(), is_up=self.capacity_gbps > 0,
        )

    def rtt_s(self) -> float:
        """Round trip now: propagation plus the standing queue of a saturated link (module docstring)."""
        base = 2.0 * self.latency_s
        cap = gbps_to_bytes_per_s(self.capacity_gbps)
        total_rate = sum(f.rate_bytes_per_s for f in self._flows)
        if cap <= 0 or not self._flows or total_rate < cap * (1 - 1e-9):
            return base
        dt = self.loop.now_s - self._last_s
        backlog = sum(max(f.remaining_bytes - f.rate_bytes_per_s * dt, 0.0) for f in self._flows
                      if f.release_rate_bytes_per_s is None or f.rate_bytes_per_s < f.release_rate_bytes_per_s)
        return base + min(backlog, self.buffer_s * cap) / cap

    def goodput_bytes_per_s(self) -> float:
        """Bytes sent per second over the last `window_s` (or since start if shorter)."""
        now = self.loop.now_s
        start = max(now - self.window_s, self._recent[0][0])
        if now <= start:
            return self._recent[-1][2]
        return (self._cum_at(now) - self._cum_at(start)) / (now - start)

    # --- internals -------------------------------------------------------------------------------
    def _cum_at(self, time_s: float) -> float:
        """Cumulative bytes sent at `time_s` (piecewise linear between rate changes)."""
        for t, cum, rate in reversed(self._recent):
            if t <= time_s:
                return cum + rate * (time_s - t)
        return self._recent[0][1]

    def _advance(self) -> None:
        """Account progress of every flow from the last recompute to now."""
        now = self.loop.now_s
        dt = now - self._last_s
        if dt > 0:
            for f in self._flows:
                moved = min(f.rate_bytes_per_s * dt, f.total_bytes - f.sent_bytes)
                f.sent_bytes += moved
                self.bytes_sent_total += moved
            self._last_s = now

    def _reschedule(self) -> None:
        """Recompute fair rates, record telemetry, and schedule the next last-byte event."""
        now = self.loop.now_s
        cap = gbps_to_bytes_per_s(self.capacity_gbps)
        rates = water_fill(cap, [f.release_rate_bytes_per_s for f in self._flows])
        total = 0.0
        for f, r in zip(self._flows, rates, strict=True):
            f.rate_bytes_per_s = r
            total += r
        self._record_rate(now, total)
        self._version += 1
        soonest: float | None = None
        for f in self._flows:
            if f.remaining_bytes <= _EPS_BYTES and f.release_rate_bytes_per_s is None:
                soonest = now
                break
            if f.rate_bytes_per_s > 0 and f.release_rate_bytes_per_s is None:
                t = now + f.remaining_bytes / f.rate_bytes_per_s
                soonest = t if soonest is None or t < soonest else soonest
        if soonest is not None:
            self.loop.schedule(soonest, EventPriority.COMPLETION, self._on_tick, self._version)

    def _record_rate(self, now: float, total_rate: float) -> None:
        cum = self.bytes_sent_total
        if self._recent[-1][0] == now:
            self._recent[-1] = (now, cum, total_rate)
        else:
            self._recent.append((now, cum, total_rate))
        while len(self._recent) > 1 and self._recent[1][0] <= now - self.window_s:
            self._recent.popleft()
        if self.rate_history[-1][0] == now:
            self.rate_history[-1] = (now, total_rate)
        elif self.rate_history[-1][1] != total_rate:
            self.rate_history.append((now, total_rate))

    def _on_tick(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done = [f for f in self._flows if f.release_rate_bytes_per_s is None
                and f.remaining_bytes <= max(_EPS_BYTES, 1e-9 * f.total_bytes)]
        for f in done:
            self._flows.remove(f)
            f.sent_bytes = f.total_bytes
            f.last_byte_s = self.loop.now_s
            self.transfers_total += 1
            self.loop.schedule(self.loop.now_s + self.latency_s, EventPriority.COMPLETION, _deliver, f)
        self._reschedule()


def _deliver(flow: Transfer) -> None:
    flow.on_delivered(flow)
