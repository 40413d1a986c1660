"""Summary metrics of a run, computed from its per-request records and link history.

Definitions (window = arrivals in [warmup_s, end_s) unless stated):
    throughput_rps      requests finished OK / (last finish - first arrival) over all records
    goodput_rps         finished OK and meeting the SLO (TPOT <= tpot_slo_s, and TTFT <= ttft_slo_s if set),
                        per second, same denominator
    slo_attainment      fraction of measured requests meeting the SLO (unfinished count as misses)
    ttft_*_s, tpot_*_s  over measured requests that reached the metric
    offload_fraction    share of measured requests whose (final) prefill ran on PrfaaS
    egress_gbps_mean    bytes sent on the egress link / active span, in Gbps
    egress_gbps_p99     P99 of the egress rate averaged over consecutive 1 s windows
    utilisation         busy fraction per stage (decode: mean batch occupancy / BS_max)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from prfaas.core.units import bytes_per_s_to_gbps
from prfaas.sim.request import RequestRecord


@dataclass(frozen=True, slots=True)
class Summary:
    num_requests: int
    num_finished: int
    num_failed: int
    num_unfinished: int
    num_retried: int
    throughput_rps: float
    goodput_rps: float
    slo_attainment: float
    ttft_mean_s: float | None
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    tpot_mean_s: float | None
    tpot_p90_s: float | None
    offload_fraction: float
    egress_bytes: float
    egress_gbps_mean: float
    egress_gbps_p99: float
    utilisation: dict[str, float | None]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else None


def meets_slo(rec: RequestRecord, tpot_slo_s: float, ttft_slo_s: float | None) -> bool:
    if not rec.is_ok or rec.tpot_s is None:
        return False
    if rec.tpot_s > tpot_slo_s * (1 + 1e-9):
        return False
    return ttft_slo_s is None or (rec.ttft_s is not None and rec.ttft_s <= ttft_slo_s)


def window_rates(rate_history: Sequence[tuple[float, float]], start_s: float, end_s: float,
                 window_s: float = 1.0) -> np.ndarray:
    """Mean rate over consecutive windows of a piecewise-constant rate [(time_s, rate from then)]."""
    if end_s <= start_s or not rate_history:
        return np.zeros(0)
    n = max(math.ceil((end_s - start_s) / window_s), 1)
    edges = start_s + window_s * np.arange(n + 1)
    times = np.array([t for t, _ in rate_history] + [max(end_s, edges[-1])], dtype=np.float64)
    rates = np.array([r for _, r in rate_history], dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(times))])  # cumulative at `times`
    cum_at = np.interp(edges, times, cum, left=0.0)
    return np.diff(cum_at) / window_s


def summarize(records: Sequence[RequestRecord], *, rate_history: Sequence[tuple[float, float]],
              utilisation: dict[str, float | None], tpot_slo_s: float, ttft_slo_s: float | None = None,
              warmup_s: float = 0.0, end_s: float | None = None) -> Summary:
    measured = [r for r in records if r.arrival_s >= warmup_s and (end_s is None or r.arrival_s < end_s)]
    ok = [r for r in measured if r.is_ok]
    first = min((r.arrival_s for r in records), default=0.0)
    last = max((r.finish_s for r in records if r.finish_s is not None), default=first)
    span = max(last - first, 1e-9)
    all_ok = [r for r in records if r.is_ok]
    good = [r for r in all_ok if meets_slo(r, tpot_slo_s, ttft_slo_s)]
    ttft = [r.ttft_s for r in measured if r.ttft_s is not None]
    tpot = [r.tpot_s for r in ok if r.tpot_s is not None]
    egress = window_rates(rate_history, first, last)
    egress_bytes = float(np.sum(egress)) if egress.size else 0.0
    return Summary(
        num_requests=len(records), num_finished=len(all_ok),
        num_failed=sum(r.state.is_terminal and not r.is_ok for r in records),
        num_unfinished=sum(not r.state.is_terminal for r in records),
        num_retried=sum(r.attempts > 1 for r in records),
        throughput_rps=len(all_ok) / span, goodput_rps=len(good) / span,
        slo_attainment=(sum(meets_slo(r, tpot_slo_s, ttft_slo_s) for r in measured) / len(measured)
                        if measured else 0.0),
        ttft_mean_s=float(np.mean(ttft)) if ttft else None, ttft_p50_s=percentile(ttft, 50),
        ttft_p90_s=percentile(ttft, 90), ttft_p99_s=percentile(ttft, 99),
        tpot_mean_s=float(np.mean(tpot)) if tpot else None, tpot_p90_s=percentile(tpot, 90),
        offload_fraction=(sum(r.is_offloaded for r in measured) / len(measured)) if measured else 0.0,
        egress_bytes=egress_bytes, egress_gbps_mean=bytes_per_s_to_gbps(egress_bytes / span),
        egress_gbps_p99=bytes_per_s_to_gbps(percentile(egress, 99) or 0.0),
        utilisation=utilisation,
    )
