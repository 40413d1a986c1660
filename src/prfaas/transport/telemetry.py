"""Per-link telemetry (pure: every method takes `now_s`), exported as `core.link.LinkSnapshot`.

One `LinkTelemetry` per peer link. The sender counts acknowledged payload bytes, the receiver
verified bytes. Goodput is the payload delivered in the last `window_s` seconds divided by
`window_s`. Kernel TCP counters are fed as per-link totals (the owner sums its connections, keeping
the totals of closed ones), and the retransmit rate is the change in retransmitted over sent
segments across the same window; the RTT is reported only while the link carries data (delivered in
the window or in flight). Not thread-safe: the owner serialises calls.
"""

from __future__ import annotations

import statistics
from collections import deque

from prfaas.core.link import LinkSnapshot
from prfaas.core.units import bytes_per_s_to_gbps


class LinkTelemetry:
    def __init__(self, link_id: str, *, window_s: float, capacity_gbps: float | None = None,
                 max_latency_samples: int = 512) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.link_id = link_id
        self.window_s = window_s
        self.capacity_gbps = capacity_gbps
        self._deliveries: deque[tuple[float, int]] = deque()
        self._window_bytes = 0
        self._latencies_s: deque[float] = deque(maxlen=max_latency_samples)
        self._tcp: deque[tuple[float, int, int]] = deque()  # (time, total_retrans, segs_out)
        self.bytes_total = 0
        self.transfers_total = 0
        self.transfers_failed = 0
        self.transfers_in_flight = 0
        self.bytes_in_flight = 0
        self.rtt_ms: float | None = None
        self.retransmits_total = 0
        self.is_up = True

    def record_delivered(self, num_bytes: int, now_s: float) -> None:
        self.bytes_total += num_bytes
        self._deliveries.append((now_s, num_bytes))
        self._window_bytes += num_bytes
        self._expire(now_s)

    def transfer_started(self, declared_bytes: int) -> None:
        self.transfers_in_flight += 1
        self.bytes_in_flight += declared_bytes

    def transfer_finished(self, declared_bytes: int, *, is_ok: bool, latency_s: float | None) -> None:
        self.transfers_in_flight -= 1
        self.bytes_in_flight -= declared_bytes
        if is_ok:
            self.transfers_total += 1
            if latency_s is not None:
                self._latencies_s.append(latency_s)
        else:
            self.transfers_failed += 1

    def record_tcp(
        self, *, rtt_ms: float | None, retrans_total: int, segs_out_total: int, now_s: float
    ) -> None:
        self.rtt_ms = rtt_ms
        self.retransmits_total = retrans_total
        self._tcp.append((now_s, retrans_total, segs_out_total))
        while len(self._tcp) > 2 and self._tcp[1][0] <= now_s - self.window_s:
            self._tcp.popleft()

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        while self._deliveries and self._deliveries[0][0] < horizon:
            self._window_bytes -= self._deliveries.popleft()[1]

    def _retransmit_rate(self) -> float:
        if len(self._tcp) < 2:
            return 0.0
        (_, r0, s0), (_, r1, s1) = self._tcp[0], self._tcp[-1]
        return (r1 - r0) / (s1 - s0) if s1 > s0 else 0.0

    def _fresh_rtt_ms(self) -> float | None:
        """The kernel's smoothed RTT only moves while data flows: on a link idle for a whole window it is a
        stale sample (often the congested one from before the link went quiet), so it is not reported."""
        is_active = self._window_bytes > 0 or self.transfers_in_flight > 0
        return self.rtt_ms if is_active else None

    def _latency_quantiles(self) -> tuple[float | None, float | None]:
        if not self._latencies_s:
            return None, None
        ordered = sorted(self._latencies_s)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return statistics.median(ordered), p99

    def snapshot(self, now_s: float) -> LinkSnapshot:
        self._expire(now_s)
        p50, p99 = self._latency_quantiles()
        return LinkSnapshot(
            link_id=self.link_id, time_s=now_s, capacity_gbps=self.capacity_gbps,
            goodput_gbps=bytes_per_s_to_gbps(self._window_bytes / self.window_s), window_s=self.window_s,
            bytes_total=self.bytes_total, transfers_total=self.transfers_total,
            transfers_failed=self.transfers_failed, transfers_in_flight=self.transfers_in_flight,
            bytes_in_flight=self.bytes_in_flight, rtt_ms=self._fresh_rtt_ms(),
            retransmits_total=self.retransmits_total, retransmit_rate=self._retransmit_rate(),
            transfer_latency_p50_s=p50, transfer_latency_p99_s=p99, is_up=self.is_up,
        )
