"""The embedded default model: a small Qwen3.5-style hybrid with deterministic random weights.

8 layers, (3 Gated DeltaNet + 1 gated full attention) x 2, hidden 512, vocab 2,048 (the shipped tokenizer),
about 28 M parameters: a 2,048-token prefill takes about a second on 2 CPU cores. The same seed gives bit-identical
weights in every process (so a prefill process and a decode process agree without shipping weights).
"""

from __future__ import annotations

from typing import Any

import torch

from prfaas.engine.hf import transformers
from prfaas.engine.models import LoadedModel, wrap_model
from prfaas.engine.tokenizer import BOS_ID, DEFAULT_VOCAB_SIZE, EOS_ID, PAD_ID, load_default_tokenizer

DEFAULT_MAX_CONTEXT_TOKENS = 16384


def default_config(num_layers: int = 8, hidden_size: int = 512) -> Any:
    """The default model's config (Qwen3.5 text, GDN 3:1 full attention)."""
    if num_layers % 4:
        raise ValueError("num_layers must be a multiple of 4 (3 linear + 1 full per group)")
    return transformers.Qwen3_5TextConfig(
        vocab_size=DEFAULT_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 64,
        num_key_value_heads=2,
        head_dim=64,
        linear_conv_kernel_dim=4,
        linear_key_head_dim=64,
        linear_value_head_dim=64,
        linear_num_key_heads=hidden_size // 128,
        linear_num_value_heads=hidden_size // 64,
        max_position_embeddings=DEFAULT_MAX_CONTEXT_TOKENS,
        layer_types=(["linear_attention"] * 3 + ["full_attention"]) * (num_layers // 4),
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def build_default_model(
    seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32, config: Any | None = None
) -> LoadedModel:
    """The default model with weights drawn from `seed` (the global RNG is left untouched)."""
    cfg = config if config is not None else default_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    model = model.to(device=device, dtype=dtype)
    return wrap_model("default", model, load_default_tokenizer())
