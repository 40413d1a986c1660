"""Synthetic workloads: lengths x arrivals (x optional prefix sessions) -> `WorkloadRequest`s.

`synthetic_requests` is deterministic in `seed`. The seed is split (numpy `SeedSequence.spawn`) into
independent streams for arrival times, prompt lengths, output lengths and sessions, so changing the output
lengths does not move the arrivals (common random numbers across what-if runs).

`scale_lengths` maps a workload from the paper's regime onto a small model's context window; see its
docstring for what happens to prefix chains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from prfaas.core.errors import ConfigError
from prfaas.workload.arrivals import ArrivalProcess
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.empirical import merged_distribution
from prfaas.workload.mixshift import LengthSampler
from prfaas.workload.request import BLOCK_TOKENS, WorkloadRequest, num_blocks_for
from prfaas.workload.sessions import SyntheticPrefixes, assign_chains

MAX_HORIZON_S = 1e9  # give up growing the horizon for `num_requests` beyond this


def synthetic_requests(lengths: DiscreteLengthDistribution | LengthSampler,
                       output_tokens: int | DiscreteLengthDistribution, arrivals: ArrivalProcess, *,
                       duration_s: float | None = None, num_requests: int | None = None, seed: int = 0,
                       prefixes: SyntheticPrefixes | None = None) -> list[WorkloadRequest]:
    """Requests arriving on [0, duration_s) and/or the first `num_requests` of them (at least one bound).

    Prompt lengths come from `lengths` (a fixed distribution, or a `LengthSampler` such as `MixShift` that
    depends on the arrival time), clamped to >= 1; outputs are a fixed count or drawn from a distribution.
    With `prefixes`, requests carry session ids and synthetic block chains (`sessions.py`).
    """
    if duration_s is None and num_requests is None:
        raise ConfigError("synthetic workload needs duration_s or num_requests")
    if num_requests is not None and num_requests < 1:
        raise ConfigError(f"num_requests must be >= 1, got {num_requests}")
    arrival_ss, length_ss, output_ss, session_ss = np.random.SeedSequence(seed).spawn(4)
    times = _arrival_times(arrivals, arrival_ss, duration_s, num_requests)
    if times.size == 0:
        raise ConfigError("the arrival process produced no requests in the requested window")
    inputs = np.maximum(_sample_lengths(lengths, np.random.default_rng(length_ss), times), 1)
    outputs = _sample_outputs(output_tokens, np.random.default_rng(output_ss), times.size)
    sessions: list[int | None] = [None] * times.size
    chains: list[tuple[int, ...]] = [()] * times.size
    if prefixes is not None:
        sids, chains = assign_chains(prefixes, inputs, np.random.default_rng(session_ss))
        sessions = list(sids)
    return [
        WorkloadRequest(i, float(t), int(n), int(o), chain, sid)
        for i, (t, n, o, chain, sid) in enumerate(zip(times, inputs, outputs, chains, sessions, strict=True))
    ]


def _arrival_times(arrivals: ArrivalProcess, seed_seq: np.random.SeedSequence, duration_s: float | None,
                   num_requests: int | None) -> NDArray[np.float64]:
    """Times on [0, duration_s), or the first `num_requests` of an ever longer horizon (each try restarts
    the same stream, so the answer is the prefix of one draw)."""
    if duration_s is not None:
        times = arrivals.arrival_times(np.random.default_rng(seed_seq), duration_s)
        return times if num_requests is None else times[:num_requests]
    assert num_requests is not None
    rate0 = arrivals.rate_rps(0.0)
    horizon_s = 1.5 * num_requests / rate0 if rate0 > 0 else 1.0
    while True:
        times = arrivals.arrival_times(np.random.default_rng(seed_seq), horizon_s)
        if times.size >= num_requests:
            return times[:num_requests]
        if horizon_s >= MAX_HORIZON_S:
            raise ConfigError(f"the arrival process produced only {times.size} of {num_requests} requests "
                              f"within {MAX_HORIZON_S:g} s")
        horizon_s = min(horizon_s * 2.0, MAX_HORIZON_S)


def _sample_lengths(lengths: DiscreteLengthDistribution | LengthSampler, rng: np.random.Generator,
                    times: NDArray[np.float64]) -> NDArray[np.int64]:
    if isinstance(lengths, DiscreteLengthDistribution):
        return lengths.sample(rng, times.size)
    return lengths.sample_at(rng, times)


def _sample_outputs(output_tokens: int | DiscreteLengthDistribution, rng: np.random.Generator,
                    size: int) -> NDArray[np.int64]:
    if isinstance(output_tokens, DiscreteLengthDistribution):
        return output_tokens.sample(rng, size)
    if output_tokens < 0:
        raise ConfigError(f"output_tokens must be >= 0, got {output_tokens}")
    return np.full(size, output_tokens, dtype=np.int64)


def rescale_arrivals(requests: Sequence[WorkloadRequest], time_scale: float) -> list[WorkloadRequest]:
    """The same requests with every `arrival_s` multiplied by `time_scale` (0.5 = replay twice as fast)."""
    if not 0.0 < time_scale < math.inf:
        raise ConfigError(f"time_scale must be finite and > 0, got {time_scale}")
    return [replace(r, arrival_s=r.arrival_s * time_scale) for r in requests]


# --- scaling to a small model's context --------------------------------------------------------------


def scale_lengths(requests: Sequence[WorkloadRequest], factor: float, max_tokens: int, *,
                  output_factor: float = 1.0) -> list[WorkloadRequest]:
    """Scale prompt lengths by `factor` (outputs by `output_factor`) to fit a `max_tokens` context window.

    output' = min(round(output * output_factor), max_tokens - 1)
    input'  = clamp(round(input * factor), 1, max_tokens - output')     so input' + output' <= max_tokens

    Prefix chains: for factor <= 1, scaled block j stands for the original prompt up to the same relative
    position, so it takes the original hash of block ceil((j + 1) / factor) - 1; two scaled prompts share
    block j exactly when the originals share that much prefix (the chain is cut where the original ends).
    For factor > 1 no such mapping exists and the chains are dropped.
    """
    _check_scale(factor, max_tokens)
    if not 0.0 <= output_factor < math.inf:
        raise ConfigError(f"output_factor must be finite and >= 0, got {output_factor}")
    scaled = []
    for r in requests:
        out = min(round(r.output_tokens * output_factor), max_tokens - 1)
        inp = min(max(round(r.input_tokens * factor), 1), max_tokens - out)
        chain = _scaled_chain(r.block_hashes, factor, inp)
        scaled.append(replace(r, input_tokens=inp, output_tokens=out, block_hashes=chain))
    return scaled


def _scaled_chain(hashes: tuple[int, ...], factor: float, input_tokens: int) -> tuple[int, ...]:
    if factor > 1.0 or not hashes:
        return ()
    chain = []
    for j in range(num_blocks_for(input_tokens, BLOCK_TOKENS)):
        k = math.ceil((j + 1) / factor - 1e-9) - 1
        if k >= len(hashes):
            break
        chain.append(hashes[k])
    return tuple(chain)


def scale_distribution(dist: DiscreteLengthDistribution, factor: float, max_tokens: int
                       ) -> DiscreteLengthDistribution:
    """Lengths scaled by `factor`, rounded, clamped to [1, max_tokens] (equal results merged)."""
    _check_scale(factor, max_tokens)
    lengths = np.clip(np.rint(dist.lengths * factor), 1, max_tokens)
    return merged_distribution(lengths, dist.probs, f"{dist.name} x{factor:g} (<= {max_tokens})")


def _check_scale(factor: float, max_tokens: int) -> None:
    if not 0.0 < factor < math.inf:
        raise ConfigError(f"scale factor must be finite and > 0, got {factor}")
    if max_tokens < 2:
        raise ConfigError(f"max_tokens must be >= 2 (one prompt and one output token), got {max_tokens}")
