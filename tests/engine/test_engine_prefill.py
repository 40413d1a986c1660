"""Prefill: typed errors for bad input, per-layer hooks, agreement with a plain transformers forward."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import FAMILIES, TinyModels, random_prompt

from prfaas.engine.errors import (
    EmptyPromptError,
    EngineError,
    InvalidTokenError,
    PromptTooLongError,
    StateLayoutMismatchError,
)
from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.state import LayerPart


def test_bad_prompts_raise_typed_errors_and_the_engine_keeps_working(tiny_models: TinyModels) -> None:
    loaded = tiny_models["qwen3.5"]
    engine = PrefillEngine(loaded)
    with pytest.raises(EmptyPromptError):
        engine.prefill([])
    with pytest.raises(PromptTooLongError, match="exceeds"):
        engine.prefill([5] * loaded.max_context_tokens)
    with pytest.raises(InvalidTokenError, match="position 1"):
        engine.prefill([5, loaded.vocab_size, 6])
    with pytest.raises(InvalidTokenError):
        engine.prefill([5, -1])
    first, state = engine.prefill([5, 6, 7])
    assert state.num_tokens == 3 and 0 <= first < loaded.vocab_size


def test_prefix_from_another_model_is_rejected(tiny_models: TinyModels) -> None:
    _, foreign = PrefillEngine(tiny_models["gemma3"]).prefill(random_prompt(20, 500, seed=2))
    with pytest.raises(StateLayoutMismatchError):
        PrefillEngine(tiny_models["qwen3.5"]).prefill(random_prompt(30, 500, seed=2), prefix=foreign)
    _, own = PrefillEngine(tiny_models["qwen3.5"]).prefill(random_prompt(20, 500, seed=2))
    with pytest.raises(EngineError, match="nothing left"):
        PrefillEngine(tiny_models["qwen3.5"]).prefill(random_prompt(20, 500, seed=2), prefix=own)


@pytest.mark.parametrize("family", ["qwen3.5", "nemotron-h", "minimax", "gemma3"])
def test_layer_hooks_fire_in_order_with_the_final_parts(tiny_models: TinyModels, family: str) -> None:
    loaded = tiny_models[family]
    seen: list[tuple[int, LayerPart]] = []
    _, state = PrefillEngine(loaded).prefill(random_prompt(80, loaded.vocab_size, 3),
                                             on_layer_done=lambda i, p: seen.append((i, p)))
    assert [i for i, _ in seen] == [p.layer_index for p in state.parts]
    for (_, hooked), final in zip(seen, state.parts, strict=True):
        assert hooked is final  # the hook hands out the very tensors that are shipped


def _plain_forward_argmax(loaded: LoadedModel, tokens: list[int]) -> int:
    with torch.inference_mode():
        return int(loaded.model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax())


@pytest.mark.parametrize("family", FAMILIES)
def test_first_token_matches_plain_forward(tiny_models: TinyModels, family: str) -> None:
    loaded = tiny_models[family]
    tokens = random_prompt(100, loaded.vocab_size, 4)
    first, _ = PrefillEngine(loaded).prefill(tokens)
    assert first == _plain_forward_argmax(loaded, tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_on_a_prefix_matches_full_prefill(tiny_models: TinyModels, family: str) -> None:
    loaded = tiny_models[family]
    engine = PrefillEngine(loaded)
    tokens = random_prompt(150, loaded.vocab_size, 5)
    first, full = engine.prefill(tokens)
    _, prefix = engine.prefill(tokens[:90])
    first_cont, cont = engine.prefill(tokens, prefix=prefix.clone())
    assert first_cont == first
    assert cont.layout() == full.layout()
    for a, b in zip(full.iter_tensors(), cont.iter_tensors(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_default_model_prefill(default_model: LoadedModel) -> None:
    tokens = default_model.tokenizer.encode("The prefill of a long prompt runs on a remote cluster.")
    first, state = PrefillEngine(default_model).prefill(tokens)
    assert first == _plain_forward_argmax(default_model, tokens)
    assert state.num_tokens == len(tokens)
