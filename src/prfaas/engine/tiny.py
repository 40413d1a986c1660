"""Tiny random-weight configs of every supported family, for tests and quick demos (no download).

`tiny_config(family)` returns a Hugging Face config of about a million parameters; `save_tiny_checkpoint` writes a
random-weight checkpoint folder that `load_model(path)` loads back like any local checkpoint. Sliding-window
families use a window of 64 tokens so tests cover prompts shorter and longer than the window cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prfaas.core.errors import UnknownNameError
from prfaas.engine.hf import transformers

TINY_WINDOW_TOKENS = 64
_COMMON: dict[str, Any] = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)
_LIN3_FULL1 = ["linear_attention"] * 3 + ["full_attention"]
_SWA3_FULL1 = ["sliding_attention"] * 3 + ["full_attention"]


def _qwen3_next() -> Any:
    return transformers.Qwen3NextConfig(
        **_COMMON, num_hidden_layers=4, head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2, layer_types=_LIN3_FULL1)


def _qwen3_5() -> Any:
    return transformers.Qwen3_5TextConfig(
        **_COMMON, num_hidden_layers=4, head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, layer_types=_LIN3_FULL1)


def _kimi_linear() -> Any:
    return transformers.KimiLinearConfig(
        **{**_COMMON, "num_key_value_heads": 4}, num_hidden_layers=4, moe_intermediate_size=32,
        num_local_experts=4, num_experts_per_tok=2, n_shared_experts=1, kv_lora_rank=16, q_lora_rank=None,
        qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=8, linear_head_dim=16, linear_num_heads=4,
        linear_conv_kernel_dim=4, mlp_layer_types=["dense"] + ["sparse"] * 3, layer_types=_LIN3_FULL1)


def _minimax() -> Any:
    return transformers.MiniMaxConfig(
        **_COMMON, num_hidden_layers=4, head_dim=16, num_local_experts=4, num_experts_per_tok=2, block_size=32,
        layer_types=_LIN3_FULL1)


def _gemma3() -> Any:
    return transformers.Gemma3TextConfig(
        **_COMMON, num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=16, sliding_window=TINY_WINDOW_TOKENS,
        layer_types=_SWA3_FULL1)


def _olmo3() -> Any:
    return transformers.Olmo3Config(**_COMMON, num_hidden_layers=4, sliding_window=TINY_WINDOW_TOKENS,
                                    layer_types=_SWA3_FULL1)


def _bamba() -> Any:
    return transformers.BambaConfig(
        **_COMMON, num_hidden_layers=4, attn_layer_indices=[3], mamba_n_heads=4, mamba_d_head=32, mamba_n_groups=1,
        mamba_d_state=16, mamba_chunk_size=32)


def _nemotron_h() -> Any:
    return transformers.NemotronHConfig(
        **_COMMON, head_dim=16,
        layers_block_type=["linear_attention", "mlp", "full_attention", "mlp"], ssm_state_size=16,
        mamba_num_heads=4, mamba_head_dim=32, n_groups=1, chunk_size=32, n_routed_experts=4,
        moe_intermediate_size=32, moe_shared_expert_intermediate_size=32)


TINY_CONFIGS: dict[str, Callable[[], Any]] = {
    "qwen3-next": _qwen3_next,
    "qwen3.5": _qwen3_5,
    "kimi-linear": _kimi_linear,
    "minimax": _minimax,
    "gemma3": _gemma3,
    "olmo3": _olmo3,
    "bamba": _bamba,
    "nemotron-h": _nemotron_h,
}


def tiny_config(family: str) -> Any:
    try:
        return TINY_CONFIGS[family]()
    except KeyError:
        raise UnknownNameError("tiny family", family, list(TINY_CONFIGS)) from None


def save_tiny_checkpoint(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a random-weight checkpoint of `family` into `folder` (created) and return it."""
    cfg = tiny_config(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    return folder
