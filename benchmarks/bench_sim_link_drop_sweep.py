"""Scenario (a) swept: plain `prfaas` against `prfaas-bandwidth-aware` (default loop) over seeds, loads, drops.

    python benchmarks/bench_sim_link_drop_sweep.py                  # 27 points, about 15 s on 2 cores
    python benchmarks/bench_sim_link_drop_sweep.py --hot-updates 1  # the same without the raise dwell

Each point replays tests/sim/scenarios/link_drop.toml with one seed (1-3), Poisson rate (1.2/1.5/1.8 req/s)
and drop depth (40 -> 2/4/8 Gbps for 60 s at t = 300 s), and prints the TTFT P90 of arrivals in the drop
window [300, 420) s and the SLO attainment (TTFT <= 10 s) of each policy, then the worst ratios.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import msgspec
import numpy as np

from prfaas.sim.build import build_inputs
from prfaas.sim.config import SimConfig, load_config
from prfaas.sim.request import RequestRecord
from prfaas.sim.run import simulate

SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "sim" / "scenarios" / "link_drop.toml"
POLICIES = ("prfaas", "prfaas-bandwidth-aware")


def _p90_ttft(records: tuple[RequestRecord, ...], lo_s: float, hi_s: float) -> float:
    return float(np.percentile([r.ttft_s for r in records if lo_s <= r.arrival_s < hi_s and r.ttft_s is not None],
                               90))


def _point(base: SimConfig, seed: int, rate_rps: float, drop_gbps: float, bandwidth: dict[str, object]
           ) -> dict[str, tuple[float, float]]:
    events = [msgspec.structs.replace(base.events[0], capacity_gbps=drop_gbps), *base.events[1:]]
    arrivals = msgspec.structs.replace(base.workload.arrivals, rate_rps=rate_rps)
    cfg = msgspec.structs.replace(base, seed=seed, events=events,
                                  workload=msgspec.structs.replace(base.workload, arrivals=arrivals),
                                  policy=msgspec.structs.replace(base.policy, bandwidth=bandwidth))
    inputs = build_inputs(cfg)
    out = {}
    for policy in POLICIES:
        run = simulate(inputs.deployment, policy, inputs.requests, policy_config=inputs.policy_config,
                       script=inputs.script, options=inputs.options, rebalance=cfg.policy.rebalance,
                       reoptimise=inputs.reoptimise)
        out[policy] = (_p90_ttft(run.records, 300.0, 420.0), run.summary.slo_attainment)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.2, 1.5, 1.8])
    parser.add_argument("--drops", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--hot-updates", type=int, default=None,
                        help="override the loop's hot_updates (default: the policy default, 3; 1 = no dwell)")
    args = parser.parse_args()
    bandwidth: dict[str, object] = {} if args.hot_updates is None else {"hot_updates": args.hot_updates}
    base = load_config(SCENARIO)
    print(f"{'seed':>4} {'req/s':>5} {'Gbps':>4} | {'plain P90':>9} {'att':>5} | {'aware P90':>9} {'att':>5} | ratio")
    worst: dict[float, float] = {}
    attainment_ok = True
    for seed, rate, drop in itertools.product(args.seeds, args.rates, args.drops):
        res = _point(base, seed, rate, drop, bandwidth)
        (pp, pa), (ap, aa) = res["prfaas"], res["prfaas-bandwidth-aware"]
        worst[drop] = max(worst.get(drop, 0.0), ap / pp)
        attainment_ok &= aa >= pa
        row = f"{seed:>4} {rate:>5} {drop:>4g} | {pp:>8.2f}s {pa:.3f} | {ap:>8.2f}s {aa:.3f} | {ap / pp:.3f}"
        print(row, flush=True)
    for drop, ratio in sorted(worst.items()):
        print(f"drop to {drop:g} Gbps: worst aware/plain TTFT P90 = {ratio:.3f}")
    print(f"aware SLO attainment >= plain at every point: {attainment_ok}")


if __name__ == "__main__":
    main()
