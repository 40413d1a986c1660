"""Print the numbers of docs/multisite-sim.md (the acceptance scenarios, optionally over several seeds):

    PYTHONPATH=src:tests/sim python tests/sim/multisite_numbers.py [--seeds 3,4,5]
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import msgspec
from multisite_kit import SCENARIOS, arriving, p90_ttft
from test_multisite_scenarios import DROP_S, RESTORE_S, _y_offloaded, switch_time_s

from prfaas.policy.sites import SiteSelectConfig
from prfaas.sim.config import load_config
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_run import MultiSiteResult, simulate_multisite


def run(name: str, seed: int | None, **overrides: Any) -> MultiSiteResult:
    cfg = load_config(SCENARIOS / name)
    if seed is not None:
        cfg = msgspec.structs.replace(cfg, seed=seed)
    inp = build_multisite_inputs(cfg)
    kwargs: dict[str, Any] = {"selector": inp.selector, "selector_config": inp.selector_config,
                              "policy_config": inp.policy_config, "script": inp.script, "options": inp.options}
    kwargs.update(overrides)
    return simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: each file's)")
    args = parser.parse_args()
    seeds: list[int | None] = [int(s) for s in args.seeds.split(",") if s] or [None]
    for seed in seeds:
        print(f"== seed {seed if seed is not None else 'of the file'}")
        r = run("multisite_link_degraded.toml", seed)
        us_off = [x for x in r.records if x.region == "us" and x.prfaas_site]
        before = Counter(x.prfaas_site for x in us_off if x.arrival_s < DROP_S)
        during = Counter(x.prfaas_site for x in us_off if DROP_S <= x.arrival_s < RESTORE_S)
        two = run("multisite_link_degraded_two_site.toml", seed)
        print(f"1 degraded: us offloads before {dict(before)}, during {dict(during)}; switch to >=80% B after "
              f"{switch_time_s(us_off, 'B', DROP_S):.1f} s; us TTFT P90 in [40, 90) "
              f"{p90_ttft(arriving(r.records, 'us', DROP_S, RESTORE_S)):.2f} s vs two-site "
              f"{p90_ttft(arriving(two.records, 'pd', DROP_S, RESTORE_S)):.2f} s")
        k = run("multisite_site_killed.toml", seed)
        states = Counter(x.state.value for x in k.records)
        n = len(build_multisite_inputs(load_config(SCENARIOS / "multisite_site_killed.toml")).requests) \
            if seed is None else len(k.records)
        print(f"2 site killed: {len(k.records)} records of {n} arrivals, states {dict(states)}, retried "
              f"{sum(x.attempts > 1 for x in k.records)}, failover choices "
              f"{sum(x.site_reason == 'failover' for x in k.records)}")
        b, c = run("multisite_burst.toml", seed), run("multisite_burst_none.toml", seed)
        u = run("multisite_burst.toml", seed, fair_order=False, selector_config=SiteSelectConfig(target_queue_s=1e9))
        o = run("multisite_burst.toml", seed, fair_order=False)
        yb, yc, yu, yo = (_y_offloaded(x.records) for x in (b, c, u, o))
        base = p90_ttft(yc)
        print(f"3 burst: y offloaded TTFT P90 in [30, 90): no burst {base:.2f} s ({len(yc)} offloads); burst "
              f"{p90_ttft(yb):.2f} s ({p90_ttft(yb) / base - 1:+.1%}, {len(yb)}); FIFO + admission "
              f"{p90_ttft(yo):.2f} s ({p90_ttft(yo) / base - 1:+.1%}, {len(yo)}); neither {p90_ttft(yu):.2f} s "
              f"({p90_ttft(yu) / base - 1:+.1%}, {len(yu)})")


if __name__ == "__main__":
    main()
