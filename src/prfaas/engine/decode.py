"""Continuous-batching decode: one forward advances every running request by one token.

    worker = DecodeWorker(loaded, max_batch_size=32, detokenize=tokenizer.decode)
    worker.add("r1", state, first_token, SamplingParams(max_tokens=64))   # when r1's state has arrived
    events = worker.step()                                               # one token per running request
    worker.remove("r1")                                                   # cancel (finished ones leave by themselves)

Lifecycle of a request: `add` validates it (typed errors, the worker stays usable) and queues it; the next `step`
rebuilds the batched cache with it (requests join between steps); each step emits one `TokenEvent` per running
request; a request whose token meets a stop condition gets `finish_reason` on that event and leaves the batch.
The first token comes from the prefill and is not re-emitted; `add` returns its finish reason if it already ends
the request (then the request is not admitted).

The batched cache is left-padded (`engine.batch_cache`) with per-row positions and explicit masks
(`engine.masks`), and is rebuilt only when membership changes. Single-threaded: call from one thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from prfaas.engine.batch_cache import build_batch_cache, unpack_rows
from prfaas.engine.cache_io import export_state
from prfaas.engine.errors import (
    BatchFullError,
    DuplicateRequestError,
    InvalidSamplingError,
    InvalidTokenError,
    PromptTooLongError,
    UnknownRequestError,
)
from prfaas.engine.growing_kv import MAX_HEADROOM_TOKENS, grow_in_place
from prfaas.engine.masks import continuation_masks
from prfaas.engine.models import LoadedModel
from prfaas.engine.sampling import GREEDY, SamplingParams, sample_batch
from prfaas.engine.state import HybridState, check_layout

Detokenize = Callable[[Sequence[int]], str]
_STOP_STRING_TAIL_TOKENS = 16


class FinishReason(enum.Enum):
    STOP = "stop"  # EOS, a stop token id or a stop string
    LENGTH = "length"  # max_tokens, or the model's context is full


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """Token `index` (0 is the prefill's first token) of a request; `finish_reason` set on its last token."""

    request_id: str
    token_id: int
    index: int
    finish_reason: FinishReason | None = None


@dataclass(slots=True)
class _Request:
    request_id: str
    params: SamplingParams
    generated: list[int]  # every generated token, the prefill's first included
    num_cached_tokens: int  # tokens whose state is in the cache (prompt + generated[:-1])
    pending_state: HybridState | None  # set until the request joins the batch


@dataclass(slots=True)
class _Batch:
    request_ids: list[str]
    cache: Any
    padded_length: int
    lengths: list[int] = field(default_factory=list)


class DecodeWorker:
    """Holds many requests' states and decodes them together."""

    def __init__(self, loaded: LoadedModel, max_batch_size: int = 32, detokenize: Detokenize | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self._detokenize = detokenize
        self._requests: dict[str, _Request] = {}
        self._batch: _Batch | None = None
        self._membership_changed = False

    @property
    def num_running(self) -> int:
        return len(self._requests)

    @property
    def request_ids(self) -> tuple[str, ...]:
        return tuple(self._requests)

    def add(
        self, request_id: str, state: HybridState, first_token: int, params: SamplingParams = GREEDY
    ) -> FinishReason | None:
        """Admit a request whose prompt state has arrived; returns a finish reason if `first_token` already ends it."""
        self._validate_add(request_id, state, first_token, params)
        request = _Request(request_id, params, [int(first_token)], state.num_tokens, state.to(self.loaded.device))
        reason = self._finish_reason(request)
        if reason is None:
            self._requests[request_id] = request
            self._membership_changed = True
        return reason

    def remove(self, request_id: str) -> None:
        """Drop a request (cancel); its state is released at the next step."""
        if self._requests.pop(request_id, None) is None:
            raise UnknownRequestError(f"request {request_id!r} is not running")
        self._membership_changed = True

    def step(self) -> list[TokenEvent]:
        """Advance every running request by one token."""
        if not self._requests:
            self._batch = None
            self._membership_changed = False
            return []
        if self._membership_changed or self._batch is None:
            self._batch = self._rebuild()
            self._membership_changed = False
        batch = self._batch
        requests = [self._requests[rid] for rid in batch.request_ids]
        logits = self._forward(batch, [r.generated[-1] for r in requests])
        tokens = sample_batch(logits, [r.params for r in requests], [len(r.generated) for r in requests])
        return [self._advance(r, t) for r, t in zip(requests, tokens, strict=True)]

    def _advance(self, request: _Request, token: int) -> TokenEvent:
        request.generated.append(token)
        request.num_cached_tokens += 1
        reason = self._finish_reason(request)
        if reason is not None:
            del self._requests[request.request_id]
            self._membership_changed = True
        return TokenEvent(request.request_id, token, len(request.generated) - 1, reason)

    def _forward(self, batch: _Batch, last_tokens: list[int]) -> torch.Tensor:
        loaded = self.loaded
        device = loaded.device
        input_ids = torch.tensor(last_tokens, dtype=torch.long, device=device).unsqueeze(1)  # [B, 1]
        positions = torch.tensor(batch.lengths, dtype=torch.long, device=device).unsqueeze(1)  # [B, 1]
        masks = continuation_masks(loaded.layer_types, loaded.geometries, batch.lengths, batch.padded_length, 1,
                                   loaded.sliding_window, loaded.dtype, device)
        with torch.inference_mode():
            out = loaded.model(input_ids=input_ids, position_ids=positions, attention_mask=masks, cache=batch.cache,
                               use_cache=True, logits_to_keep=1)
        batch.padded_length += 1
        batch.lengths = [n + 1 for n in batch.lengths]
        return out.logits[:, -1, :]  # [B, V]

    def _rebuild(self) -> _Batch:
        states: dict[str, HybridState] = {}
        if self._batch is not None:
            kept = [(i, rid) for i, rid in enumerate(self._batch.request_ids) if rid in self._requests]
            if kept:
                batched = export_state(self._batch.cache, self.loaded.geometries, self.loaded.family,
                                       self._batch.padded_length)
                rows = unpack_rows(batched, self.loaded, self._batch.lengths)
                states.update({rid: rows[i] for i, rid in kept})
        for rid, request in self._requests.items():
            if request.pending_state is not None:
                states[rid] = request.pending_state
                request.pending_state = None
        ids = list(self._requests)
        ordered = [states[rid] for rid in ids]
        cache, padded_length = build_batch_cache(self.loaded, ordered)
        remaining = max(r.params.max_tokens - len(r.generated) for r in self._requests.values())
        grow_in_place(cache, self.loaded.geometries, headroom_tokens=min(remaining, MAX_HEADROOM_TOKENS))
        return _Batch(ids, cache, padded_length, [s.num_tokens for s in ordered])

    def _validate_add(self, request_id: str, state: HybridState, first_token: int, params: SamplingParams) -> None:
        if request_id in self._requests:
            raise DuplicateRequestError(f"request {request_id!r} is already running")
        if len(self._requests) >= self.max_batch_size:
            raise BatchFullError(f"decode batch is full ({self.max_batch_size} requests)")
        if params.stop_strings and self._detokenize is None:
            raise InvalidSamplingError("stop strings need a worker built with a detokenizer")
        if not 0 <= int(first_token) < self.loaded.vocab_size:
            raise InvalidTokenError(int(first_token), self.loaded.vocab_size, state.num_tokens)
        if state.num_tokens + 1 >= self.loaded.max_context_tokens:
            raise PromptTooLongError(state.num_tokens + 1, self.loaded.max_context_tokens - 1)
        check_layout(state.layout(), self.loaded.expected_layout(state.num_tokens))

    def _finish_reason(self, request: _Request) -> FinishReason | None:
        params = request.params
        last = request.generated[-1]
        if last in params.stop_token_ids or (not params.ignore_eos and last in self.loaded.eos_token_ids):
            return FinishReason.STOP
        if params.stop_strings and self._hits_stop_string(request):
            return FinishReason.STOP
        if len(request.generated) >= params.max_tokens:
            return FinishReason.LENGTH
        if request.num_cached_tokens + 1 >= self.loaded.max_context_tokens:
            return FinishReason.LENGTH
        return None

    def _hits_stop_string(self, request: _Request) -> bool:
        assert self._detokenize is not None
        longest = max(len(s) for s in request.params.stop_strings)
        tail = self._detokenize(request.generated[-(longest + _STOP_STRING_TAIL_TOKENS) :])
        return any(s in tail for s in request.params.stop_strings)
