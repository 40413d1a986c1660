"""Print the prefill-preemption numbers of docs/multisite-sim.md: a quiet region's offloaded TTFT while another
region bursts, with and without preemption (per-instance fair queues, `prefill_queue = "node"`):

    PYTHONPATH=src:tests/sim python tests/sim/preemption_numbers.py [--seeds 0,1,2,3]

Scenarios: multisite_burst_one_instance(_none).toml (one PrfaaS instance, y at 0.3 req/s, x 0.3 -> 1.5 req/s over
[60, 840) s) and multisite_burst(_none).toml (16 instances, 3 -> 15 req/s over [30, 90) s) run with node queues.
"""

from __future__ import annotations

import argparse

import msgspec
import numpy as np
from multisite_kit import SCENARIOS

from prfaas.sim.config import load_config
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_run import simulate_multisite

CASES = (("one instance", "multisite_burst_one_instance", (60.0, 840.0)),
         ("16 instances", "multisite_burst", (30.0, 90.0)))


def offloaded_ttfts(name: str, seed: int, preempt: bool, window_s: tuple[float, float]) -> dict[str, list[float]]:
    cfg = msgspec.structs.replace(load_config(SCENARIOS / f"{name}.toml"), seed=seed)
    inp = build_multisite_inputs(cfg)
    result = simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of, selector=inp.selector,
                                selector_config=inp.selector_config, policy_config=inp.policy_config,
                                script=inp.script, options=inp.options, prefill_queue="node",
                                preempt_prefill=preempt)
    out: dict[str, list[float]] = {"x": [], "y": []}
    for r in result.records:
        if r.prfaas_site and r.ttft_s is not None and window_s[0] <= r.arrival_s < window_s[1]:
            out[r.region].append(r.ttft_s)
    return out


def _cell(values: list[float]) -> str:
    return f"{np.percentile(values, 90):5.2f} s (P50 {np.percentile(values, 50):4.2f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds, pooled")
    seeds = [int(s) for s in parser.parse_args().seeds.split(",") if s]
    for label, name, window_s in CASES:
        print(f"== {label} ({name}), offloaded TTFT P90 over arrivals in [{window_s[0]:g}, {window_s[1]:g}) s, "
              f"seeds {seeds} pooled")
        for burst in (False, True):
            for preempt in (False, True):
                pooled: dict[str, list[float]] = {"x": [], "y": []}
                for seed in seeds:
                    for region, values in offloaded_ttfts(name if burst else f"{name}_none", seed, preempt,
                                                          window_s).items():
                        pooled[region] += values
                print(f"  {'burst' if burst else 'no burst':8} preemption {'on ' if preempt else 'off'}  "
                      f"y {_cell(pooled['y'])}  x {_cell(pooled['x'])}")


if __name__ == "__main__":
    main()
