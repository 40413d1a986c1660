"""bench units without a deployment: workload scaling, summaries, link sampling, regime, plots, records."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from prfaas.bench.linkmon import LinkMonitor
from prfaas.bench.records import LinkSample, RequestRecord, RequestStatus, read_link_samples, read_records, write_jsonl
from prfaas.bench.regime import regime_for
from prfaas.bench.summary import Slo, nearest_rank, summarize
from prfaas.bench.workload import PAPER_THRESHOLD_TOKENS, WorkloadKind, WorkloadSpec, build_requests
from prfaas.core.errors import ConfigError
from prfaas.perf.measured import MeasuredProfile, PrefillPoint, save_profile_json
from prfaas.workload import BLOCK_TOKENS


def _rec(index: int, status: RequestStatus = RequestStatus.COMPLETED, ttft: float | None = 1.0,
         tpot: float | None = 0.01, route: str | None = "local", nbytes: int = 0) -> RequestRecord:
    return RequestRecord(index=index, send_s=float(index), prompt_tokens=100, max_tokens=4, status=status,
                         ttft_s=ttft if status is RequestStatus.COMPLETED else None, tpot_s=tpot,
                         completion_tokens=4 if status is RequestStatus.COMPLETED else 0, route=route,
                         transfer_bytes=nbytes)


def test_lognormal_workload_is_scaled_to_the_threshold_and_deterministic() -> None:
    spec = WorkloadSpec(num_requests=200, rate_rps=5.0, threshold_tokens=512, max_tokens=8)
    a, b = build_requests(spec), build_requests(spec)
    assert a == b
    assert spec.factor == pytest.approx(512 / PAPER_THRESHOLD_TOKENS)
    lengths = [len(r.prompt_tokens) for r in a]
    assert max(lengths) <= spec.max_prompt_tokens
    above = sum(n > 512 for n in lengths) / len(lengths)
    assert 0.35 < above < 0.65  # the paper's regime: about half the requests exceed t
    assert a[0].arrival_s == 0.0 and all(x.arrival_s <= y.arrival_s for x, y in itertools.pairwise(a))
    assert 200 / a[-1].arrival_s == pytest.approx(5.0, rel=0.3)
    assert build_requests(WorkloadSpec(num_requests=200, rate_rps=5.0, threshold_tokens=512, seed=1)) != a


def test_trace_prompts_share_exactly_their_hashed_prefix_blocks() -> None:
    spec = WorkloadSpec(kind=WorkloadKind.TRACE, num_requests=60, rate_rps=2.0, length_factor=1.0,
                        threshold_tokens=1024, max_tokens=4)
    reqs = build_requests(spec)
    from prfaas.bench.workload import workload_requests

    raw = workload_requests(spec)
    pairs = [(i, j) for i in range(len(raw)) for j in range(i) if raw[i].block_hashes[:1] == raw[j].block_hashes[:1]
             and len(raw[i].block_hashes) > 1 and len(raw[j].block_hashes) > 1]
    assert pairs, "the Mooncake trace's first requests share a system-prompt block"
    i, j = pairs[0]
    shared = 0
    while shared < min(len(raw[i].block_hashes), len(raw[j].block_hashes)) and \
            raw[i].block_hashes[shared] == raw[j].block_hashes[shared]:
        shared += 1
    a, b = reqs[i].prompt_tokens, reqs[j].prompt_tokens
    assert a[:shared * BLOCK_TOKENS] == b[:shared * BLOCK_TOKENS]
    assert a[shared * BLOCK_TOKENS:(shared + 1) * BLOCK_TOKENS] != b[shared * BLOCK_TOKENS:(shared + 1) * BLOCK_TOKENS]
    span = reqs[-1].arrival_s
    assert (len(reqs) - 1) / span == pytest.approx(2.0, rel=1e-6)


def test_bad_workload_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        WorkloadSpec(num_requests=0)
    with pytest.raises(ConfigError):
        WorkloadSpec(rate_rps=0.0)
    with pytest.raises(ConfigError):
        WorkloadSpec(max_tokens=20000)


def test_summary_counts_percentiles_goodput_and_routes() -> None:
    records = [_rec(i, ttft=0.1 * (i + 1), route="prfaas" if i % 2 else "local", nbytes=1000) for i in range(10)]
    records += [_rec(10, RequestStatus.FAILED), _rec(11, RequestStatus.LOST)]
    samples = [LinkSample(time_s=t, goodput_gbps=0.01, capacity_gbps=0.1) for t in (1.0, 2.0)]
    s = summarize(records, samples, duration_s=4.0, slo=Slo(ttft_s=0.5))
    assert (s.sent, s.completed, s.failed, s.lost) == (12, 10, 1, 1)
    assert s.ttft_s.p50 == pytest.approx(0.5) and s.ttft_s.p90 == pytest.approx(0.9)
    assert s.ttft_s.p99 == pytest.approx(1.0) and s.ttft_s.mean == pytest.approx(0.55)
    assert s.throughput_rps == pytest.approx(10 / 4.0)
    assert s.goodput_rps == pytest.approx(5 / 4.0)  # TTFT <= 0.5 s: the first five
    assert s.requests_by_route == {"local": 5, "prfaas": 5}
    assert s.kv_bytes == 10_000 and s.egress_bytes == 5_000
    assert s.link_utilisation_mean == pytest.approx(0.1)
    assert nearest_rank([], 0.5) is None


def test_link_monitor_rates_survive_a_counter_reset() -> None:
    mon = LinkMonitor("http://unused", t0=100.0, cap_gbps=lambda: 0.08)
    assert mon.observe(100.0, {"bytes_total": 0}, 0) is None
    first = mon.observe(101.0, {"bytes_total": 1_000_000}, 1_100_000)
    assert first is not None
    assert first.goodput_gbps == pytest.approx(0.008) and first.wire_gbps == pytest.approx(0.0088)
    assert first.utilisation == pytest.approx(0.0088 / 0.08)
    reset = mon.observe(102.0, {"bytes_total": 500_000}, 1_600_000)  # the PrfaaS node restarted
    assert reset is not None and reset.goodput_gbps == pytest.approx(0.004)
    gone = mon.observe(103.0, None, 1_600_000)  # no PrfaaS sender reporting
    assert gone is not None and gone.goodput_gbps == 0.0 and gone.time_s == pytest.approx(3.0)


def test_regime_cap_matches_thirteen_percent_utilisation(tmp_path: Path) -> None:
    # S_kv = 1 MB + 2 kB/token, T = 1 ms/token: Phi_kv(l) = (1e6 + 2e3 l) / (1e-3 l) bytes/s
    points = tuple(PrefillPoint(n, 1e-3 * n, 1e6 + 2e3 * n) for n in (256, 512, 1024, 2048, 4096, 8192))
    path = tmp_path / "p.json"
    save_profile_json(MeasuredProfile(name="t", model="t", device="cpu", n_gpu=1, prefill=points, decode=()), path)
    regime = regime_for(path, threshold_tokens=1024, max_prompt_tokens=8000, n_prfaas=2)
    phi = (1e6 + 2e3 * regime.l_long_tokens) / (1e-3 * regime.l_long_tokens) * 8 / 1e9
    assert regime.phi_kv_gbps == pytest.approx(phi, rel=0.02)
    assert regime.cap_mbit == pytest.approx(2 * phi * 1e3 / 0.13, rel=0.02)
    assert 0.4 < regime.offload_fraction < 0.6 and regime.l_long_tokens > 1024
    assert "13%" in regime.describe()


def test_records_roundtrip_and_plots(tmp_path: Path) -> None:
    from prfaas.bench.plots import plot_compare, plot_run

    records = [_rec(i, ttft=0.2 * (i + 1), route="prfaas") for i in range(5)] + [_rec(5, RequestStatus.LOST)]
    samples = [LinkSample(time_s=0.5 * i, goodput_gbps=0.001 * i, capacity_gbps=0.05, wire_gbps=0.0011 * i)
               for i in range(6)]
    assert read_records(write_jsonl(tmp_path / "r.jsonl", records)) == records
    assert read_link_samples(write_jsonl(tmp_path / "l.jsonl", samples)) == samples
    for line in (tmp_path / "r.jsonl").read_text().splitlines():
        assert json.loads(line)["status"] in {"completed", "lost"}
    png = plot_run(records, samples, tmp_path / "run.png", "unit")
    cmp = plot_compare([{"policy": "prfaas", "live_ttft_mean_s": 0.5, "sim_ttft_mean_s": 0.4}],
                       {"prfaas": records}, tmp_path / "cmp.png")
    for path in (png, cmp):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert math.isclose(samples[2].utilisation or 0.0, 0.0022 / 0.05)


def test_choices_pick_the_regime_cap_and_the_emulation_knobs(tmp_path: Path) -> None:
    from prfaas.bench.choices import SetupChoices, resolve_setup

    points = tuple(PrefillPoint(n, 1e-3 * n, 1e6 + 2e3 * n) for n in (256, 512, 1024, 2048, 4096, 8192))
    path = tmp_path / "p.json"
    save_profile_json(MeasuredProfile(name="t", model="t", device="cpu", n_gpu=1, prefill=points, decode=()), path)
    setup = resolve_setup(SetupChoices(tiny=True, sites=False, profile=path, delay_ms=20, chunk_loss=0.1,
                                       num_requests=5, policy="naive-offload"))
    assert setup.regime is not None and setup.cap_mbit == pytest.approx(setup.regime.cap_mbit)
    link = setup.cfg.egress_link()
    assert link.capacity_gbps == pytest.approx(setup.cap_mbit / 1000) and link.one_way_delay_s == pytest.approx(0.02)
    assert set(setup.fault_nodes) == {"prfaas-0"} and setup.fault_nodes["prfaas-0"].probability == 0.1
    assert setup.cfg.policy.name == "naive-offload" and setup.sites_spec is None
    assert setup.spec.threshold_tokens == 256 and setup.spec.num_requests == 5
    plain = resolve_setup(SetupChoices(tiny=True, sites=False, cap_mbit=12.5))
    assert plain.cap_mbit == 12.5 and not plain.fault_nodes and plain.regime is None
    for bad in (SetupChoices(tiny=True, sites=False, chunk_loss=1.0), SetupChoices(tiny=True, workload="zipf"),
                SetupChoices(tiny=True, rate_rps=0)):
        with pytest.raises(ConfigError):
            resolve_setup(bad)
