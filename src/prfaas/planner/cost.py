"""Equal-cost comparison (arXiv 2604.15039 §4: "~15% at equal cost"; the paper gives no prices).

Prices are inputs (per GPU, any currency or per-hour rate). The cost of a configuration is
sum(instances * gpus_per_instance * price). The homogeneous baseline is scaled to the same cost in
two ways, both reported:

- linear: Lambda_homog * cost_prfaas_pd / cost_homog (the paper's implicit comparison; our derivation, not the paper's);
- integer: the homogeneous cluster with floor(cost / instance price) instances, re-optimised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prfaas.planner.optimize import optimize
from prfaas.planner.scenario import Scenario


@dataclass(frozen=True, slots=True)
class GpuPrices:
    prfaas_gpu_price: float
    pd_gpu_price: float

    def __post_init__(self) -> None:
        if self.prfaas_gpu_price <= 0 or self.pd_gpu_price <= 0:
            raise ValueError("GPU prices must be > 0")

    @classmethod
    def from_ratio(cls, prfaas_to_pd_ratio: float) -> GpuPrices:
        return cls(prfaas_to_pd_ratio, 1.0)


@dataclass(frozen=True, slots=True)
class EqualCostComparison:
    price_ratio: float  # prfaas GPU price / PD GPU price
    cost_prfaas_pd: float
    cost_homogeneous: float
    lambda_prfaas_pd: float
    lambda_homogeneous: float
    lambda_homogeneous_linear_equal_cost: float
    gain_linear: float  # Lambda_prfaas_pd / linearly scaled homogeneous - 1
    homogeneous_equal_cost_instances: int
    lambda_homogeneous_integer_equal_cost: float
    gain_integer: float


def configuration_cost(scenario: Scenario, prices: GpuPrices) -> float:
    return (scenario.n_prfaas * scenario.gpus_per_instance_prfaas * prices.prfaas_gpu_price
            + scenario.n_pd * scenario.gpus_per_instance_pd * prices.pd_gpu_price)


def equal_cost(prfaas_pd: Scenario, homogeneous: Scenario, lambda_prfaas_pd: float, lambda_homogeneous: float,
               prices: GpuPrices) -> EqualCostComparison:
    cost_p = configuration_cost(prfaas_pd, prices)
    cost_h = configuration_cost(homogeneous, prices)
    linear = lambda_homogeneous * cost_p / cost_h
    instance_price = homogeneous.gpus_per_instance_pd * prices.pd_gpu_price
    n_equal = max(2, math.floor(cost_p / instance_price + 1e-9))
    integer = optimize(homogeneous.replace(n_pd=n_equal)).best.lambda_max
    return EqualCostComparison(
        price_ratio=prices.prfaas_gpu_price / prices.pd_gpu_price, cost_prfaas_pd=cost_p, cost_homogeneous=cost_h,
        lambda_prfaas_pd=lambda_prfaas_pd, lambda_homogeneous=lambda_homogeneous,
        lambda_homogeneous_linear_equal_cost=linear, gain_linear=lambda_prfaas_pd / linear - 1.0,
        homogeneous_equal_cost_instances=n_equal, lambda_homogeneous_integer_equal_cost=integer,
        gain_integer=lambda_prfaas_pd / integer - 1.0,
    )
