"""The paper's synthetic input lengths: a log-normal truncated to [min, max] (arXiv 2604.15039 §4, case-study setup).

Discretised on every integer length: P(L = l) is the continuous density's mass on [l - 0.5, l + 0.5],
renormalised over the truncation interval. Exact to the integer, so the planner's p, l_long and
l_short need no further approximation.
"""

from __future__ import annotations

import math

import numpy as np

from prfaas.workload.distribution import DiscreteLengthDistribution

PAPER_MU = 9.90
PAPER_SIGMA = 1.00
PAPER_MIN_TOKENS = 128
PAPER_MAX_TOKENS = 131072


def truncated_lognormal(mu: float = PAPER_MU, sigma: float = PAPER_SIGMA, min_tokens: int = PAPER_MIN_TOKENS,
                        max_tokens: int = PAPER_MAX_TOKENS) -> DiscreteLengthDistribution:
    """Truncated log-normal over integer lengths in [min_tokens, max_tokens]."""
    if sigma <= 0:
        raise ValueError("sigma must be > 0")
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got [{min_tokens}, {max_tokens}]")
    lengths = np.arange(min_tokens, max_tokens + 1, dtype=np.float64)
    edges = np.concatenate([lengths - 0.5, [lengths[-1] + 0.5]])
    z = (np.log(np.maximum(edges, 1e-9)) - mu) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + _erf(z))
    probs = np.diff(cdf)
    return DiscreteLengthDistribution(lengths, probs, name=f"lognormal(mu={mu}, sigma={sigma})")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)
