"""Pack several requests' states into one left-padded batched cache, and unpack rows back into states.

Rows are left-padded to the longest cached length T (see `engine.masks` for the index space):

    full KV     [B, kh, T, kd]          row b's n_b tokens sit at T - n_b .. T-1, zeros before
    sliding KV  [B, kh, min(T, W), kd]  row b's last min(n_b, W) tokens at the right end; cumulative_length = T
    linear      [B, ...]                stacked, no padding (fixed size)

A batch of one is not copied: the request's tensors go into the cache as they are. Unpacking slices each row's
real tokens back out (views of the batched tensors), so a worker can rebuild the batch when requests join or leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prfaas.engine.cache_io import import_state, new_cache
from prfaas.engine.geometry import LayerGeometry, PartKind
from prfaas.engine.models import LoadedModel
from prfaas.engine.state import FullAttentionKV, HybridState, LayerPart, LinearState, SlidingWindowKV


def _left_pad_stack(tensors: Sequence[torch.Tensor], slots: int) -> torch.Tensor:
    """Stack [1, h, n_i, d] tensors into [B, h, slots, d], each right-aligned (zeros on the left)."""
    first = tensors[0]
    out = torch.zeros((len(tensors), first.shape[1], slots, first.shape[3]), dtype=first.dtype, device=first.device)
    for row, t in enumerate(tensors):
        n = t.shape[2]
        if n:
            out[row, :, slots - n :, :] = t[0]
    return out


def _batched_part(geometry: LayerGeometry, parts: Sequence[LayerPart], padded_length: int) -> LayerPart:
    i = geometry.layer_index
    if geometry.part_kind is PartKind.LINEAR:
        linear = [p for p in parts if isinstance(p, LinearState)]
        conv = None if linear[0].conv is None else torch.cat([p.conv for p in linear if p.conv is not None])
        rec = None if linear[0].recurrent is None else torch.cat(
            [p.recurrent for p in linear if p.recurrent is not None]
        )
        return LinearState(i, conv, rec)
    attn = [p for p in parts if isinstance(p, FullAttentionKV | SlidingWindowKV)]
    slots = geometry.kept_tokens(padded_length)
    keys = _left_pad_stack([p.keys for p in attn], slots)
    values = _left_pad_stack([p.values for p in attn], slots)
    if geometry.part_kind is PartKind.SLIDING_KV:
        return SlidingWindowKV(i, keys, values, padded_length)
    return FullAttentionKV(i, geometry.layer_kind, keys, values)


def build_batch_cache(loaded: LoadedModel, states: Sequence[HybridState]) -> tuple[Any, int]:
    """(cache holding every state as one left-padded row, padded length T)."""
    padded_length = max(s.num_tokens for s in states)
    if len(states) == 1:
        return import_state(states[0], loaded.config, loaded.family), padded_length
    by_layer: dict[int, list[LayerPart]] = {}
    for state in states:
        for part in state.parts:
            by_layer.setdefault(part.layer_index, []).append(part)
    parts = tuple(
        _batched_part(g, by_layer[g.layer_index], padded_length) for g in loaded.geometries if g.layer_index in by_layer
    )
    if not parts:
        return new_cache(loaded.config, loaded.family), padded_length
    return import_state(HybridState(parts, padded_length), loaded.config, loaded.family), padded_length


def _row_part(geometry: LayerGeometry, part: LayerPart, row: int, num_tokens: int) -> LayerPart:
    i = geometry.layer_index
    if isinstance(part, LinearState):
        conv = None if part.conv is None else part.conv[row : row + 1]
        rec = None if part.recurrent is None else part.recurrent[row : row + 1]
        return LinearState(i, conv, rec)
    kept = geometry.kept_tokens(num_tokens)
    slots = part.keys.shape[2]
    keys = part.keys[row : row + 1, :, slots - kept :, :]
    values = part.values[row : row + 1, :, slots - kept :, :]
    if isinstance(part, SlidingWindowKV):
        return SlidingWindowKV(i, keys, values, num_tokens)
    return FullAttentionKV(i, part.layer_kind, keys, values)


def unpack_rows(batched: HybridState, loaded: LoadedModel, lengths: Sequence[int]) -> list[HybridState]:
    """Per-row states (views) of a batched state whose rows hold `lengths` real tokens."""
    rows: list[HybridState] = []
    for row, num_tokens in enumerate(lengths):
        parts = tuple(_row_part(loaded.geometries[p.layer_index], p, row, num_tokens) for p in batched.parts)
        rows.append(HybridState(parts, num_tokens))
    return rows
