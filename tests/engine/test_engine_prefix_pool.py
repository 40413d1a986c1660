"""Hybrid prefix cache pool: pure ledger (LRU, refcounts, transfer holds, leaks) and the caching prefill."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import FAMILIES, TinyModels, decode_in_process, random_prompt

from prfaas.engine.errors import DuplicateRequestError, PoolExhaustedError, UnknownRequestError
from prfaas.engine.hf import transformers
from prfaas.engine.models import wrap_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.prefix_ledger import PrefixLedger, block_hashes
from prfaas.engine.prefix_pool import CachingPrefiller, PrefixCachePool
from prfaas.engine.sampling import SamplingParams
from prfaas.engine.tiny import tiny_config

BLOCK = 32  # tiny blocks so tiny prompts span several


def test_block_hashes_chain_over_complete_blocks() -> None:
    a = block_hashes(list(range(100)), 32)
    b = block_hashes([*range(64), *range(500, 540)], 32)
    assert len(a) == 3 and a[:2] == b[:2] and a[2] != b[2]
    assert block_hashes([1] * 32 + [2] * 32, 32)[1] != block_hashes([2] * 32 + [2] * 32, 32)[1]


def test_ledger_match_needs_a_snapshot_at_the_boundary() -> None:
    ledger = PrefixLedger(10_000)
    for i, h in enumerate("abc"):
        assert ledger.insert_block(h, "abc"[i - 1] if i else None, 100) == (True, [])
    assert ledger.match(list("abcd"), need_snapshot=False, max_blocks=9) == 3
    assert ledger.match(list("abcd"), need_snapshot=True, max_blocks=9) == 0
    ledger.attach_snapshot("b", 50)
    assert ledger.match(list("abcd"), need_snapshot=True, max_blocks=9) == 2
    assert ledger.match(list("abcd"), need_snapshot=False, max_blocks=1) == 1


def test_ledger_evicts_lru_leaves_and_spares_locked_blocks() -> None:
    ledger = PrefixLedger(300)
    ledger.insert_block("a", None, 100)
    ledger.insert_block("b", "a", 100)
    ledger.insert_block("x", None, 100)
    ledger.lock(["x"])
    inserted, evicted = ledger.insert_block("y", None, 100)
    assert inserted and evicted == ["b"]  # 'a' has a child, 'x' is locked: the LRU leaf goes
    assert ledger.block_hashes() == frozenset({"a", "x", "y"})
    ledger.unlock(["x"])
    assert ledger.leaks() == []


def test_ledger_transfers_take_budget_until_acked() -> None:
    ledger = PrefixLedger(300)
    ledger.insert_block("a", None, 200)
    assert ledger.hold_transfer("t1", 250) == ["a"]
    with pytest.raises(PoolExhaustedError):
        ledger.hold_transfer("t2", 100)
    with pytest.raises(DuplicateRequestError):
        ledger.hold_transfer("t1", 1)
    assert ledger.leaks() == ["transfer t1 (250 B)"]
    ledger.release_transfer("t1")
    with pytest.raises(UnknownRequestError):
        ledger.release_transfer("t1")
    assert ledger.leaks() == [] and ledger.used_bytes == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_hit_computes_only_the_tail_and_decodes_identically(tiny_models: TinyModels, family: str) -> None:
    loaded = tiny_models[family]
    engine = PrefillEngine(loaded)
    pool = PrefixCachePool(loaded, capacity_bytes=64 << 20, block_tokens=BLOCK)
    prefiller = CachingPrefiller(engine, pool)
    shared = random_prompt(100, loaded.vocab_size, 11)
    first_prompt = shared + random_prompt(10, loaded.vocab_size, 12)
    second_prompt = shared + random_prompt(25, loaded.vocab_size, 13)
    miss = prefiller.prefill("a", first_prompt)
    assert (miss.num_cached_tokens, miss.num_computed_tokens) == (0, 110)
    pool.ack_transfer("a")
    hit = prefiller.prefill("b", second_prompt)
    assert (hit.num_cached_tokens, hit.num_computed_tokens) == (96, 29)
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    ref_first, ref_state = engine.prefill(second_prompt)
    assert hit.first_token == ref_first
    for a, b in zip(hit.state.iter_tensors(), ref_state.iter_tensors(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert decode_in_process(loaded, hit.state, hit.first_token, params) == decode_in_process(
        loaded, ref_state, ref_first, params
    )
    assert pool.leaks() == [f"transfer b ({hit.state.nbytes} B)"]
    pool.ack_transfer("b")
    assert pool.leaks() == []


def test_pool_budget_evicts_old_prefixes(tiny_models: TinyModels) -> None:
    loaded = tiny_models["qwen3.5"]
    pool = PrefixCachePool(loaded, capacity_bytes=160_000, block_tokens=BLOCK)
    prefiller = CachingPrefiller(PrefillEngine(loaded), pool)
    published = []
    for i in range(6):
        prefiller.prefill(f"r{i}", random_prompt(130, loaded.vocab_size, 100 + i))
        pool.ack_transfer(f"r{i}")
        assert pool.ledger.used_bytes <= pool.ledger.capacity_bytes
        assert pool.held_blocks == pool.ledger.block_hashes()  # the set the node reports, kept current
        published.append(pool.held_blocks)
    assert not published[0] <= published[-1]  # the first prompt's blocks were evicted, and that shows
    again = prefiller.prefill("first-again", random_prompt(130, loaded.vocab_size, 100))
    assert again.num_cached_tokens == 0  # evicted
    latest = prefiller.prefill("last-again", [*random_prompt(130, loaded.vocab_size, 105), 7])
    assert latest.num_cached_tokens > 0
    pool.ack_transfer("first-again")
    pool.ack_transfer("last-again")
    assert pool.leaks() == []


def test_full_attention_only_models_reuse_any_block_boundary() -> None:
    cfg = tiny_config("olmo3")
    cfg.layer_types = ["full_attention"] * 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        loaded = wrap_model("olmo3-full", transformers.AutoModelForCausalLM.from_config(cfg), None)
    pool = PrefixCachePool(loaded, capacity_bytes=64 << 20, block_tokens=BLOCK)
    assert not pool.needs_snapshot
    prefiller = CachingPrefiller(PrefillEngine(loaded), pool)
    prompt = random_prompt(100, loaded.vocab_size, 31)
    prefiller.prefill("a", prompt[:70])
    hit = prefiller.prefill("b", prompt)
    assert hit.num_cached_tokens == 64
    assert hit.first_token == PrefillEngine(loaded).prefill(prompt)[0]
    pool.ack_transfer("a")
    pool.ack_transfer("b")
    assert pool.leaks() == []
