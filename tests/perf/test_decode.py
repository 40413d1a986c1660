"""Memory-bound decode model: step time, calibration, MoE weight traffic and the SLO batch search."""

from __future__ import annotations

import pytest

from prfaas.catalog import load_accelerator, load_model
from prfaas.core.errors import InfeasibleError
from prfaas.perf.arch import s_kv_bytes
from prfaas.perf.base import DecodeCostModel
from prfaas.perf.decode import (
    DecodeParams,
    MemoryBoundDecodeModel,
    fit_decode,
    max_batch_under_slo,
    moe_weight_bytes_read,
)
from prfaas.perf.roofline import CalibrationError

BW = 4.0e12  # H20 HBM bytes/s
WEIGHTS = 80e9  # bytes over the whole instance


def weights_fn(batch_size: int) -> float:
    return WEIGHTS


def state_fn(context_tokens: float) -> float:
    return 100e3 * context_tokens + 50e6


def toy(params: DecodeParams, state_shards: int | None = None) -> MemoryBoundDecodeModel:
    return MemoryBoundDecodeModel("toy", weights_fn, state_fn, 8, BW, params, state_shards=state_shards)


def test_step_time_formula() -> None:
    model = toy(DecodeParams(overhead_s=0.004, mem_bw_efficiency=0.8))
    assert isinstance(model, DecodeCostModel)
    expected = 0.004 + (WEIGHTS / 8 + 16 * state_fn(20_000) / 8) / (BW * 0.8)
    assert model.t_step_s(16, 20_000) == pytest.approx(expected)
    replicated = toy(DecodeParams(0.004, 0.8), state_shards=1)
    assert replicated.t_step_s(16, 20_000) - model.t_step_s(16, 20_000) == pytest.approx(
        16 * state_fn(20_000) * (1 - 1 / 8) / (BW * 0.8)
    )
    with pytest.raises(ValueError):
        model.t_step_s(0, 100)


def test_fit_decode_recovers_known_parameters() -> None:
    truth = toy(DecodeParams(overhead_s=0.006, mem_bw_efficiency=0.65))
    points = [(b, ctx, truth.t_step_s(b, ctx)) for b in (1, 4, 16, 64) for ctx in (1000, 30_000)]
    fit = fit_decode(points, weights_fn, state_fn, 8, BW)
    assert fit.params.overhead_s == pytest.approx(0.006, rel=1e-9)
    assert fit.params.mem_bw_efficiency == pytest.approx(0.65, rel=1e-9)
    assert fit.max_abs_rel_error < 1e-9


def test_fit_decode_rejects_faster_than_hbm() -> None:
    ideal = toy(DecodeParams(0.0, 1.0))
    points = [(b, 1000, 0.5 * ideal.t_step_s(b, 1000)) for b in (1, 8, 64)]
    with pytest.raises(CalibrationError, match="efficiency"):
        fit_decode(points, weights_fn, state_fn, 8, BW)


def test_max_batch_matches_brute_force() -> None:
    model = toy(DecodeParams(overhead_s=0.005, mem_bw_efficiency=0.7))
    slo = 0.025
    brute = max(b for b in range(1, 2000) if model.t_step_s(b, 27_000) <= slo)
    assert max_batch_under_slo(model, slo, 27_000) == brute
    assert model.t_step_s(brute + 1, 27_000) > slo
    assert max_batch_under_slo(model, slo, 27_000, batch_cap=5) == min(5, brute)


def test_max_batch_infeasible_when_one_request_misses() -> None:
    model = toy(DecodeParams(overhead_s=0.03, mem_bw_efficiency=0.7))
    with pytest.raises(InfeasibleError, match="TPOT SLO"):
        max_batch_under_slo(model, 0.025, 1000)


def test_moe_weight_traffic_grows_with_batch_and_is_bounded() -> None:
    arch = load_model("qwen3.5-397b-a17b")
    one = moe_weight_bytes_read(arch, 1)
    assert one == pytest.approx(arch.compute_active_params * 2)
    values = [moe_weight_bytes_read(arch, b) for b in (1, 2, 8, 64, 4096)]
    assert values == sorted(values) and values[0] < values[-1]
    assert arch.param_counts is not None
    assert values[-1] <= arch.param_counts.total * 2
    dense = load_model("llama-3-70b")
    assert moe_weight_bytes_read(dense, 1) == moe_weight_bytes_read(dense, 64)


def test_from_arch_uses_catalog_numbers() -> None:
    arch, h20 = load_model("qwen3.5-397b-a17b"), load_accelerator("h20")
    params = DecodeParams(overhead_s=0.005, mem_bw_efficiency=0.7)
    model = MemoryBoundDecodeModel.from_arch(arch, h20, 8, params)
    expected = 0.005 + (moe_weight_bytes_read(arch, 20) / 8 + 20 * s_kv_bytes(arch, 27_000) / 8) / (4e12 * 0.7)
    assert model.t_step_s(20, 27_000) == pytest.approx(expected)
    assert max_batch_under_slo(model, 0.025, 27_000) >= 1
