"""Prefill: run a prompt (optionally on top of a cached prefix state) and produce its `HybridState`.

    engine = PrefillEngine(load_model("default"))
    first_token, state = engine.prefill(tokens, prefix=None, on_layer_done=send_layer)

`on_layer_done(layer_index, part)` is called from a forward hook as soon as decoder layer `layer_index` has
finished; `part` is that layer's final state (the same tensor objects the returned state holds), so a transport
can stream layer i while layers > i still compute. It is called once per stateful layer, in layer order, and only
during the last forward. Only the last position's logits are computed (`logits_to_keep=1`).

`prefill_with_snapshot` additionally stops at a token boundary inside the prompt and copies the linear and
sliding-window parts there (full-attention KV up to the boundary is a prefix of the final KV); the prefix cache
pool keeps such snapshots so later prompts can resume at the boundary.

Safe points: with `safe_point` set (the node's worker sets it through `TorchBackend.preempt_point`), the last
forward calls it after each layer but the last, once that layer's part is handed to `on_layer_done`. It may run
another prefill on this engine to its end right there (nested; a preemption at a safe point, `serve.worker`):
each forward's hooks act only while their forward is the innermost one, so a nested prefill neither reports its
layers to the outer one's callback nor is disturbed by it, and the outer forward resumes at its next layer with
its own cache untouched.

Bad input raises `EngineError`s before any compute: empty prompt, prompt beyond the context, token ids outside
the vocabulary, a prefix whose layout does not match this model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prfaas.engine.cache_io import export_layer, export_state, import_state, new_cache
from prfaas.engine.errors import EmptyPromptError, EngineError, InvalidTokenError, PromptTooLongError
from prfaas.engine.geometry import PartKind
from prfaas.engine.masks import continuation_masks
from prfaas.engine.models import LoadedModel
from prfaas.engine.sampling import GREEDY, SamplingParams, sample_token
from prfaas.engine.state import HybridState, LayerPart, check_layout

LayerDoneCallback = Callable[[int, LayerPart], None]


@dataclass(frozen=True, slots=True)
class PrefillResult:
    """What a prefill produced. `snapshot` holds only linear and sliding parts, at `snapshot.num_tokens`."""

    first_token: int
    state: HybridState
    num_computed_tokens: int
    snapshot: HybridState | None = None


def validate_tokens(tokens: Sequence[int], loaded: LoadedModel) -> None:
    """Raise the typed error for an empty, too long or out-of-vocabulary prompt."""
    if len(tokens) == 0:
        raise EmptyPromptError()
    if len(tokens) >= loaded.max_context_tokens:
        raise PromptTooLongError(len(tokens), loaded.max_context_tokens - 1)
    for position, token in enumerate(tokens):
        if not 0 <= int(token) < loaded.vocab_size:
            raise InvalidTokenError(int(token), loaded.vocab_size, position)


class PrefillEngine:
    """Runs prefills for one loaded model. Stateless between calls; not thread-safe (one thread; forwards nest only
    through `safe_point`)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.safe_point: Callable[[], float] | None = None  # called between layers of a prefill (module doc)
        self._active: list[Callable[[int], None] | None] = []  # the collectors of the forwards running, innermost last

    def prefill(
        self,
        tokens: Sequence[int],
        prefix: HybridState | None = None,
        on_layer_done: LayerDoneCallback | None = None,
        sampling: SamplingParams = GREEDY,
    ) -> tuple[int, HybridState]:
        """(first generated token, state of the whole prompt)."""
        result = self.prefill_with_snapshot(tokens, prefix, None, on_layer_done, sampling)
        return result.first_token, result.state

    def prefill_with_snapshot(
        self,
        tokens: Sequence[int],
        prefix: HybridState | None = None,
        snapshot_at_tokens: int | None = None,
        on_layer_done: LayerDoneCallback | None = None,
        sampling: SamplingParams = GREEDY,
    ) -> PrefillResult:
        """Prefill `tokens[prefix.num_tokens:]` after `prefix`, copying linear/sliding state at `snapshot_at_tokens`."""
        validate_tokens(tokens, self.loaded)
        num_cached = self._check_prefix(prefix, len(tokens))
        cache = new_cache(self.loaded.config, self.loaded.family) if prefix is None else self._import(prefix)
        snapshot = None
        start = num_cached
        if snapshot_at_tokens is not None and num_cached < snapshot_at_tokens < len(tokens):
            self._forward(cache, tokens[start:snapshot_at_tokens], start, None)
            snapshot = self._snapshot(cache, snapshot_at_tokens)
            start = snapshot_at_tokens
        parts: dict[int, LayerPart] = {}
        logits = self._forward(cache, tokens[start:], start, self._collector(cache, len(tokens), parts, on_layer_done))
        state = self._final_state(cache, len(tokens), parts)
        if snapshot_at_tokens == len(tokens):
            snapshot = self._snapshot(cache, len(tokens))
        first = sample_token(logits, sampling, 0)
        return PrefillResult(first, state, len(tokens) - num_cached, snapshot)

    def _check_prefix(self, prefix: HybridState | None, num_tokens: int) -> int:
        if prefix is None:
            return 0
        if prefix.num_tokens >= num_tokens:
            raise EngineError(f"prefix covers {prefix.num_tokens} of {num_tokens} tokens; nothing left to prefill")
        check_layout(prefix.layout(), self.loaded.expected_layout(prefix.num_tokens))
        return prefix.num_tokens

    def _import(self, prefix: HybridState) -> Any:
        return import_state(prefix.to(self.loaded.device), self.loaded.config, self.loaded.family)

    def _forward(
        self, cache: Any, tokens: Sequence[int], start: int, collector: Callable[[int], None] | None
    ) -> torch.Tensor:
        loaded = self.loaded
        device = loaded.device
        input_ids = torch.tensor([list(tokens)], dtype=torch.long, device=device)  # [1, q]
        positions = torch.arange(start, start + len(tokens), device=device).unsqueeze(0)  # [1, q]
        masks = None
        if start > 0:
            masks = continuation_masks(loaded.layer_types, loaded.geometries, [start], start, len(tokens),
                                       loaded.sliding_window, loaded.dtype, device)
        self._active.append(collector)
        handles = self._register_hooks(collector) if collector is not None else []
        try:
            with torch.inference_mode():
                out = loaded.model(input_ids=input_ids, position_ids=positions, attention_mask=masks, cache=cache,
                                   use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
            self._active.pop()
        return out.logits[0, -1]  # [V]

    def _register_hooks(self, collector: Callable[[int], None]) -> list[Any]:
        active = self._active
        layers = self.loaded.decoder_layers()
        last = len(layers) - 1

        def make_hook(index: int) -> Callable[..., None]:
            def hook(_module: Any, _inputs: Any, _output: Any) -> None:
                if active[-1] is not collector:  # a forward nested at our safe point runs this layer
                    return
                collector(index)
                if index < last and self.safe_point is not None:
                    self.safe_point()

            return hook

        return [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]

    def _collector(
        self, cache: Any, num_tokens: int, parts: dict[int, LayerPart], on_layer_done: LayerDoneCallback | None
    ) -> Callable[[int], None]:
        geometries = self.loaded.geometries
        family = self.loaded.family

        def collect(index: int) -> None:
            part = export_layer(cache, geometries[index], family, num_tokens)
            if part is None:
                return
            parts[index] = part
            if on_layer_done is not None:
                on_layer_done(index, part)

        return collect

    def _final_state(self, cache: Any, num_tokens: int, parts: dict[int, LayerPart]) -> HybridState:
        exported = export_state(cache, self.loaded.geometries, self.loaded.family, num_tokens)
        merged = tuple(parts.get(p.layer_index, p) for p in exported.parts)
        return HybridState(merged, num_tokens)

    def _snapshot(self, cache: Any, num_tokens: int) -> HybridState:
        state = export_state(cache, self.loaded.geometries, self.loaded.family, num_tokens)
        kept = tuple(p for p in state.parts if self.loaded.geometries[p.layer_index].part_kind is not PartKind.FULL_KV)
        return HybridState(kept, num_tokens).clone()
