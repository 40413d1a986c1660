"""`EmulatedBackend`: a node's compute takes the time a named accelerator's profile says, and its state is
exactly S_kv(l) real bytes (docs/emulated.md). No torch, no model: it sleeps, so a dozen nodes fit on two cores
with the profile, not CPU contention, deciding latency.

    backend = make_emulated_backend(cfg.model, ClusterKind.PRFAAS)     # H200 (Table 5) timing on PrfaaS nodes
    out = backend.prefill(rid, tokens, sampling, on_layer_done)       # layer i handed over at start + T(l)·(i+1)/L
    backend.decode_add(rid, state, first_token, sampling)             # checks every byte first (ENGINE_ERROR if not)
    backend.decode_step()                                             # one batch step: T_decode x k_t

- Prefill of l tokens lasts T_prefill(l) x k_t (the profile's model, `perf.emulated.EmulatedPrefillModel`),
  spread evenly over the layers; each layer's tensors are filled with a pattern derived from the request id
  and handed to the transport when "computed", so the real transport streams them while later layers "run".
- The state layout is the emulated model's catalog specs (`perf.emulated.emulated_layers`): an MLA layer ships
  a (l, width) latent, a KDA layer its fixed recurrent state; `expected_layout(l).total_bytes` equals
  `core.layers.total_state_bytes(layers, l)`, the S_kv the planner and simulator use.
- Decode: before a request joins the batch its received bytes are compared with the pattern its id implies;
  a mismatch ends it with ENGINE_ERROR and no token. The bytes are then dropped (decode reads nothing). Each
  step sleeps T_decode x k_t for the whole batch (at most `max_batch_size` = BS_max requests) and advances
  every request one token (tokens (first + i) mod vocab, like the stub); with `steps_per_event` n > 1 it sleeps
  n steps at once and emits n tokens per request (fewer events; the same token times at step granularity).
- Sleeping is by deadline (monotonic clock), so the CPU spent filling or checking bytes is absorbed, not added.
- Between layers a prefill is a safe point: `preempt_point` (set by the node's `ModelWorker`) may run another
  region's prefill there (fair order, `serve.worker`); the deadlines of the remaining layers move by the pause.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.core.layers import LayerKind, LayerStateSpec
from prfaas.core.lifecycle import ClusterKind
from prfaas.core.state_layout import StateLayout, TensorSpec
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.emulated import EmulatedPrefillModel, EmulationScale, affine_state_fit, emulated_layers
from prfaas.serve.backend import ENGINE_ERROR, DecodeEvent, LayerViews, PrefillOutput, _check_prompt
from prfaas.serve.config import EmulatedSection, ModelSection
from prfaas.serve.messages import SamplingMsg

_log = logging.getLogger(__name__)
PATTERN_BLOCK_BYTES = 64
EMULATED_VOCAB = 2048  # the default tokenizer's ids (the gateway's tokenizer for the emulated engine)


def pattern_bytes(request_id: str, layer_index: int, tensor_name: str, nbytes: int) -> bytearray:
    """The deterministic content of one tensor of `request_id`'s state: a 64-byte block derived from the
    request id, layer and tensor, repeated (cheap to make and to check; wrong request or place -> mismatch)."""
    seed = hashlib.blake2b(f"{request_id}/{layer_index}/{tensor_name}".encode(),
                           digest_size=PATTERN_BLOCK_BYTES).digest()
    out = bytearray(seed) * (nbytes // PATTERN_BLOCK_BYTES + 1)
    del out[nbytes:]
    return out


@dataclass(slots=True)
class EmulatedState:
    layout: StateLayout
    buffers: list[bytearray]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.buffers)


class StateCheckError(Exception):
    """Received state bytes are not the ones the request's prefill produced."""


class EmulatedBackend:
    def __init__(self, prefill_model: EmulatedPrefillModel, t_decode_s: float, *,
                 steps_per_event: int = 1, max_context_tokens: int = 262144, vocab_size: int = EMULATED_VOCAB,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.prefill_model = prefill_model
        self.layers: tuple[LayerStateSpec, ...] = prefill_model.layers
        self.step_s = t_decode_s * prefill_model.scale.time_scale  # one scaled decode step
        self.steps_per_event = steps_per_event
        self.max_context_tokens = max_context_tokens
        self.vocab_size = vocab_size
        self._clock, self._sleep = clock, sleep
        self._running: dict[str, tuple[int, int, int]] = {}  # id -> (next token, generated, max_tokens)
        self._last_step_end = 0.0
        self.state_errors = 0  # requests refused because their bytes did not check
        # set by the node's worker: called between layers, runs preempting jobs, returns the seconds paused
        self.preempt_point: Callable[[], float] | None = None

    def _sleep_until(self, deadline: float) -> None:
        delay = deadline - self._clock()
        if delay > 0:
            self._sleep(delay)

    # --- prefill ---------------------------------------------------------------------------------
    def expected_layout(self, num_tokens: int) -> StateLayout:
        tensors = []
        for i, spec in enumerate(self.layers):
            if spec.kind is LayerKind.MLA and spec.kv_bytes_per_token > 0 and num_tokens > 0:
                tensors.append(TensorSpec(i, LayerKind.MLA, "latent", "uint8", (num_tokens, spec.kv_bytes_per_token)))
            elif spec.kind is LayerKind.LINEAR and spec.fixed_state_bytes > 0:
                tensors.append(TensorSpec(i, LayerKind.LINEAR, "recurrent", "uint8", (spec.fixed_state_bytes,)))
        return StateLayout(tensors=tuple(tensors), num_tokens=num_tokens)

    def expected_prefill_s(self, num_tokens: int) -> float:
        """How long a prefill of `num_tokens` sleeps (scaled): what the node's fair prefill order costs it at."""
        return self.prefill_model.t_prefill_s(num_tokens)

    def prefill(self, request_id: str, tokens: Sequence[int], sampling: SamplingMsg,
                on_layer_done: LayerViews | None) -> PrefillOutput:
        _check_prompt(len(tokens), self.max_context_tokens)
        started = self._clock()
        duration_s = self.expected_prefill_s(len(tokens))
        layout = self.expected_layout(len(tokens))
        buffers: list[bytearray] = []
        by_layer: dict[int, list[bytearray]] = {}
        for spec in layout.tensors:
            buf = pattern_bytes(request_id, spec.layer_index, spec.name, spec.nbytes)
            buffers.append(buf)
            by_layer.setdefault(spec.layer_index, []).append(buf)
        num_layers = len(self.layers)
        for i in range(num_layers):
            self._sleep_until(started + duration_s * (i + 1) / num_layers)
            if on_layer_done is not None and i in by_layer:
                on_layer_done(i, [memoryview(b) for b in by_layer[i]])
            if self.preempt_point is not None and i + 1 < num_layers:
                started += self.preempt_point()  # paused while a preempting prefill ran: its time is not ours
        return PrefillOutput((sum(tokens) + 1) % self.vocab_size, EmulatedState(layout, buffers), 0)

    def release(self, request_id: str) -> None:
        return None

    def cached_blocks(self) -> frozenset[int] | None:
        return None

    # --- receive and check -------------------------------------------------------------------------
    def allocate(self, layout: StateLayout) -> tuple[Any, list[memoryview]]:
        buffers = [bytearray(spec.nbytes) for spec in layout.tensors]
        return EmulatedState(layout, buffers), [memoryview(b) for b in buffers]

    def check_state(self, request_id: str, state: Any) -> None:
        """Raise StateCheckError unless `state` holds exactly the bytes `request_id`'s prefill produced."""
        if not isinstance(state, EmulatedState):
            raise StateCheckError(f"{request_id}: not an emulated state ({type(state).__name__})")
        expected = self.expected_layout(state.layout.num_tokens)
        if state.layout.tensors != expected.tensors or len(state.buffers) != len(expected.tensors):
            raise StateCheckError(f"{request_id}: layout differs from the model's for {state.layout.num_tokens} "
                                  "tokens")
        for spec, buf in zip(expected.tensors, state.buffers, strict=True):
            if buf != pattern_bytes(request_id, spec.layer_index, spec.name, spec.nbytes):
                raise StateCheckError(f"{request_id}: layer {spec.layer_index} {spec.name} bytes differ")

    # --- decode ------------------------------------------------------------------------------------
    def decode_add(self, request_id: str, state: Any, first_token: int, sampling: SamplingMsg) -> str | None:
        try:
            self.check_state(request_id, state)
        except StateCheckError as exc:
            self.state_errors += 1
            _log.error("refusing to decode: %s", exc)
            return ENGINE_ERROR
        if isinstance(state, EmulatedState):
            state.buffers.clear()  # decode reads nothing: the bytes were checked, free them now
        if sampling.max_tokens <= 1:
            return "length"
        self._running[request_id] = ((first_token + 1) % self.vocab_size, 1, sampling.max_tokens)
        return None

    def decode_step(self) -> list[DecodeEvent]:
        if not self._running:
            return []
        now = self._clock()
        deadline = max(now, self._last_step_end) + self.step_s * self.steps_per_event
        self._sleep_until(deadline)
        self._last_step_end = deadline
        events = []
        for rid, (token, generated, max_tokens) in list(self._running.items()):
            for _ in range(self.steps_per_event):
                generated += 1
                done = generated >= max_tokens
                events.append(DecodeEvent(rid, token, "length" if done else None))
                token = (token + 1) % self.vocab_size
                if done:
                    break
            if generated >= max_tokens:
                del self._running[rid]
            else:
                self._running[rid] = (token, generated, max_tokens)
        return events

    def decode_remove(self, request_id: str) -> None:
        self._running.pop(request_id, None)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def request_ids(self) -> tuple[str, ...]:
        return tuple(self._running)


# --- construction from the config --------------------------------------------------------------------
def named_timing(name: str) -> tuple[PrefillCostModel, list[tuple[float, float]]]:
    """A profile by name ("paper-h200", "paper-h20") or `prfaas profile` JSON path: its prefill model and the
    S_kv points (length, bytes) the state geometry is fitted to."""
    from prfaas.planner.paper import paper_case, paper_profile

    if name in ("paper-h200", "paper-h20"):
        h200 = paper_profile()
        points = [(float(p.num_tokens), float(p.s_kv_bytes)) for p in h200.profile.prefill]
        if name == "paper-h200":
            return h200, points
        pd = paper_case().prfaas_pd.pd_prefill
        assert pd is not None
        return pd, points
    from prfaas.perf.measured import ProfilePrefillModel, load_profile_json

    profile = load_profile_json(Path(name))
    return ProfilePrefillModel(profile), [(float(p.num_tokens), float(p.s_kv_bytes)) for p in profile.prefill]


def emulated_models(section: EmulatedSection) -> dict[ClusterKind, EmulatedPrefillModel]:
    """The emulated prefill model of each cluster; one state geometry (fitted to the PrfaaS profile's S_kv)."""
    scale = EmulationScale(section.time_scale, section.state_scale)
    prfaas_timing, points = named_timing(section.prfaas_profile)
    pd_timing, _ = named_timing(section.pd_profile)
    layers = emulated_layers(*affine_state_fit(points), state_scale=section.state_scale,
                             num_layers=section.num_layers, linear_per_full=section.linear_per_full)
    return {ClusterKind.PRFAAS: EmulatedPrefillModel(prfaas_timing, layers, scale),
            ClusterKind.PD: EmulatedPrefillModel(pd_timing, layers, scale)}


def make_emulated_backend(model: ModelSection, cluster: ClusterKind) -> EmulatedBackend:
    section = model.emulated
    return EmulatedBackend(emulated_models(section)[cluster], section.t_decode_s,
                           steps_per_event=section.steps_per_event, max_context_tokens=section.max_context_tokens)
