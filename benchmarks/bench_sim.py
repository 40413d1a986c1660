"""Simulator speed on the paper's case study: one simulated hour (~11k requests, ~11M decode tokens).

    python benchmarks/bench_sim.py [--repeats 3] [--rate 3.1]

Runs the PrfaaS-PD configuration (4 PrfaaS + 3 PD-P / 5 PD-D, t from the planner) and the homogeneous
baseline on the same Poisson workload, `--repeats` times each, and prints the median wall time,
events per second and simulated seconds per wall second, plus the ratio between the two policies
measured in the same run. The acceptance target is < 60 s for the PrfaaS-PD hour on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from prfaas.planner.optimize import optimize
from prfaas.planner.paper import paper_case
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import SimOptions
from prfaas.sim.run import RunResult, simulate
from prfaas.sim.scenario import POLICY_FOR_TOPOLOGY, deployment_for, poisson_workload

DURATION_S = 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3.1, help="Poisson arrivals per second")
    args = parser.parse_args()
    case = paper_case()
    rows = []
    for scenario in (case.prfaas_pd, case.homogeneous):
        best = optimize(scenario).best
        dep = deployment_for(scenario, best.n_p, best.n_d)
        cfg = PolicyConfig(threshold_tokens=int(best.threshold_tokens)) if best.threshold_tokens else PolicyConfig()
        rate = args.rate if scenario is case.prfaas_pd else min(args.rate, 0.9 * best.lambda_max)
        t0 = time.perf_counter()
        requests = poisson_workload(scenario.lengths, int(scenario.output_tokens), rate, duration_s=DURATION_S, seed=0)
        gen_s = time.perf_counter() - t0
        walls: list[float] = []
        run: RunResult | None = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run = simulate(dep, POLICY_FOR_TOPOLOGY[scenario.topology], requests, policy_config=cfg,
                           options=SimOptions())
            walls.append(time.perf_counter() - t0)
        assert run is not None
        wall = statistics.median(walls)
        sim_span = max(r.finish_s or 0.0 for r in run.records)
        rows.append((scenario.name, rate, len(requests), sum(r.output_tokens for r in requests), run.num_events,
                     gen_s, wall, min(walls), max(walls), run.num_events / wall, sim_span / wall))
    print(f"{'configuration':<12} {'rate':>5} {'requests':>8} {'decode tok':>11} {'events':>8} {'gen s':>6} "
          f"{'wall s (med)':>12} {'min':>6} {'max':>6} {'events/s':>9} {'sim s/wall s':>12}")
    for name, rate, n, tok, ev, gen, wall, lo, hi, eps, speed in rows:
        print(f"{name:<12} {rate:>5.2f} {n:>8} {tok:>11,} {ev:>8} {gen:>6.2f} {wall:>12.2f} {lo:>6.2f} {hi:>6.2f} "
              f"{eps:>9,.0f} {speed:>12,.0f}")
    print(f"wall-time ratio prfaas_pd / homogeneous (same run): {rows[0][6] / rows[1][6]:.2f}; "
          f"target: prfaas_pd hour < 60 s -> {'OK' if rows[0][6] < 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
