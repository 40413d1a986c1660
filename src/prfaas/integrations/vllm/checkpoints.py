"""Tiny random-weight checkpoints for the vLLM backend (no download): run with the vLLM venv's python, whose
transformers is the one vLLM reads them with.

    <vllm-venv>/bin/python -m prfaas.integrations.vllm.checkpoints qwen3-next /path/out [--seed 0]

Families: a full-attention model (`llama`) and hybrids with linear-attention or SSM layers; the hybrids marked
`engine_supported=False` are families our own engine cannot run. Head dims are >= 32 (vLLM's CPU attention
kernels refuse 16); hybrids are bf16 (its CPU GDN kernel requires it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_COMMON: dict[str, Any] = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                               num_key_value_heads=2, max_position_embeddings=8192, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2)


@dataclass(frozen=True, slots=True)
class TinyFamily:
    name: str
    make: Callable[[Any], Any]  # transformers module -> config
    engine_supported: bool  # whether prfaas's own engine runs this family
    kind: str  # "full" | "linear" | "ssm" | "conv"


def _llama(t: Any) -> Any:
    return t.LlamaConfig(**_COMMON, num_hidden_layers=4, head_dim=32)


def _qwen3_next(t: Any) -> Any:
    return t.Qwen3NextConfig(
        **_COMMON, num_hidden_layers=4, head_dim=32, linear_conv_kernel_dim=4, linear_key_head_dim=128,
        linear_value_head_dim=128, linear_num_key_heads=2, linear_num_value_heads=4, moe_intermediate_size=64,
        shared_expert_intermediate_size=64, num_experts=4, num_experts_per_tok=2,
        layer_types=["linear_attention"] * 3 + ["full_attention"])


def _jamba(t: Any) -> Any:
    return t.JambaConfig(**_COMMON, num_hidden_layers=4, attn_layer_period=4, attn_layer_offset=3,
                         expert_layer_period=2, expert_layer_offset=1, num_experts=4, num_experts_per_tok=2,
                         mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8, use_mamba_kernels=False)


def _granite_hybrid(t: Any) -> Any:
    return t.GraniteMoeHybridConfig(**_COMMON, num_hidden_layers=4, layer_types=["mamba"] * 3 + ["attention"],
                                    mamba_n_heads=8, mamba_d_head=32, mamba_n_groups=1, mamba_d_state=16,
                                    mamba_chunk_size=32, num_local_experts=0, shared_intermediate_size=256)


def _falcon_h1(t: Any) -> Any:
    return t.FalconH1Config(**_COMMON, num_hidden_layers=4, head_dim=32, mamba_n_heads=4, mamba_d_head=32,
                            mamba_n_groups=1, mamba_d_state=16, mamba_chunk_size=32, mamba_d_ssm=128)


def _lfm2(t: Any) -> Any:
    return t.Lfm2Config(**{k: v for k, v in _COMMON.items() if k != "intermediate_size"}, intermediate_size=256,
                        num_hidden_layers=4, layer_types=["conv"] * 3 + ["full_attention"], conv_L_cache=3)


def _zamba2(t: Any) -> Any:
    return t.Zamba2Config(**_COMMON, num_hidden_layers=4, mamba_headdim=16, mamba_ngroups=1, mamba_d_state=16,
                          n_mamba_heads=8, hybrid_layer_ids=[3], layers_block_type=["mamba"] * 3 + ["hybrid"],
                          attention_head_dim=32, chunk_size=32)


FAMILIES: dict[str, TinyFamily] = {f.name: f for f in (
    TinyFamily("llama", _llama, True, "full"),
    TinyFamily("qwen3-next", _qwen3_next, True, "linear"),
    TinyFamily("jamba", _jamba, False, "ssm"),
    TinyFamily("granitemoehybrid", _granite_hybrid, False, "ssm"),
    TinyFamily("falcon-h1", _falcon_h1, False, "ssm"),
    TinyFamily("lfm2", _lfm2, False, "conv"),
    TinyFamily("zamba2", _zamba2, False, "ssm"),
)}


def save(family: str, out: Path, seed: int = 0) -> Path:
    import torch
    import transformers

    if family not in FAMILIES:
        raise SystemExit(f"unknown tiny family {family!r}; known: {', '.join(FAMILIES)}")
    config = FAMILIES[family].make(transformers)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    (out / "prfaas-tiny.json").write_text(json.dumps({"family": family, "seed": seed}))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    save(args.family, args.out, args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
