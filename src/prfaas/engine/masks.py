"""Explicit per-layer-type attention masks for forwards that continue from a cache.

transformers builds masks from the cache's first full-attention layer; that breaks for padded batches and for
MiniMax (whose cache's first layers are placeholders). So every forward that continues from a cache passes a dict
`{layer_type: mask}` that transformers models accept as-is.

Index space: each row of the batch is left-padded to a common cache length T. Padded index k of row b holds the
row's absolute token k - (T - n_b), where n_b is the row's real cached tokens; indices below T - n_b are padding.

    padded index:  0 ........ T-n_b ........ T-1 | T ... T+q-1
                   [ padding ][ row b's cache    ][ q new tokens ]

A full-attention layer sees keys at padded indices 0..T+q-1; a sliding layer that keeps S slots sees
T-S..T+q-1. A query at padded index T+i may attend to key k when k >= T - n_b (not padding), k <= T+i (causal)
and, for sliding layers, T+i-k < sliding_window. Masks are additive floats [B, 1, q, K] (0 = attend, dtype min =
masked), which both the SDPA and the eager attention paths accept. Linear layers get None: a single decode token
is never padding, and multi-token continuations are unpadded (batch 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prfaas.engine.geometry import LayerGeometry, PartKind


def _additive_mask(
    key_index: torch.Tensor,  # [K] padded indices of the keys
    query_index: torch.Tensor,  # [q] padded indices of the queries
    row_start: torch.Tensor,  # [B] first real padded index per row
    window: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    k = key_index.view(1, 1, 1, -1)
    q = query_index.view(1, 1, -1, 1)
    allowed = (k >= row_start.view(-1, 1, 1, 1)) & (k <= q)
    if window is not None:
        allowed = allowed & (q - k < window)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=key_index.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)  # [B, 1, q, K]


def continuation_masks(
    layer_types: Sequence[str],
    geometries: Sequence[LayerGeometry],
    cached_lengths: Sequence[int],
    padded_length: int,
    num_new_tokens: int,
    sliding_window: int | None,
    dtype: torch.dtype,
    device: torch.device,
) -> dict[str, torch.Tensor | None]:
    """The mask dict for a forward of `num_new_tokens` per row after `cached_lengths` (padded to `padded_length`)."""
    t, q = padded_length, num_new_tokens
    row_start = torch.tensor([t - n for n in cached_lengths], device=device)
    query_index = torch.arange(t, t + q, device=device)
    masks: dict[str, torch.Tensor | None] = {}
    for layer_type, geometry in zip(layer_types, geometries, strict=True):
        if layer_type in masks:
            continue
        if geometry.part_kind is PartKind.FULL_KV:
            key_index = torch.arange(0, t + q, device=device)
            masks[layer_type] = _additive_mask(key_index, query_index, row_start, None, dtype)
        elif geometry.part_kind is PartKind.SLIDING_KV:
            kept = geometry.kept_tokens(t)
            key_index = torch.arange(t - kept, t + q, device=device)
            masks[layer_type] = _additive_mask(key_index, query_index, row_start, sliding_window, dtype)
        else:
            masks[layer_type] = None
    return masks
