"""Supported hybrid families: how a Hugging Face config maps to per-layer state geometry.

One `Family` per architecture group, keyed by the config's `model_type`. A family says how big its linear
(conv + recurrent) state and its attention KV are, whether full-attention layers store MLA latents, and whether the
model uses MiniMax's own cache class. Layer roles come from `config.layer_types` (every supported family has it):

    full_attention      -> FULL_KV (GQA, or MLA for Kimi Linear)
    sliding_attention   -> SLIDING_KV (kept tokens = sliding_window - 1)
    linear_attention    -> LINEAR (GDN, KDA, Lightning or Mamba2 by family)
    mlp / moe           -> NONE

Pure: reads config attributes only, imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prfaas.core.errors import UnknownNameError
from prfaas.core.layers import LayerKind, LinearVariant
from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.geometry import LayerGeometry, PartKind

Shape = tuple[int, ...]
LinearShapes = Callable[[Any], tuple[Shape | None, Shape | None]]  # cfg -> (conv, recurrent), batch excluded
KVShapes = Callable[[Any], tuple[tuple[int, int], tuple[int, int]]]  # cfg -> ((kh, kd), (vh, vd))

_NONE_LAYER_TYPES = frozenset({"mlp", "moe", "dense", "dummy"})


@dataclass(frozen=True, slots=True)
class Family:
    """How one architecture group keeps per-request state."""

    name: str
    model_types: tuple[str, ...]
    kv_shapes: KVShapes
    linear_shapes: LinearShapes | None = None
    linear_variant: LinearVariant | None = None
    full_layer_kind: LayerKind = LayerKind.FULL_GQA
    uses_minimax_cache: bool = False
    # The recurrent state's dtype: fixed float32 (GDN, KDA and Mamba2 keep it in fp32 even for bf16 weights),
    # or None for the model's dtype (MiniMax's lightning-attention cache).
    recurrent_dtype: str | None = "float32"


def _head_dim(cfg: Any) -> int:
    head_dim = getattr(cfg, "head_dim", None)
    return int(head_dim) if head_dim else int(cfg.hidden_size // cfg.num_attention_heads)


def _gqa_kv(cfg: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    return (kv_heads, _head_dim(cfg)), (kv_heads, _head_dim(cfg))


def _mla_kv(cfg: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    # Kimi Linear caches the compressed latent as "keys" and the shared rope key as "values".
    return (1, int(cfg.kv_lora_rank)), (1, int(cfg.qk_rope_head_dim))


def _gdn_linear(cfg: Any) -> tuple[Shape | None, Shape | None]:
    key_dim = cfg.linear_num_key_heads * cfg.linear_key_head_dim
    value_dim = cfg.linear_num_value_heads * cfg.linear_value_head_dim
    conv = (2 * key_dim + value_dim, int(cfg.linear_conv_kernel_dim))
    recurrent = (int(cfg.linear_num_value_heads), int(cfg.linear_key_head_dim), int(cfg.linear_value_head_dim))
    return conv, recurrent


def _kda_linear(cfg: Any) -> tuple[Shape | None, Shape | None]:
    heads, dim = int(cfg.linear_num_heads), int(cfg.linear_head_dim)
    return (3 * heads * dim, int(cfg.linear_conv_kernel_dim)), (heads, dim, dim)


def _lightning_linear(cfg: Any) -> tuple[Shape | None, Shape | None]:
    heads, dim = int(cfg.num_attention_heads), _head_dim(cfg)
    return None, (heads, dim, dim)


def _bamba_linear(cfg: Any) -> tuple[Shape | None, Shape | None]:
    heads, head_dim, state = int(cfg.mamba_n_heads), int(cfg.mamba_d_head), int(cfg.mamba_d_state)
    conv = (heads * head_dim + 2 * int(cfg.mamba_n_groups) * state, int(cfg.mamba_d_conv))
    return conv, (heads, head_dim, state)


def _nemotron_h_linear(cfg: Any) -> tuple[Shape | None, Shape | None]:
    heads, head_dim, state = int(cfg.mamba_num_heads), int(cfg.mamba_head_dim), int(cfg.ssm_state_size)
    conv = (heads * head_dim + 2 * int(cfg.n_groups) * state, int(cfg.conv_kernel))
    return conv, (heads, head_dim, state)


FAMILIES: tuple[Family, ...] = (
    Family("qwen3-next", ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"), _gqa_kv, _gdn_linear,
           LinearVariant.GDN),
    Family("kimi-linear", ("kimi_linear",), _mla_kv, _kda_linear, LinearVariant.KDA, LayerKind.MLA),
    Family("minimax", ("minimax",), _gqa_kv, _lightning_linear, LinearVariant.LIGHTNING,
           uses_minimax_cache=True, recurrent_dtype=None),
    Family("bamba", ("bamba",), _gqa_kv, _bamba_linear, LinearVariant.MAMBA2),
    Family("nemotron-h", ("nemotron_h",), _gqa_kv, _nemotron_h_linear, LinearVariant.MAMBA2),
    Family("swa", ("gemma3_text", "olmo3", "qwen2", "llama", "mistral", "qwen3"), _gqa_kv),
)


def family_for_model_type(model_type: str) -> Family:
    """The family that handles `model_type`; UnknownNameError lists the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = [t for f in FAMILIES for t in f.model_types]
    raise UnknownNameError("model type", model_type, known)


def text_config(cfg: Any) -> Any:
    """The decoder config of a (possibly multimodal) config."""
    getter = getattr(cfg, "get_text_config", None)
    return getter() if callable(getter) else cfg


def _layer_geometry(family: Family, cfg: Any, index: int, layer_type: str, dtype: str) -> LayerGeometry:
    if layer_type == "full_attention":
        keys, values = family.kv_shapes(cfg)
        return LayerGeometry(index, PartKind.FULL_KV, family.full_layer_kind, keys, values, kv_dtype=dtype)
    if layer_type == "sliding_attention":
        keys, values = family.kv_shapes(cfg)
        window = int(cfg.sliding_window) - 1
        return LayerGeometry(index, PartKind.SLIDING_KV, LayerKind.SWA, keys, values, kv_dtype=dtype,
                             window_tokens=window)
    if layer_type == "linear_attention" and family.linear_shapes is not None:
        conv, recurrent = family.linear_shapes(cfg)
        return LayerGeometry(index, PartKind.LINEAR, LayerKind.LINEAR, conv_shape=conv, conv_dtype=dtype,
                             recurrent_shape=recurrent, recurrent_dtype=family.recurrent_dtype or dtype,
                             linear_variant=family.linear_variant)
    if layer_type in _NONE_LAYER_TYPES:
        return LayerGeometry(index, PartKind.NONE, LayerKind.NONE)
    raise UnsupportedModelError(f"layer type {layer_type!r} (layer {index}) is not supported for {family.name}")


def geometries_from_config(cfg: Any, dtype: str = "float32") -> tuple[LayerGeometry, ...]:
    """Per-layer geometry of a Hugging Face config for a model running in `dtype` (a torch dtype name)."""
    cfg = text_config(cfg)
    family = family_for_model_type(str(cfg.model_type))
    layer_types = getattr(cfg, "layer_types", None)
    if not layer_types:
        layer_types = ["full_attention"] * int(cfg.num_hidden_layers)
    return tuple(_layer_geometry(family, cfg, i, str(t), dtype) for i, t in enumerate(layer_types))
