"""HybridState: layout, zero-copy views, receive buffers, layout checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from engine_helpers import TinyModels, random_prompt

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import StateLayout, TensorSpec
from prfaas.engine.errors import StateLayoutMismatchError
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.state import HybridState, SlidingWindowKV, check_layout, part_views, uint8_view


def _state(tiny_models: TinyModels, family: str, num_tokens: int) -> HybridState:
    loaded = tiny_models[family]
    return PrefillEngine(loaded).prefill(random_prompt(num_tokens, loaded.vocab_size, seed=1))[1]


def test_views_are_zero_copy_and_in_layout_order(tiny_models: TinyModels) -> None:
    state = _state(tiny_models, "gemma3", 90)
    views = state.tensor_views()
    specs = state.layout().tensors
    assert [len(v) for v in views] == [s.nbytes for s in specs]
    first = next(state.iter_tensors())
    views[0][0:4] = bytes(4)  # writing through the view changes the tensor
    assert first.reshape(-1)[0].item() == 0.0


def test_allocate_then_fill_reproduces_the_state(tiny_models: TinyModels) -> None:
    state = _state(tiny_models, "gemma3", 90)
    received = HybridState.allocate(state.layout())
    for src, dst in zip(state.tensor_views(), received.tensor_views(), strict=True):
        dst[:] = src
    assert received.layout() == state.layout()
    for a, b in zip(state.iter_tensors(), received.iter_tensors(), strict=True):
        assert torch.equal(a, b)
    sliding = [p for p in received.parts if isinstance(p, SlidingWindowKV)]
    assert sliding and all(p.cumulative_length == 90 for p in sliding)


def test_part_views_concatenate_to_the_state_views(tiny_models: TinyModels) -> None:
    state = _state(tiny_models, "nemotron-h", 50)
    per_part = [bytes(v) for p in state.parts for v in part_views(p)]
    assert per_part == [bytes(v) for v in state.tensor_views()]


def test_zero_dim_tensor_view() -> None:
    assert len(uint8_view(torch.tensor(7, dtype=torch.int64))) == 8


def test_layout_mismatch_names_the_difference(tiny_models: TinyModels) -> None:
    state = _state(tiny_models, "qwen3.5", 40)
    expected = tiny_models["qwen3.5"].expected_layout(41)
    with pytest.raises(StateLayoutMismatchError, match="covers 40 tokens"):
        check_layout(state.layout(), expected)
    wrong = dataclasses.replace(state.layout(), tensors=state.layout().tensors[:-1])
    with pytest.raises(StateLayoutMismatchError, match="tensors"):
        check_layout(wrong, tiny_models["qwen3.5"].expected_layout(40))


def test_allocate_rejects_incomplete_parts() -> None:
    layout = dataclasses.replace(
        _layout_with(TensorSpec(0, LayerKind.FULL_GQA, "keys", "float32", (1, 2, 4, 8))), num_tokens=4
    )
    with pytest.raises(StateLayoutMismatchError, match="values"):
        HybridState.allocate(layout)


def _layout_with(*specs: TensorSpec) -> StateLayout:
    return StateLayout(tensors=specs, num_tokens=0)
