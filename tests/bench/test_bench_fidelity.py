"""Sim-vs-real fidelity: the error distribution `bench compare` / bench_live report, the request-path points, and
the simulator with the live host's effects (`serve.predict.LiveEffects`). No live deployment: fast, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.bench.compare import (
    Calibration,
    CompareResult,
    CompareRow,
    error_distribution,
    format_compare,
    format_error_distribution,
    overhead_points,
)
from prfaas.bench.paper_overhead import RequestOverhead
from prfaas.bench.records import RequestRecord, RequestStatus
from prfaas.bench.run import RunResult
from prfaas.bench.summary import BenchSummary, Percentiles
from prfaas.perf.measured import DecodePoint, MeasuredProfile, PrefillPoint, save_profile_json
from prfaas.serve.predict import LiveEffects, LiveSetup, simulate_run, simulate_same
from prfaas.workload.request import WorkloadRequest


def _summary(rps: float, ttft_mean: float, ttft_p90: float) -> BenchSummary:
    none = Percentiles(mean=None, p50=None, p90=None, p99=None)
    return BenchSummary(sent=10, completed=10, failed=0, lost=0, failed_by_kind={}, duration_s=10.0,
                        throughput_rps=rps, goodput_rps=rps, slo_ttft_s=None, slo_tpot_s=None,
                        ttft_s=Percentiles(mean=ttft_mean, p50=ttft_mean, p90=ttft_p90, p99=ttft_p90), tpot_s=none,
                        output_tokens_per_s=0.0, requests_by_route={}, ttft_mean_by_route_s={}, kv_bytes=0,
                        egress_bytes=0, link_goodput_mean_gbps=None, link_utilisation_mean=None,
                        link_peak_utilisation=None)


def _row(policy: str, rps_err: float, mean_err: float, p90_err: float | None) -> CompareRow:
    sim = {"throughput_rps": 1.0 + rps_err, "ttft_mean_s": 2.0 * (1 + mean_err),
           "ttft_p90_s": None if p90_err is None else 4.0 * (1 + p90_err)}
    return CompareRow(policy=policy, live=_summary(1.0, 2.0, 4.0), sim=sim, ttft_error=mean_err,
                      throughput_error=rps_err, ttft_p90_error=p90_err)


def _result(rows: list[CompareRow]) -> CompareResult:
    return CompareResult(rows, None, "test", [], None, (1.0, 1.0, 1.0))


def test_error_distribution_gives_median_min_max_per_policy_and_metric() -> None:
    runs = [_result([_row("homogeneous", 0.02, -0.10, 0.05), _row("prfaas", 0.01, 0.20, None)]),
            _result([_row("homogeneous", -0.04, 0.04, 0.07), _row("prfaas", 0.03, 0.10, 0.30)]),
            _result([_row("homogeneous", 0.00, -0.02, 0.12), _row("prfaas", -0.01, 0.12, 0.10)])]
    dist = error_distribution(runs)
    homog = dist["homogeneous"]
    assert homog["throughput"].median == pytest.approx(0.0)
    assert (homog["throughput"].low, homog["throughput"].high) == (pytest.approx(-0.04), pytest.approx(0.02))
    assert homog["ttft_mean"].median == pytest.approx(-0.02) and homog["ttft_mean"].worst_abs == pytest.approx(0.10)
    assert homog["ttft_p90"].num_runs == 3 and homog["ttft_p90"].high == pytest.approx(0.12)
    # a run without a P90 prediction is left out of that cell, not counted as zero
    assert dist["prfaas"]["ttft_p90"].num_runs == 2 and dist["prfaas"]["ttft_p90"].median == pytest.approx(0.20)
    text = format_error_distribution(runs)
    assert "-2.0% [-10.0%, +4.0%] n=3" in text
    # cells within 15% in every run: every homogeneous cell, prfaas throughput; not prfaas TTFT mean/P90
    assert "within 15%: 4/6" in text and "worst |error| 30.0%" in text


def test_compare_reports_the_p90_error_the_largest_error_and_the_plain_simulator() -> None:
    row = _row("prfaas", 0.05, -0.08, 0.12)
    plain = CompareRow(policy="prfaas", live=row.live, sim=row.sim, ttft_error=row.ttft_error,
                       throughput_error=row.throughput_error, ttft_p90_error=row.ttft_p90_error,
                       sim_plain={"ttft_mean_s": 1.0, "throughput_rps": 1.1})
    cal = Calibration(host_cores=2.0, overhead=RequestOverhead(0.05, 1e-5, 30), load_avg=(1.5, 1.0, 0.5))
    result = CompareResult([plain], None, "test", [], cal, (2.25, 1.0, 0.5))
    assert result.max_abs_error() == pytest.approx(0.12)
    text = format_compare(result)
    assert "+12%" in text and "largest |error| of throughput, TTFT mean and P90: 12%" in text
    assert "without the host model: prfaas TTFT -50% rps +10%" in text
    assert "host 2 cores" in text and "50.0 ms + 10.00 us/token" in text and "load average at the end" in text


def _rec(index: int, gateway_id: int, prompt: int, ttft: float | None,
         status: RequestStatus = RequestStatus.COMPLETED) -> RequestRecord:
    return RequestRecord(index=index, send_s=float(index), prompt_tokens=prompt, max_tokens=4, status=status,
                         ttft_s=ttft, gateway_id=gateway_id)


def test_overhead_points_are_ttft_minus_the_node_side() -> None:
    records = [_rec(0, 10, 100, 1.0), _rec(1, 11, 200, 2.0), _rec(2, 12, 300, None, RequestStatus.FAILED),
               _rec(3, 13, 400, 3.0)]
    log = [{"id": 10, "prompt_tokens": 100, "queue_s": 0.1, "prefill_s": 0.7, "transfer_s": None},
           {"id": 11, "prompt_tokens": 200, "queue_s": 0.0, "prefill_s": 1.5, "transfer_s": 0.25},
           {"id": 12, "prompt_tokens": 300, "prefill_s": 1.0},
           {"id": 13, "prompt_tokens": 999, "prefill_s": 1.0}]  # another request's row: not joined
    points = overhead_points(RunResult(records, [], 10.0, log))
    assert points == [(100, pytest.approx(0.2)), (200, pytest.approx(0.25))]


def _profile(tmp_path: Path) -> tuple[Path, MeasuredProfile]:
    points = tuple(PrefillPoint(n, 1e-3 * n, 1e4 * n) for n in (256, 512, 1024, 2048, 4096))
    profile = MeasuredProfile(name="t", model="t", device="cpu", n_gpu=1, prefill=points,
                              decode=(DecodePoint(1, 1024, 0.02),))
    path = tmp_path / "p.json"
    save_profile_json(profile, path)
    return path, profile


def _setup(policy: str) -> LiveSetup:
    return LiveSetup(policy=policy, threshold_tokens=1024, n_prfaas=1, n_pd_prefill=1, n_pd_decode=1, link_gbps=10.0,
                     mu=7.0, sigma=0.5, min_tokens=256, max_tokens=4096, output_tokens=8, rate_rps=1.0,
                     duration_s=10.0, max_batch=8)


def test_path_delay_adds_to_every_ttft_when_requests_do_not_overlap(tmp_path: Path) -> None:
    path, profile = _profile(tmp_path)
    reqs = [WorkloadRequest(i, 10.0 * i, 512 + 256 * i, 8) for i in range(4)]  # 10 s apart: no queueing
    base = simulate_same(path, profile, _setup("homogeneous"), reqs, LiveEffects())
    delayed = simulate_same(path, profile, _setup("homogeneous"), reqs,
                            LiveEffects(path_delay_s=lambda r: 0.1 + 1e-4 * r.input_tokens))
    extra = sum(0.1 + 1e-4 * r.input_tokens for r in reqs) / len(reqs)
    assert base.ttft_mean_s is not None and delayed.ttft_mean_s is not None
    assert delayed.ttft_mean_s == pytest.approx(base.ttft_mean_s + extra)
    # P90 is the nearest rank of four TTFTs: the longest request's
    assert delayed.ttft_p90_s == pytest.approx(1e-3 * 1280 + 0.1 + 1e-4 * 1280, rel=0.01)


def test_shared_cores_slow_overlapping_prefills_and_enough_cores_change_nothing(tmp_path: Path) -> None:
    path, profile = _profile(tmp_path)
    # a short (local) and a long (offloaded) request together, while an earlier one decodes: 3 busy nodes
    reqs = [WorkloadRequest(0, 0.0, 300, 200), WorkloadRequest(1, 0.5, 2000, 8), WorkloadRequest(2, 0.5, 800, 8)]
    alone = simulate_same(path, profile, _setup("prfaas"), reqs, LiveEffects())
    ample = simulate_same(path, profile, _setup("prfaas"), reqs, LiveEffects(host_cores=3))
    shared = simulate_same(path, profile, _setup("prfaas"), reqs, LiveEffects(host_cores=2))
    assert ample == alone
    assert shared.ttft_mean_s is not None and alone.ttft_mean_s is not None
    assert shared.ttft_mean_s > alone.ttft_mean_s
    with pytest.raises(ValueError, match="host_cores"):
        LiveEffects(host_cores=0)


def test_calibration_effects_carry_the_measured_background_and_reference() -> None:
    cal = Calibration(host_cores=2.0, overhead=RequestOverhead(0.1, 0.0, 5), background_tasks=1.5)
    own = cal.effects(3.0).host_spec(("a", "b"))
    assert own.cores == 2.0 and own.background_tasks == 3.0 and own.instance_ids == ("a", "b")
    assert own.reference_speed == pytest.approx(2 / 2.5)  # costs measured alone beside 1.5 other tasks
    dedicated = cal.effects(None, own_profile=False).host_spec(("a",))
    assert dedicated.reference_speed == 1.0 and dedicated.background_tasks == 0.0
    assert cal.effects().path_delay_s is not None
    assert cal.effects().path_delay_s(WorkloadRequest(0, 0.0, 100, 4)) == pytest.approx(0.1)


def test_statistics_cover_only_the_requests_live_completed(tmp_path: Path) -> None:
    path, profile = _profile(tmp_path)
    reqs = [WorkloadRequest(i, 10.0 * i, 512 + 256 * i, 8) for i in range(4)]
    every = simulate_same(path, profile, _setup("homogeneous"), reqs, LiveEffects())
    first_two = simulate_same(path, profile, _setup("homogeneous"), reqs, LiveEffects(completed_ids=frozenset({0, 1})))
    assert every.ttft_mean_s is not None and first_two.ttft_mean_s is not None
    assert first_two.ttft_mean_s == pytest.approx(1e-3 * (512 + 768) / 2, rel=0.01)  # prefill T(l) = 1 ms/token
    assert first_two.ttft_mean_s < every.ttft_mean_s


def test_one_measured_decode_step_stays_constant_with_batch_and_context(tmp_path: Path) -> None:
    # profile_from_records gives one batch-1 step; the batch x context fit would grow it with the batch
    path, profile = _profile(tmp_path)
    reqs = [WorkloadRequest(i, 0.01 * i, 2000, 50) for i in range(4)]  # four decodes overlap in one batch
    run, _, _ = simulate_run(path, profile, _setup("homogeneous"), reqs, LiveEffects())
    assert [r.tpot_s for r in run.records] == [pytest.approx(0.02)] * 4


def test_the_background_counts_runnable_tasks_by_their_fair_scheduler_weight() -> None:
    from prfaas.bench.host_load import nice_weight, parse_stat

    assert nice_weight(0) == 1.0 and nice_weight(-15) == pytest.approx(29154 / 1024)
    assert nice_weight(19) == pytest.approx(15 / 1024) and nice_weight(-40) == nice_weight(-20)
    line = "4242 (py thon) (x)) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -15 1 0 100"
    assert parse_stat(line) == ("R", -15)
