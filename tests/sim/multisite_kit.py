"""Helpers for the multi-site acceptance tests: run a scenario file, slice its records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prfaas.sim.config import load_config
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_deployment import MultiSiteRecord
from prfaas.sim.multisite_run import MultiSiteResult, simulate_multisite

SCENARIOS = Path(__file__).parent / "scenarios"


def run_scenario(name: str, **overrides: Any) -> MultiSiteResult:
    cfg = load_config(SCENARIOS / name)
    inp = build_multisite_inputs(cfg)
    kwargs: dict[str, Any] = {"selector": inp.selector, "selector_config": inp.selector_config,
                              "policy_config": inp.policy_config, "script": inp.script, "options": inp.options,
                              "prefill_queue": cfg.sites.prefill_queue,
                              "preempt_prefill": cfg.sites.prefill_preemption,
                              "gateway_heartbeat_s": cfg.sites.gateway_heartbeat_s}
    kwargs.update(overrides)
    return simulate_multisite(inp.deployment, cfg.policy.name, inp.requests, inp.region_of, **kwargs)


def p90_ttft(records: list[MultiSiteRecord]) -> float:
    values = [r.ttft_s for r in records if r.ttft_s is not None]
    assert values, "no TTFT in the slice"
    return float(np.percentile(values, 90))


def arriving(records: tuple[MultiSiteRecord, ...] | list[MultiSiteRecord], region: str, start_s: float,
             end_s: float) -> list[MultiSiteRecord]:
    return [r for r in records if r.region == region and start_s <= r.arrival_s < end_s]
