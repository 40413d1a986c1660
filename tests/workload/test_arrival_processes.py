"""Arrival processes: Poisson counts and gaps, thinning follows the rate function, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.arrivals import (
    ArrivalProcess,
    BurstSchedule,
    DiurnalRamp,
    LinearRamp,
    PoissonArrivals,
    StepSchedule,
    TraceArrivals,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _within_sigmas(count: int, expected: float, sigmas: float = 4.0) -> bool:
    return abs(count - expected) <= sigmas * math.sqrt(expected)


def test_poisson_count_and_gaps() -> None:
    times = PoissonArrivals(5.0).arrival_times(_rng(1), 2_000.0)
    assert _within_sigmas(times.size, 10_000)
    assert np.all(np.diff(times) >= 0)
    assert times.min() >= 0.0 and times.max() < 2_000.0
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.2, rel=0.04)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential gaps: CV = 1
    assert PoissonArrivals(5.0).rate_rps(123.0) == 5.0


PROCESSES: list[ArrivalProcess] = [
    PoissonArrivals(3.0),
    BurstSchedule(base_rps=1.0, burst_rps=8.0, period_s=60.0, burst_s=10.0),
    DiurnalRamp(mean_rps=4.0, amplitude_rps=3.0, period_s=300.0),
    LinearRamp(((0.0, 0.5), (200.0, 6.0))),
    StepSchedule((0.0, 100.0), (1.0, 5.0)),
]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_same_seed_same_times_other_seed_other_times(process: ArrivalProcess) -> None:
    a = process.arrival_times(_rng(42), 300.0)
    b = process.arrival_times(_rng(42), 300.0)
    c = process.arrival_times(_rng(43), 300.0)
    assert a.size > 100
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)
    assert np.all(np.diff(a) >= 0) and a.min() >= 0 and a.max() < 300.0


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_thinning_counts_follow_the_rate_integral(process: ArrivalProcess) -> None:
    duration_s, bin_s = 600.0, 50.0
    times = process.arrival_times(_rng(5), duration_s)
    grid = np.linspace(0.0, duration_s, 6_001)
    rates = np.array([process.rate_rps(float(t)) for t in grid])
    for lo in np.arange(0.0, duration_s, bin_s):
        inside = (grid >= lo) & (grid <= lo + bin_s)
        expected = float(np.trapezoid(rates[inside], grid[inside]))
        count = int(((times >= lo) & (times < lo + bin_s)).sum())
        assert _within_sigmas(count, expected, sigmas=4.5), (lo, count, expected)


def test_bursts_only_in_burst_windows_when_base_is_zero() -> None:
    bursts = BurstSchedule(base_rps=0.0, burst_rps=20.0, period_s=30.0, burst_s=5.0, phase_s=2.0)
    times = bursts.arrival_times(_rng(3), 300.0)
    assert times.size > 500
    assert np.all(np.mod(times - 2.0, 30.0) < 5.0)
    assert bursts.rate_rps(3.0) == 20.0 and bursts.rate_rps(8.0) == 0.0 and bursts.rate_rps(1.0) == 0.0


def test_rate_functions_closed_form() -> None:
    diurnal = DiurnalRamp(mean_rps=4.0, amplitude_rps=3.0, period_s=400.0, phase_s=0.0)
    assert diurnal.rate_rps(100.0) == pytest.approx(7.0)
    assert diurnal.rate_rps(300.0) == pytest.approx(1.0)
    assert diurnal.rate_rps(400.0) == pytest.approx(4.0)
    ramp = LinearRamp(((10.0, 1.0), (20.0, 3.0), (40.0, 0.0)))
    ramp_rates = [ramp.rate_rps(t) for t in (0.0, 15.0, 20.0, 30.0, 99.0)]
    assert ramp_rates == pytest.approx([1.0, 2.0, 3.0, 1.5, 0.0])
    steps = StepSchedule((0.0, 10.0, 20.0), (2.0, 0.0, 7.0))
    assert [steps.rate_rps(t) for t in (0.0, 9.99, 10.0, 25.0, 1e6)] == [2.0, 2.0, 0.0, 7.0, 7.0]


def test_step_with_zero_rate_has_no_arrivals_there() -> None:
    steps = StepSchedule((0.0, 50.0, 100.0), (4.0, 0.0, 4.0))
    times = steps.arrival_times(_rng(9), 150.0)
    assert not np.any((times >= 50.0) & (times < 100.0))
    assert _within_sigmas(int((times < 50.0).sum()), 200)


def test_trace_arrivals_scale_and_cut() -> None:
    trace = TraceArrivals((4.0, 0.0, 2.0, 10.0), time_scale=0.5, window_s=4.0)
    assert trace.times_s == (0.0, 2.0, 4.0, 10.0)
    np.testing.assert_array_equal(trace.arrival_times(_rng(), 100.0), [0.0, 1.0, 2.0, 5.0])
    np.testing.assert_array_equal(trace.arrival_times(_rng(), 2.0), [0.0, 1.0])
    assert trace.rate_rps(1.0) == pytest.approx(3 / 4.0)  # 0.0, 1.0 and 2.0 lie in [-1, 3)
    assert trace.rate_rps(50.0) == 0.0


def test_trace_arrivals_from_mooncake(mooncake_requests: list) -> None:
    trace = TraceArrivals.from_requests(mooncake_requests, time_scale=0.25)
    times = trace.arrival_times(_rng(), 1e9)
    assert times.size == 12_031
    assert times[-1] == pytest.approx(mooncake_requests[-1].arrival_s / 4)


@pytest.mark.parametrize(
    "build",
    [
        lambda: PoissonArrivals(-1.0),
        lambda: PoissonArrivals(math.inf),
        lambda: BurstSchedule(1.0, 2.0, period_s=10.0, burst_s=11.0),
        lambda: BurstSchedule(1.0, 2.0, period_s=0.0, burst_s=0.0),
        lambda: DiurnalRamp(mean_rps=1.0, amplitude_rps=2.0),
        lambda: LinearRamp(()),
        lambda: LinearRamp(((5.0, 1.0), (5.0, 2.0))),
        lambda: StepSchedule((1.0,), (2.0,)),
        lambda: StepSchedule((0.0, 5.0), (1.0,)),
        lambda: StepSchedule((0.0, 5.0, 3.0), (1.0, 1.0, 1.0)),
        lambda: TraceArrivals(()),
        lambda: TraceArrivals((1.0,), time_scale=0.0),
    ],
)
def test_invalid_parameters_are_config_errors(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_bad_duration_and_runaway_counts() -> None:
    with pytest.raises(ConfigError, match="duration_s"):
        PoissonArrivals(1.0).arrival_times(_rng(), -5.0)
    with pytest.raises(ConfigError, match="expected arrivals"):
        PoissonArrivals(1e6).arrival_times(_rng(), 1e6)
