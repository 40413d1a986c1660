"""Measure this engine on this machine: T_prefill(l), S_kv(l) and decode step times.

Returns plain numbers; `prfaas profile` turns them into a `perf.measured.MeasuredProfile` file that the planner
and the simulator read. Every time is the median of `repeats` runs after one warm-up run, kept with its spread
((max - min) / median, `perf.profile_check`). Decode steps are measured with `batch_size` copies of one prompt
state at `context_tokens`, in a `DecodeWorker` (so they include the per-step mask and sampling work that serving
pays), after the batch has been built. `machine_state` records what the numbers were measured on.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from prfaas.engine.decode import DecodeWorker
from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.sampling import SamplingParams
from prfaas.perf.profile_check import RobustTime, robust_time


@dataclass(frozen=True, slots=True)
class PrefillSample:
    num_tokens: int
    t_prefill_s: float  # median
    s_kv_bytes: int
    spread: float = 0.0  # (max - min) / median of the timed runs


@dataclass(frozen=True, slots=True)
class DecodeSample:
    batch_size: int
    context_tokens: int
    t_step_s: float  # median
    spread: float = 0.0  # (max - min) / median of the timed steps


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


def timed_runs(fn: Callable[[], object], repeats: int) -> RobustTime:
    """Median and spread of `repeats` timed runs after one warm-up run."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return robust_time(times)


def median_time_s(fn: Callable[[], object], repeats: int) -> float:
    return timed_runs(fn, repeats).median_s


def _prompt(loaded: LoadedModel, num_tokens: int, seed: int = 0) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, loaded.vocab_size, (num_tokens,), generator=generator).tolist()


def measure_prefill(loaded: LoadedModel, lengths: Sequence[int], repeats: int = 3) -> list[PrefillSample]:
    engine = PrefillEngine(loaded)
    samples = []
    for n in lengths:
        prompt = _prompt(loaded, n)
        timing = timed_runs(lambda p=prompt: engine.prefill(p), repeats)  # type: ignore[misc]
        samples.append(PrefillSample(n, timing.median_s, engine.prefill(prompt)[1].nbytes, timing.spread))
    return samples


def decode_step_timing(loaded: LoadedModel, batch_size: int, context_tokens: int, num_steps: int = 8) -> RobustTime:
    """Median and spread of one decode step for `batch_size` requests at `context_tokens` each."""
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
    return robust_time(times)


def decode_step_time_s(loaded: LoadedModel, batch_size: int, context_tokens: int, num_steps: int = 8) -> float:
    """Median seconds of one decode step for `batch_size` requests at `context_tokens` each."""
    return decode_step_timing(loaded, batch_size, context_tokens, num_steps).median_s


def measure_decode(
    loaded: LoadedModel, batch_sizes: Sequence[int], contexts: Sequence[int], num_steps: int = 8
) -> list[DecodeSample]:
    out = []
    for c in contexts:
        for b in batch_sizes:
            timing = decode_step_timing(loaded, b, c, num_steps)
            out.append(DecodeSample(b, c, timing.median_s, timing.spread))
    return out


def device_description(loaded: LoadedModel) -> str:
    device = loaded.device
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def num_accelerators(loaded: LoadedModel) -> int:
    """Accelerators one instance used: 1 for a CUDA device, 0 on the CPU."""
    return 1 if loaded.device.type == "cuda" else 0


def load_average() -> tuple[float, float, float]:
    """1/5/15-minute load averages (zeros where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else `platform`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True, slots=True)
class MachineState:
    torch_threads: int
    num_cpus: int
    cpu_model: str
    load_avg: tuple[float, float, float]


def machine_state() -> MachineState:
    return MachineState(torch.get_num_threads(), os.cpu_count() or 1, cpu_model(), load_average())


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
