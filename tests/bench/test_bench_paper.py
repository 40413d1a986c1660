"""`bench paper` on the emulated engine: a short live case (slow) and the pieces it is built from (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.bench.paper import (
    PaperOptions,
    capacity_size,
    first_token_rps,
    judge_live,
    paper_requests,
    run_paper,
)
from prfaas.bench.paper_config import PaperScale, deploy_config, paper_configurations, sim_scenario
from prfaas.bench.paper_report import format_paper
from prfaas.bench.records import RequestRecord, RequestStatus
from prfaas.bench.run import RunResult
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import EngineKind
from prfaas.sim.search import SustainCriteria


def test_configurations_are_the_planners_splits() -> None:
    by_name = {c.name: c for c in paper_configurations()}
    pd, homo, naive = by_name["prfaas-pd"], by_name["homogeneous"], by_name["naive"]
    assert (pd.n_prfaas, pd.n_p, pd.n_d) == (4, 3, 5) and pd.policy == "prfaas"
    assert (homo.n_prfaas, homo.n_p, homo.n_d) == (0, 9, 3)
    assert (naive.n_prfaas, naive.n_p, naive.n_d) == (4, 0, 8) and naive.policy == "naive-offload"
    assert pd.planner_lambda_rps > naive.planner_lambda_rps > homo.planner_lambda_rps


def test_deploy_config_and_sim_scenario_share_the_scale() -> None:
    scale = PaperScale(time_scale=2.0, state_scale=64.0)
    c = paper_configurations()[0]
    cfg = deploy_config(c, scale)
    assert cfg.model.engine is EngineKind.EMULATED and cfg.model.max_batch_size == 20
    assert [n.role for n in cfg.nodes].count(Role.PD_DECODE) == 5
    assert sum(n.cluster is ClusterKind.PRFAAS for n in cfg.nodes) == 4
    assert cfg.egress_link().capacity_gbps == pytest.approx(100.0 / 128.0)
    s = sim_scenario(c, scale)
    assert s.egress_gbps == pytest.approx(100.0 / 128.0) and s.t_decode_s == pytest.approx(0.05)
    assert s.prfaas_prefill is not None and c.scenario.prfaas_prefill is not None
    assert s.prfaas_prefill.t_prefill_s(32_768) == pytest.approx(2 * c.scenario.prfaas_prefill.t_prefill_s(32_768))
    assert s.prfaas_prefill.s_kv_bytes(32_768) == pytest.approx(c.scenario.prfaas_prefill.s_kv_bytes(32_768) / 64,
                                                                rel=0.02)


def test_workload_is_the_papers_and_deterministic() -> None:
    c = paper_configurations()[0]
    a, b = paper_requests(c, 2.0, 200, seed=3), paper_requests(c, 2.0, 200, seed=3)
    assert a == b and len(a) == 200
    assert 70.0 < a[-1].arrival_s < 130.0  # 200 arrivals at 2 req/s span about 100 s
    assert all(128 <= r.input_tokens <= 131_072 and r.output_tokens == 1024 for r in a)


def _rec(i: int, send_s: float, ttft_s: float | None, latency_s: float | None, ok: bool = True) -> RequestRecord:
    return RequestRecord(index=i, send_s=send_s, prompt_tokens=100, max_tokens=4,
                         status=RequestStatus.COMPLETED if ok else RequestStatus.LOST, ttft_s=ttft_s,
                         latency_s=latency_s)


def test_live_judgement_uses_the_simulators_criterion() -> None:
    crit = SustainCriteria(duration_s=1.0, tail_s=10.0)
    steady = [_rec(i, i * 1.0, 1.0, 5.0) for i in range(40)]
    assert judge_live(RunResult(steady, [], 50.0, []), 1.0, 40.0, crit).is_sustainable
    # a growing queue: TTFT rises with the arrival time
    growing = [_rec(i, i * 1.0, 1.0 + i, 5.0 + i) for i in range(40)]
    assert not judge_live(RunResult(growing, [], 90.0, []), 1.0, 40.0, crit).is_sustainable
    # a backlog: a quarter of the requests never finish
    backlog = [_rec(i, i * 1.0, 1.0, 5.0, ok=i % 4 != 0) for i in range(40)]
    assert not judge_live(RunResult(backlog, [], 50.0, []), 1.0, 40.0, crit).is_sustainable


def test_first_token_rate_is_the_prefill_throughput() -> None:
    # 10 requests arriving at once, served one per second
    assert first_token_rps([(0.0, float(i + 1)) for i in range(10)]) == pytest.approx(1.0)
    assert first_token_rps([(0.0, None)]) is None


def test_capacity_run_size_is_the_request_count_or_the_window(tmp_path: Path) -> None:
    scale = PaperScale(2.0, 128.0, 16)
    by_window = PaperOptions(out_dir=tmp_path, scale=scale, capacity_window_s=40.0)
    assert capacity_size(by_window, 2.5) == 200  # 2.5 req/s x 40 paper-s x k_t 2
    by_count = PaperOptions(out_dir=tmp_path, scale=scale, capacity_requests=260)
    assert capacity_size(by_count, 2.5) == capacity_size(by_count, 1.6) == 260


@pytest.mark.slow
def test_short_emulated_case_prfaas_pd_beats_homogeneous(tmp_path: Path) -> None:
    """A few minutes: both deployments live (12 emulated nodes each) at the common load and at an overload of
    homogeneous; PrfaaS-PD serves more and sooner, nothing is lost, and the simulator tracks live."""
    opts = PaperOptions(out_dir=tmp_path, scale=PaperScale(time_scale=1.0, steps_per_event=8), num_requests=24,
                        search=False, capacity=False, extra_rates=(3.0,),
                        configurations=("prfaas-pd", "homogeneous"), progress=False)
    result = run_paper(opts, log=lambda _line: None)
    rows = {(c.configuration, p.kind): p for c in result.configs for p in c.probes}
    for row in rows.values():
        assert row.live_lost == 0 and row.live_failed == 0 and row.live_completed == row.num_requests
        assert row.live_offload_fraction == pytest.approx(row.sim_offload_fraction, abs=0.15)
    pd_common, homo_common = rows["prfaas-pd", "common"], rows["homogeneous", "common"]
    pd_over, homo_over = rows["prfaas-pd", "extra"], rows["homogeneous", "extra"]
    assert pd_common.live_offload_fraction > 0 and homo_common.live_offload_fraction == 0
    for pd, homo in ((pd_common, homo_common), (pd_over, homo_over)):
        assert pd.live_ttft_mean_s is not None and homo.live_ttft_mean_s is not None
        assert pd.live_ttft_mean_s < homo.live_ttft_mean_s
    assert pd_over.live_first_token_rps is not None and homo_over.live_first_token_rps is not None
    assert pd_over.live_first_token_rps > homo_over.live_first_token_rps
    for row in rows.values():  # loose: the short run's own noise; the benchmark reports the real errors
        assert row.sim_ttft_mean_s is not None and row.live_ttft_mean_s is not None
        assert abs(row.sim_ttft_mean_s - row.live_ttft_mean_s) / row.live_ttft_mean_s < 0.35
    text = format_paper(result)
    assert "prfaas-pd" in text and "homogeneous" in text and (tmp_path / "paper.png").exists()


def test_overhead_fit_is_robust_and_shifts_arrivals() -> None:
    from prfaas.bench.paper_overhead import RequestOverhead, fit_overhead, shifted

    points = [(n, 0.05 + 2e-6 * n) for n in range(1_000, 100_000, 500)]
    points += [(30_000, 5.0)]  # one request delayed by the shared machine: the medians ignore it
    fit = fit_overhead(points)
    assert fit.fixed_s == pytest.approx(0.05, abs=0.01) and fit.per_token_s == pytest.approx(2e-6, rel=0.1)
    c = paper_configurations()[0]
    reqs = paper_requests(c, 2.0, 20, seed=1)
    assert max(fit.residuals_s) == pytest.approx(5.0 - 0.05 - 2e-6 * 30_000, abs=0.02)  # the tail is kept
    moved = shifted(reqs, RequestOverhead(0.1, 1e-6))
    by_id = {r.request_id: r for r in moved}
    for r in reqs:
        assert by_id[r.request_id].arrival_s == pytest.approx(r.arrival_s + 0.1 + 1e-6 * r.input_tokens)
    with_tail = RequestOverhead(0.1, 0.0, 2, (0.0, 1.0))
    assert {with_tail.at(100, i) for i in range(10)} == {0.1, 1.1}
    assert [r.arrival_s for r in moved] == sorted(r.arrival_s for r in moved)


def _probe_dir(root: Path, config: str, run: int, kind: str, overhead_s: float, n: int) -> None:
    """A `bench paper` probe folder whose requests all took `overhead_s` outside queue + prefill + transfer."""
    import json

    import msgspec

    probe = root / config / f"run-{run}" / f"{kind}-1.0000"
    probe.mkdir(parents=True)
    recs, log = [], []
    for i in range(n):
        tokens = 1_000 + 1_000 * i
        recs.append(RequestRecord(index=i, send_s=float(i), prompt_tokens=tokens, max_tokens=4, ttft_s=1.0 + overhead_s,
                                  latency_s=2.0 + overhead_s, completion_tokens=4, tpot_s=0.3,
                                  status=RequestStatus.COMPLETED, gateway_id=i))
        log.append({"id": i, "prompt_tokens": tokens, "queue_s": 0.25, "prefill_s": 0.5, "transfer_s": 0.25})
    (probe / "records.jsonl").write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in recs))
    with (probe.parent / "gateway-requests.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in log)


def test_cross_run_overhead_never_uses_the_predicted_run(tmp_path: Path) -> None:
    from prfaas.bench.paper_overhead import cross_run_overhead, overhead_from

    for run, over in enumerate((0.1, 0.2, 0.9)):
        _probe_dir(tmp_path, "prfaas-pd", run, "common", over, 40)
        _probe_dir(tmp_path, "prfaas-pd", run, "capacity", 5.0, 40)
    assert overhead_from(tmp_path, kind="common").fixed_s == pytest.approx(0.2, abs=1e-6)  # median of all 3 runs
    assert cross_run_overhead(tmp_path, "prfaas-pd", "common", 2).fixed_s == pytest.approx(0.15, abs=1e-6)
    assert cross_run_overhead(tmp_path, "prfaas-pd", "common", 0).fixed_s == pytest.approx(0.55, abs=1e-6)
    assert cross_run_overhead(tmp_path, "prfaas-pd", "capacity", 0).fixed_s == pytest.approx(5.0, abs=1e-6)
    with pytest.raises(ValueError, match="leaving out run 0"):
        overhead_from(tmp_path / "nothing", exclude_run=0)
