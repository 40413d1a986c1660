"""`TorchBackend`: the real engine behind a node (prefill through the prefix cache pool, batched decode).

Only the node's model thread calls it (STYLE.md: the engine is single-threaded). Engine input errors become
`BackendInputError` so the node answers 400 and keeps serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from prfaas.core.state_layout import StateLayout
from prfaas.engine.decode import DecodeWorker
from prfaas.engine.errors import EngineError
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.prefix_pool import CachingPrefiller, PrefixCachePool
from prfaas.engine.sampling import SamplingParams
from prfaas.engine.state import HybridState, uint8_view
from prfaas.serve.backend import BackendInputError, DecodeEvent, LayerViews, PrefillOutput
from prfaas.serve.config import ModelSection
from prfaas.serve.messages import SamplingMsg


def sampling_params(msg: SamplingMsg) -> SamplingParams:
    try:
        return SamplingParams(max_tokens=msg.max_tokens, temperature=msg.temperature, top_p=msg.top_p,
                              seed=msg.seed, stop_strings=tuple(msg.stop_strings), ignore_eos=msg.ignore_eos)
    except EngineError as exc:
        raise BackendInputError(str(exc)) from None


def load_loaded_model(model: ModelSection) -> LoadedModel:
    if model.name == "default":
        from prfaas.engine.default_model import build_default_model, default_config
        from prfaas.engine.hf import set_num_threads

        set_num_threads(model.num_threads)
        import torch

        dtype = getattr(torch, model.dtype) if model.dtype else torch.float32
        return build_default_model(seed=model.seed, dtype=dtype,
                                   config=default_config(model.num_layers, model.hidden_size))
    return load_model(model.name, dtype=model.dtype, seed=model.seed, num_threads=model.num_threads)


class TorchBackend:
    def __init__(self, loaded: LoadedModel, max_batch_size: int, prefix_cache_bytes: int) -> None:
        self.loaded = loaded
        self.max_context_tokens = loaded.max_context_tokens
        self.vocab_size = loaded.vocab_size
        engine = PrefillEngine(loaded)
        self._engine = engine
        self._pool = PrefixCachePool(loaded, prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self._prefiller = CachingPrefiller(engine, self._pool) if self._pool is not None else None
        detokenize = loaded.tokenizer.decode if loaded.tokenizer is not None else None
        self._decoder = DecodeWorker(loaded, max_batch_size=max_batch_size, detokenize=detokenize)
        self._held_hex: frozenset[str] = frozenset()
        self._held_ints: frozenset[int] = frozenset()

    @property
    def preempt_point(self) -> Callable[[], float] | None:
        """Set by the node's worker: called between layers of a prefill (`engine.prefill`, safe points); it may run
        another region's queued prefill to its end there, nested."""
        return self._engine.safe_point

    @preempt_point.setter
    def preempt_point(self, point: Callable[[], float] | None) -> None:
        self._engine.safe_point = point

    @classmethod
    def load(cls, model: ModelSection) -> TorchBackend:
        return cls(load_loaded_model(model), model.max_batch_size, model.prefix_cache_bytes)

    def prefill(self, request_id: str, tokens: Sequence[int], sampling: SamplingMsg,
                on_layer_done: LayerViews | None) -> PrefillOutput:
        params = sampling_params(sampling)

        def hook(layer_index: int, part: Any) -> None:
            assert on_layer_done is not None
            on_layer_done(layer_index, [uint8_view(t) for _name, t in part.named_tensors()])

        callback = hook if on_layer_done is not None else None
        try:
            if self._prefiller is not None:
                result = self._prefiller.prefill(request_id, tokens, callback, params)
                return PrefillOutput(result.first_token, result.state, result.num_cached_tokens)
            first, state = self._engine.prefill(tokens, None, callback, params)
        except EngineError as exc:
            raise BackendInputError(str(exc)) from None
        return PrefillOutput(first, state, 0)

    def expected_layout(self, num_tokens: int) -> StateLayout:
        return self.loaded.expected_layout(num_tokens)

    def allocate(self, layout: StateLayout) -> tuple[Any, list[memoryview]]:
        state = HybridState.allocate(layout)
        return state, state.tensor_views()

    def decode_add(self, request_id: str, state: Any, first_token: int, sampling: SamplingMsg) -> str | None:
        try:
            reason = self._decoder.add(request_id, state, first_token, sampling_params(sampling))
        except EngineError as exc:
            raise BackendInputError(str(exc)) from None
        return None if reason is None else reason.value

    def decode_step(self) -> list[DecodeEvent]:
        return [DecodeEvent(e.request_id, e.token_id, None if e.finish_reason is None else e.finish_reason.value)
                for e in self._decoder.step()]

    def decode_remove(self, request_id: str) -> None:
        if request_id in self._decoder.request_ids:
            self._decoder.remove(request_id)

    @property
    def num_running(self) -> int:
        return self._decoder.num_running

    @property
    def request_ids(self) -> tuple[str, ...]:
        return self._decoder.request_ids

    def cached_blocks(self) -> frozenset[int] | None:
        if self._pool is None:
            return None
        held = self._pool.held_blocks  # one read of an immutable set the model thread republishes
        if held is not self._held_hex:
            self._held_hex, self._held_ints = held, frozenset(int(h, 16) for h in held)
        return self._held_ints

    def release(self, request_id: str) -> None:
        if self._pool is not None:
            # NOTE(serve): a second release of the same id (a retried attempt) finds nothing held
            with contextlib.suppress(EngineError):
                self._pool.ack_transfer(request_id)
