"""The simulator's speed work changes no output: small runs compared with a frozen reference, field by field.

`fixtures/speed_reference.json` holds, for each case below, every `RequestRecord`, every `Sample`, the role
switches, the egress link's rate and capacity history and the reverse link's bytes, as produced by the
simulator BEFORE the speed changes of issue 14 (main at the commit named in the fixture; regenerated once when
the perf fits moved from LAPACK to `perf.lsq`, whose results do not depend on the machine). The cases cover
the paths the fast code touches: the three routers that read the view differently (`prfaas`,
`prfaas-bandwidth-aware` with its tick, `prfaas-cache-aware` on the Mooncake trace's prefix chains with
cross-cluster cache transfers), a 10x link drop, PrfaaS and PD-D node failures with recovery, the
long-term rebalancer (role switches while draining), and a fleet-sized deployment (1,250 instances, the
benchmark's) where the rank order of many equal nodes decides ties.

Regenerate (only from code whose outputs are the reference, e.g. a checkout of main before the change):
    PYTHONPATH=src python tests/sim/test_speed_equivalence.py --write
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prfaas.planner.paper import paper_case
from prfaas.policy.config import PolicyConfig
from prfaas.sim.build import build_inputs
from prfaas.sim.config import EventSection, SimConfig, load_config
from prfaas.sim.deployment import SimOptions
from prfaas.sim.request import SimRequest
from prfaas.sim.run import RunResult, simulate
from prfaas.sim.scenario import deployment_for, poisson_workload
from prfaas.sim.simulator import Simulator

SCENARIOS = Path(__file__).parent / "scenarios"
FIXTURE = Path(__file__).parent / "fixtures" / "speed_reference.json"
FLOAT_REL_TOL = 1e-12  # "identical" up to the last bits a different libm could change


def _from_config(name: str, router: str | None = None, *, workload: dict[str, Any] | None = None,
                 policy: dict[str, Any] | None = None, **changes: Any) -> Callable[[], RunResult]:
    """The scenario file `name` with `changes` (and section `workload`/`policy` changes), run with `router`."""

    def run() -> RunResult:
        cfg = load_config(SCENARIOS / name)
        sections = {"workload": workload or {}, "policy": policy or {}}
        replaced = {key: msgspec.structs.replace(getattr(cfg, key), **updates) for key, updates in sections.items()}
        cfg = msgspec.structs.replace(cfg, **replaced, **changes)
        return _run_config(cfg, router)

    return run


def _run_config(cfg: SimConfig, policy: str | None) -> RunResult:
    inputs = build_inputs(cfg)
    return simulate(inputs.deployment, policy or cfg.policy.name, inputs.requests,
                    policy_config=inputs.policy_config, script=inputs.script, options=inputs.options,
                    rebalance=cfg.policy.rebalance, reoptimise=inputs.reoptimise)


LINK_DROP = [EventSection(time_s=60.0, kind="link_capacity", capacity_gbps=4.0),
             EventSection(time_s=120.0, kind="link_capacity", capacity_gbps=40.0)]
NODE_FAILURES = [EventSection(time_s=60.0, kind="node_fail", instance="prfaas-0"),
                 EventSection(time_s=90.0, kind="node_fail", instance="pd-7"),
                 EventSection(time_s=130.0, kind="node_recover", instance="prfaas-0"),
                 EventSection(time_s=150.0, kind="node_recover", instance="pd-7")]


def _fleet() -> RunResult:
    """The benchmark's 10,000-GPU deployment (bench_sim_scale.py) for 2 simulated seconds, fixed rate and t."""
    base = paper_case().prfaas_pd
    scenario = base.replace(n_prfaas=417, n_pd=833, egress_gbps=100.0 * 417 / 4)
    dep = deployment_for(scenario, 312, 521)
    requests = poisson_workload(scenario.lengths, int(scenario.output_tokens), 300.0, duration_s=2.0, seed=0)
    return simulate(dep, "prfaas", requests, policy_config=PolicyConfig(threshold_tokens=19_400),
                    options=SimOptions(horizon_s=2.0))


CASES: dict[str, Callable[[], RunResult]] = {
    "prfaas_link_drop": _from_config("link_drop.toml", "prfaas", duration_s=180.0, events=LINK_DROP),
    "bandwidth_aware_link_drop": _from_config("link_drop.toml", "prfaas-bandwidth-aware", duration_s=180.0,
                                              events=LINK_DROP),
    "prfaas_node_failures": _from_config("node_failure.toml", duration_s=180.0, events=NODE_FAILURES),
    "rebalance_mix_shift": _from_config("mix_shift.toml", duration_s=300.0,
                                        workload={"shift_start_s": 60.0, "shift_end_s": 180.0}),
    "cache_aware_trace": _from_config("mooncake_cache.toml", duration_s=3600.0, workload={"limit": 300}),
    "cache_aware_trace_abundant": _from_config(
        "mooncake_cache.toml", duration_s=3600.0, workload={"limit": 300},
        policy={"threshold_tokens": 890,
                "cache": {"regime": "abundant", "min_transfer_benefit": 0.0, "pull_max_pd_util": 1.0}}),
    "fleet_prfaas": _fleet,
}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rows(items: Any) -> list[list[Any]]:
    return [[_plain(getattr(item, f.name)) for f in dataclasses.fields(item)] for item in items]


def outputs(run: RunResult) -> dict[str, Any]:
    """Everything a run leaves behind (the summary derives from these)."""
    return {
        "records": _rows(run.records),
        "samples": _rows(run.samples),
        "role_switches": _rows(run.role_switches),
        "egress_rate_history": _plain(list(run.egress_rate_history)),
        "egress_capacity_history": _plain(list(run.egress_capacity_history)),
        "reverse_bytes": run.reverse_bytes,
        "num_finished": run.summary.num_finished,
    }


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_REL_TOL)
    return bool(a == b)


def _first_difference(name: str, got: Any, want: Any, path: str = "") -> str | None:
    if isinstance(want, dict):
        for key in want:
            diff = _first_difference(name, got.get(key), want[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{name}{path}: length {len(got) if isinstance(got, list) else got!r} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            diff = _first_difference(name, g, w, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if _same(got, want) else f"{name}{path}: got {got!r}, reference {want!r}"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_match_the_reference(name: str, reference: dict[str, Any]) -> None:
    want = reference["cases"][name]
    got = json.loads(json.dumps(outputs(CASES[name]())))  # the same JSON round trip as the fixture
    assert want["records"], "a case without records would compare nothing"
    diff = _first_difference(name, got, want)
    assert diff is None, diff


def test_the_cases_exercise_the_paths_they_claim(reference: dict[str, Any]) -> None:
    cases = reference["cases"]
    route = 7  # RequestRecord.route
    attempts = 11
    routes = {name: {r[route] for r in case["records"]} for name, case in cases.items()}
    assert "link_congested_local" in routes["bandwidth_aware_link_drop"]
    assert any(r[attempts] > 1 for r in cases["prfaas_node_failures"]["records"])
    assert cases["rebalance_mix_shift"]["role_switches"]
    for name in ("cache_aware_trace", "cache_aware_trace_abundant"):
        assert {"cache_hit_local", "cache_hit_remote"} <= routes[name]
    assert len({r[9] for r in cases["fleet_prfaas"]["records"]}) > 100  # many prefill instances used


def test_the_abundant_trace_case_moves_cached_prefixes_across_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    original = Simulator._start_cache_transfer

    def counting(sim: Simulator, req: SimRequest) -> None:
        started.append(req.request_id)
        original(sim, req)

    monkeypatch.setattr(Simulator, "_start_cache_transfer", counting)
    CASES["cache_aware_trace_abundant"]()
    assert len(started) >= 5


def test_first_difference_reports_a_changed_field() -> None:
    want = {"records": [[1, 0.5, "a"]]}
    assert _first_difference("x", {"records": [[1, 0.5, "a"]]}, want) is None
    assert _first_difference("x", {"records": [[1, 0.5 + 1e-9, "a"]]}, want) == (
        "x.records[0][1]: got 0.500000001, reference 0.5")
    assert _first_difference("x", {"records": [[1, 0.5]]}, want) == "x.records[0]: length 2 != 3"
    assert _first_difference("x", {"records": [[1.0, 0.5, "a"]]}, want) is not None  # int vs float


def _write() -> None:
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent).stdout.strip()
    cases = {name: outputs(run()) for name, run in CASES.items()}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({"generated_from_commit": commit, "cases": cases}, separators=(",", ":")) + "\n")
    for name, case in cases.items():
        print(f"{name}: {len(case['records'])} records, {len(case['samples'])} samples, "
              f"{len(case['role_switches'])} role switches")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    _write()
