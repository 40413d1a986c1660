"""Move one request's state between a transformers cache and a `HybridState`, through the public cache API.

    export: cache.layers[i].keys/.values (attention), .cumulative_length (sliding), get_conv_state /
            get_recurrent_state (linear), MiniMaxCache.get_linear_cache (MiniMax linear layers)
    import: cache.update(k, v, i), layer.cumulative_length = T (required for sliding layers: it sets positions
            and the window mask), update_conv_state / update_recurrent_state, MiniMaxCache.set_linear_cache

Export returns views of the cache's tensors where they are contiguous (no copy); sliding-window K/V are slices of
a larger tensor and are made contiguous (a copy of at most the window). Import copies nothing for attention
layers; linear layers copy into the cache's static buffers (transformers keeps their address fixed).
"""

from __future__ import annotations

from typing import Any

import torch

from prfaas.engine.errors import StateLayoutMismatchError
from prfaas.engine.families import Family
from prfaas.engine.geometry import LayerGeometry, PartKind
from prfaas.engine.hf import DynamicCache
from prfaas.engine.state import FullAttentionKV, HybridState, LayerPart, LinearState, SlidingWindowKV


def new_cache(cfg: Any, family: Family) -> Any:
    """A fresh, empty cache of the right class for this model."""
    if family.uses_minimax_cache:
        from transformers.models.minimax.modeling_minimax import MiniMaxCache

        return MiniMaxCache()
    return DynamicCache(config=cfg)


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def export_layer(cache: Any, geometry: LayerGeometry, family: Family, num_tokens: int) -> LayerPart | None:
    """This layer's final state in `cache` as a part (None for stateless layers)."""
    i = geometry.layer_index
    if geometry.part_kind is PartKind.FULL_KV:
        layer = cache.layers[i]
        return FullAttentionKV(i, geometry.layer_kind, _contiguous(layer.keys), _contiguous(layer.values))
    if geometry.part_kind is PartKind.SLIDING_KV:
        layer = cache.layers[i]
        return SlidingWindowKV(i, _contiguous(layer.keys), _contiguous(layer.values), int(layer.cumulative_length))
    if geometry.part_kind is PartKind.LINEAR:
        if family.uses_minimax_cache:
            return LinearState(i, None, _contiguous(cache.get_linear_cache(i)))
        conv = cache.get_conv_state(i) if geometry.conv_shape is not None else None
        recurrent = cache.get_recurrent_state(i) if geometry.recurrent_shape is not None else None
        return LinearState(
            i, None if conv is None else _contiguous(conv), None if recurrent is None else _contiguous(recurrent)
        )
    return None


def export_state(cache: Any, geometries: tuple[LayerGeometry, ...], family: Family, num_tokens: int) -> HybridState:
    """Every layer's state in `cache` (batch 1) as a `HybridState` covering `num_tokens` tokens."""
    parts = (export_layer(cache, g, family, num_tokens) for g in geometries)
    return HybridState(tuple(p for p in parts if p is not None), num_tokens)


def import_part(cache: Any, part: LayerPart, family: Family) -> None:
    """Write one part into a fresh cache."""
    i = part.layer_index
    if isinstance(part, FullAttentionKV | SlidingWindowKV):
        cache.update(part.keys, part.values, i)
        if isinstance(part, SlidingWindowKV):
            cache.layers[i].cumulative_length = part.cumulative_length
        return
    if family.uses_minimax_cache:
        cache.set_linear_cache(i, part.recurrent)
        return
    if part.conv is not None:
        cache.update_conv_state(part.conv, i)
    if part.recurrent is not None:
        cache.update_recurrent_state(part.recurrent, i)


def import_state(state: HybridState, cfg: Any, family: Family) -> Any:
    """A fresh cache holding `state`, ready to continue after `state.num_tokens` tokens."""
    cache = new_cache(cfg, family)
    for part in state.parts:
        try:
            import_part(cache, part, family)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise StateLayoutMismatchError(f"cannot load layer {part.layer_index}: {exc}") from exc
    return cache
