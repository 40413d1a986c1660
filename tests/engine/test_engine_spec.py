"""Per-layer geometry and specs: the shipped bytes equal core's S_kv formula for every family."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import FAMILIES, TinyModels, random_prompt

from prfaas.core.errors import UnknownNameError
from prfaas.core.layers import LayerKind, total_state_bytes
from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.families import family_for_model_type, geometries_from_config
from prfaas.engine.models import load_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.spec import layer_specs_from_config
from prfaas.engine.tiny import TINY_WINDOW_TOKENS, tiny_config

EXPECTED_KINDS = {
    "qwen3-next": [LayerKind.LINEAR] * 3 + [LayerKind.FULL_GQA],
    "qwen3.5": [LayerKind.LINEAR] * 3 + [LayerKind.FULL_GQA],
    "kimi-linear": [LayerKind.LINEAR] * 3 + [LayerKind.MLA],
    "minimax": [LayerKind.LINEAR] * 3 + [LayerKind.FULL_GQA],
    "gemma3": [LayerKind.SWA] * 3 + [LayerKind.FULL_GQA],
    "olmo3": [LayerKind.SWA] * 3 + [LayerKind.FULL_GQA],
    "bamba": [LayerKind.LINEAR] * 3 + [LayerKind.FULL_GQA],
    "nemotron-h": [LayerKind.LINEAR, LayerKind.NONE, LayerKind.FULL_GQA, LayerKind.NONE],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_kinds_follow_the_config(family: str) -> None:
    specs = layer_specs_from_config(tiny_config(family))
    assert [s.kind for s in specs] == EXPECTED_KINDS[family]


def test_sliding_spec_keeps_what_transformers_keeps() -> None:
    specs = layer_specs_from_config(tiny_config("gemma3"))
    assert specs[0].window_tokens == TINY_WINDOW_TOKENS - 1
    assert specs[3].window_tokens is None


def test_bf16_halves_kv_and_conv_but_not_the_recurrent_state() -> None:
    fp32 = layer_specs_from_config(tiny_config("qwen3.5"), "float32")
    bf16 = layer_specs_from_config(tiny_config("qwen3.5"), "bfloat16")
    assert bf16[3].kv_bytes_per_token * 2 == fp32[3].kv_bytes_per_token
    assert bf16[0].fixed_state_dtype == "fp32" and bf16[0].conv_state_dtype == "bf16"


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_state_bytes_equal_core_formula(tiny_paths: dict[str, Path], family: str) -> None:
    loaded = load_model(str(tiny_paths[family]), dtype="bfloat16")
    _, state = PrefillEngine(loaded).prefill(random_prompt(70, loaded.vocab_size, seed=7))
    assert state.nbytes == total_state_bytes(layer_specs_from_config(loaded.config, "bfloat16"), 70)
    assert state.layout() == loaded.expected_layout(70)


def test_unknown_model_type_lists_the_supported_ones() -> None:
    with pytest.raises(UnknownNameError, match="qwen3_next"):
        family_for_model_type("gpt2")


def test_unknown_layer_type_is_a_typed_error() -> None:
    cfg = tiny_config("qwen3.5")
    cfg.layer_types = ["linear_attention", "mystery", "linear_attention", "full_attention"]
    with pytest.raises(UnsupportedModelError, match="mystery"):
        geometries_from_config(cfg)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_tokens", [17, 150])
def test_state_bytes_equal_core_formula(tiny_models: TinyModels, family: str, num_tokens: int) -> None:
    loaded = tiny_models[family]
    _, state = PrefillEngine(loaded).prefill(random_prompt(num_tokens, loaded.vocab_size, seed=num_tokens))
    specs = layer_specs_from_config(loaded.config, "float32")
    assert state.nbytes == total_state_bytes(specs, num_tokens)
    assert state.layout() == loaded.expected_layout(num_tokens)
    for spec_index, spec in enumerate(specs):
        layer_bytes = sum(t.numel() * t.element_size() for p in state.layer_parts(spec_index)
                          for _, t in p.named_tensors())
        assert layer_bytes == spec.state_bytes(num_tokens)


def test_unsupported_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2}')
    with pytest.raises(UnknownNameError, match="model type 'gpt2'"):
        load_model(str(tmp_path))
    with pytest.raises(UnknownNameError, match="unknown model"):
        load_model(str(tmp_path / "missing"))
