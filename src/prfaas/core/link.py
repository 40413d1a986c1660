"""What the scheduler knows about a cross-cluster link at one instant.

Produced live by `transport` telemetry (bytes, goodput over a sliding window, kernel TCP_INFO RTT and
retransmissions) and by the simulator's link objects; read by `policy` through `ClusterView`.
This is the paper's "congestion monitoring integrated with the scheduler" as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """Link state at `time_s`. Rates are decimal Gbps; None means not measured (yet)."""

    link_id: str
    time_s: float
    capacity_gbps: float | None  # configured or provisioned capacity (None: unknown)
    goodput_gbps: float  # payload delivered per second over the sliding window
    window_s: float  # length of that window
    bytes_total: int  # payload bytes delivered since start
    transfers_total: int  # transfers completed since start
    transfers_failed: int  # transfers that ended in a typed failure
    transfers_in_flight: int
    bytes_in_flight: int  # declared bytes of transfers not yet acknowledged
    rtt_ms: float | None = None  # smoothed RTT (TCP_INFO on Linux) while the link carries data; None when idle
    retransmits_total: int = 0  # kernel-counted retransmitted segments since start
    retransmit_rate: float = 0.0  # retransmitted / sent segments over the window
    transfer_latency_p50_s: float | None = None
    transfer_latency_p99_s: float | None = None
    is_up: bool = True

    @property
    def utilisation(self) -> float | None:
        """Goodput as a fraction of capacity; None when the capacity is unknown."""
        if self.capacity_gbps is None or self.capacity_gbps <= 0:
            return None
        return self.goodput_gbps / self.capacity_gbps
