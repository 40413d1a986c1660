"""The catalog's architecture (`catalog.ModelArch`) of a checkpoint vLLM serves, from its `config.json` (pure):
what the planner's S_kv(l) says that model's state is, to compare with the bytes the connector puts on the wire.

Hybrid layers map onto the catalog's mixers: GDN (Qwen3-Next) and Mamba2 (GraniteMoeHybrid, Falcon-H1, Zamba2)
as `LinearGeometry` (recurrent heads x d_k x d_v, conv over (kernel - 1) columns), Mamba1 (Jamba) with
d_k = d_state over the expanded width, LFM2's short conv as conv-only state.
"""

from __future__ import annotations

from typing import Any

from prfaas.catalog.geometry import GqaGeometry, LinearGeometry, MixerGeometry, StateDtypes
from prfaas.catalog.model import ModelArch
from prfaas.core.layers import LinearVariant


class UnknownArchitecture(ValueError):
    pass


def _gqa(cfg: dict[str, Any], heads_key: str = "num_attention_heads") -> GqaGeometry:
    heads = int(cfg[heads_key])
    head_dim = int(cfg.get("head_dim") or cfg.get("attention_head_dim") or cfg["hidden_size"] // heads)
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return GqaGeometry(heads, int(cfg.get("num_key_value_heads") or heads), head_dim, head_dim,
                       int(window) if window else None)


def _mamba2(cfg: dict[str, Any], heads: int, head_dim: int, groups: int, d_state: int, kernel: int) -> LinearGeometry:
    return LinearGeometry(LinearVariant.MAMBA2, num_heads=heads, num_k_heads=groups, head_dim_k=d_state,
                          head_dim_v=head_dim, conv_kernel=kernel)


def mixers(cfg: dict[str, Any]) -> tuple[MixerGeometry, ...]:
    """One mixer per cache layer, in model order (a parallel-hybrid layer counts its attention and SSM parts)."""
    kind = cfg.get("model_type")
    n = int(cfg["num_hidden_layers"])
    if kind in ("llama", "mistral", "qwen2", "qwen3"):
        return tuple(_gqa(cfg) for _ in range(n))
    if kind == "qwen3_next":
        gdn = LinearGeometry(LinearVariant.GDN, num_heads=int(cfg["linear_num_value_heads"]),
                             num_k_heads=int(cfg["linear_num_key_heads"]), head_dim_k=int(cfg["linear_key_head_dim"]),
                             head_dim_v=int(cfg["linear_value_head_dim"]),
                             conv_kernel=int(cfg["linear_conv_kernel_dim"]))
        return tuple(gdn if t == "linear_attention" else _gqa(cfg) for t in cfg["layer_types"])
    if kind == "granitemoehybrid":
        ssm = _mamba2(cfg, int(cfg["mamba_n_heads"]), int(cfg["mamba_d_head"]), int(cfg["mamba_n_groups"]),
                      int(cfg["mamba_d_state"]), int(cfg["mamba_d_conv"]))
        return tuple(ssm if t in ("mamba", "linear_attention") else _gqa(cfg) for t in cfg["layer_types"])
    if kind == "falcon_h1":  # every layer has both an attention and an SSM part
        ssm = _mamba2(cfg, int(cfg["mamba_n_heads"]), int(cfg["mamba_d_head"]), int(cfg["mamba_n_groups"]),
                      int(cfg["mamba_d_state"]), int(cfg["mamba_d_conv"]))
        return tuple(m for _ in range(n) for m in (_gqa(cfg), ssm))
    if kind == "jamba":
        width = int(cfg["mamba_expand"]) * int(cfg["hidden_size"])
        ssm = LinearGeometry(LinearVariant.MAMBA2, num_heads=1, num_k_heads=0, head_dim_k=int(cfg["mamba_d_state"]),
                             head_dim_v=width, conv_kernel=0)
        conv_only = width * (int(cfg["mamba_d_conv"]) - 1)
        out: list[MixerGeometry] = []
        for i in range(n):
            if i % int(cfg["attn_layer_period"]) == int(cfg["attn_layer_offset"]):
                out.append(_gqa(cfg))
            else:  # conv state over `width` channels: expressed as a conv-only linear mixer plus the SSM state
                out.append(LinearGeometry(LinearVariant.MAMBA2, num_heads=1, num_k_heads=0,
                                          head_dim_k=int(cfg["mamba_d_state"]), head_dim_v=width,
                                          conv_kernel=int(cfg["mamba_d_conv"])) if conv_only else ssm)
        return tuple(out)
    if kind == "lfm2":
        conv = LinearGeometry(LinearVariant.CONV, num_heads=1, num_k_heads=0, head_dim_k=0,
                              head_dim_v=int(cfg["hidden_size"]), conv_kernel=int(cfg["conv_L_cache"]))
        return tuple(conv if t == "conv" else _gqa(cfg) for t in cfg["layer_types"])
    raise UnknownArchitecture(f"no catalog mapping for model_type {kind!r} yet")


def arch_from_config(cfg: dict[str, Any], kv_dtype: str = "bf16", state_dtype: str = "fp32",
                     conv_dtype: str = "bf16") -> ModelArch:
    geometry = mixers(cfg)
    return ModelArch(name=str(cfg.get("model_type")), display_name=str(cfg.get("model_type")),
                     hidden_size=int(cfg["hidden_size"]), geometry=geometry, vocab_size=int(cfg["vocab_size"]),
                     max_position_tokens=int(cfg.get("max_position_embeddings", 4096)), weight_dtype=kv_dtype,
                     total_params=0.0, active_params=0.0, explicit_compute_active_params=1.0,
                     dtypes=StateDtypes(kv_dtype=kv_dtype, state_dtype=state_dtype, conv_dtype=conv_dtype))
