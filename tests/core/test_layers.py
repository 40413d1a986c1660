from __future__ import annotations

import pytest

from prfaas.core.layers import LayerKind, LayerStateSpec, total_state_bytes


def test_full_attention_grows_linearly() -> None:
    spec = LayerStateSpec(LayerKind.FULL_GQA, kv_elements_per_token=2 * 8 * 128, kv_dtype="bf16")
    assert spec.kv_bytes_per_token == 4096
    assert spec.state_bytes(0) == 0
    assert spec.state_bytes(1000) == 4_096_000


def test_swa_is_capped_by_window() -> None:
    spec = LayerStateSpec(LayerKind.SWA, kv_elements_per_token=10, kv_dtype="fp32", window_tokens=128)
    assert spec.state_bytes(100) == 100 * 40
    assert spec.state_bytes(10_000) == 128 * 40


def test_linear_state_is_length_independent() -> None:
    spec = LayerStateSpec(
        LayerKind.LINEAR, fixed_state_elements=32 * 128 * 128, conv_state_elements=3 * 6144, conv_state_dtype="bf16"
    )
    assert spec.state_bytes(1) == spec.state_bytes(100_000) == 32 * 128 * 128 * 4 + 3 * 6144 * 2


def test_total_sums_layers() -> None:
    specs = [
        LayerStateSpec(LayerKind.MLA, kv_elements_per_token=576),
        LayerStateSpec(LayerKind.LINEAR, fixed_state_elements=4),
    ]
    assert total_state_bytes(specs, 10) == 576 * 2 * 10 + 16


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="window_tokens"):
        LayerStateSpec(LayerKind.SWA, kv_elements_per_token=1)
    with pytest.raises(ValueError, match="dtype"):
        LayerStateSpec(LayerKind.MLA, kv_elements_per_token=1, kv_dtype="int3")
    with pytest.raises(ValueError, match=">= 0"):
        LayerStateSpec(LayerKind.MLA, kv_elements_per_token=-1)
