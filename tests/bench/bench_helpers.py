"""Shared sizes for the CI-sized live bench tests (tiny model, few requests, short faults)."""

from __future__ import annotations

from prfaas.bench.chaos import FaultReport, probe_requests
from prfaas.bench.loadgen import LoadOptions
from prfaas.bench.workload import BenchRequest, WorkloadSpec, build_requests

THRESHOLD_TOKENS = 256  # tiny_config()'s
OPTS = LoadOptions(max_concurrency=16, time_budget_s=60.0, request_timeout_s=60.0)


def small_spec(num_requests: int = 8, rate_rps: float = 4.0, seed: int = 0) -> WorkloadSpec:
    return WorkloadSpec(num_requests=num_requests, rate_rps=rate_rps, threshold_tokens=THRESHOLD_TOKENS,
                        max_tokens=8, seed=seed)


def fault_load(seed: int = 1) -> tuple[list[BenchRequest], list[BenchRequest]]:
    spec = small_spec(num_requests=10, rate_rps=4.0, seed=seed)
    return build_requests(spec), probe_requests(spec, count=2)


def assert_nothing_lost(report: FaultReport) -> None:
    assert report.sent == report.completed + report.failed + report.lost, report
    assert report.sent > 0 and report.lost == 0, report
    assert report.recovered, f"routing did not return to normal after {report.fault.value}: {report}"
