"""Summary statistics on hand-made workloads (the Mooncake numbers are checked in test_trace_readers)."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.request import WorkloadRequest
from prfaas.workload.stats import nearest_rank_quantile, summarize_requests


def test_nearest_rank_quantiles() -> None:
    values = np.array([5, 1, 4, 2, 3])
    assert nearest_rank_quantile(values, 0.5) == 3
    assert nearest_rank_quantile(values, 0.2) == 1
    assert nearest_rank_quantile(values, 0.21) == 2
    assert nearest_rank_quantile(values, 0.0) == 1
    assert nearest_rank_quantile(values, 1.0) == 5
    assert nearest_rank_quantile(np.arange(1, 101), 0.99) == 99
    with pytest.raises(ValueError):
        nearest_rank_quantile(np.array([]), 0.5)


def test_summary_of_hand_made_requests() -> None:
    reqs = [
        WorkloadRequest(0, 10.0, 1000, 10, (1, 2)),
        WorkloadRequest(1, 12.0, 600, 30, (1, 3)),  # repeats block 1
        WorkloadRequest(2, 16.0, 1500, 20, (1, 2, 4)),  # repeats 1 and 2
        WorkloadRequest(3, 14.0, 100, 40),
    ]
    s = summarize_requests(reqs)
    assert s.num_requests == 4
    assert s.duration_s == 6.0
    assert s.mean_rate_rps == pytest.approx(4 / 6)
    assert s.mean_input_tokens == 800.0
    assert s.median_input_tokens == 600
    assert s.max_input_tokens == 1500 and s.max_output_tokens == 40
    assert s.mean_output_tokens == 25.0 and s.median_output_tokens == 20
    assert (s.num_block_refs, s.num_unique_blocks) == (7, 4)
    assert s.repeated_block_ref_fraction == pytest.approx(3 / 7)


def test_summary_edge_cases() -> None:
    one = summarize_requests([WorkloadRequest(0, 5.0, 10, 0)])
    assert one.duration_s == 0.0 and one.mean_rate_rps == 0.0 and one.repeated_block_ref_fraction == 0.0
    with pytest.raises(ConfigError, match="empty"):
        summarize_requests([])


def test_request_invariants() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        WorkloadRequest(0, 0.0, 0, 1)
    with pytest.raises(ValueError, match="output_tokens"):
        WorkloadRequest(0, 0.0, 5, -1)
    with pytest.raises(ValueError, match="arrival_s"):
        WorkloadRequest(0, float("nan"), 5, 1)
    with pytest.raises(ValueError, match="block hashes"):
        WorkloadRequest(0, 0.0, 513, 1, (1, 2, 3))
    assert WorkloadRequest(0, 0.0, 513, 7, (1, 2)).total_tokens == 520
