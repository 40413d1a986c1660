"""Discrete length distributions: the one representation the planner, simulator and reports share.

Any length distribution (the paper's truncated log-normal, a trace's empirical lengths, uncached
lengths after prefix-cache hits) becomes a sorted support of integer lengths with probabilities.
Prefix sums make the planner's per-threshold quantities O(log n):

    p(t)        = P(L > t)
    mean_above  = E[L | L > t]          (l_long)
    mean_below  = E[L | L <= t]         (l_short)
    expect_above(f_values, t) = E[f(L) | L > t] for f pre-evaluated on the support
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


class DiscreteLengthDistribution:
    """Probability mass over integer token lengths. Immutable after construction."""

    __slots__ = ("_cum_lengths", "_cum_probs", "lengths", "name", "probs")

    def __init__(self, lengths: Sequence[float] | NDArray[np.float64],
                 probs: Sequence[float] | NDArray[np.float64], name: str = "lengths") -> None:
        lengths_arr = np.asarray(lengths, dtype=np.float64)
        probs_arr = np.asarray(probs, dtype=np.float64)
        if lengths_arr.ndim != 1 or lengths_arr.shape != probs_arr.shape:
            raise ValueError("lengths and probs must be 1-D arrays of the same size")
        if lengths_arr.size == 0:
            raise ValueError(f"{name}: empty length distribution")
        if np.any(probs_arr < 0) or not np.all(np.isfinite(probs_arr)):
            raise ValueError(f"{name}: probabilities must be finite and >= 0")
        if np.any(lengths_arr < 0):
            raise ValueError(f"{name}: lengths must be >= 0")
        total = probs_arr.sum()
        if total <= 0:
            raise ValueError(f"{name}: probabilities sum to zero")
        keep = probs_arr > 0  # zero-mass points would make conditional moments 0/0
        lengths_arr, probs_arr = lengths_arr[keep], probs_arr[keep]
        order = np.argsort(lengths_arr, kind="stable")
        self.lengths: NDArray[np.float64] = lengths_arr[order]
        self.probs: NDArray[np.float64] = probs_arr[order] / total
        self.name = name
        self._cum_probs = np.concatenate([[0.0], np.cumsum(self.probs)])
        self._cum_lengths = np.concatenate([[0.0], np.cumsum(self.probs * self.lengths)])
        self.lengths.setflags(write=False)
        self.probs.setflags(write=False)

    @classmethod
    def from_samples(cls, samples: Sequence[float] | NDArray[np.float64], name: str = "empirical"
                     ) -> DiscreteLengthDistribution:
        """Empirical distribution of observed lengths (each sample weighs the same)."""
        arr = np.asarray(samples, dtype=np.float64)
        if arr.size == 0:
            raise ValueError(f"{name}: no samples")
        values, counts = np.unique(arr, return_counts=True)
        return cls(values, counts.astype(np.float64), name=name)

    # --- moments -------------------------------------------------------------------------------
    @property
    def min_tokens(self) -> float:
        return float(self.lengths[0])

    @property
    def max_tokens(self) -> float:
        return float(self.lengths[-1])

    def mean(self) -> float:
        return float(self._cum_lengths[-1])

    def _split(self, threshold_tokens: float) -> int:
        """Index of the first support point strictly above the threshold."""
        return int(np.searchsorted(self.lengths, threshold_tokens, side="right"))

    def prob_above(self, threshold_tokens: float) -> float:
        """p = P(L > t); exactly 0 at or beyond the largest length (no rounding residue)."""
        i = self._split(threshold_tokens)
        if i >= self.lengths.size:
            return 0.0
        return float(1.0 - self._cum_probs[i]) if i > 0 else 1.0

    def mean_above(self, threshold_tokens: float) -> float | None:
        """E[L | L > t]; None when no mass lies above t."""
        i = self._split(threshold_tokens)
        if i >= self.lengths.size:
            return None
        mass = 1.0 - self._cum_probs[i]
        return float((self._cum_lengths[-1] - self._cum_lengths[i]) / mass)

    def mean_at_or_below(self, threshold_tokens: float) -> float | None:
        """E[L | L <= t]; None when no mass lies at or below t."""
        i = self._split(threshold_tokens)
        if i == 0:
            return None
        return float(self._cum_lengths[i] / self._cum_probs[i])

    def expect_above(self, values: NDArray[np.float64], threshold_tokens: float) -> float | None:
        """E[f(L) | L > t] where `values[k] = f(lengths[k])`; None when no mass lies above t."""
        i = self._split(threshold_tokens)
        if i >= self.lengths.size:
            return None
        return float(np.dot(self.probs[i:], values[i:]) / self.probs[i:].sum())

    def expect_at_or_below(self, values: NDArray[np.float64], threshold_tokens: float) -> float | None:
        """E[f(L) | L <= t] where `values[k] = f(lengths[k])`; None when no mass lies at or below t."""
        i = self._split(threshold_tokens)
        if i == 0:
            return None
        return float(np.dot(self.probs[:i], values[:i]) / self.probs[:i].sum())

    def conditional_means(self, values: NDArray[np.float64]) -> ConditionalMeans:
        """Precomputed E[f(L) | L > t] / E[f(L) | L <= t] for many thresholds, O(log n) each."""
        return ConditionalMeans(self, values)

    def quantile(self, q: float) -> float:
        """Smallest support length whose CDF reaches q (0 <= q <= 1)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        idx = int(np.searchsorted(self._cum_probs[1:], q - 1e-12, side="left"))
        return float(self.lengths[min(idx, self.lengths.size - 1)])

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.int64]:
        """Draw `size` integer lengths."""
        idx = rng.choice(self.lengths.size, size=size, p=self.probs)
        return np.rint(self.lengths[idx]).astype(np.int64)


class ConditionalMeans:
    """Prefix sums of P(L = l) * f(l) so conditional expectations of f cost one binary search."""

    __slots__ = ("_cum", "_dist")

    def __init__(self, dist: DiscreteLengthDistribution, values: NDArray[np.float64]) -> None:
        if values.shape != dist.lengths.shape:
            raise ValueError("values must be evaluated on the distribution's support")
        self._dist = dist
        self._cum = np.concatenate([[0.0], np.cumsum(dist.probs * values)])

    def above(self, threshold_tokens: float) -> float | None:
        """E[f(L) | L > t]; None when no mass lies above t."""
        i = self._dist._split(threshold_tokens)
        if i >= self._dist.lengths.size:
            return None
        mass = 1.0 - self._dist._cum_probs[i]
        return float((self._cum[-1] - self._cum[i]) / mass)

    def at_or_below(self, threshold_tokens: float) -> float | None:
        """E[f(L) | L <= t]; None when no mass lies at or below t."""
        i = self._dist._split(threshold_tokens)
        if i == 0:
            return None
        return float(self._cum[i] / self._dist._cum_probs[i])
