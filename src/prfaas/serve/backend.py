"""What a node's model thread runs: the real engine (`TorchBackend`) or a trivial stub (`StubBackend`).

A backend is single-threaded (only the node's `ModelWorker` thread calls it). Contract:

    prefill(request_id, tokens, sampling, on_layer_done) -> PrefillOutput   # on_layer_done(layer, views)
    expected_layout(num_tokens) -> StateLayout      # what a prefill of that many tokens ships, in wire order
    allocate(layout) -> (state, views)              # receive buffers (views) backing an opaque state
    decode_add(request_id, state, first_token, sampling) -> finish reason or None
    decode_step() -> list[DecodeEvent];  decode_remove(request_id);  num_running
    release(request_id)                             # the prefill's state may be dropped (transfer acknowledged)

`StubBackend` imports no torch: a one-tensor uint8 state of `num_tokens` bytes and tokens (first + i) mod V.
It lets benchmarks measure the gateway and the control plane alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prfaas.core.blocks import BLOCK_TOKENS, block_hash_chain
from prfaas.core.layers import LayerKind
from prfaas.core.lifecycle import ClusterKind
from prfaas.core.state_layout import StateLayout, TensorSpec
from prfaas.serve.config import EngineKind, ModelSection
from prfaas.serve.messages import SamplingMsg

LayerViews = Callable[[int, Sequence[memoryview]], None]


INPUT_ERROR = "error"  # finish reason of a request the backend refused as input (a 400, never retried)
ENGINE_ERROR = "engine_error"  # finish reason of a request whose decode step raised (a 500, never retried)


class BackendInputError(Exception):
    """Bad input for this model (prompt too long, bad sampling, ...): a 400 for the client, not a node fault."""


@dataclass(frozen=True, slots=True)
class PrefillOutput:
    first_token: int
    state: Any
    num_cached_tokens: int


@dataclass(frozen=True, slots=True)
class DecodeEvent:
    request_id: str
    token_id: int | None  # None: the request ended without a new token (see finish_reason / error)
    finish_reason: str | None  # "stop" | "length" | INPUT_ERROR | ENGINE_ERROR | None
    error: str | None = None


class Backend(Protocol):
    max_context_tokens: int
    vocab_size: int

    def prefill(self, request_id: str, tokens: Sequence[int], sampling: SamplingMsg,
                on_layer_done: LayerViews | None) -> PrefillOutput: ...

    def expected_layout(self, num_tokens: int) -> StateLayout: ...

    def allocate(self, layout: StateLayout) -> tuple[Any, list[memoryview]]: ...

    def decode_add(self, request_id: str, state: Any, first_token: int, sampling: SamplingMsg) -> str | None: ...

    def decode_step(self) -> list[DecodeEvent]: ...

    def decode_remove(self, request_id: str) -> None: ...

    @property
    def num_running(self) -> int: ...

    @property
    def request_ids(self) -> tuple[str, ...]: ...

    def release(self, request_id: str) -> None: ...

    def cached_blocks(self) -> frozenset[int] | None:
        """Prefix-block hashes (`core.blocks`) the node's prefix cache holds now; None without a prefix cache.
        Called from the event loop while the model thread runs: must not block or touch mutable state."""
        ...


class StubBackend:
    """No model: instant prefill, one uint8 tensor of num_tokens bytes, tokens (first + i) mod vocab.

    Its prefix cache only keeps block hashes (one byte per token, so `prefix_cache_bytes // 512` blocks, LRU) for
    the cache reports; prefill always computes the whole prompt."""

    vocab_size = 2048
    max_context_tokens = 16384

    def __init__(self, prefix_cache_bytes: int = 0, step_s: float = 0.0) -> None:
        self._step_s = step_s  # a decode step that takes time (tests of cancellation)
        self._running: dict[str, tuple[int, int, int]] = {}  # id -> (next token, generated, max_tokens)
        self._cache_capacity_blocks = prefix_cache_bytes // BLOCK_TOKENS
        self._cache: OrderedDict[int, None] = OrderedDict()
        self._published: frozenset[int] = frozenset()

    def cached_blocks(self) -> frozenset[int] | None:
        return self._published if self._cache_capacity_blocks > 0 else None

    def _remember(self, tokens: Sequence[int]) -> None:
        if self._cache_capacity_blocks <= 0:
            return
        changed = False
        for block_hash in reversed(block_hash_chain(tokens, include_partial=False)):
            changed |= block_hash not in self._cache
            self._cache[block_hash] = None
            self._cache.move_to_end(block_hash)
        while len(self._cache) > self._cache_capacity_blocks:
            self._cache.popitem(last=False)
        if changed:  # a repeated prompt only refreshes recency: nothing to republish
            self._published = frozenset(self._cache)

    def prefill(self, request_id: str, tokens: Sequence[int], sampling: SamplingMsg,
                on_layer_done: LayerViews | None) -> PrefillOutput:
        _check_prompt(len(tokens), self.max_context_tokens)
        self._remember(tokens)
        state = bytearray(len(tokens))
        if on_layer_done is not None:
            on_layer_done(0, [memoryview(state)])
        return PrefillOutput((sum(tokens) + 1) % self.vocab_size, state, 0)

    def expected_layout(self, num_tokens: int) -> StateLayout:
        spec = TensorSpec(0, LayerKind.FULL_GQA, "keys", "uint8", (num_tokens,))
        return StateLayout(tensors=(spec,), num_tokens=num_tokens)

    def allocate(self, layout: StateLayout) -> tuple[Any, list[memoryview]]:
        state = bytearray(layout.num_tokens)
        return state, [memoryview(state)]

    def decode_add(self, request_id: str, state: Any, first_token: int, sampling: SamplingMsg) -> str | None:
        if sampling.max_tokens <= 1:
            return "length"
        self._running[request_id] = ((first_token + 1) % self.vocab_size, 1, sampling.max_tokens)
        return None

    def decode_step(self) -> list[DecodeEvent]:
        if self._step_s > 0 and self._running:
            time.sleep(self._step_s)
        events = []
        for rid, (token, generated, max_tokens) in list(self._running.items()):
            generated += 1
            done = generated >= max_tokens
            events.append(DecodeEvent(rid, token, "length" if done else None))
            if done:
                del self._running[rid]
            else:
                self._running[rid] = ((token + 1) % self.vocab_size, generated, max_tokens)
        return events

    def decode_remove(self, request_id: str) -> None:
        self._running.pop(request_id, None)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def request_ids(self) -> tuple[str, ...]:
        return tuple(self._running)

    def release(self, request_id: str) -> None:
        return None


def _check_prompt(num_tokens: int, max_context_tokens: int) -> None:
    if num_tokens == 0:
        raise BackendInputError("empty prompt")
    if num_tokens >= max_context_tokens:
        raise BackendInputError(f"prompt of {num_tokens} tokens exceeds the model's context of "
                                f"{max_context_tokens - 1} tokens")


def make_backend(model: ModelSection, cluster: ClusterKind = ClusterKind.PD) -> Backend:
    """The backend a node of `cluster` runs for `model` (loads the model; call it in the model thread's process).
    `model.engine = "emulated"`: `serve.emulated_backend` with the cluster's accelerator profile."""
    if model.engine is EngineKind.EMULATED:
        from prfaas.serve.emulated_backend import make_emulated_backend

        return make_emulated_backend(model, cluster)
    if model.name == "stub":
        return StubBackend(model.prefix_cache_bytes, model.stub_step_s)
    from prfaas.serve.torch_backend import TorchBackend

    return TorchBackend.load(model)
