"""Maximum sustainable throughput: the largest Poisson rate the deployment keeps up with under the SLO.

Definition. Run Poisson arrivals at rate lambda on [0, D) (fixed seed: common random numbers across
rates) and stop the clock at D + tail_s. The rate is *sustainable* when all three hold:

1. No backlog: at least (1 - max_backlog_fraction) of the requests that arrived finished by D + tail_s
   (an overloaded system leaves (lambda - mu) * D requests behind; a stable one only its last few).
2. Bounded TTFT: the P90 TTFT of arrivals in the last quarter [3D/4, D) is at most
   `ttft_growth_factor` x that of the second quarter [D/4, D/2) plus `ttft_growth_slack_s` (a queue that
   grows over the run fails this; a stable queue fluctuates around a level).
3. Decode SLO: the P90 per-token time *inside the decode batch* (`RequestRecord.batch_tpot_s`, without
   the wait for a slot) is <= the per-token SLO. Slot waits are queueing: a decode stage that cannot
   keep up leaves requests unfinished and fails criterion 1 (the planner's Eq. 5 likewise counts
   BS_max slots at the SLO step time).

Unfinished requests count with TTFT = (D + tail_s) - arrival (a lower bound), never dropped.

Search. Bisection on lambda in [lo, hi] until (hi - lo) <= rel_tol * hi; `hi` is doubled first until it
fails (or `max_rps`). The answer is the last sustainable rate `lo`. Each probe is one full run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from prfaas.sim.run import RunResult


@dataclass(frozen=True, slots=True)
class SustainCriteria:
    duration_s: float = 3600.0
    tail_s: float = 60.0
    max_backlog_fraction: float = 0.02
    ttft_growth_factor: float = 2.0
    ttft_growth_slack_s: float = 10.0
    tpot_slo_s: float = 0.025

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.tail_s < 0:
            raise ValueError("duration_s must be > 0 and tail_s >= 0")
        if not 0 <= self.max_backlog_fraction < 1:
            raise ValueError("max_backlog_fraction must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class Probe:
    rate_rps: float
    is_sustainable: bool
    finished_fraction: float
    ttft_p90_q2_s: float | None
    ttft_p90_q4_s: float | None
    tpot_p90_s: float | None


@dataclass(frozen=True, slots=True)
class SearchResult:
    throughput_rps: float
    probes: tuple[Probe, ...]


def _p90(values: list[float]) -> float | None:
    return float(np.percentile(values, 90)) if values else None


def judge(result: RunResult, rate_rps: float, criteria: SustainCriteria) -> Probe:
    """Apply the three criteria of the module docstring to one run."""
    d = criteria.duration_s
    recs = [r for r in result.records if r.arrival_s < d]
    if not recs:
        return Probe(rate_rps, True, 1.0, None, None, None)
    finished = sum(r.is_ok for r in recs) / len(recs)

    def ttfts(lo: float, hi: float) -> list[float]:
        end = d + criteria.tail_s
        return [r.ttft_s if r.ttft_s is not None else end - r.arrival_s for r in recs if lo <= r.arrival_s < hi]

    q2 = _p90(ttfts(d / 4, d / 2))
    q4 = _p90(ttfts(3 * d / 4, d))
    tpot = _p90([t for t in (r.batch_tpot_s for r in recs) if t is not None])
    ok = finished >= 1 - criteria.max_backlog_fraction
    if q2 is not None and q4 is not None:
        ok = ok and q4 <= criteria.ttft_growth_factor * q2 + criteria.ttft_growth_slack_s
    if tpot is not None:
        ok = ok and tpot <= criteria.tpot_slo_s * (1 + 1e-6)
    return Probe(rate_rps, ok, finished, q2, q4, tpot)


def max_sustainable_rate(run_at: Callable[[float], RunResult], criteria: SustainCriteria, *,
                         lo_rps: float = 0.0, hi_rps: float = 1.0, rel_tol: float = 0.01, max_rps: float = 1e6,
                         on_probe: Callable[[Probe], None] | None = None) -> SearchResult:
    """Bisection for the largest sustainable rate (see the module docstring)."""
    if hi_rps <= lo_rps or hi_rps <= 0:
        raise ValueError("need 0 < hi_rps and lo_rps < hi_rps")
    probes: list[Probe] = []

    def probe(rate: float) -> bool:
        p = judge(run_at(rate), rate, criteria)
        probes.append(p)
        if on_probe is not None:
            on_probe(p)
        return p.is_sustainable

    while probe(hi_rps):
        lo_rps = hi_rps
        if hi_rps >= max_rps:
            return SearchResult(hi_rps, tuple(probes))
        hi_rps = min(hi_rps * 2, max_rps)
    while hi_rps - lo_rps > rel_tol * hi_rps:
        mid = 0.5 * (lo_rps + hi_rps)
        if probe(mid):
            lo_rps = mid
        else:
            hi_rps = mid
    return SearchResult(lo_rps, tuple(probes))
