"""CI-sized live runs on loopback: `bench compare` over the four policies, and every process fault.

One tiny deployment (gateway + PrfaaS + PD-P + PD-D processes) serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_helpers import OPTS, THRESHOLD_TOKENS, assert_nothing_lost, fault_load, small_spec

from prfaas.bench.chaos import Fault, format_reports, run_fault, run_overload
from prfaas.bench.compare import POLICIES, compare_policies, format_compare
from prfaas.bench.records import RequestStatus, read_records
from prfaas.bench.regime import tiny_config
from prfaas.bench.run import Deployment, bench_deployment
from prfaas.bench.workload import build_requests

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("bench-live")
    with bench_deployment(tiny_config(), root / "run", None, ready_timeout_s=150) as dep:
        yield dep


def test_compare_runs_every_policy_beside_the_simulator(deployment: Deployment, tmp_path: Path) -> None:
    spec = small_spec()
    requests = build_requests(spec)  # lengths and arrivals (each policy gets its own token ids)
    result = compare_policies(deployment, spec, OPTS, tmp_path, policies=POLICIES, progress=False)
    assert [r.policy for r in result.rows] == list(POLICIES)
    for row in result.rows:
        s = row.live
        assert (s.sent, s.completed, s.failed, s.lost) == (len(requests), len(requests), 0, 0), row.policy
        records = read_records(tmp_path / row.policy / "records.jsonl")
        routes = {r.index: r.route for r in records}
        long_ones = {r.index for r in requests if len(r.prompt_tokens) > THRESHOLD_TOKENS}
        assert long_ones and len(long_ones) < len(requests), "the workload must straddle the threshold"
        if row.policy == "homogeneous":
            assert "prfaas" not in routes.values()
        elif row.policy == "naive-offload":
            assert set(routes.values()) == {"prfaas"}
        elif row.policy == "prfaas":  # offload exactly the prompts above the threshold
            assert {i for i, route in routes.items() if route == "prfaas"} == long_ones
        else:  # bandwidth-aware may raise its threshold on link/queue signals, never offload a short prompt
            offloaded = {i for i, route in routes.items() if route == "prfaas"}
            assert offloaded and offloaded <= long_ones, (offloaded, long_ones)
        assert row.sim is not None and row.sim["ttft_mean_s"] is not None, result.notes
        assert row.ttft_error is not None and abs(row.ttft_error) < 20  # a ratio, not a guarantee of accuracy
        assert (tmp_path / row.policy / "run.png").exists()
    assert result.planner is not None and (result.planner["throughput_rps"] or 0) > 0
    for name in ("compare.json", "compare.txt", "compare.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "simulator vs live" in format_compare(result)
    deployment.set_policy("prfaas", THRESHOLD_TOKENS)


@pytest.mark.parametrize("fault", [Fault.PRFAAS_RESTART, Fault.DECODE_KILL, Fault.GATEWAY_RESTART, Fault.CORRUPT])
def test_fault_loses_nothing_and_routing_recovers(deployment: Deployment, tmp_path: Path, fault: Fault) -> None:
    deployment.set_policy("prfaas", THRESHOLD_TOKENS)
    during, probes = fault_load()
    report = run_fault(deployment, fault, during, probes, OPTS, tmp_path, fault_at_s=0.5, recover_after_s=1.0)
    assert_nothing_lost(report)
    assert report.ok, format_reports([report])
    records = read_records(tmp_path / fault.value / "during" / "records.jsonl")
    assert all(r.error for r in records if r.status is RequestStatus.FAILED)  # every failure says why
    if fault is Fault.CORRUPT:
        assert report.corrupted_sends is not None and report.corrupted_sends > 0
        assert report.outputs_match is True and report.failed == 0
        assert report.routes_during == {"prfaas": report.completed}
    if fault is Fault.PRFAAS_RESTART:
        assert report.failed == 0  # PrfaaS loss is recomputed locally, never surfaced
    if fault is Fault.GATEWAY_RESTART:
        assert report.failed > 0 and set(report.failed_by_kind) == {"connection"}
        assert "unknown" not in report.routes_during  # the request log survived the restart


def test_overload_storm_hangs_nothing_and_loses_nothing(deployment: Deployment, tmp_path: Path) -> None:
    """The chaos suite's overload fault at CI size: a storm of clients joins the load (issue 11)."""
    deployment.set_policy("prfaas", THRESHOLD_TOKENS)
    during, probes = fault_load()
    report = run_overload(deployment, during, probes, OPTS, tmp_path, fault_at_s=0.5, clients=60)
    assert_nothing_lost(report)
    assert report.ok, format_reports([report])
    assert report.notes and "0 lost or hung" in report.notes[0], report.notes
