"""Time-varying length mixes: the traffic mix shifting from mostly short to mostly long prompts.

`MixShift` draws each request's prompt length from `long` with probability `long_fraction(t)` and from
`short` otherwise, where `long_fraction` moves linearly from `start_long_fraction` (until `shift_start_s`)
to `end_long_fraction` (from `shift_end_s` on). `short_long_split` cuts one distribution at a threshold
into its two conditional parts, so `short_to_long_shift(truncated_lognormal(), 19_400, ...)` turns the
paper's workload into a workload whose share of offloadable (long) requests grows over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.distribution import DiscreteLengthDistribution


class LengthSampler(Protocol):
    """Draws prompt lengths that may depend on arrival time."""

    def sample_at(self, rng: np.random.Generator, times_s: NDArray[np.float64]) -> NDArray[np.int64]: ...


def short_long_split(dist: DiscreteLengthDistribution, threshold_tokens: float
                     ) -> tuple[DiscreteLengthDistribution, DiscreteLengthDistribution]:
    """(L | L <= t, L | L > t); both parts must carry mass."""
    below = dist.lengths <= threshold_tokens
    if not below.any() or below.all():
        raise ConfigError(f"threshold {threshold_tokens} tokens leaves one side of {dist.name} empty")
    t = f"{threshold_tokens:g}"
    short = DiscreteLengthDistribution(dist.lengths[below], dist.probs[below], name=f"{dist.name} <= {t}")
    long = DiscreteLengthDistribution(dist.lengths[~below], dist.probs[~below], name=f"{dist.name} > {t}")
    return short, long


@dataclass(frozen=True, slots=True)
class MixShift:
    """Mixture of `short` and `long` whose long weight ramps linearly over [shift_start_s, shift_end_s]."""

    short: DiscreteLengthDistribution
    long: DiscreteLengthDistribution
    start_long_fraction: float
    end_long_fraction: float
    shift_start_s: float
    shift_end_s: float

    def __post_init__(self) -> None:
        for name in ("start_long_fraction", "end_long_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.shift_start_s <= self.shift_end_s:
            raise ConfigError("need 0 <= shift_start_s <= shift_end_s, "
                              f"got [{self.shift_start_s}, {self.shift_end_s}]")

    def long_fractions(self, times_s: NDArray[np.float64]) -> NDArray[np.float64]:
        xs = [self.shift_start_s, self.shift_end_s]
        if self.shift_end_s == self.shift_start_s:  # an instant switch
            return np.where(times_s < self.shift_start_s, self.start_long_fraction, self.end_long_fraction)
        return np.interp(times_s, xs, [self.start_long_fraction, self.end_long_fraction])

    def long_fraction(self, time_s: float) -> float:
        return float(self.long_fractions(np.array([time_s]))[0])

    def mean_tokens(self, time_s: float) -> float:
        """Expected prompt length of a request arriving at `time_s`."""
        w = self.long_fraction(time_s)
        return (1.0 - w) * self.short.mean() + w * self.long.mean()

    def sample_at(self, rng: np.random.Generator, times_s: NDArray[np.float64]) -> NDArray[np.int64]:
        is_long = rng.uniform(size=times_s.size) < self.long_fractions(times_s)
        short = self.short.sample(rng, times_s.size)
        long = self.long.sample(rng, times_s.size)
        return np.where(is_long, long, short)


def short_to_long_shift(dist: DiscreteLengthDistribution, threshold_tokens: float, shift_start_s: float,
                        shift_end_s: float, start_long_fraction: float = 0.1,
                        end_long_fraction: float = 0.9) -> MixShift:
    """Mostly short -> mostly long: `dist` split at the threshold, long share ramping from start to end."""
    short, long = short_long_split(dist, threshold_tokens)
    return MixShift(short, long, start_long_fraction, end_long_fraction, shift_start_s, shift_end_s)
