"""The KV-event tracker against vLLM's own event classes (runs where vLLM is installed; skipped elsewhere)."""

from __future__ import annotations

import time

import msgspec
import pytest

from prfaas.core.blocks import block_hash_chain
from prfaas.serve.vllm_events import PrefixTracker

kv_events = pytest.importorskip("vllm.distributed.kv_events")


def test_vllm_encoded_batches_feed_the_tracker() -> None:
    tokens = [(i * 31) % 5000 for i in range(1100)]
    hashes = [bytes([i]) * 32 for i in range(68)]
    stored = [kv_events.BlockStored(block_hashes=hashes[:34], parent_block_hash=None, token_ids=tokens[:544],
                                    block_size=16, lora_id=None, medium="GPU", lora_name=None),
              kv_events.BlockStored(block_hashes=hashes[34:], parent_block_hash=hashes[33],
                                    token_ids=tokens[544:1088], block_size=16, lora_id=None, medium="GPU",
                                    lora_name=None, group_idx=0)]
    encoder = msgspec.msgpack.Encoder()
    tracker = PrefixTracker()
    tracker.apply_batch(encoder.encode(kv_events.KVEventBatch(ts=time.time(), events=stored)))
    assert tracker.held() == frozenset(block_hash_chain(tokens, include_partial=False))
    removed = kv_events.BlockRemoved(block_hashes=[hashes[40]], medium="GPU")
    tracker.apply_batch(encoder.encode(kv_events.KVEventBatch(ts=time.time(), events=[removed])))
    assert tracker.held() == {block_hash_chain(tokens)[0]}
    cleared = kv_events.KVEventBatch(ts=time.time(), events=[kv_events.AllBlocksCleared()], data_parallel_rank=0)
    tracker.apply_batch(encoder.encode(cleared))
    assert tracker.held() == frozenset()
