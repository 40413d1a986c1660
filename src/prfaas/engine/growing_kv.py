"""Full-attention KV that grows in place during decode, instead of one concatenation per token.

transformers' `DynamicLayer.update` appends a step's keys and values with `torch.cat`, which copies the whole
[B, kv_heads, T, head_dim] cache of the layer at every decode step: at batch 32 and 2K context that copy was 40% of
a step of the default model. `grow_in_place(cache, geometries)` moves every full-attention layer's keys and values
into buffers with spare capacity and makes that layer's `update` write the new positions into them, returning views
of the filled part (what attention reads, and what `cache_io.export_layer` copies out). Capacity doubles when it
runs out, so a step copies the cache only O(log T) times over a whole generation.

Only exact `DynamicLayer`s (full attention) are converted; sliding-window and linear layers keep their own update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from prfaas.engine.geometry import LayerGeometry, PartKind

MIN_HEADROOM_TOKENS = 64
MAX_HEADROOM_TOKENS = 256  # what a rebuild reserves at most; beyond it capacity doubles (memory stays < 2x + 256)


class _GrowingKv:
    """The buffers and fill level behind one layer; installed as that layer's `update`."""

    __slots__ = ("keys", "layer", "length", "values")

    def __init__(self, layer: Any, headroom_tokens: int) -> None:
        keys, values = layer.keys, layer.values
        self.layer = layer
        self.length = keys.shape[-2]
        capacity = self.length + max(headroom_tokens, MIN_HEADROOM_TOKENS)
        self.keys = _with_capacity(keys, capacity)
        self.values = _with_capacity(values, capacity)
        self._publish()

    def __call__(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            capacity = max(end, 2 * self.keys.shape[-2])
            self.keys = _with_capacity(self.keys[:, :, : self.length], capacity)
            self.values = _with_capacity(self.values[:, :, : self.length], capacity)
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self._publish()

    def _publish(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.layer.keys = self.keys[:, :, : self.length]
        self.layer.values = self.values[:, :, : self.length]
        return self.layer.keys, self.layer.values


def _with_capacity(t: torch.Tensor, capacity: int) -> torch.Tensor:
    out = torch.empty((*t.shape[:-2], capacity, t.shape[-1]), dtype=t.dtype, device=t.device)
    out[:, :, : t.shape[-2]] = t
    return out


def grow_in_place(cache: Any, geometries: Sequence[LayerGeometry], headroom_tokens: int) -> int:
    """Convert the cache's full-attention layers (see module doc); returns how many were converted."""
    converted = 0
    for g in geometries:
        if g.part_kind is not PartKind.FULL_KV or g.layer_index >= len(getattr(cache, "layers", ())):
            continue
        layer = cache.layers[g.layer_index]
        if type(layer) is not DynamicLayer or not layer.is_initialized or layer.keys is None or layer.keys.dim() != 4:
            continue
        target: Any = layer  # an instance attribute shadows the class method
        target.update = _GrowingKv(layer, headroom_tokens)
        converted += 1
    return converted
