"""Prefill here, ship the state to another process, decode there: token-identical to one-process generation.

For every family, prompts shorter and longer than the tiny sliding window (64), with and without a prefix-cache
hit. The child receives the raw bytes into buffers from `HybridState.allocate` (what the transport does).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import FAMILIES, DecodeChild, TinyModels, decode_in_process, random_prompt

from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.prefix_pool import CachingPrefiller, PrefixCachePool
from prfaas.engine.sampling import SamplingParams

PARAMS = SamplingParams(max_tokens=8, ignore_eos=True)
BLOCK = 32


def _one_process(loaded: LoadedModel, prompt: list[int]) -> list[int]:
    first, state = PrefillEngine(loaded).prefill(prompt)
    return decode_in_process(loaded, state, first, PARAMS)


@pytest.mark.parametrize("family", FAMILIES)
def test_ship_state_and_decode_elsewhere(
    tiny_models: TinyModels, tiny_paths: dict[str, Path], decode_child: DecodeChild, family: str
) -> None:
    loaded = tiny_models[family]
    ref = str(tiny_paths[family])
    pool = PrefixCachePool(loaded, capacity_bytes=64 << 20, block_tokens=BLOCK)
    prefiller = CachingPrefiller(PrefillEngine(loaded), pool)
    shared = random_prompt(96, loaded.vocab_size, 21)
    for name, prompt in (("short", random_prompt(40, loaded.vocab_size, 22)),
                         ("long", random_prompt(130, loaded.vocab_size, 23)),
                         ("warm", shared + random_prompt(8, loaded.vocab_size, 24)),
                         ("hit", shared + random_prompt(35, loaded.vocab_size, 25))):
        result = prefiller.prefill(name, prompt)
        assert (result.num_cached_tokens > 0) == (name == "hit")
        reply = decode_child.decode(ref, result.state, result.first_token, PARAMS)
        pool.ack_transfer(name)
        assert reply == ("tokens", _one_process(loaded, prompt)), name
    assert pool.leaks() == []


def test_child_rejects_a_foreign_state_and_keeps_serving(
    tiny_models: TinyModels, tiny_paths: dict[str, Path], decode_child: DecodeChild
) -> None:
    first, foreign = PrefillEngine(tiny_models["gemma3"]).prefill(random_prompt(30, 500, 1))
    reply = decode_child.decode(str(tiny_paths["qwen3.5"]), foreign, first, PARAMS)
    assert reply[0] == "error" and reply[1] == "StateLayoutMismatchError"
    loaded = tiny_models["qwen3.5"]
    prompt = random_prompt(30, loaded.vocab_size, 1)
    first, state = PrefillEngine(loaded).prefill(prompt)
    assert decode_child.decode(str(tiny_paths["qwen3.5"]), state, first, PARAMS) == ("tokens",
                                                                                    _one_process(loaded, prompt))


def test_default_model_across_processes(default_model: LoadedModel, decode_child: DecodeChild) -> None:
    prompt = default_model.tokenizer.encode("Long prompts are prefilled remotely and decoded locally.")
    first, state = PrefillEngine(default_model).prefill(prompt)
    reply = decode_child.decode("default", state, first, PARAMS, seed=0)
    assert reply == ("tokens", _one_process(default_model, prompt))
