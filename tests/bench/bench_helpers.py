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


def two_by_two_toml(rb_traffic_rps: float, far_links: tuple[tuple[str, str], ...]) -> str:
    """A [topology] of PrfaaS sites pf-a, pf-b and PD regions ra (1 req/s), rb: home links pf-a->ra, pf-b->rb
    (100 Gbps, 2 ms) and the `far_links` given as (prfaas, pd) (50 Gbps, 20 ms). One instance per site, 1 PD-P
    and 1 PD-D per region (the live multi-site tests' smallest deployment)."""
    sites = "".join(f'[[topology.prfaas]]\nname = "{name}"\ninstances = 1\n' for name in ("pf-a", "pf-b"))
    regions = "".join(f'[[topology.pd]]\nname = "{name}"\ninstances = 2\nprefill_instances = 1\n'
                      f"traffic_rps = {rps}\n" for name, rps in (("ra", 1.0), ("rb", rb_traffic_rps)))
    links = [(p, d, 100, 0.002) for p, d in (("pf-a", "ra"), ("pf-b", "rb"))] + [(p, d, 50, 0.02)
                                                                                for p, d in far_links]
    return sites + regions + "".join(f'[[topology.links]]\nprfaas = "{p}"\npd = "{d}"\ncapacity_gbps = {c}\n'
                                     f"latency_s = {lat}\n" for p, d, c, lat in links)


def assert_sigterm_tears_down(script: str, num_namespaces: int) -> None:
    """Run `script` (it prints the namespaces it made on one line, then sleeps) in a child process, SIGTERM it:
    it exits by the signal and every namespace it printed is gone."""
    import os
    import signal
    import subprocess
    import sys

    from prfaas.bench.netns import namespace_exists

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        names = proc.stdout.readline().split()
        assert len(names) == num_namespaces and all(namespace_exists(n) for n in names)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
        assert not any(namespace_exists(n) for n in names)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
