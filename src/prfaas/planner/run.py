"""One planner run over the three configurations: optimise each, compare, and produce the JSON
contract (see `planner.report`). Used by `prfaas plan`, the benchmarks and the simulator's checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prfaas.core.errors import ConfigError
from prfaas.planner.cost import EqualCostComparison, GpuPrices, equal_cost
from prfaas.planner.model import LengthMode, PlanPoint, ThroughputModel
from prfaas.planner.optimize import PlanResult, optimize
from prfaas.planner.paper import PaperCase
from prfaas.planner.report import point_to_json


@dataclass(frozen=True, slots=True)
class PlanRun:
    case: PaperCase
    mode: LengthMode
    prfaas_pd: PlanResult
    homogeneous: PlanResult
    naive: PlanResult
    equal_cost: EqualCostComparison
    alternate: PlanResult | None  # the other length mode, to show how much the answer changes
    fixed_threshold: PlanPoint | None  # when the operator asked for a given threshold

    @property
    def speedup_vs_homogeneous(self) -> float:
        return self.headline.lambda_max / self.homogeneous.best.lambda_max

    @property
    def speedup_vs_naive(self) -> float:
        return self.headline.lambda_max / self.naive.best.lambda_max

    @property
    def headline(self) -> PlanPoint:
        return self.fixed_threshold or self.prfaas_pd.best

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "prfaas_pd": point_to_json(self.headline),
            "homogeneous": point_to_json(self.homogeneous.best),
            "naive": point_to_json(self.naive.best),
            "speedup_vs_homogeneous": round(self.speedup_vs_homogeneous, 4),
            "speedup_vs_naive": round(self.speedup_vs_naive, 4),
            "length_mode": self.mode.value,
            "equal_cost": {
                "price_ratio_prfaas_to_pd_gpu": self.equal_cost.price_ratio,
                "gain_linear": round(self.equal_cost.gain_linear, 4),
                "homogeneous_instances_at_equal_cost": self.equal_cost.homogeneous_equal_cost_instances,
                "gain_integer": round(self.equal_cost.gain_integer, 4),
            },
            "assumptions": [a.to_json() for a in self.case.assumptions],
        }
        if self.fixed_threshold is not None:
            out["optimal_prfaas_pd"] = point_to_json(self.prfaas_pd.best)
        if self.alternate is not None:
            alt = self.alternate.best
            out["alternate_length_mode"] = {
                "length_mode": self.alternate.mode.value,
                "prfaas_pd": point_to_json(alt),
                "threshold_change": _rel(alt.threshold_tokens, self.prfaas_pd.best.threshold_tokens),
                "lambda_max_change": _rel(alt.lambda_max, self.prfaas_pd.best.lambda_max),
            }
        return out


def _rel(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return round(new / old - 1.0, 4)


def run_plan(case: PaperCase, mode: LengthMode = LengthMode.REPRESENTATIVE, *, compare_modes: bool = False,
             threshold_tokens: float | None = None, prices: GpuPrices | None = None,
             progress: Callable[[int, int], None] | None = None) -> PlanRun:
    """Optimise the three configurations and compare them."""
    prfaas_pd = optimize(case.prfaas_pd, mode, progress)
    homogeneous = optimize(case.homogeneous, mode)
    naive = optimize(case.naive, mode)
    fixed = None
    if threshold_tokens is not None:
        dist = case.prfaas_pd.lengths
        if not dist.min_tokens <= threshold_tokens <= dist.max_tokens:
            raise ConfigError(f"threshold {threshold_tokens:g} is outside the length range "
                              f"[{dist.min_tokens:g}, {dist.max_tokens:g}]")
        model = ThroughputModel(case.prfaas_pd, mode)
        splits = [model.evaluate(threshold_tokens, n_p, case.prfaas_pd.n_pd - n_p) for n_p in
                  range(1, case.prfaas_pd.n_pd)]
        fixed = max(splits, key=lambda pt: (pt.lambda_max, -pt.n_p))
    alternate = None
    if compare_modes:
        other = LengthMode.EXACT if mode is LengthMode.REPRESENTATIVE else LengthMode.REPRESENTATIVE
        alternate = optimize(case.prfaas_pd, other)
    price = prices or GpuPrices.from_ratio(2.0)
    headline = fixed or prfaas_pd.best
    comparison = equal_cost(case.prfaas_pd, case.homogeneous, headline.lambda_max, homogeneous.best.lambda_max, price)
    return PlanRun(case, mode, prfaas_pd, homogeneous, naive, comparison, alternate, fixed)
