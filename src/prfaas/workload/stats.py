"""Summary statistics of a list of requests: the numbers CATALOG.md §6 reports for the public traces.

Quantiles are nearest-rank: the q-quantile is the smallest observed value whose empirical CDF reaches q (so a
median or p99 is always a length that occurred; the same rule as `DiscreteLengthDistribution.quantile`).
Repeated block references: over every entry of every request's `block_hashes`, in arrival order, the fraction
whose hash already appeared in an earlier reference (an upper bound on prefix-cache block hits with an
unbounded cache, ignoring the prefix rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.request import WorkloadRequest


@dataclass(frozen=True, slots=True)
class WorkloadSummary:
    """Counts, lengths and prefix reuse of a workload."""

    num_requests: int
    duration_s: float  # last arrival - first arrival
    mean_rate_rps: float  # num_requests / duration_s (0 when every request arrives at once)
    mean_input_tokens: float
    median_input_tokens: float
    p99_input_tokens: float
    max_input_tokens: int
    mean_output_tokens: float
    median_output_tokens: float
    p99_output_tokens: float
    max_output_tokens: int
    num_block_refs: int
    num_unique_blocks: int
    repeated_block_ref_fraction: float  # 0 when no request carries block hashes


def nearest_rank_quantile(values: NDArray[np.int64] | NDArray[np.float64], q: float) -> float:
    """Smallest value whose empirical CDF reaches q (values need not be sorted)."""
    if values.size == 0:
        raise ValueError("no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    ordered = np.sort(values)
    rank = max(1, math.ceil(q * ordered.size - 1e-9))
    return float(ordered[rank - 1])


def summarize_requests(requests: Sequence[WorkloadRequest]) -> WorkloadSummary:
    """Summary of a non-empty list of requests (any order)."""
    if not requests:
        raise ConfigError("cannot summarise an empty workload")
    ordered = sorted(requests, key=lambda r: r.arrival_s)
    inputs = np.fromiter((r.input_tokens for r in ordered), dtype=np.int64, count=len(ordered))
    outputs = np.fromiter((r.output_tokens for r in ordered), dtype=np.int64, count=len(ordered))
    duration_s = ordered[-1].arrival_s - ordered[0].arrival_s
    num_refs, num_unique = _block_reuse(ordered)
    return WorkloadSummary(
        num_requests=len(ordered),
        duration_s=duration_s,
        mean_rate_rps=len(ordered) / duration_s if duration_s > 0 else 0.0,
        mean_input_tokens=float(inputs.mean()),
        median_input_tokens=nearest_rank_quantile(inputs, 0.5),
        p99_input_tokens=nearest_rank_quantile(inputs, 0.99),
        max_input_tokens=int(inputs.max()),
        mean_output_tokens=float(outputs.mean()),
        median_output_tokens=nearest_rank_quantile(outputs, 0.5),
        p99_output_tokens=nearest_rank_quantile(outputs, 0.99),
        max_output_tokens=int(outputs.max()),
        num_block_refs=num_refs,
        num_unique_blocks=num_unique,
        repeated_block_ref_fraction=(num_refs - num_unique) / num_refs if num_refs else 0.0,
    )


def _block_reuse(requests: Sequence[WorkloadRequest]) -> tuple[int, int]:
    """(block references, distinct blocks); a reference is a repeat iff its hash was seen before."""
    seen: set[int] = set()
    num_refs = 0
    for r in requests:
        num_refs += len(r.block_hashes)
        seen.update(r.block_hashes)
    return num_refs, len(seen)
