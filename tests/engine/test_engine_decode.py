"""DecodeWorker: batched = one-at-a-time for mixed lengths, joins/leaves, sampling and stop conditions."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import FAMILIES, TinyModels, decode_all, decode_in_process, random_prompt

from prfaas.engine.decode import DecodeWorker, FinishReason
from prfaas.engine.errors import (
    BatchFullError,
    DuplicateRequestError,
    InvalidSamplingError,
    InvalidTokenError,
    StateLayoutMismatchError,
    UnknownRequestError,
)
from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.sampling import SamplingParams

LENGTHS = (9, 40, 100, 130)  # shorter and longer than the tiny sliding window (64)
GREEDY_8 = SamplingParams(max_tokens=8, ignore_eos=True)


def _no_cache_greedy(loaded: LoadedModel, prompt: list[int], num_tokens: int) -> list[int]:
    """Independent reference: recompute the whole sequence each step, no cache at all."""
    tokens = list(prompt)
    with torch.inference_mode():
        for _ in range(num_tokens):
            tokens.append(int(loaded.model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(prompt):]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_equals_one_at_a_time(tiny_models: TinyModels, family: str) -> None:
    loaded = tiny_models[family]
    engine = PrefillEngine(loaded)
    prompts = {f"r{n}": random_prompt(n, loaded.vocab_size, seed=n) for n in LENGTHS}
    prefilled = {rid: engine.prefill(p) for rid, p in prompts.items()}
    alone = {rid: decode_in_process(loaded, s.clone(), f, GREEDY_8) for rid, (f, s) in prefilled.items()}
    worker = DecodeWorker(loaded, max_batch_size=len(prompts))
    for rid, (first, state) in prefilled.items():
        assert worker.add(rid, state, first, GREEDY_8) is None
    batched = decode_all(worker, {rid: f for rid, (f, _) in prefilled.items()})
    assert batched == alone
    assert alone["r40"] == _no_cache_greedy(loaded, prompts["r40"], 8)
    assert alone["r130"] == _no_cache_greedy(loaded, prompts["r130"], 8)


def test_requests_join_and_leave_mid_stream(tiny_models: TinyModels) -> None:
    loaded = tiny_models["gemma3"]
    engine = PrefillEngine(loaded)
    params = {"a": SamplingParams(max_tokens=4, ignore_eos=True), "b": SamplingParams(max_tokens=12, ignore_eos=True),
              "c": SamplingParams(max_tokens=7, ignore_eos=True)}
    prefilled = {rid: engine.prefill(random_prompt(30 + 40 * i, loaded.vocab_size, i)) for i, rid in enumerate(params)}
    alone = {rid: decode_in_process(loaded, s.clone(), f, params[rid]) for rid, (f, s) in prefilled.items()}
    worker = DecodeWorker(loaded, max_batch_size=3)
    got = {rid: [f] for rid, (f, _) in prefilled.items()}
    worker.add("a", prefilled["a"][1], prefilled["a"][0], params["a"])
    for step in range(20):
        if step == 2:
            worker.add("b", prefilled["b"][1], prefilled["b"][0], params["b"])
        if step == 5:
            worker.add("c", prefilled["c"][1], prefilled["c"][0], params["c"])
        for event in worker.step():
            got[event.request_id].append(event.token_id)
    assert got == alone
    assert worker.num_running == 0


def test_sampled_decode_is_reproducible_and_batch_independent(tiny_models: TinyModels) -> None:
    loaded = tiny_models["qwen3.5"]
    engine = PrefillEngine(loaded)
    params = SamplingParams(max_tokens=10, temperature=0.8, top_p=0.9, seed=7, ignore_eos=True)
    first, state = engine.prefill(random_prompt(50, loaded.vocab_size, 1), sampling=params)
    alone = decode_in_process(loaded, state.clone(), first, params)
    other_first, other_state = engine.prefill(random_prompt(20, loaded.vocab_size, 2))
    worker = DecodeWorker(loaded, max_batch_size=2)
    worker.add("s", state, first, params)
    worker.add("g", other_state, other_first, SamplingParams(max_tokens=5, ignore_eos=True))
    assert decode_all(worker, {"s": first, "g": other_first})["s"] == alone
    greedy = decode_in_process(loaded, state.clone(), first, SamplingParams(max_tokens=10, ignore_eos=True))
    assert alone != greedy  # sampling actually samples


def test_stop_conditions(tiny_models: TinyModels) -> None:
    loaded = tiny_models["qwen3.5"]
    first, state = PrefillEngine(loaded).prefill(random_prompt(30, loaded.vocab_size, 3))
    full = decode_in_process(loaded, state.clone(), first, SamplingParams(max_tokens=8, ignore_eos=True))
    stop_id = full[3]
    worker = DecodeWorker(loaded, detokenize=lambda ids: " ".join(f"<{i}>" for i in ids))
    worker.add("id", state.clone(), first, SamplingParams(max_tokens=8, stop_token_ids=(stop_id,), ignore_eos=True))
    worker.add("str", state.clone(), first, SamplingParams(max_tokens=8, stop_strings=(f"<{full[2]}>",),
                                                           ignore_eos=True))
    worker.add("len", state.clone(), first, SamplingParams(max_tokens=3, ignore_eos=True))
    finals = {}
    for _ in range(10):
        for event in worker.step():
            if event.finish_reason is not None:
                finals[event.request_id] = (event.index, event.finish_reason)
    assert finals["id"] == (full.index(stop_id), FinishReason.STOP)
    assert finals["str"] == (full.index(full[2]), FinishReason.STOP)
    assert finals["len"] == (2, FinishReason.LENGTH)
    eos_worker = DecodeWorker(loaded)
    assert eos_worker.add("eos", state.clone(), loaded.eos_token_ids[0], SamplingParams()) is FinishReason.STOP
    assert eos_worker.num_running == 0


def test_bad_requests_leave_the_worker_running(tiny_models: TinyModels) -> None:
    loaded = tiny_models["qwen3.5"]
    engine = PrefillEngine(loaded)
    first, state = engine.prefill(random_prompt(30, loaded.vocab_size, 3))
    worker = DecodeWorker(loaded, max_batch_size=1)
    worker.add("ok", state, first, SamplingParams(max_tokens=4, ignore_eos=True))
    _, foreign = PrefillEngine(tiny_models["gemma3"]).prefill(random_prompt(30, 500, 3))
    with pytest.raises(DuplicateRequestError):
        worker.add("ok", state, first)
    with pytest.raises(BatchFullError):
        worker.add("x", state, first)
    wide = DecodeWorker(loaded, max_batch_size=4)
    with pytest.raises(StateLayoutMismatchError):
        wide.add("bad", foreign, first)
    with pytest.raises(InvalidTokenError):
        wide.add("bad", state, loaded.vocab_size + 5)
    with pytest.raises(InvalidSamplingError):
        wide.add("bad", state, first, SamplingParams(stop_strings=("x",)))
    with pytest.raises(InvalidSamplingError):
        SamplingParams(top_p=0.0)
    with pytest.raises(UnknownRequestError):
        worker.remove("nope")
    assert len(worker.step()) == 1
    worker.remove("ok")
    assert worker.step() == [] and worker.num_running == 0
