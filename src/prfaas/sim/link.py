"""A simulated cross-cluster link: capacity, one-way latency, max-min fair sharing, layer-wise release.

Model (fluid, processor sharing):

- The link carries concurrent transfers. Rates are max-min fair (water-filling) and change only at a
  transfer start, finish, abort, release change or capacity change; between those instants every rate is
  constant, so each transfer's progress is exact and its finish time is computed, not stepped.
- Incremental (O(log n) per event, not O(flows)): the flows split into those sending at their own release
  cap (cap <= the fair level L) and those at the level L (every fully released flow, and capped flows whose
  cap exceeds L). The first group is a prefix of the flows sorted by cap; L = (C - sum of that prefix's caps)
  / (size of the second group). A flow's progress is kept lazily: `sent = s0 + cap * (t - t0)` in the first
  group, `sent = s0 + (V(t) - V0)` in the second, with V the integral of L; only flows that cross the
  boundary when L moves are touched. Released flows finish in the order of their virtual finish
  `V0 + remaining`, kept in a heap. Same model as the O(flows) water-fill it replaced (kept in
  tests/sim/reference_link.py; tests/sim/test_link_incremental.py compares them event by event).
- Layer-wise pipelining: while its prefill runs, a transfer's bytes are *released* progressively at the
  prefill rate (`bytes / T_prefill`, the fluid version of one layer after another), so its rate is capped
  at that release rate. When the prefill ends the cap is lifted (`release_all`). A transfer that was
  slowed below its release rate by sharing catches up only after its prefill ends (NOTE(sim): a
  conservative simplification; it only matters on a congested link). A paused prefill (preempted by another
  region's, `sim.servers.PrefillServer`) produces no layer: `set_release(flow, 0.0)` caps the flow at 0 (it
  sends nothing during the pause; with the simplification above it had sent no more than was released), and on
  resume `set_release(flow, rest / remaining compute)` releases the rest by the end of the remaining compute
  (`Transfer.released_bytes`: what the producer made available so far). A cap change is a remove and re-insert
  in the sorted capped flows (the flow keeps its bytes sent), then the same settling as any other event.
- A transfer is delivered `latency_s` after its last byte leaves (one-way propagation).
- Capacity 0 stalls every transfer (link down); rates resume when capacity returns.
- Telemetry: cumulative bytes sent, goodput over a sliding window, and a piecewise-constant rate history
  (for egress Gbps over 1 s windows and plots), exposed as a `LinkSnapshot` for the policy.
- RTT: 2 x latency plus a queueing delay while the link is saturated (the fair shares add up to the
  capacity): the bytes waiting to be sent fill the bottleneck buffer, up to `buffer_s` seconds of
  capacity, so RTT = 2 * latency_s + min(backlog, buffer_s * capacity) / capacity (a standing-queue
  model of many TCP flows into a drop-tail buffer; no loss is modelled, retransmissions stay 0).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from prfaas.core.link import LinkSnapshot
from prfaas.core.units import bytes_per_s_to_gbps, gbps_to_bytes_per_s
from prfaas.sim.events import EventLoop, EventPriority

_EPS_BYTES = 1e-6
_NONE, _OWN, _LEVEL = 0, 1, 2  # Transfer._group: not on a link; at its own cap; at the fair level


@dataclass(slots=True, eq=False)
class Transfer:
    """One transfer on a link. `release_rate_bytes_per_s` None = all bytes available now."""

    transfer_id: int
    total_bytes: float
    on_delivered: Callable[[Transfer], None]
    release_rate_bytes_per_s: float | None = None
    start_s: float = 0.0
    last_byte_s: float | None = None
    owner: object | None = None
    _link: SimLink | None = field(default=None, repr=False)
    _group: int = _NONE
    _s0: float = 0.0  # bytes sent at the reference point
    _t0: float = 0.0  # own-cap group: reference time
    _v0: float = 0.0  # level group: V at the reference point
    _released0: float = 0.0  # bytes released at `_release_t0` (at the rate in force since then)
    _release_t0: float = 0.0

    @property
    def released_bytes(self) -> float:
        """Bytes the producing prefill has made available so far (all of them once its release ended)."""
        rate = self.release_rate_bytes_per_s
        if rate is None:
            return self.total_bytes
        now = self._link.loop.now_s if self._link is not None else self._release_t0
        return min(self._released0 + rate * (now - self._release_t0), self.total_bytes)

    @property
    def sent_bytes(self) -> float:
        if self._link is None or self._group == _NONE:
            return self._s0
        return self._link._sent(self)

    @property
    def rate_bytes_per_s(self) -> float:
        if self._link is None or self._group == _NONE:
            return 0.0
        return self._link._rate(self)

    @property
    def remaining_bytes(self) -> float:
        return max(self.total_bytes - self.sent_bytes, 0.0)


def water_fill(capacity: float, caps: list[float | None]) -> list[float]:
    """Max-min fair rates for flows with optional per-flow caps sharing `capacity` (the reference, O(n log n))."""
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
        self._cap_bytes = gbps_to_bytes_per_s(capacity_gbps)
        self._last_s = loop.now_s
        self._version = 0
        self._next_id = 0
        # capped (not yet released) flows sorted by (cap, id); the first `_m` send at their cap
        self._keys: list[tuple[float, int]] = []
        self._capped: dict[int, Transfer] = {}
        self._m = 0
        self._sum_own = 0.0
        self._n_released = 0  # released flows (all at the level)
        self._heap: list[tuple[float, int, Transfer]] = []  # (virtual finish, id, flow) of released flows
        self._v = 0.0  # integral of the level rate
        self._level = math.inf
        self._in_flight = 0
        self._in_flight_bytes = 0.0
        self._level_backlog = 0.0  # sum over level flows of (total - s0 + v0): backlog = this - n * V
        self.bytes_sent_total = 0.0
        self.transfers_total = 0
        self.transfers_failed = 0
        # (time_s, cumulative bytes at time_s, total rate from time_s on), trimmed to the window
        self._recent_t: list[float] = [self._last_s]
        self._recent_c: list[float] = [0.0]
        self._recent_r: list[float] = [0.0]
        self._head = 0
        self.rate_history: list[tuple[float, float]] = [(self._last_s, 0.0)]  # (time_s, bytes/s from then)
        self.capacity_history: list[tuple[float, float]] = [(self._last_s, capacity_gbps)]

    # --- public operations -----------------------------------------------------------------------
    @property
    def num_in_flight(self) -> int:
        return self._in_flight

    def start(self, total_bytes: float, on_delivered: Callable[[Transfer], None],
              release_rate_bytes_per_s: float | None = None, owner: object = None) -> Transfer:
        """Begin a transfer now; `on_delivered(transfer)` runs `latency_s` after its last byte leaves."""
        self._advance()
        self._next_id += 1
        flow = Transfer(self._next_id, max(float(total_bytes), 0.0), on_delivered, release_rate_bytes_per_s,
                        start_s=self.loop.now_s, owner=owner, _link=self, _release_t0=self.loop.now_s)
        self._in_flight += 1
        self._in_flight_bytes += flow.total_bytes
        if release_rate_bytes_per_s is None:
            self._add_released(flow, 0.0)
        else:
            self._add_capped(flow)
        self._reschedule()
        return flow

    def release_all(self, flow: Transfer) -> None:
        """The producing prefill finished: every byte of `flow` is now available."""
        if flow.release_rate_bytes_per_s is None:
            return
        self._advance()
        if flow._group != _NONE:
            sent = self._sent(flow)
            self._remove_capped(flow)
            flow.release_rate_bytes_per_s = None
            self._add_released(flow, sent)
        else:
            flow.release_rate_bytes_per_s = None
        self._reschedule()

    def set_release(self, flow: Transfer, rate_bytes_per_s: float) -> None:
        """The producing prefill's layer rate changed: 0.0 while it is paused, on resume the rate that releases the
        rest by the end of its remaining compute. Only before `release_all` (ValueError after)."""
        if not rate_bytes_per_s >= 0 or math.isinf(rate_bytes_per_s):
            raise ValueError(f"link {self.link_id}: release rate must be finite and >= 0, got {rate_bytes_per_s}")
        if flow.release_rate_bytes_per_s is None:
            raise ValueError(f"link {self.link_id}: transfer {flow.transfer_id} is already fully released")
        if flow._link is not self:
            raise ValueError(f"link {self.link_id}: transfer {flow.transfer_id} is not on this link")
        self._advance()
        flow._released0, flow._release_t0 = flow.released_bytes, self.loop.now_s
        if flow._group == _NONE:  # aborted: nothing to re-rate
            flow.release_rate_bytes_per_s = rate_bytes_per_s
            return
        sent = self._sent(flow)
        self._remove_capped(flow)
        flow.release_rate_bytes_per_s = rate_bytes_per_s
        self._add_capped(flow, sent)
        self._reschedule()

    def abort(self, flow: Transfer) -> None:
        """Drop an unfinished transfer (its producer or consumer failed); counted as failed."""
        if flow._link is not self or flow._group == _NONE:
            return
        self._advance()
        sent = self._sent(flow)
        if flow.release_rate_bytes_per_s is None:
            self._level_backlog -= flow.total_bytes - flow._s0 + flow._v0
            self._n_released -= 1  # its heap entry is skipped lazily
        else:
            self._remove_capped(flow)
        flow._group, flow._s0 = _NONE, sent
        self._in_flight -= 1
        self._in_flight_bytes -= flow.total_bytes
        self.transfers_failed += 1
        self._reschedule()

    def set_capacity(self, capacity_gbps: float) -> None:
        if capacity_gbps < 0:
            raise ValueError(f"link {self.link_id}: capacity_gbps must be >= 0")
        self._advance()
        self.capacity_gbps = capacity_gbps
        self._cap_bytes = gbps_to_bytes_per_s(capacity_gbps)
        self.capacity_history.append((self.loop.now_s, capacity_gbps))
        self._reschedule()

    def snapshot(self) -> LinkSnapshot:
        now = self.loop.now_s
        return LinkSnapshot(
            link_id=self.link_id, time_s=now, capacity_gbps=self.capacity_gbps,
            goodput_gbps=bytes_per_s_to_gbps(self.goodput_bytes_per_s()), window_s=self.window_s,
            bytes_total=int(self._cum_at(now)),
            transfers_total=self.transfers_total, transfers_failed=self.transfers_failed,
            transfers_in_flight=self._in_flight, bytes_in_flight=int(max(self._in_flight_bytes, 0.0)),
            rtt_ms=1000.0 * self.rtt_s(), is_up=self.capacity_gbps > 0,
        )

    def rtt_s(self) -> float:
        """Round trip now: propagation plus the standing queue of a saturated link (module docstring)."""
        base = 2.0 * self.latency_s
        cap = self._cap_bytes
        if cap <= 0 or self._in_flight == 0 or self._total_rate() < cap * (1 - 1e-9):
            return base
        backlog = max(self._level_backlog - self._n_level() * self._v_now(), 0.0)
        return base + min(backlog, self.buffer_s * cap) / cap

    def goodput_bytes_per_s(self) -> float:
        """Bytes sent per second over the last `window_s` (or since start if shorter)."""
        now = self.loop.now_s
        start = max(now - self.window_s, self._recent_t[self._head])
        if now <= start:
            return self._recent_r[-1]
        return (self._cum_at(now) - self._cum_at(start)) / (now - start)

    # --- lazy progress ---------------------------------------------------------------------------
    def _sent(self, flow: Transfer) -> float:
        now = self.loop.now_s
        if flow._group == _OWN:
            assert flow.release_rate_bytes_per_s is not None
            sent = flow._s0 + flow.release_rate_bytes_per_s * (now - flow._t0)
        else:
            sent = flow._s0 + (self._v_now() - flow._v0)
        return min(sent, flow.total_bytes)

    def _v_now(self) -> float:
        dt = self.loop.now_s - self._last_s
        return self._v + self._level * dt if dt > 0 and self._n_level() else self._v

    def _rate(self, flow: Transfer) -> float:
        if flow._group == _OWN:
            assert flow.release_rate_bytes_per_s is not None
            return flow.release_rate_bytes_per_s
        return self._level if self._n_level() else 0.0

    def _n_level(self) -> int:
        return len(self._keys) - self._m + self._n_released

    def _total_rate(self) -> float:
        n = self._n_level()
        return self._sum_own + (self._level * n if n else 0.0)

    # --- group bookkeeping -----------------------------------------------------------------------
    def _to_level(self, flow: Transfer, sent: float) -> None:
        flow._group, flow._s0, flow._v0 = _LEVEL, sent, self._v
        self._level_backlog += flow.total_bytes - sent + self._v

    def _leave_level(self, flow: Transfer) -> float:
        sent = self._sent(flow)
        self._level_backlog -= flow.total_bytes - flow._s0 + flow._v0
        return sent

    def _add_released(self, flow: Transfer, sent: float) -> None:
        self._to_level(flow, sent)
        self._n_released += 1
        heapq.heappush(self._heap, (self._v + flow.total_bytes - sent, flow.transfer_id, flow))

    def _add_capped(self, flow: Transfer, sent: float = 0.0) -> None:
        assert flow.release_rate_bytes_per_s is not None
        key = (flow.release_rate_bytes_per_s, flow.transfer_id)
        pos = bisect.bisect_left(self._keys, key)
        self._keys.insert(pos, key)
        self._capped[flow.transfer_id] = flow
        if pos < self._m:  # inside the own-cap prefix
            self._m += 1
            self._sum_own += key[0]
            flow._group, flow._s0, flow._t0 = _OWN, sent, self.loop.now_s
        else:
            self._to_level(flow, sent)

    def _remove_capped(self, flow: Transfer) -> None:
        assert flow.release_rate_bytes_per_s is not None
        key = (flow.release_rate_bytes_per_s, flow.transfer_id)
        pos = bisect.bisect_left(self._keys, key)
        assert self._keys[pos] == key
        del self._keys[pos]
        del self._capped[flow.transfer_id]
        if pos < self._m:
            self._m -= 1
            self._sum_own -= key[0]
            if self._m == 0:
                self._sum_own = 0.0  # no drift carried over
        else:
            self._leave_level(flow)

    def _settle(self) -> None:
        """Move flows across the own-cap / level boundary until it is the water-filling fixed point."""
        keys = self._keys
        now = self.loop.now_s
        while True:
            level = self._compute_level()
            if self._m < len(keys) and keys[self._m][0] <= level:
                flow = self._capped[keys[self._m][1]]
                sent = self._leave_level(flow)
                flow._group, flow._s0, flow._t0 = _OWN, sent, now
                self._sum_own += keys[self._m][0]
                self._m += 1
                continue
            if self._m > 0 and keys[self._m - 1][0] > level:
                self._m -= 1
                c, fid = keys[self._m]
                flow = self._capped[fid]
                sent = min(flow._s0 + c * (now - flow._t0), flow.total_bytes)
                self._sum_own -= c
                if self._m == 0:
                    self._sum_own = 0.0
                self._to_level(flow, sent)
                continue
            self._level = level
            return

    def _compute_level(self) -> float:
        n = self._n_level()
        if n == 0:
            return math.inf if self._sum_own <= self._cap_bytes * (1 + 1e-12) else -math.inf
        return (self._cap_bytes - self._sum_own) / n

    # --- events ----------------------------------------------------------------------------------
    def _cum_at(self, time_s: float) -> float:
        """Cumulative bytes sent at `time_s` (piecewise linear between rate changes)."""
        i = bisect.bisect_right(self._recent_t, time_s, lo=self._head) - 1
        if i < self._head:
            return self._recent_c[self._head]
        return self._recent_c[i] + self._recent_r[i] * (time_s - self._recent_t[i])

    def _advance(self) -> None:
        """Move the clock of the lazy progress to now (O(1))."""
        now = self.loop.now_s
        dt = now - self._last_s
        if dt > 0:
            rate = self._total_rate()
            if self._n_level():
                self._v += self._level * dt
            self.bytes_sent_total += rate * dt
            self._last_s = now

    def _reschedule(self) -> None:
        """Settle the fair level, record telemetry, and schedule the next last-byte event."""
        now = self.loop.now_s
        self._settle()
        self._record_rate(now, self._total_rate())
        self._version += 1
        heap = self._heap
        while heap and heap[0][2]._group != _LEVEL:
            heapq.heappop(heap)
        if not heap:
            return
        remaining = heap[0][0] - self._v
        if remaining <= _EPS_BYTES:
            self.loop.schedule(now, EventPriority.COMPLETION, self._on_tick, self._version)
        elif self._level > 0 and self._n_level():
            self.loop.schedule(now + remaining / self._level, EventPriority.COMPLETION, self._on_tick, self._version)

    def _record_rate(self, now: float, total_rate: float) -> None:
        cum = self.bytes_sent_total
        if self._recent_t[-1] == now:
            self._recent_c[-1], self._recent_r[-1] = cum, total_rate
        else:
            self._recent_t.append(now)
            self._recent_c.append(cum)
            self._recent_r.append(total_rate)
        cutoff = now - self.window_s
        head, times = self._head, self._recent_t
        while head + 1 < len(times) and times[head + 1] <= cutoff:
            head += 1
        self._head = head
        if head > 4096 and head * 2 > len(times):
            del self._recent_t[:head], self._recent_c[:head], self._recent_r[:head]
            self._head = 0
        if self.rate_history[-1][0] == now:
            self.rate_history[-1] = (now, total_rate)
        elif self.rate_history[-1][1] != total_rate:
            self.rate_history.append((now, total_rate))

    def _on_tick(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        now = self.loop.now_s
        heap = self._heap
        while heap:
            vf, _, flow = heap[0]
            if flow._group != _LEVEL:
                heapq.heappop(heap)
                continue
            if vf - self._v > max(_EPS_BYTES, 1e-9 * flow.total_bytes):
                break
            heapq.heappop(heap)
            self._level_backlog -= flow.total_bytes - flow._s0 + flow._v0
            self._n_released -= 1
            flow._group, flow._s0 = _NONE, flow.total_bytes
            flow.last_byte_s = now
            self._in_flight -= 1
            self._in_flight_bytes -= flow.total_bytes
            self.transfers_total += 1
            self.loop.schedule(now + self.latency_s, EventPriority.COMPLETION, _deliver, flow)
        if self._in_flight == 0:
            self._in_flight_bytes = 0.0
            self._level_backlog = 0.0
        self._reschedule()


def _deliver(flow: Transfer) -> None:
    flow.on_delivered(flow)
