"""Measure this engine on this machine: T_prefill(l), S_kv(l) and decode step times.

Returns plain numbers; `prfaas profile` turns them into a `perf.measured.MeasuredProfile` file that the planner
and the simulator read. Every time is the median of `repeats` runs after one warm-up run. Decode steps are
measured with `batch_size` copies of one prompt state at `context_tokens`, in a `DecodeWorker` (so they include
the per-step mask and sampling work that serving pays), after the batch has been built.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from prfaas.engine.decode import DecodeWorker
from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.sampling import SamplingParams


@dataclass(frozen=True, slots=True)
class PrefillSample:
    num_tokens: int
    t_prefill_s: float
    s_kv_bytes: int


@dataclass(frozen=True, slots=True)
class DecodeSample:
    batch_size: int
    context_tokens: int
    t_step_s: float


@dataclass(frozen=True, slots=True)
class EngineProfile:
    model_name: str
    device: str
    prefill: tuple[PrefillSample, ...]
    decode: tuple[DecodeSample, ...]


def profile_lengths(max_tokens: int, min_tokens: int = 128) -> list[int]:
    """Doubling prompt lengths from `min_tokens` up to and including `max_tokens`."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    lengths: list[int] = []
    n = min(min_tokens, max_tokens)
    while n < max_tokens:
        lengths.append(n)
        n *= 2
    return [*lengths, max_tokens]


def median_time_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _prompt(loaded: LoadedModel, num_tokens: int, seed: int = 0) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, loaded.vocab_size, (num_tokens,), generator=generator).tolist()


def measure_prefill(loaded: LoadedModel, lengths: Sequence[int], repeats: int = 3) -> list[PrefillSample]:
    engine = PrefillEngine(loaded)
    samples = []
    for n in lengths:
        prompt = _prompt(loaded, n)
        t_s = median_time_s(lambda p=prompt: engine.prefill(p), repeats)  # type: ignore[misc]
        samples.append(PrefillSample(n, t_s, engine.prefill(prompt)[1].nbytes))
    return samples


def decode_step_time_s(loaded: LoadedModel, batch_size: int, context_tokens: int, num_steps: int = 8) -> float:
    """Median seconds of one decode step for `batch_size` requests at `context_tokens` each."""
    first, state = PrefillEngine(loaded).prefill(_prompt(loaded, context_tokens))
    worker = DecodeWorker(loaded, max_batch_size=batch_size)
    params = SamplingParams(max_tokens=num_steps + 3, ignore_eos=True)
    for i in range(batch_size):
        worker.add(f"p{i}", state.clone(), first, params)
    worker.step()  # builds the batch
    times = []
    for _ in range(num_steps):
        start = time.perf_counter()
        worker.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_decode(
    loaded: LoadedModel, batch_sizes: Sequence[int], contexts: Sequence[int], num_steps: int = 8
) -> list[DecodeSample]:
    return [
        DecodeSample(b, c, decode_step_time_s(loaded, b, c, num_steps)) for c in contexts for b in batch_sizes
    ]


def device_description(loaded: LoadedModel) -> str:
    device = loaded.device
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def profile_engine(
    loaded: LoadedModel,
    max_tokens: int,
    repeats: int = 3,
    batch_sizes: Sequence[int] = (1, 8, 32),
    decode_contexts: Sequence[int] | None = None,
    decode_steps: int = 8,
) -> EngineProfile:
    """Prefill at doubling lengths up to `max_tokens`; decode steps at each batch size and context."""
    contexts = decode_contexts or sorted({min(512, max_tokens), max_tokens})
    prefill = measure_prefill(loaded, profile_lengths(max_tokens), repeats)
    decode = measure_decode(loaded, batch_sizes, contexts, decode_steps)
    return EngineProfile(loaded.name, device_description(loaded), tuple(prefill), tuple(decode))
