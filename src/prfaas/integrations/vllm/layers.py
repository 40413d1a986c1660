"""What each of a vLLM model's cache layers holds, read from vLLM's KV-cache config (duck-typed specs), and the
prfaas wire layout of one request's state built from it: the one S_kv definition (`core.state_layout`).

Attention layers cross as ``keys``/``values`` ``[kv_heads, positions, head_dim]``; sliding-window layers only
their last `window` positions (rounded down to a block); linear/SSM layers their state tensors as flat bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import StateLayout, TensorSpec

ATTENTION = "attention"
SLIDING = "sliding"
STATE = "state"

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "int8": 1,
                "uint8": 1, "float64": 8}
_LAYER_NUMBER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


class UnsupportedCacheError(ValueError):
    """A cache kind prfaas cannot move yet (e.g. MLA latent caches, encoder caches)."""


@dataclass(frozen=True, slots=True)
class CacheLayer:
    index: int  # position on the wire: cache layers sorted by the model's layer number (a parallel-hybrid layer
    # with attention and SSM parts counts twice)
    name: str  # vLLM's layer name (key of register_kv_caches)
    group_id: int  # KV-cache group (which block ids address it)
    kind: str  # ATTENTION | SLIDING | STATE
    block_size: int
    dtype: str = "uint8"
    kv_heads: int = 0
    head_dim: int = 0
    window_tokens: int = 0  # SLIDING only
    state_bytes: tuple[int, ...] = ()  # STATE only: bytes of each state tensor, page order
    state_dtypes: tuple[str, ...] = ()  # STATE only: their element types (conv state first, then the recurrent one)
    page_bytes: int = 0  # STATE only
    state_block_aligned: bool = False  # STATE: True in vLLM's 'align' mode (state of n positions at block (n-1)//B)

    def first_position(self, start: int, num_tokens: int) -> int:
        """First position this layer ships when positions [start, num_tokens) cross."""
        if self.kind != SLIDING:
            return start
        in_window = max(0, num_tokens - self.window_tokens)
        return max(start, in_window - in_window % self.block_size)

    def state_block_index(self, num_tokens: int) -> int:
        """Where in the group's block ids the state after `num_tokens` positions lives."""
        return (num_tokens - 1) // self.block_size if self.state_block_aligned else 0


def dtype_name(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPE_BYTES:
        raise UnsupportedCacheError(f"cache dtype {name} cannot cross the wire yet")
    return name


def layer_number(name: str, fallback: int) -> int:
    match = _LAYER_NUMBER.search(name)
    return int(match.group(1)) if match else fallback


def cache_layers(kv_cache_config: Any, mamba_cache_mode: str = "none") -> tuple[CacheLayer, ...]:
    """One `CacheLayer` per cache layer of vLLM's `KVCacheConfig`, in model order."""
    out: list[CacheLayer] = []
    seen = 0
    for group_id, group in enumerate(kv_cache_config.kv_cache_groups):
        spec = group.kv_cache_spec
        for name in group.layer_names:
            out.append(_layer(name, layer_number(name, 10_000 + seen), group_id, spec, mamba_cache_mode))
            seen += 1
    ordered = sorted(out, key=lambda layer: (layer.index, layer.name))
    return tuple(replace(layer, index=i) for i, layer in enumerate(ordered))


def _layer(name: str, index: int, group_id: int, spec: Any, mamba_cache_mode: str) -> CacheLayer:
    kind_name = type(spec).__name__
    if hasattr(spec, "shapes") and hasattr(spec, "dtypes"):
        sizes = tuple(_prod(shape) * _DTYPE_BYTES[dtype_name(dt)] for shape, dt in zip(spec.shapes, spec.dtypes,
                                                                                         strict=True))
        return CacheLayer(index, name, group_id, STATE, int(spec.block_size), state_bytes=sizes,
                          state_dtypes=tuple(dtype_name(dt) for dt in spec.dtypes),
                          page_bytes=int(spec.page_size_bytes), state_block_aligned=mamba_cache_mode == "align")
    if "MLA" in kind_name or getattr(spec, "use_mla", False):
        raise UnsupportedCacheError(f"layer {name}: MLA caches ({kind_name}) are not moved by prfaas yet")
    if not hasattr(spec, "num_kv_heads") or not hasattr(spec, "head_size"):
        raise UnsupportedCacheError(f"layer {name}: unknown cache spec {kind_name}")
    window = getattr(spec, "sliding_window", None)
    kind = SLIDING if window else ATTENTION
    return CacheLayer(index, name, group_id, kind, int(spec.block_size), dtype_name(spec.dtype),
                      int(spec.num_kv_heads), int(spec.head_size), int(window or 0))


def _prod(shape: Iterable[int]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def wire_layout(layers: Sequence[CacheLayer], start: int, num_tokens: int) -> StateLayout:
    """The state of positions [start, num_tokens) on the wire, layer by layer in model order."""
    if not 0 <= start < num_tokens:
        raise ValueError(f"nothing to send: positions [{start}, {num_tokens})")
    specs: list[TensorSpec] = []
    for layer in layers:
        if layer.kind == STATE:
            for i, size in enumerate(layer.state_bytes):
                specs.append(TensorSpec(layer.index, LayerKind.LINEAR, f"state{i}", "uint8", (size,)))
            continue
        count = num_tokens - layer.first_position(start, num_tokens)
        kind = LayerKind.SWA if layer.kind == SLIDING else LayerKind.FULL_GQA
        shape = (layer.kv_heads, count, layer.head_dim)
        specs.append(TensorSpec(layer.index, kind, "keys", layer.dtype, shape))
        specs.append(TensorSpec(layer.index, kind, "values", layer.dtype, shape))
    return StateLayout(tensors=tuple(specs), num_tokens=num_tokens)


def describe(layers: Sequence[CacheLayer]) -> list[dict[str, object]]:
    """What crosses per layer (the telemetry endpoint's `layers`)."""
    out: list[dict[str, object]] = []
    for layer in layers:
        item: dict[str, object] = {"index": layer.index, "name": layer.name, "kind": layer.kind,
                                   "block_size": layer.block_size}
        if layer.kind == STATE:
            item.update(state_bytes=list(layer.state_bytes), state_dtypes=list(layer.state_dtypes))
        else:
            item.update(dtype=layer.dtype, kv_heads=layer.kv_heads, head_dim=layer.head_dim,
                        bytes_per_position=2 * layer.kv_heads * layer.head_dim * _DTYPE_BYTES[layer.dtype])
            if layer.kind == SLIDING:
                item["window_tokens"] = layer.window_tokens
        out.append(item)
    return out
