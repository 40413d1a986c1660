"""Model architectures against CATALOG.md: per-token KV bytes, fixed state, layouts, FLOP coefficients,
parameter counts and dtype overrides."""

from __future__ import annotations

import pytest

from prfaas.catalog import list_models, load_model
from prfaas.core.layers import LayerKind, LinearVariant
from prfaas.core.units import KIB_BYTES, MIB_BYTES
from prfaas.perf.arch import fixed_state_bytes, kv_bytes_per_token, recurrent_state_bytes, swa_window_bytes

MODELS = (
    "kimi-linear-48b-a3b", "mimo-v2-flash", "qwen3.5-397b-a17b", "qwen3-next-80b-a3b", "ring-2.5-1t",
    "minimax-m2.5", "qwen3-235b-a22b", "deepseek-v3", "kimi-k2", "llama-3-70b",
)

# CATALOG.md §2, "Per-token breakdown" (BF16 = 2 B): bytes per token of the unbounded layers.
KV_BYTES_PER_TOKEN = {
    "minimax-m2.5": 62 * 2 * 8 * 128 * 2,
    "qwen3-235b-a22b": 94 * 2 * 4 * 128 * 2,
    "llama-3-70b": 80 * 2 * 8 * 128 * 2,
    "deepseek-v3": 61 * 576 * 2,
    "kimi-k2": 61 * 576 * 2,
    "kimi-linear-48b-a3b": 7 * 576 * 2,
    "qwen3-next-80b-a3b": 12 * 2 * 2 * 256 * 2,
    "qwen3.5-397b-a17b": 15 * 2 * 2 * 256 * 2,
    "mimo-v2-flash": 9 * 4 * 320 * 2,
    "ring-2.5-1t": 10 * 576 * 2,
}
# The "Per-token KV, BF16 (B)" column itself.
KV_BYTES_PUBLISHED = {
    "minimax-m2.5": 253_952, "qwen3-235b-a22b": 192_512, "llama-3-70b": 327_680, "deepseek-v3": 70_272,
    "kimi-k2": 70_272, "kimi-linear-48b-a3b": 8_064, "qwen3-next-80b-a3b": 24_576,
    "qwen3.5-397b-a17b": 30_720, "mimo-v2-flash": 23_040, "ring-2.5-1t": 11_520,
}
# Fixed per-request state (CATALOG.md §2): fp32 recurrent + BF16 conv; MiMo's full SWA windows.
FIXED_STATE_BYTES = {
    "kimi-linear-48b-a3b": 20 * (32 * 128 * 128 * 4 + 3 * 3 * 32 * 128 * 2),
    "qwen3-next-80b-a3b": 36 * (32 * 128 * 128 * 4 + 3 * (2 * 16 * 128 + 32 * 128) * 2),
    "qwen3.5-397b-a17b": 45 * (64 * 128 * 128 * 4 + 3 * (2 * 16 * 128 + 64 * 128) * 2),
    "mimo-v2-flash": 39 * 8 * 320 * 128 * 2,
    "ring-2.5-1t": 70 * 64 * 128 * 128 * 4,
}
FIXED_STATE_MIB_PUBLISHED = {
    "kimi-linear-48b-a3b": 41.4, "qwen3-next-80b-a3b": 73.7,
    "qwen3.5-397b-a17b": 183.2, "mimo-v2-flash": 24.4,
}


def test_every_catalog_model_is_listed() -> None:
    assert sorted(MODELS) == list_models()


@pytest.mark.parametrize("name", MODELS)
def test_model_loads_with_one_spec_per_layer(name: str) -> None:
    arch = load_model(name)
    assert arch.name == name
    assert len(arch.layers) == arch.num_layers
    assert arch.total_params >= arch.active_params > 0
    assert arch.sources


@pytest.mark.parametrize("name", MODELS)
def test_kv_bytes_per_token_match_catalog_exactly(name: str) -> None:
    arch = load_model(name)
    assert kv_bytes_per_token(arch) == KV_BYTES_PER_TOKEN[name] == KV_BYTES_PUBLISHED[name]


@pytest.mark.parametrize("name", MODELS)
def test_fixed_state_matches_catalog_exactly(name: str) -> None:
    arch = load_model(name)
    assert fixed_state_bytes(arch) == FIXED_STATE_BYTES.get(name, 0)
    if name in FIXED_STATE_MIB_PUBLISHED:
        assert round(fixed_state_bytes(arch) / MIB_BYTES, 1) == FIXED_STATE_MIB_PUBLISHED[name]


def test_published_kib_per_token_headlines() -> None:
    assert kv_bytes_per_token(load_model("qwen3.5-397b-a17b")) == 30 * KIB_BYTES
    assert kv_bytes_per_token(load_model("minimax-m2.5")) == 248 * KIB_BYTES
    assert round(kv_bytes_per_token(load_model("deepseek-v3")) / KIB_BYTES, 1) == 68.6


def test_mimo_state_is_swa_window_not_recurrent() -> None:
    arch = load_model("mimo-v2-flash")
    assert recurrent_state_bytes(arch) == 0
    assert swa_window_bytes(arch) == fixed_state_bytes(arch)
    assert {spec.window_tokens for spec in arch.layers if spec.kind is LayerKind.SWA} == {128}


def _indices(name: str, kind: LayerKind) -> list[int]:
    return [i for i, spec in enumerate(load_model(name).layers) if spec.kind is kind]


def test_layouts_expand_to_the_catalog_indices() -> None:
    assert _indices("qwen3.5-397b-a17b", LayerKind.FULL_GQA) == list(range(3, 60, 4))
    assert _indices("qwen3-next-80b-a3b", LayerKind.FULL_GQA) == list(range(3, 48, 4))
    assert _indices("ring-2.5-1t", LayerKind.MLA) == list(range(7, 80, 8))
    assert _indices("kimi-linear-48b-a3b", LayerKind.MLA) == [3, 7, 11, 15, 19, 23, 26]
    assert _indices("mimo-v2-flash", LayerKind.FULL_GQA) == [0, 5, 11, 17, 23, 29, 35, 41, 47]
    mimo_pattern = [0, 1, 1, 1, 1, 0] + [1, 1, 1, 1, 1, 0] * 7
    assert [1 if s.kind is LayerKind.SWA else 0 for s in load_model("mimo-v2-flash").layers] == mimo_pattern


def test_layer_counts_and_linear_variants() -> None:
    counts = {
        "kimi-linear-48b-a3b": (LayerKind.LINEAR, 20, LinearVariant.KDA),
        "qwen3.5-397b-a17b": (LayerKind.LINEAR, 45, LinearVariant.GDN),
        "qwen3-next-80b-a3b": (LayerKind.LINEAR, 36, LinearVariant.GDN),
        "ring-2.5-1t": (LayerKind.LINEAR, 70, LinearVariant.LIGHTNING),
    }
    for name, (kind, expected, variant) in counts.items():
        arch = load_model(name)
        assert arch.count(kind) == expected
        assert {s.linear_variant for s in arch.layers if s.kind is kind} == {variant}
    assert load_model("mimo-v2-flash").count(LayerKind.SWA) == 39
    assert load_model("deepseek-v3").count(LayerKind.MLA) == 61


def test_ring_marks_its_unverified_fields_and_others_have_none() -> None:
    ring = load_model("ring-2.5-1t")
    expected = ("model.hidden_size", "attention.mla.num_q_heads", "attention.lightning.num_heads")
    for key in (*expected, "dtypes.state"):
        assert key in ring.unverified_fields
    for name in MODELS:
        if name != "ring-2.5-1t":
            assert load_model(name).unverified_fields == ()


def test_names_are_case_insensitive_and_paths_load() -> None:
    from prfaas.catalog.models import model_path

    assert load_model("Qwen3.5-397B-A17B") == load_model("qwen3.5-397b-a17b")
    assert load_model(str(model_path("minimax-m2.5"))).name == "minimax-m2.5"


# CATALOG.md §3.2: A = Σ_full n_q (d_qk + d_v), and the decode coefficient per token of context.
ATTENTION_COEFF = {
    "minimax-m2.5": (761_856, 1.52e6), "qwen3-235b-a22b": (1_540_096, 3.08e6),
    "llama-3-70b": (1_310_720, 2.62e6), "deepseek-v3": (2_498_560, 1.70e7), "kimi-k2": (1_249_280, 8.50e6),
    "kimi-linear-48b-a3b": (71_680, 4.87e5), "qwen3-next-80b-a3b": (98_304, 1.97e5),
    "qwen3.5-397b-a17b": (245_760, 4.92e5), "mimo-v2-flash": (184_320, 3.69e5),
    "ring-2.5-1t": (204_800, None),
}


@pytest.mark.parametrize("name", MODELS)
def test_attention_coefficients_match_catalog(name: str) -> None:
    arch = load_model(name)
    a_coeff, decode_coeff = ATTENTION_COEFF[name]
    assert arch.attention_flops_coeff == a_coeff
    if decode_coeff is not None:
        assert arch.decode_attention_coeff == pytest.approx(decode_coeff, rel=0.01)


def test_mimo_swa_term() -> None:
    (term,) = load_model("mimo-v2-flash").swa_terms
    assert term.window_tokens == 128
    assert 2 * term.coeff == pytest.approx(1.60e6, rel=0.01)


# CATALOG.md §3.1, recomputed from the configs: total, active (with embeddings), compute-active N.
PARAMS_B = {
    "deepseek-v3": (671.03, 37.55, 36.62), "kimi-k2": (1026.4, 32.86, 31.69),
    "qwen3-235b-a22b": (235.09, 22.19, 21.57), "llama-3-70b": (70.55, 70.55, 69.50),
    "minimax-m2.5": (228.7, 11.03, 10.42), "mimo-v2-flash": (308.8, 15.45, 14.82),
    "qwen3-next-80b-a3b": (79.67, 3.87, 3.56), "qwen3.5-397b-a17b": (396.35, 17.35, 16.33),
    "kimi-linear-48b-a3b": (49.1, 3.48, 3.11),
}


@pytest.mark.parametrize("name", sorted(PARAMS_B))
def test_recomputed_parameters_within_two_percent_of_catalog(name: str) -> None:
    arch = load_model(name)
    total, active, compute_active = PARAMS_B[name]
    assert arch.param_counts is not None
    assert arch.param_counts.total / 1e9 == pytest.approx(total, rel=0.02)
    assert arch.param_counts.active / 1e9 == pytest.approx(active, rel=0.02)
    assert arch.compute_active_params / 1e9 == pytest.approx(compute_active, rel=0.02)
    # and the recomputed total lands near the published one
    assert arch.param_counts.total == pytest.approx(arch.total_params, rel=0.03)


def test_ring_uses_its_explicit_unverified_compute_active_params() -> None:
    ring = load_model("ring-2.5-1t")
    assert ring.param_counts is None
    assert ring.compute_active_params == 62e9
    assert "params.compute_active" in ring.unverified_fields


def test_fp8_kv_halves_per_token_bytes_and_keeps_recurrent_state() -> None:
    arch = load_model("qwen3.5-397b-a17b")
    fp8 = arch.with_dtypes(kv_dtype="fp8")
    assert kv_bytes_per_token(fp8) * 2 == kv_bytes_per_token(arch)
    assert recurrent_state_bytes(fp8) == recurrent_state_bytes(arch)
    assert kv_bytes_per_token(arch) == 30 * KIB_BYTES  # the original is untouched
    assert fp8.attention_flops_coeff == arch.attention_flops_coeff


def test_state_dtype_override_halves_recurrent_but_not_conv_state() -> None:
    arch = load_model("qwen3-next-80b-a3b")
    bf16_state = arch.with_dtypes(state_dtype="bf16")
    recurrent = 36 * 32 * 128 * 128
    assert recurrent_state_bytes(arch) - recurrent_state_bytes(bf16_state) == recurrent * 2
    assert all(s.fixed_state_dtype == "bf16" for s in bf16_state.layers if s.kind is LayerKind.LINEAR)


def test_ring_bf16_state_gives_catalogs_140_mib() -> None:
    ring = load_model("ring-2.5-1t").with_dtypes(state_dtype="bf16")
    assert fixed_state_bytes(ring) == 140 * MIB_BYTES


def test_unknown_dtype_override_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("deepseek-v3").with_dtypes(kv_dtype="int3")
