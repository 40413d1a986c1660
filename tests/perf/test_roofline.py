"""Calibrated roofline: the fit recovers known parameters, rejects impossible ones, and the model
implements PrefillCostModel."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.catalog import load_accelerator, load_model, load_phi_kv_table
from prfaas.perf.arch import fit_arch_roofline, s_kv_bytes
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.roofline import (
    CalibrationError,
    RooflineParams,
    RooflinePrefillModel,
    fit_affine_relative,
    fit_roofline,
)

PEAK = 989e12
N_GPU = 8


def quad_flops(num_tokens: float, num_cached_tokens: float) -> float:
    """A toy model: 2N·S + A·S² + 2A·S·c with N = 20e9, A = 8e5."""
    return 2 * 20e9 * num_tokens + 8e5 * (num_tokens**2 + 2 * num_tokens * num_cached_tokens)


def _synthetic(
    params: RooflineParams, lengths: list[int], noise: list[float] | None = None
) -> list[tuple[float, float]]:
    noise = noise or [0.0] * len(lengths)
    return [
        (n, (params.t0_s + quad_flops(n, 0) / (N_GPU * PEAK * params.mfu)) * (1 + e))
        for n, e in zip(lengths, noise, strict=True)
    ]


def test_fit_recovers_known_parameters_exactly() -> None:
    truth = RooflineParams(t0_s=0.35, mfu=0.22)
    fit = fit_roofline(_synthetic(truth, [1024, 4096, 16384, 65536, 131072]), quad_flops, N_GPU, PEAK)
    assert fit.params.t0_s == pytest.approx(0.35, rel=1e-9)
    assert fit.params.mfu == pytest.approx(0.22, rel=1e-9)
    assert fit.max_abs_rel_error < 1e-9


def test_fit_with_noise_stays_close() -> None:
    truth = RooflineParams(t0_s=0.4, mfu=0.3)
    rng = np.random.default_rng(7)
    lengths = [1024, 2048, 8192, 32768, 65536, 131072]
    points = _synthetic(truth, lengths, list(rng.normal(0.0, 0.01, len(lengths))))
    fit = fit_roofline(points, quad_flops, N_GPU, PEAK)
    assert fit.params.t0_s == pytest.approx(0.4, rel=0.05)
    assert fit.params.mfu == pytest.approx(0.3, rel=0.05)
    assert fit.rms_rel_error < 0.03
    assert len(fit.residuals_s) == len(lengths)


def test_relative_weighting_fits_short_prompts() -> None:
    # Absolute least squares would let the 0.4 s point drift; relative weighting keeps it within 1%.
    fit = fit_affine_relative([0.0, 1.0, 10.0, 100.0], [0.4, 1.4, 10.4, 100.4])
    assert fit.intercept == pytest.approx(0.4)
    assert fit.slope == pytest.approx(1.0)


def test_negative_intercept_is_clamped_to_zero() -> None:
    fit = fit_affine_relative([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # unconstrained: -0.5 + 1.0·x
    assert fit.intercept == 0.0
    assert fit.slope > 0


def test_impossible_points_raise_calibration_error() -> None:
    with pytest.raises(CalibrationError, match="MFU"):
        fit_roofline([(32768, 0.01), (65536, 0.02)], quad_flops, N_GPU, PEAK)
    with pytest.raises(CalibrationError, match="two points"):
        fit_roofline([(32768, 1.0)], quad_flops, N_GPU, PEAK)
    with pytest.raises(CalibrationError, match="slope"):
        fit_roofline([(1024, 2.0), (131072, 1.0)], quad_flops, N_GPU, PEAK)
    with pytest.raises(CalibrationError, match="> 0"):
        fit_roofline([(1024, 0.0), (131072, 1.0)], quad_flops, N_GPU, PEAK)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        RooflineParams(t0_s=-0.1, mfu=0.2)
    with pytest.raises(ValueError):
        RooflineParams(t0_s=0.1, mfu=1.5)


def test_model_evaluates_the_roofline() -> None:
    params = RooflineParams(t0_s=0.3, mfu=0.25)
    model = RooflinePrefillModel("toy", quad_flops, N_GPU, PEAK, params, lambda n: 1000.0 * n)
    assert isinstance(model, PrefillCostModel)
    assert model.t_prefill_s(8192) == pytest.approx(0.3 + quad_flops(8192, 0) / (N_GPU * PEAK * 0.25))
    assert model.t_prefill_s(0) == pytest.approx(0.3)
    assert model.t_prefill_s(1000, 7192) > model.t_prefill_s(1000)
    assert model.s_kv_bytes(10) == 10_000.0
    with pytest.raises(ValueError):
        RooflinePrefillModel("bad", quad_flops, 0, PEAK, params, lambda n: n)


def test_table3_calibration_lands_in_catalog_range() -> None:
    """CATALOG.md §4: T0 ≈ 0.3-0.4 s and MFU 10-30%-ish on 8×H200 reproduce Table 3 to first order."""
    arch, h200, table = load_model("minimax-m2.5"), load_accelerator("h200"), load_phi_kv_table()
    points = [
        (row.length_tokens, s_kv_bytes(arch, row.length_tokens) * 8 / (row.phi_kv_gbps * 1e9))
        for row in table.for_model("minimax-m2.5")
    ]
    fit = fit_arch_roofline(arch, points, h200, 8)
    assert 0.25 < fit.params.t0_s < 0.6
    assert 0.1 < fit.params.mfu < 0.5
    assert fit.max_abs_rel_error < 0.2
