"""Measured profiles: interpolation, incremental prefill, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.core.errors import ConfigError
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.measured import (
    DecodePoint,
    Interpolation,
    MeasuredProfile,
    PrefillPoint,
    ProfileDecodeModel,
    ProfilePrefillModel,
    fit_quadratic_nonneg,
    load_profile_json,
    save_profile_json,
)
from prfaas.perf.transfer import ComputeScaledPrefillModel, calibrate_compute_scale


def quadratic_profile() -> MeasuredProfile:
    # T = 0.5 + 1e-4 l + 1e-9 l^2, S = 1000 + 10 l
    pts = tuple(PrefillPoint(n, 0.5 + 1e-4 * n + 1e-9 * n * n, 1000 + 10 * n) for n in (1000, 4000, 16000, 64000))
    return MeasuredProfile("q", "m", "cpu", 1, pts, decode=(DecodePoint(1, 100, 0.01), DecodePoint(8, 100, 0.02),
                                                            DecodePoint(8, 1000, 0.03), DecodePoint(16, 1000, 0.05)))


def test_quadratic_fit_recovers_the_curve() -> None:
    model = ProfilePrefillModel(quadratic_profile())
    assert isinstance(model, PrefillCostModel)
    assert model.coefficients == pytest.approx((0.5, 1e-4, 1e-9), rel=1e-6)
    assert model.t_prefill_s(30_000) == pytest.approx(0.5 + 3.0 + 0.9, rel=1e-6)
    assert model.s_kv_bytes(2500) == pytest.approx(1000 + 25_000)
    assert model.s_kv_bytes(128_000) == pytest.approx(1000 + 1_280_000)  # extends the last segment


def test_piecewise_linear_between_points() -> None:
    model = ProfilePrefillModel(quadratic_profile(), Interpolation.PIECEWISE_LINEAR)
    t1, t2 = model.t_prefill_s(1000), model.t_prefill_s(4000)
    assert model.t_prefill_s(2500) == pytest.approx((t1 + t2) / 2)


def test_nonnegative_fit_drops_negative_terms() -> None:
    a, b, c = fit_quadratic_nonneg([1, 2, 3], [3.0, 2.0, 1.0])  # decreasing data: no negative slope allowed
    assert min(a, b, c) >= 0


def test_cached_prefix_costs_the_incremental_work() -> None:
    model = ProfilePrefillModel(quadratic_profile())
    full = model.t_prefill_s(20_000)
    tail = model.t_prefill_s(4_000, num_cached_tokens=16_000)
    assert tail < full
    assert tail == pytest.approx(0.5 + (full - model.t_prefill_s(16_000)), rel=1e-9)


def test_decode_fit_and_json_round_trip(tmp_path: Path) -> None:
    profile = quadratic_profile()
    path = tmp_path / "p.json"
    save_profile_json(profile, path)
    assert load_profile_json(path) == profile
    decode = ProfileDecodeModel(profile)
    assert decode.t_step_s(16, 1000) > decode.t_step_s(1, 100)


def test_bad_profile_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "format": "prfaas-profile",\n  "version": 1,\n  oops\n}')
    with pytest.raises(ConfigError, match=r"bad.json:4"):
        load_profile_json(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="not a prfaas profile"):
        load_profile_json(bad)
    bad.write_text(json.dumps({"format": "prfaas-profile", "version": 1, "name": "x", "prefill": [
        {"num_tokens": 2000, "t_prefill_s": 1.0, "s_kv_bytes": 1.0},
        {"num_tokens": 1000, "t_prefill_s": 1.0, "s_kv_bytes": 1.0}]}))
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_profile_json(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile_json(tmp_path / "missing.json")


def test_compute_scaling_between_accelerators() -> None:
    source = ProfilePrefillModel(quadratic_profile())
    fit = calibrate_compute_scale(source, 0.5, at_tokens=10_000, target_t_s=0.5 + 3 * (source.t_prefill_s(10_000)
                                                                                            - 0.5), peak_ratio=6.0)
    assert fit.compute_scale == pytest.approx(3.0)
    assert fit.implied_mfu_ratio == pytest.approx(2.0)
    target = ComputeScaledPrefillModel(source, 0.5, fit.compute_scale, "t")
    assert target.t_prefill_s(40_000) - 0.5 == pytest.approx(3 * (source.t_prefill_s(40_000) - 0.5))
    assert target.s_kv_bytes(5000) == source.s_kv_bytes(5000)
    with pytest.raises(ValueError):
        calibrate_compute_scale(source, 0.5, at_tokens=10_000, target_t_s=0.4, peak_ratio=1.0)
