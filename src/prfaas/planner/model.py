"""The paper's throughput model, Eqs. 1-6 (arXiv 2604.15039 §3.4.1), evaluated at one decision point.

    (1) Phi_kv(l)  = S_kv(l) / T_prefill(l)
    (3) Theta_prfaas = min(N_prfaas / T_prefill(l_long), B_out / S_kv(l_long))
    (4) Theta_pd_p   = N_p / T_prefill(l_short)
    (5) Theta_pd_d   = N_d * BS_max / (T_decode * L_out)
    (6) Lambda_max   = min(Theta_prfaas / p, Theta_pd_p / (1 - p), Theta_pd_d)

`LengthMode.REPRESENTATIVE` uses the paper's representative lengths l_long = E[L | L > t] and
l_short = E[L | L <= t]. `LengthMode.EXACT` replaces them with exact expectations over the
distribution: a pool of N servers with random service time T(L) serves N / E[T(L)] requests/s, and
the link carries B_out / E[S_kv(L)] requests/s, so T(l_long) becomes E[T(L) | L > t], and so on.
A stage that receives no traffic (p = 0 or p = 1) drops out of Eq. 6.

Prefix hits (`Scenario.prefix_hits`): L is the uncached length (what routing compares with t). A
request of L uncached tokens after C cached ones takes T(L | C) = `t_prefill_s(L, C)` (the uncached
tokens computed with the cached ones as context) and ships S_kv(L + C), the whole prompt's state,
unless the decode side holds the prefix, when only S_kv(L + C) - S_kv(C) + S_kv(0) crosses (the fixed
linear state always does). REPRESENTATIVE evaluates both at (l_long, c_long = E[C | L > t]);
EXACT takes E[T(L | C) | L > t] and E[S_shipped | L > t] over the joint distribution. Without hits
C = 0 and both reduce to the formulas above.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from prfaas.core.units import BITS_PER_BYTE, GBPS_BITS_PER_S
from prfaas.perf.arch import phi_kv_gbps
from prfaas.perf.base import PrefillCostModel
from prfaas.planner.scenario import Scenario, Topology
from prfaas.workload.distribution import ConditionalMeans
from prfaas.workload.prefix import PrefixHits

__all__ = ["LengthMode", "PlanPoint", "Stage", "ThroughputModel", "evaluate_on_support", "evaluate_with_hits",
           "phi_kv_gbps", "shipped_bytes"]


class LengthMode(enum.Enum):
    REPRESENTATIVE = "representative"
    EXACT = "exact"


class Stage(enum.Enum):
    PRFAAS_PREFILL = "prfaas_prefill"
    PRFAAS_EGRESS = "prfaas_egress"
    PD_PREFILL = "pd_prefill"
    PD_DECODE = "pd_decode"


@dataclass(frozen=True, slots=True)
class PlanPoint:
    """Eqs. 3-6 at one (t, N_p, N_d). Throughputs in req/s; None where a stage is absent."""

    threshold_tokens: float | None
    n_prfaas: int
    n_p: int
    n_d: int
    offload_fraction: float
    l_long_tokens: float | None
    l_short_tokens: float | None
    theta_prfaas: float | None
    theta_prfaas_compute: float | None
    theta_prfaas_egress: float | None
    theta_pd_p: float | None
    theta_pd_d: float
    lambda_max: float
    binding_stage: Stage
    stage_limits: tuple[tuple[Stage, float], ...]  # each stage's cap on Lambda (req/s), binding first
    egress_gbps: float  # mean PrfaaS egress at Lambda_max (Eq. 2 at the operating point)
    t_prefill_long_s: float | None
    t_prefill_short_s: float | None
    s_kv_long_bytes: float | None

    def headroom(self, stage: Stage) -> float | None:
        """How far a stage's cap is above Lambda_max, as a fraction (0 for the binding stage)."""
        for s, cap in self.stage_limits:
            if s is stage:
                return cap / self.lambda_max - 1.0 if self.lambda_max > 0 else None
        return None


class _Moments:
    """Conditional moments of L, T(L), S(L) above/below t for one scenario, cached per cost model."""

    def __init__(self, scenario: Scenario, mode: LengthMode) -> None:
        self.scenario = scenario
        self.mode = mode
        self._tables: dict[int, tuple[ConditionalMeans, ConditionalMeans]] = {}
        self._cached_means: ConditionalMeans | None = None

    def _table(self, model: PrefillCostModel) -> tuple[ConditionalMeans, ConditionalMeans]:
        key = id(model)
        if key not in self._tables:
            dist = self.scenario.lengths
            hits = self.scenario.prefix_hits
            if hits is None:
                times, sizes = evaluate_on_support(model, dist.lengths)
            else:
                pair_times, pair_sizes = evaluate_with_hits(model, hits)
                times, sizes = hits.per_support(pair_times, dist), hits.per_support(pair_sizes, dist)
            self._tables[key] = (dist.conditional_means(times), dist.conditional_means(sizes))
        return self._tables[key]

    def _cached(self) -> ConditionalMeans:
        """E[C | L > t] / E[C | L <= t] (cached tokens behind the uncached lengths)."""
        if self._cached_means is None:
            hits = self.scenario.prefix_hits
            assert hits is not None
            dist = self.scenario.lengths
            self._cached_means = dist.conditional_means(hits.per_support(hits.cached_tokens.astype(np.float64), dist))
        return self._cached_means

    def _shipped_bytes(self, model: PrefillCostModel, uncached: float, cached: float) -> float:
        hits = self.scenario.prefix_hits
        if hits is None or cached <= 0:
            return model.s_kv_bytes(uncached)
        return shipped_bytes(model, uncached, cached, decode_holds_prefix=hits.decode_holds_prefix)

    def above(self, model: PrefillCostModel, t: float) -> tuple[float, float, float] | None:
        """(l_long, T, S_kv) for requests with L > t; None if none."""
        dist = self.scenario.lengths
        l_long = dist.mean_above(t)
        if l_long is None:
            return None
        if self.mode is LengthMode.REPRESENTATIVE:
            c_long = self._cached().above(t) if self.scenario.prefix_hits is not None else 0.0
            assert c_long is not None
            return l_long, model.t_prefill_s(l_long, c_long), self._shipped_bytes(model, l_long, c_long)
        times, sizes = self._table(model)
        t_mean = times.above(t)
        s_mean = sizes.above(t)
        assert t_mean is not None and s_mean is not None
        return l_long, t_mean, s_mean

    def below(self, model: PrefillCostModel, t: float) -> tuple[float, float] | None:
        """(l_short, T) for requests with L <= t; None if none."""
        dist = self.scenario.lengths
        l_short = dist.mean_at_or_below(t)
        if l_short is None:
            return None
        if self.mode is LengthMode.REPRESENTATIVE:
            c_short = self._cached().at_or_below(t) if self.scenario.prefix_hits is not None else 0.0
            assert c_short is not None
            return l_short, model.t_prefill_s(l_short, c_short)
        times, _ = self._table(model)
        t_mean = times.at_or_below(t)
        assert t_mean is not None
        return l_short, t_mean


def evaluate_on_support(model: PrefillCostModel, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T_prefill, S_kv) at every length, vectorised when the model offers `*_array_*` methods."""
    t_array = getattr(model, "t_prefill_array_s", None)
    s_array = getattr(model, "s_kv_array_bytes", None)
    if t_array is not None:
        times = np.asarray(t_array(lengths), dtype=np.float64)
    else:
        times = np.fromiter((model.t_prefill_s(float(x)) for x in lengths), np.float64, lengths.size)
    if s_array is not None:
        sizes = np.asarray(s_array(lengths), dtype=np.float64)
    else:
        sizes = np.fromiter((model.s_kv_bytes(float(x)) for x in lengths), np.float64, lengths.size)
    return times, sizes


def shipped_bytes(model: PrefillCostModel, uncached: float, cached: float, *, decode_holds_prefix: bool) -> float:
    """Bytes an offloaded request ships: the whole prompt's state, or only the increment when the
    decode side holds the cached prefix (the fixed linear state S_kv(0) always crosses)."""
    total = model.s_kv_bytes(uncached + cached)
    if not decode_holds_prefix or cached <= 0:
        return total
    return max(total - (model.s_kv_bytes(cached) - model.s_kv_bytes(0.0)), 0.0)


def evaluate_with_hits(model: PrefillCostModel, hits: PrefixHits) -> tuple[np.ndarray, np.ndarray]:
    """(T(u | c), shipped bytes) for every (uncached, cached) pair of `hits`."""
    uncached = hits.uncached_tokens.astype(np.float64)
    cached = hits.cached_tokens.astype(np.float64)
    totals = uncached + cached
    _, s_total = evaluate_on_support(model, totals)
    times = np.empty(uncached.size, dtype=np.float64)
    fresh = cached <= 0
    if fresh.any():
        times[fresh], _ = evaluate_on_support(model, uncached[fresh])
    for i in np.flatnonzero(~fresh):
        times[i] = model.t_prefill_s(float(uncached[i]), float(cached[i]))
    if not hits.decode_holds_prefix:
        return times, s_total
    _, s_cached = evaluate_on_support(model, cached)
    s_zero = model.s_kv_bytes(0.0)
    return times, np.maximum(s_total - np.where(fresh, 0.0, s_cached - s_zero), 0.0)


class ThroughputModel:
    """Evaluates Eqs. 3-6 for a scenario; caches distribution moments across calls."""

    def __init__(self, scenario: Scenario, mode: LengthMode = LengthMode.REPRESENTATIVE) -> None:
        self.scenario = scenario
        self.mode = mode
        self._moments = _Moments(scenario, mode)

    def theta_pd_d(self, n_d: int) -> float:
        s = self.scenario
        return n_d * s.bs_max / (s.t_decode_s * s.output_tokens)

    def evaluate(self, threshold_tokens: float | None, n_p: int, n_d: int) -> PlanPoint:
        """Eqs. 3-6 at threshold t (None: the topology's fixed routing) and split (n_p, n_d)."""
        s = self.scenario
        if n_d < 1 or n_p < 0:
            raise ValueError("need n_d >= 1 and n_p >= 0")
        t = self._effective_threshold(threshold_tokens)
        p = s.lengths.prob_above(t) if s.n_prfaas > 0 else 0.0
        limits: list[tuple[Stage, float]] = []
        theta_prfaas = theta_c = theta_e = t_long = s_long = l_long = None
        if p > 0.0:
            assert s.prfaas_prefill is not None
            above = self._moments.above(s.prfaas_prefill, t)
            assert above is not None
            l_long, t_long, s_long = above
            theta_c = s.n_prfaas / t_long
            theta_e = _egress_rate_rps(s.egress_gbps, s_long)
            theta_prfaas = min(theta_c, theta_e)
            limits.append((Stage.PRFAAS_PREFILL, theta_c / p))
            if theta_e != float("inf"):
                limits.append((Stage.PRFAAS_EGRESS, theta_e / p))
        theta_pd_p = t_short = l_short = None
        if p < 1.0:
            if s.pd_prefill is None or n_p < 1:
                raise ValueError("requests stay local but there is no PD prefill capacity")
            below = self._moments.below(s.pd_prefill, t)
            assert below is not None
            l_short, t_short = below
            theta_pd_p = n_p / t_short
            limits.append((Stage.PD_PREFILL, theta_pd_p / (1.0 - p)))
        theta_d = self.theta_pd_d(n_d)
        limits.append((Stage.PD_DECODE, theta_d))
        limits.sort(key=lambda item: item[1])
        lambda_max = limits[0][1]
        egress = lambda_max * p * (s_long or 0.0) * BITS_PER_BYTE / GBPS_BITS_PER_S
        return PlanPoint(
            threshold_tokens=t if s.topology is Topology.PRFAAS_PD else None, n_prfaas=s.n_prfaas, n_p=n_p, n_d=n_d,
            offload_fraction=p, l_long_tokens=l_long, l_short_tokens=l_short, theta_prfaas=theta_prfaas,
            theta_prfaas_compute=theta_c, theta_prfaas_egress=theta_e, theta_pd_p=theta_pd_p, theta_pd_d=theta_d,
            lambda_max=lambda_max, binding_stage=limits[0][0], stage_limits=tuple(limits), egress_gbps=egress,
            t_prefill_long_s=t_long, t_prefill_short_s=t_short, s_kv_long_bytes=s_long,
        )

    def _effective_threshold(self, threshold_tokens: float | None) -> float:
        s = self.scenario
        if s.topology is Topology.HOMOGENEOUS:
            return float("inf")
        if s.topology is Topology.NAIVE:
            return -1.0  # every request goes to PrfaaS
        if threshold_tokens is None:
            raise ValueError("the PrfaaS-PD topology needs a threshold")
        return threshold_tokens


def _egress_rate_rps(egress_gbps: float | None, s_kv_bytes: float) -> float:
    if egress_gbps is None or s_kv_bytes <= 0:
        return float("inf")
    return egress_gbps * GBPS_BITS_PER_S / (s_kv_bytes * BITS_PER_BYTE)
