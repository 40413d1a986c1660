"""Safe points in a prefill: another prefill run to its end between two layers of a first one (a preemption at a
safe point, serve.worker) leaves both exactly as if each had run alone: same first token, same state bit for bit,
each layer reported once, in order, to its own prefill's callback only."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import TinyModels, random_prompt

from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.state import HybridState, LayerPart


def _alone(engine: PrefillEngine, tokens: list[int]) -> tuple[int, HybridState, list[int]]:
    seen: list[int] = []
    first, state = engine.prefill(tokens, on_layer_done=lambda i, _p: seen.append(i))
    return first, state.clone(), seen


def _same_state(a: HybridState, b: HybridState) -> bool:
    return a.num_tokens == b.num_tokens and all(
        pa.layer_index == pb.layer_index and all(torch.equal(ta, tb) for (_, ta), (_, tb)
                                                 in zip(pa.named_tensors(), pb.named_tensors(), strict=True))
        for pa, pb in zip(a.parts, b.parts, strict=True))


@pytest.mark.parametrize("family", ["qwen3.5", "nemotron-h", "gemma3"])
@pytest.mark.parametrize("pause_after", [0, 2])
def test_a_prefill_nested_at_a_safe_point_changes_neither(tiny_models: TinyModels, family: str,
                                                          pause_after: int) -> None:
    loaded = tiny_models[family]
    engine = PrefillEngine(loaded)
    outer_tokens = random_prompt(90, loaded.vocab_size, 11)
    inner_tokens = random_prompt(40, loaded.vocab_size, 12)
    outer_alone, outer_state_alone, outer_layers_alone = _alone(engine, outer_tokens)
    inner_alone, inner_state_alone, inner_layers_alone = _alone(engine, inner_tokens)

    calls: list[int] = []
    inner: dict[str, object] = {}
    outer_seen: list[int] = []
    inner_seen: list[tuple[int, LayerPart]] = []

    def safe_point() -> float:
        calls.append(len(outer_seen))
        if len(calls) == pause_after + 1:  # run the other prefill here, once
            first, state = engine.prefill(inner_tokens, on_layer_done=lambda i, p: inner_seen.append((i, p)))
            inner.update(first=first, state=state.clone())
        return 0.0

    engine.safe_point = safe_point
    first, state = engine.prefill(outer_tokens, on_layer_done=lambda i, _p: outer_seen.append(i))
    engine.safe_point = None

    num_layers = len(loaded.decoder_layers())
    assert len(calls) == 2 * (num_layers - 1)  # between every two layers, the outer's and the nested one's
    assert first == outer_alone and _same_state(state, outer_state_alone)
    assert outer_seen == outer_layers_alone  # its layers once each, in order, none of the nested prefill's
    assert inner["first"] == inner_alone and _same_state(inner["state"], inner_state_alone)  # type: ignore[arg-type]
    assert [i for i, _ in inner_seen] == inner_layers_alone
    assert [i for i, _ in inner_seen] != [] and outer_seen != []


def test_no_safe_point_in_the_first_forward_of_a_snapshot_prefill(tiny_models: TinyModels) -> None:
    """Only the last forward (the one that reports layers) has safe points: the prefix part before a snapshot runs
    straight through."""
    loaded = tiny_models["qwen3.5"]
    engine = PrefillEngine(loaded)
    calls: list[int] = []
    engine.safe_point = lambda: calls.append(1) or 0.0
    engine.prefill_with_snapshot(random_prompt(64, loaded.vocab_size, 5), None, 32, lambda _i, _p: None)
    assert len(calls) == len(loaded.decoder_layers()) - 1
