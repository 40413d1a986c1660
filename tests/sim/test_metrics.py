from __future__ import annotations

import numpy as np
import pytest

from prfaas.core.lifecycle import RequestState
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.sim.metrics import summarize, window_rates
from prfaas.sim.request import RequestRecord


def test_window_rates_average_a_piecewise_constant_rate() -> None:
    history = [(0.0, 0.0), (0.5, 10.0), (2.0, 4.0), (2.25, 0.0)]
    rates = window_rates(history, 0.0, 3.0)
    assert rates.tolist() == pytest.approx([5.0, 10.0, 1.0])
    assert float(np.sum(rates)) == pytest.approx(10.0 * 1.5 + 4.0 * 0.25)


def _rec(i: int, arrival: float, ttft: float | None, tpot: float | None, offloaded: bool,
         state: RequestState = RequestState.FINISHED_OK) -> RequestRecord:
    finish = None if ttft is None or tpot is None else arrival + ttft + 100 * tpot
    return RequestRecord(
        request_id=i, arrival_s=arrival, input_tokens=1000, output_tokens=100, cached_tokens=0,
        uncached_tokens=1000, state=state, route="long_offload" if offloaded else "short_local",
        prefill_cluster="prfaas" if offloaded else "pd", prefill_instance="x", decode_instance="y", attempts=1,
        prefill_queue_s=0.0, prefill_s=ttft, transfer_bytes=0, transfer_s=0.0, ttft_s=ttft, tpot_s=tpot,
        decode_queue_s=0.0, finish_s=finish)


def test_summary_counts_slo_offload_and_egress() -> None:
    records = [_rec(i, float(i), ttft=1.0 + i, tpot=0.025 if i % 2 else 0.03, offloaded=i < 3) for i in range(10)]
    records.append(_rec(10, 10.0, None, None, False, RequestState.QUEUED))
    history = [(0.0, gbps_to_bytes_per_s(8.0)), (5.0, 0.0)]
    s = summarize(records, rate_history=history, utilisation={"pd_decode": 0.5}, tpot_slo_s=0.025, ttft_slo_s=8.0)
    assert s.num_requests == 11 and s.num_finished == 10 and s.num_unfinished == 1
    assert s.ttft_mean_s == pytest.approx(5.5) and s.ttft_p50_s == pytest.approx(5.5)
    # meets the SLO: odd i (TPOT 25 ms) with TTFT = 1 + i <= 8 -> i in {1, 3, 5, 7}; 11 measured requests
    assert s.slo_attainment == pytest.approx(4 / 11)
    span = records[9].finish_s - 0.0  # type: ignore[operator]
    assert s.goodput_rps == pytest.approx(4 / span)
    assert s.offload_fraction == pytest.approx(3 / 11)
    assert s.egress_bytes == pytest.approx(gbps_to_bytes_per_s(8.0) * 5.0)
    assert s.egress_gbps_p99 == pytest.approx(8.0)
