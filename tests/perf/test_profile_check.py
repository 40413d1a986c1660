"""Profiles worth trusting: robust timing statistics, the checks, and the measurement record in the file.

All measurements here are fabricated (no model needed); the tiny-model run is in
tests/engine/test_engine_profiling.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.core.errors import ConfigError
from prfaas.perf.measured import (
    MeasuredProfile,
    Measurement,
    PrefillPoint,
    describe_profile,
    load_profile_json,
    save_profile_json,
)
from prfaas.perf.profile_check import CheckLimits, check_prefill, check_profile, robust_time

LENGTHS = [128, 256, 512, 1024, 2048]


def _clean_times() -> list[float]:
    return [0.01 + 2e-5 * n + 1e-9 * n * n for n in LENGTHS]


def test_robust_time_is_the_median_and_relative_range() -> None:
    t = robust_time([0.10, 0.30, 0.11, 0.12, 0.10])
    assert t.median_s == pytest.approx(0.11)
    assert t.spread == pytest.approx(0.20 / 0.11)
    with pytest.raises(ValueError):
        robust_time([])


def test_a_clean_profile_passes() -> None:
    check = check_prefill(LENGTHS, _clean_times(), [0.05] * 5)
    assert check.ok, check.problems
    assert max(abs(r) for r in check.residuals) < 0.01


def test_the_busy_machine_profile_is_refused_as_not_monotone() -> None:
    # the measurement of the issue: 128 tokens at 5.27 s, 2,048 tokens at 3.92 s
    times = [5.27, 4.8, 4.1, 4.4, 3.92]
    check = check_prefill(LENGTHS, times, [None] * 5)
    assert not check.ok
    assert any("not monotone" in p and "2048 tokens took 3920.0 ms" in p for p in check.problems)


def test_runs_that_disagree_are_flagged_but_submillisecond_jitter_is_not() -> None:
    times = _clean_times()
    spreads: list[float | None] = [0.05, 0.05, 0.9, 0.05, 0.05]
    check = check_prefill(LENGTHS, times, spreads)
    assert [p for p in check.problems if "spread" in p] == [
        f"prefill of 512 tokens: runs spread 90% of the median {times[2] * 1e3:.1f} ms (limit 50%)"]
    tiny = check_prefill([1, 2, 4], [1e-4, 1.1e-4, 1.2e-4], [3.0, 3.0, 3.0])  # 0.3 ms ranges: jitter
    assert not any("spread" in p for p in tiny.problems)
    assert check_prefill(LENGTHS, times, spreads, CheckLimits(max_spread=1.0)).ok


def test_a_point_the_fit_cannot_explain_is_flagged() -> None:
    times = _clean_times()
    times[3] *= 1.8  # monotone, but a bump no a + b*l + c*l^2 passes through
    check = check_prefill(LENGTHS, times, [None] * 5)
    assert any(p.startswith("the fit a + b*l + c*l^2 misses") for p in check.problems)
    assert not any("monotone" in p for p in check.problems)


def test_small_decreases_within_tolerance_are_noise() -> None:
    times = _clean_times()
    times[1] = times[0] * 0.97  # 3% faster at the longer length: within the 5% tolerance
    assert not any("monotone" in p for p in check_prefill(LENGTHS, times, [None] * 5).problems)


def _measured_profile(times: list[float]) -> MeasuredProfile:
    m = Measurement(device="cpu", torch_threads=2, cpu_model="Test CPU", load_avg_before=(0.5, 0.4, 0.3),
                    load_avg_after=(0.7, 0.5, 0.3), num_cpus=2, repeats=5, decode_steps=8,
                    prfaas_version="0.1.0", measured_at_utc="2026-12-02T05:00:00Z")
    points = tuple(PrefillPoint(n, t, 1000.0 * n, 0.04) for n, t in zip(LENGTHS, times, strict=True))
    return MeasuredProfile("engine-x", "x", "cpu", 0, points, source="prfaas profile", measurement=m)


def test_the_measurement_record_round_trips_and_describes_the_profile(tmp_path: Path) -> None:
    profile = _measured_profile(_clean_times())
    path = tmp_path / "p.json"
    save_profile_json(profile, path)
    obj = json.loads(path.read_text())
    assert obj["version"] == 2 and obj["n_gpu"] == 0 and obj["device"] == "cpu"
    assert obj["measurement"]["torch_threads"] == 2 and obj["prefill"][0]["spread"] == 0.04
    loaded = load_profile_json(path)
    assert loaded == profile
    assert check_profile(loaded).ok
    line = describe_profile(loaded)
    assert "cpu, 2 torch threads on 2 CPUs (Test CPU)" in line and "5 repeats" in line and "load 0.50 -> 0.70" in line


def test_an_older_profile_without_the_record_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "prfaas-profile", "version": 1, "name": "old", "model": "m",
                                "device": "cpu (2 threads)", "n_gpu": 1, "prefill": [
                                    {"num_tokens": 128, "t_prefill_s": 0.01, "s_kv_bytes": 10.0},
                                    {"num_tokens": 256, "t_prefill_s": 0.02, "s_kv_bytes": 20.0}]}))
    profile = load_profile_json(path)
    assert profile.measurement is None and profile.prefill[0].spread is None
    assert "no measurement record (older profile)" in describe_profile(profile)
    assert check_profile(profile).ok


def test_unknown_versions_and_broken_records_fail_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    save_profile_json(_measured_profile(_clean_times()), path)
    obj = json.loads(path.read_text())
    path.write_text(json.dumps({**obj, "version": 9}))
    with pytest.raises(ConfigError, match=r"unsupported profile version 9 \(this prfaas reads 1, 2\)"):
        load_profile_json(path)
    del obj["measurement"]["torch_threads"]
    path.write_text(json.dumps(obj))
    with pytest.raises(ConfigError, match="malformed profile: 'torch_threads'"):
        load_profile_json(path)
