"""In-place KV growth during decode: the same keys/values as transformers' concatenation, also past capacity."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from prfaas.core.layers import LayerKind
from prfaas.engine.geometry import LayerGeometry, PartKind
from prfaas.engine.growing_kv import MIN_HEADROOM_TOKENS, grow_in_place


def test_growth_matches_concatenation_past_the_reserved_capacity() -> None:
    gen = torch.Generator().manual_seed(0)
    grown, reference = DynamicLayer(), DynamicLayer()
    k0, v0 = torch.randn(3, 2, 5, 4, generator=gen), torch.randn(3, 2, 5, 4, generator=gen)
    grown.update(k0.clone(), v0.clone())
    reference.update(k0.clone(), v0.clone())
    cache = DynamicCache()
    cache.layers = [grown]
    geometry = LayerGeometry(layer_index=0, layer_kind=LayerKind.FULL_GQA, part_kind=PartKind.FULL_KV)
    assert grow_in_place(cache, [geometry], headroom_tokens=1) == 1
    for step in range(MIN_HEADROOM_TOKENS * 3):  # crosses the capacity twice: it doubles
        width = 1 if step % 7 else 3  # a multi-token update now and then
        k, v = torch.randn(3, 2, width, 4, generator=gen), torch.randn(3, 2, width, 4, generator=gen)
        got = grown.update(k, v)
        want = reference.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert grown.get_seq_length() == reference.get_seq_length()
    assert torch.equal(grown.keys, reference.keys) and torch.equal(grown.values, reference.values)
