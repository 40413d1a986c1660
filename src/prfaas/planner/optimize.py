"""Throughput-optimal configuration: grid search over the threshold t and the PD split (arXiv 2604.15039 §3.4.2).

For each split N_p + N_d = N_pd and each candidate t, evaluate Eqs. 3-6 and keep the argmax of
Lambda_max. Lambda only changes where p = P(L > t) changes, i.e. at support points of the length
distribution, so the search is exact over a candidate set: a coarse grid of support points
(quantiles plus an even spread), then every support point between the coarse neighbours of the best
one. Ties are broken toward the smaller N_p and then the smaller t (documented, deterministic).

Per candidate t the stage quantities that do not depend on the split are computed once; the split
loop is then arithmetic only, which keeps the paper scenario well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from prfaas.planner.model import LengthMode, PlanPoint, ThroughputModel
from prfaas.planner.scenario import Scenario, Topology

COARSE_CANDIDATES = 768


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The optimum plus the two curves of the paper's Fig. 5."""

    scenario_name: str
    topology: Topology
    mode: LengthMode
    best: PlanPoint
    split_curve: tuple[PlanPoint, ...]  # Lambda vs N_p at the optimal t (Fig. 5a)
    threshold_curve: tuple[PlanPoint, ...]  # Lambda vs t at the optimal split (Fig. 5b)
    num_evaluations: int


@dataclass(frozen=True, slots=True)
class _ThresholdTerms:
    """Split-independent parts of Eq. 6 at one t."""

    threshold_tokens: float
    prfaas_cap: float  # Theta_prfaas / p (inf when p == 0)
    pd_p_per_instance: float  # 1 / (T_short * (1 - p)) (inf when p == 1)


def threshold_candidates(scenario: Scenario, num_coarse: int = COARSE_CANDIDATES) -> np.ndarray:
    """Coarse candidate thresholds: support points at even quantiles and an even spread, plus both ends."""
    lengths = scenario.lengths.lengths
    if lengths.size <= num_coarse:
        picks = lengths
    else:
        by_rank = lengths[np.linspace(0, lengths.size - 1, num_coarse // 2).astype(np.int64)]
        cum = np.cumsum(scenario.lengths.probs)
        qs = np.linspace(0.0, 1.0, num_coarse // 2)
        by_mass = lengths[np.minimum(np.searchsorted(cum, qs), lengths.size - 1)]
        picks = np.concatenate([by_rank, by_mass])
    below_min = np.array([lengths[0] - 1.0])
    return np.unique(np.concatenate([below_min, picks]))


class Optimizer:
    """Grid search for one scenario. `progress` is called with (done, total) during long sweeps."""

    def __init__(self, scenario: Scenario, mode: LengthMode = LengthMode.REPRESENTATIVE,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.scenario = scenario
        self.model = ThroughputModel(scenario, mode)
        self.mode = mode
        self.progress = progress
        self.num_evaluations = 0

    # --- split-independent terms ----------------------------------------------------------------
    def _terms(self, t: float) -> _ThresholdTerms:
        point = self.model.evaluate(t, n_p=1, n_d=1)
        self.num_evaluations += 1
        p = point.offload_fraction
        prfaas_cap = point.theta_prfaas / p if point.theta_prfaas is not None and p > 0 else float("inf")
        if point.t_prefill_short_s is not None and p < 1.0:
            per_instance = 1.0 / (point.t_prefill_short_s * (1.0 - p))
        else:
            per_instance = float("inf")
        return _ThresholdTerms(t, prfaas_cap, per_instance)

    def _lambda(self, terms: _ThresholdTerms, n_p: int, n_d: int) -> float:
        return min(terms.prfaas_cap, n_p * terms.pd_p_per_instance, self.model.theta_pd_d(n_d))

    def _splits(self) -> list[tuple[int, int]]:
        n = self.scenario.n_pd
        return [(n_p, n - n_p) for n_p in range(1, n)]

    # --- searches ---------------------------------------------------------------------------------
    def best_threshold(self, n_p: int, n_d: int) -> PlanPoint:
        """Optimal t for a fixed split."""
        best_t = self._search([(n_p, n_d)])[0]
        return self.model.evaluate(best_t, n_p, n_d)

    def _search(self, splits: list[tuple[int, int]]) -> tuple[float, int, int]:
        """(t, n_p, n_d) maximising Lambda; ties -> smaller n_p, then smaller t."""
        coarse = threshold_candidates(self.scenario)
        best: tuple[tuple[float, float, float], int] | None = None  # (key, coarse index)
        for i, t in enumerate(coarse):
            key = self._best_key(float(t), splits)
            if best is None or key > best[0]:
                best = (key, i)
            if self.progress is not None and (i % 64 == 0 or i == coarse.size - 1):
                self.progress(i + 1, coarse.size)
        assert best is not None
        # refine over every support point between the coarse neighbours of the best candidate
        i_best = best[1]
        lo = coarse[max(i_best - 1, 0)]
        hi = coarse[min(i_best + 1, coarse.size - 1)]
        lengths = self.scenario.lengths.lengths
        for t in lengths[(lengths > lo) & (lengths < hi)]:
            key = self._best_key(float(t), splits)
            if key > best[0]:
                best = (key, i_best)
        (_, neg_n_p, neg_t) = best[0]
        n_p = int(-neg_n_p)
        return -neg_t, n_p, self.scenario.n_pd - n_p if len(splits) > 1 else splits[0][1]

    def _best_key(self, t: float, splits: list[tuple[int, int]]) -> tuple[float, float, float]:
        terms = self._terms(t)
        return max((self._lambda(terms, n_p, n_d), -float(n_p), -t) for n_p, n_d in splits)

    def optimize(self) -> PlanResult:
        """Best t and split for the scenario's topology."""
        s = self.scenario
        if s.topology is Topology.PRFAAS_PD:
            t_best, n_p, n_d = self._search(self._splits())
            best = self.model.evaluate(t_best, n_p, n_d)
            split_curve = tuple(self.model.evaluate(t_best, a, b) for a, b in self._splits())
            threshold_curve = self._threshold_curve(n_p, n_d)
        elif s.topology is Topology.HOMOGENEOUS:
            points = [self.model.evaluate(None, a, b) for a, b in self._splits()]
            best = max(points, key=lambda pt: (pt.lambda_max, -pt.n_p))
            split_curve, threshold_curve = tuple(points), ()
        else:
            best = self.model.evaluate(None, 0, s.n_pd)
            split_curve, threshold_curve = (best,), ()
        return PlanResult(s.name, s.topology, self.mode, best, split_curve, threshold_curve, self.num_evaluations)

    def _threshold_curve(self, n_p: int, n_d: int, num_points: int = 121) -> tuple[PlanPoint, ...]:
        dist = self.scenario.lengths
        hi = min(dist.max_tokens, max(dist.quantile(0.95), 1.0))
        ts = np.unique(np.linspace(dist.min_tokens, hi, num_points).round())
        return tuple(self.model.evaluate(float(t), n_p, n_d) for t in ts)


def optimize(scenario: Scenario, mode: LengthMode = LengthMode.REPRESENTATIVE,
             progress: Callable[[int, int], None] | None = None) -> PlanResult:
    """Best threshold and PD split (PrfaaS-PD), best split (homogeneous), or the fixed naive plan."""
    return Optimizer(scenario, mode, progress).optimize()


def optimize_threshold(scenario: Scenario, n_p: int, n_d: int,
                       mode: LengthMode = LengthMode.REPRESENTATIVE) -> PlanPoint:
    """Best threshold for fixed counts (the long-term rebalancer's re-optimisation)."""
    if n_p + n_d != scenario.n_pd:
        scenario = scenario.replace(n_pd=n_p + n_d)
    return Optimizer(scenario, mode).best_threshold(n_p, n_d)
