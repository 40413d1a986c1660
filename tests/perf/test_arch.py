"""S_kv and FLOPs from architectures (CATALOG.md §2-§3), Φ_kv, and the arch -> roofline bridge."""

from __future__ import annotations

import pytest

from prfaas.catalog import list_models, load_accelerator, load_model
from prfaas.perf.arch import (
    arch_prefill_model,
    decode_flops,
    fixed_state_bytes,
    kv_bytes_per_token,
    linear_layer_prefill_flops,
    phi_kv_gbps,
    prefill_flops,
    s_kv_bytes,
    s_kv_bytes_continuous,
)
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.roofline import RooflineParams


@pytest.mark.parametrize("name", list_models())
def test_s_kv_is_fixed_plus_per_token_beyond_windows(name: str) -> None:
    arch = load_model(name)
    for num_tokens in (128, 1024, 32_768, 131_072):
        assert s_kv_bytes(arch, num_tokens) == fixed_state_bytes(arch) + num_tokens * kv_bytes_per_token(arch)


def test_swa_state_is_capped_by_the_window() -> None:
    mimo = load_model("mimo-v2-flash")
    per_token_swa = 39 * 8 * 320 * 2
    per_token_full = 9 * 4 * 320 * 2
    assert s_kv_bytes(mimo, 64) == 64 * (per_token_swa + per_token_full)
    assert s_kv_bytes(mimo, 10_000) - s_kv_bytes(mimo, 128) == (10_000 - 128) * per_token_full
    assert s_kv_bytes(mimo, 0) == 0


def test_s_kv_at_32k_matches_catalog_totals() -> None:
    gib = 2**30
    assert round(s_kv_bytes(load_model("qwen3.5-397b-a17b"), 32_768) / gib, 3) == 1.116
    assert round(s_kv_bytes(load_model("kimi-linear-48b-a3b"), 32_768) / gib, 3) == 0.287
    assert s_kv_bytes(load_model("minimax-m2.5"), 32_768) == 7.75 * gib


def test_continuous_s_kv_interpolates_between_integers() -> None:
    mimo = load_model("mimo-v2-flash")
    low, high = s_kv_bytes(mimo, 127), s_kv_bytes(mimo, 128)
    assert s_kv_bytes_continuous(mimo, 127.5) == pytest.approx((low + high) / 2)
    assert s_kv_bytes_continuous(mimo, 4096.0) == s_kv_bytes(mimo, 4096)
    with pytest.raises(ValueError):
        s_kv_bytes_continuous(mimo, -1)


def test_dense_gqa_prefill_is_2n_s_plus_a_s_squared() -> None:
    arch = load_model("llama-3-70b")
    s = 8192.0
    expected = 2 * arch.compute_active_params * s + 1_310_720 * s * s
    assert prefill_flops(arch, s) == pytest.approx(expected, rel=1e-12)


# CATALOG.md §3.2, "Prefill total @32K (PFLOP)".
PREFILL_32K_PFLOP = {
    "minimax-m2.5": 1.50, "qwen3-235b-a22b": 3.07, "llama-3-70b": 5.96, "deepseek-v3": 5.08, "kimi-k2": 3.42,
    "kimi-linear-48b-a3b": 0.28, "qwen3-next-80b-a3b": 0.34, "qwen3.5-397b-a17b": 1.35, "mimo-v2-flash": 1.18,
}


@pytest.mark.parametrize("name", sorted(PREFILL_32K_PFLOP))
def test_prefill_flops_at_32k_within_two_percent_of_catalog(name: str) -> None:
    assert prefill_flops(load_model(name), 32_768) / 1e15 == pytest.approx(PREFILL_32K_PFLOP[name], rel=0.02)


def test_linear_attention_terms_are_small_next_to_gemms() -> None:
    qwen = load_model("qwen3.5-397b-a17b")
    # CATALOG.md §3: ≈0.3 GFLOP/token for 45 GDN layers vs 32.7 GFLOP of GEMMs.
    assert 0.2e9 < linear_layer_prefill_flops(qwen) < 0.5e9
    assert linear_layer_prefill_flops(load_model("minimax-m2.5")) == 0


@pytest.mark.parametrize("name", ["qwen3.5-397b-a17b", "mimo-v2-flash", "deepseek-v3"])
def test_prefill_with_cached_prefix_is_the_incremental_work(name: str) -> None:
    arch = load_model(name)
    for cached, new in ((0, 100), (50, 30), (100, 5000), (4096, 4096)):
        whole, prefix = prefill_flops(arch, cached + new), prefill_flops(arch, cached)
        assert prefill_flops(arch, new, cached) == pytest.approx(whole - prefix, rel=1e-9)


def test_swa_prefill_cost_is_capped_per_token() -> None:
    mimo = load_model("mimo-v2-flash")
    (term,) = mimo.swa_terms
    full_part = mimo.attention_flops_coeff
    n = mimo.compute_active_params
    # beyond the window every new token attends exactly W positions in SWA layers
    delta = prefill_flops(mimo, 1000, 10_000)
    expected = 2 * n * 1000 + full_part * (1000**2 + 2 * 1000 * 10_000) + 2 * term.coeff * 128 * 1000
    assert delta == pytest.approx(expected, rel=1e-12)


def test_decode_flops_closed_forms() -> None:
    dsv3 = load_model("deepseek-v3")
    t = 10_000
    assert decode_flops(dsv3, t) == pytest.approx(2 * dsv3.compute_active_params + 2 * 61 * 128 * 1088 * t)
    mimo = load_model("mimo-v2-flash")
    (term,) = mimo.swa_terms
    assert decode_flops(mimo, 20_000) - decode_flops(mimo, 10_000) == pytest.approx(
        mimo.decode_attention_coeff * 10_000
    )  # the SWA term no longer grows
    assert decode_flops(mimo, 100) - decode_flops(mimo, 50) == pytest.approx(
        mimo.decode_attention_coeff * 50 + 2 * term.coeff * 50
    )


def test_phi_kv_eq1_units() -> None:
    assert phi_kv_gbps(701.3 * 2**20, 1.84) == pytest.approx(3.197, abs=5e-4)
    assert phi_kv_gbps(1e9, 8.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        phi_kv_gbps(1.0, 0.0)


def test_arch_prefill_model_is_a_prefill_cost_model() -> None:
    arch, h200 = load_model("qwen3.5-397b-a17b"), load_accelerator("h200")
    model = arch_prefill_model(arch, h200, 8, RooflineParams(t0_s=0.4, mfu=0.25))
    assert isinstance(model, PrefillCostModel)
    expected = 0.4 + prefill_flops(arch, 32_768) / (8 * 989e12 * 0.25)
    assert model.t_prefill_s(32_768) == pytest.approx(expected)
    assert model.s_kv_bytes(32_768) == s_kv_bytes(arch, 32_768)
    assert model.t_prefill_s(1000, 31_768) < model.t_prefill_s(32_768)
    assert model.name == "qwen3.5-397b-a17b@8xh200"
