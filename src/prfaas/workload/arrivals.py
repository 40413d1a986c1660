"""Arrival processes: when requests arrive, deterministic given a `numpy.random.Generator`.

Every process is a frozen dataclass with
    rate_rps(time_s) -> float                       the (expected) arrival rate at `time_s`
    arrival_times(rng, duration_s) -> NDArray       sorted arrival times in [0, duration_s)
Same generator state in, same times out.

- `PoissonArrivals`: homogeneous Poisson. Drawn as N ~ Poisson(rate * duration) then N sorted uniform times
  (the same law as exponential gaps, and vectorised).
- `TraceArrivals`: a trace's own timestamps, optionally time-scaled (`time_scale` = 0.5 replays twice as
  fast).
- Modulated (non-homogeneous) Poisson by thinning (Lewis-Shedler): candidates from a homogeneous Poisson at
  the peak rate, each kept with probability rate_rps(t) / peak. Rate functions:
    `BurstSchedule`   on/off bursts: burst_rps for burst_s at the start of every period_s, base_rps otherwise
    `DiurnalRamp`     sinusoid: mean_rps + amplitude_rps * sin(2 pi (t - phase_s) / period_s)
    `LinearRamp`      piecewise-linear through (time_s, rate_rps) points, constant outside them
    `StepSchedule`    piecewise-constant: step_rates_rps[i] from start_times_s[i] until the next start
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.request import WorkloadRequest

FloatArray = NDArray[np.float64]
MAX_EXPECTED_ARRIVALS = 50_000_000  # refuse to draw more candidates than this in one call


class ArrivalProcess(Protocol):
    def rate_rps(self, time_s: float) -> float: ...

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray: ...


def _check_duration(duration_s: float) -> None:
    if not 0.0 <= duration_s < math.inf:
        raise ConfigError(f"duration_s must be finite and >= 0, got {duration_s}")


def _check_rate(name: str, rate_rps: float) -> None:
    if not 0.0 <= rate_rps < math.inf:
        raise ConfigError(f"{name} must be finite and >= 0, got {rate_rps}")


def homogeneous_poisson(rng: np.random.Generator, rate_rps: float, duration_s: float) -> FloatArray:
    """Sorted times of a rate-`rate_rps` Poisson process on [0, duration_s)."""
    _check_duration(duration_s)
    expected = rate_rps * duration_s
    if expected > MAX_EXPECTED_ARRIVALS:
        raise ConfigError(f"{expected:.3g} expected arrivals exceed the limit of {MAX_EXPECTED_ARRIVALS:.3g}")
    count = int(rng.poisson(expected))
    return np.sort(rng.uniform(0.0, duration_s, size=count))


def thinned_poisson(rng: np.random.Generator, rates_rps: Callable[[FloatArray], FloatArray],
                    peak_rps: float, duration_s: float) -> FloatArray:
    """Non-homogeneous Poisson on [0, duration_s) by thinning; `rates_rps` must stay <= `peak_rps`."""
    candidates = homogeneous_poisson(rng, peak_rps, duration_s)
    if candidates.size == 0:
        return candidates
    keep = rng.uniform(0.0, peak_rps, size=candidates.size) < rates_rps(candidates)
    return candidates[keep]


@dataclass(frozen=True, slots=True)
class PoissonArrivals:
    """Homogeneous Poisson arrivals at `mean_rps` requests per second."""

    mean_rps: float

    def __post_init__(self) -> None:
        _check_rate("Poisson mean_rps", self.mean_rps)

    def rate_rps(self, time_s: float) -> float:
        return self.mean_rps

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        return homogeneous_poisson(rng, self.mean_rps, duration_s)


@dataclass(frozen=True, slots=True)
class TraceArrivals:
    """Recorded arrival times (seconds), replayed at `time_scale` x their spacing; the rng is unused.

    `rate_rps(t)` is the arrival count in the `window_s` window centred on t, divided by the window.
    """

    times_s: tuple[float, ...]
    time_scale: float = 1.0
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.times_s:
            raise ConfigError("trace arrivals: no timestamps")
        if not 0.0 < self.time_scale < math.inf:
            raise ConfigError(f"time_scale must be finite and > 0, got {self.time_scale}")
        if not 0.0 < self.window_s < math.inf:
            raise ConfigError(f"window_s must be finite and > 0, got {self.window_s}")
        if any(not 0.0 <= t < math.inf for t in self.times_s):
            raise ConfigError("trace arrivals: timestamps must be finite and >= 0")
        object.__setattr__(self, "times_s", tuple(sorted(self.times_s)))  # normalise once; still immutable

    @classmethod
    def from_requests(cls, requests: Sequence[WorkloadRequest], time_scale: float = 1.0,
                      window_s: float = 60.0) -> TraceArrivals:
        """Arrival times of a list of requests (e.g. a trace read by `traces.load_trace`)."""
        return cls(tuple(r.arrival_s for r in requests), time_scale, window_s)

    def _scaled(self) -> FloatArray:
        return np.asarray(self.times_s, dtype=np.float64) * self.time_scale

    def rate_rps(self, time_s: float) -> float:
        times = self._scaled()
        half = self.window_s / 2.0
        lo, hi = np.searchsorted(times, [time_s - half, time_s + half], side="left")
        return float(hi - lo) / self.window_s

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        _check_duration(duration_s)
        times = self._scaled()
        return times[times < duration_s]


@dataclass(frozen=True, slots=True)
class BurstSchedule:
    """On/off bursts: `burst_rps` during [k*period_s + phase_s, k*period_s + phase_s + burst_s), else base."""

    base_rps: float
    burst_rps: float
    period_s: float
    burst_s: float
    phase_s: float = 0.0

    def __post_init__(self) -> None:
        _check_rate("base_rps", self.base_rps)
        _check_rate("burst_rps", self.burst_rps)
        if not 0.0 < self.period_s < math.inf:
            raise ConfigError(f"burst period_s must be finite and > 0, got {self.period_s}")
        if not 0.0 <= self.burst_s <= self.period_s:
            raise ConfigError(f"burst_s must be in [0, period_s={self.period_s}], got {self.burst_s}")

    def rates_rps(self, times_s: FloatArray) -> FloatArray:
        in_burst = np.mod(times_s - self.phase_s, self.period_s) < self.burst_s
        return np.where(in_burst, self.burst_rps, self.base_rps)

    def rate_rps(self, time_s: float) -> float:
        return float(self.rates_rps(np.array([time_s]))[0])

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        return thinned_poisson(rng, self.rates_rps, max(self.base_rps, self.burst_rps), duration_s)


@dataclass(frozen=True, slots=True)
class DiurnalRamp:
    """Sinusoidal rate mean_rps + amplitude_rps * sin(2 pi (t - phase_s) / period_s); amplitude <= mean."""

    mean_rps: float
    amplitude_rps: float
    period_s: float = 86_400.0
    phase_s: float = 0.0

    def __post_init__(self) -> None:
        _check_rate("mean_rps", self.mean_rps)
        if not 0.0 <= self.amplitude_rps <= self.mean_rps:
            raise ConfigError(f"amplitude_rps must be in [0, mean_rps={self.mean_rps}], "
                              f"got {self.amplitude_rps}")
        if not 0.0 < self.period_s < math.inf:
            raise ConfigError(f"diurnal period_s must be finite and > 0, got {self.period_s}")

    def rates_rps(self, times_s: FloatArray) -> FloatArray:
        angle = 2.0 * math.pi * (times_s - self.phase_s) / self.period_s
        return np.maximum(self.mean_rps + self.amplitude_rps * np.sin(angle), 0.0)

    def rate_rps(self, time_s: float) -> float:
        return float(self.rates_rps(np.array([time_s]))[0])

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        return thinned_poisson(rng, self.rates_rps, self.mean_rps + self.amplitude_rps, duration_s)


@dataclass(frozen=True, slots=True)
class LinearRamp:
    """Piecewise-linear rate through `(time_s, rate_rps)` points (times increasing), flat outside them."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("linear ramp: needs at least one (time_s, rate_rps) point")
        times = [t for t, _r in self.points]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ConfigError(f"linear ramp: point times must increase strictly, got {times}")
        for _t, r in self.points:
            _check_rate("linear ramp rate_rps", r)

    def rates_rps(self, times_s: FloatArray) -> FloatArray:
        xs = np.array([t for t, _r in self.points], dtype=np.float64)
        ys = np.array([r for _t, r in self.points], dtype=np.float64)
        return np.interp(times_s, xs, ys)

    def rate_rps(self, time_s: float) -> float:
        return float(self.rates_rps(np.array([time_s]))[0])

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        return thinned_poisson(rng, self.rates_rps, max(r for _t, r in self.points), duration_s)


@dataclass(frozen=True, slots=True)
class StepSchedule:
    """Piecewise-constant rate: `step_rates_rps[i]` on [start_times_s[i], start_times_s[i+1]); the first start
    must be 0 and the last rate holds forever."""

    start_times_s: tuple[float, ...]
    step_rates_rps: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.start_times_s or len(self.start_times_s) != len(self.step_rates_rps):
            raise ConfigError("step schedule: needs as many start times as rates, at least one")
        if self.start_times_s[0] != 0.0:
            raise ConfigError(f"step schedule: the first step must start at 0 s, got {self.start_times_s[0]}")
        starts = self.start_times_s
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ConfigError(f"step schedule: start times must increase strictly, got {list(starts)}")
        for r in self.step_rates_rps:
            _check_rate("step rate_rps", r)

    def rates_rps(self, times_s: FloatArray) -> FloatArray:
        idx = np.searchsorted(np.asarray(self.start_times_s), times_s, side="right") - 1
        return np.asarray(self.step_rates_rps, dtype=np.float64)[np.clip(idx, 0, None)]

    def rate_rps(self, time_s: float) -> float:
        return float(self.rates_rps(np.array([time_s]))[0])

    def arrival_times(self, rng: np.random.Generator, duration_s: float) -> FloatArray:
        return thinned_poisson(rng, self.rates_rps, max(self.step_rates_rps), duration_s)
