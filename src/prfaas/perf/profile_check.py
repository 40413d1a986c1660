"""Is a measured profile worth trusting? Robust statistics of repeated timings and checks of the fit.

`prfaas profile` times every point `repeats` times (after a warm-up) and keeps the median. A profile is
suspect when

1. the runs of a point disagree: spread = (max - min) / median above `max_spread` (and more than
   `min_spread_s` in absolute terms, so sub-millisecond jitter on tiny prompts does not count);
2. prefill time is not monotone non-decreasing in length: a longer prompt measured faster than a shorter
   one by more than `monotone_tolerance` (relative) can only be contention or a broken measurement;
3. the least-squares `a + b*l + c*l^2` (a, b, c >= 0) that the planner uses misses a point by more than
   `max_residual` of its measured time (the shape the planner assumes does not hold).

`check_prefill` / `check_profile` return every problem as a one-line message; the caller decides to warn
or to refuse (`prfaas profile` refuses unless `--force`). Pure: numbers in, messages out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prfaas.perf.measured import MeasuredProfile, fit_quadratic_nonneg


@dataclass(frozen=True, slots=True)
class CheckLimits:
    max_spread: float = 0.5
    min_spread_s: float = 0.002
    monotone_tolerance: float = 0.05
    max_residual: float = 0.3

    def __post_init__(self) -> None:
        if self.max_spread <= 0 or self.max_residual <= 0 or not 0 <= self.monotone_tolerance < 1:
            raise ValueError("max_spread and max_residual must be > 0, monotone_tolerance in [0, 1)")


@dataclass(frozen=True, slots=True)
class RobustTime:
    """Median and spread of repeated timings of one point."""

    median_s: float
    spread: float  # (max - min) / median
    range_s: float  # max - min
    samples_s: tuple[float, ...]


def robust_time(samples_s: Sequence[float]) -> RobustTime:
    if not samples_s or min(samples_s) <= 0:
        raise ValueError("need at least one positive timing")
    arr = np.asarray(samples_s, dtype=np.float64)
    median = float(np.median(arr))
    rng = float(arr.max() - arr.min())
    return RobustTime(median, rng / median, rng, tuple(float(x) for x in arr))


@dataclass(frozen=True, slots=True)
class ProfileCheck:
    problems: tuple[str, ...]
    residuals: tuple[float, ...]  # (fit - measured) / measured per prefill point

    @property
    def ok(self) -> bool:
        return not self.problems


def check_prefill(lengths: Sequence[int], medians_s: Sequence[float], spreads: Sequence[float | None],
                  limits: CheckLimits | None = None) -> ProfileCheck:
    """Spread, monotonicity and fit checks of prefill points (lengths strictly increasing)."""
    lim = limits or CheckLimits()
    if not (len(lengths) == len(medians_s) == len(spreads)) or not lengths:
        raise ValueError("lengths, medians and spreads must be non-empty and of equal size")
    problems: list[str] = []
    for n, spread, median in zip(lengths, spreads, medians_s, strict=True):
        if spread is not None and spread > lim.max_spread and spread * median > lim.min_spread_s:
            problems.append(f"prefill of {n} tokens: runs spread {spread:.0%} of the median "
                            f"{median * 1e3:.1f} ms (limit {lim.max_spread:.0%})")
    for i in range(1, len(lengths)):
        n0, t0, n1, t1 = lengths[i - 1], medians_s[i - 1], lengths[i], medians_s[i]
        if t1 < t0 * (1.0 - lim.monotone_tolerance):
            problems.append(f"prefill is not monotone in length: {n1} tokens took {t1 * 1e3:.1f} ms, "
                            f"{n0} tokens {t0 * 1e3:.1f} ms")
    residuals: tuple[float, ...] = ()
    if len(lengths) >= 3:
        a, b, c = fit_quadratic_nonneg(lengths, medians_s)
        x = np.asarray(lengths, dtype=np.float64)
        y = np.asarray(medians_s, dtype=np.float64)
        rel = (a + b * x + c * x * x - y) / y
        residuals = tuple(float(r) for r in rel)
        worst = int(np.argmax(np.abs(rel)))
        if abs(rel[worst]) > lim.max_residual:
            problems.append(f"the fit a + b*l + c*l^2 misses {lengths[worst]} tokens by {rel[worst]:+.0%} "
                            f"(limit {lim.max_residual:.0%})")
    return ProfileCheck(tuple(problems), residuals)


def check_profile(profile: MeasuredProfile, limits: CheckLimits | None = None) -> ProfileCheck:
    """`check_prefill` on the profile's prefill points plus the spread of its decode points."""
    lim = limits or CheckLimits()
    pre = check_prefill([p.num_tokens for p in profile.prefill], [p.t_prefill_s for p in profile.prefill],
                        [p.spread for p in profile.prefill], lim)
    decode_problems = []
    for d in profile.decode:
        if d.spread is not None and d.spread > lim.max_spread and d.spread * d.t_step_s > lim.min_spread_s:
            decode_problems.append(f"decode batch {d.batch_size} at {d.context_tokens} tokens: steps spread "
                                   f"{d.spread:.0%} of the median {d.t_step_s * 1e3:.1f} ms "
                                   f"(limit {lim.max_spread:.0%})")
    return ProfileCheck(pre.problems + tuple(decode_problems), pre.residuals)
