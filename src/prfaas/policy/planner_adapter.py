"""The real planner behind the rebalancer's injected `reoptimise(n_p, n_d, lengths) -> threshold`.

    reoptimise = planner_reoptimiser(scenario)      # a PrfaaS-PD `prfaas.planner.scenario.Scenario`
    rebalancer = PdRebalancer(config, reoptimise=reoptimise, threshold_tokens=t0)

Each call runs `prfaas.planner.optimize.optimize_threshold` for the given counts, on the live
uncached-length distribution when one is given (the scenario's own distribution otherwise), and
returns the best t rounded to whole tokens (never below 0).
"""

from __future__ import annotations

from prfaas.planner.model import LengthMode
from prfaas.planner.optimize import optimize_threshold
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.rebalancer import Reoptimiser
from prfaas.workload.distribution import DiscreteLengthDistribution


def planner_reoptimiser(scenario: Scenario, mode: LengthMode = LengthMode.REPRESENTATIVE) -> Reoptimiser:
    """A `Reoptimiser` backed by the planner's threshold search for `scenario`."""
    if scenario.topology is not Topology.PRFAAS_PD:
        topology = scenario.topology.value
        raise ValueError(f"scenario {scenario.name!r} has no offload threshold (topology {topology})")

    def reoptimise(n_p: int, n_d: int, lengths: DiscreteLengthDistribution | None) -> int:
        live = scenario if lengths is None else scenario.replace(lengths=lengths)
        point = optimize_threshold(live, n_p, n_d, mode)
        if point.threshold_tokens is None:
            raise ValueError(f"planner returned no threshold for n_p={n_p}, n_d={n_d}")
        return max(0, round(point.threshold_tokens))

    return reoptimise
