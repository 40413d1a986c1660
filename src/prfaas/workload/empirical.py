"""Empirical length distributions of a list of requests (a trace or a generated workload).

Each request weighs the same; equal lengths are merged into one support point. `merged_distribution` builds
a distribution from a length mapping (scaled or uncached lengths) the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.request import WorkloadRequest


def lengths_from_trace(requests: Sequence[WorkloadRequest], name: str = "trace input"
                       ) -> DiscreteLengthDistribution:
    """Distribution of prompt lengths (`input_tokens`)."""
    if not requests:
        raise ConfigError(f"{name}: no requests to build a length distribution from")
    return DiscreteLengthDistribution.from_samples([r.input_tokens for r in requests], name=name)


def output_lengths_from_trace(requests: Sequence[WorkloadRequest], name: str = "trace output"
                              ) -> DiscreteLengthDistribution:
    """Distribution of generated lengths (`output_tokens`)."""
    if not requests:
        raise ConfigError(f"{name}: no requests to build a length distribution from")
    return DiscreteLengthDistribution.from_samples([r.output_tokens for r in requests], name=name)


def merged_distribution(lengths: NDArray[np.int64] | NDArray[np.float64], probs: NDArray[np.float64],
                        name: str) -> DiscreteLengthDistribution:
    """Distribution over `lengths` with equal lengths merged (their probabilities summed)."""
    values, inverse = np.unique(np.asarray(lengths), return_inverse=True)
    mass = np.bincount(inverse.ravel(), weights=probs, minlength=values.size)
    return DiscreteLengthDistribution(values.astype(np.float64), mass.astype(np.float64), name=name)
