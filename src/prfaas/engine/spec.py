"""`layer_specs_from_config`: the shared per-layer state specs (S_kv) of a Hugging Face config.

The catalog computes S_kv(l) from `LayerStateSpec`s; this is the same description derived from a checkpoint's
config, so `core.layers.total_state_bytes(layer_specs_from_config(cfg), l)` is exactly what the engine ships for a
prompt of l tokens. Pure (no torch).
"""

from __future__ import annotations

from typing import Any

from prfaas.core.layers import LayerStateSpec
from prfaas.engine.families import geometries_from_config

_CONFIG_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def config_dtype(cfg: Any, default: str = "float32") -> str:
    """The torch dtype name a config declares (`dtype` / `torch_dtype`), or `default`."""
    declared = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    name = str(declared).removeprefix("torch.") if declared is not None else default
    return _CONFIG_DTYPES.get(name, default)


def layer_specs_from_config(cfg: Any, dtype: str | None = None) -> tuple[LayerStateSpec, ...]:
    """One `LayerStateSpec` per layer for a model running in `dtype` (default: the config's dtype, else fp32)."""
    geometries = geometries_from_config(cfg, dtype or config_dtype(cfg))
    return tuple(g.to_state_spec() for g in geometries)
