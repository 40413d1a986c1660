"""The benchmark's workload: the paper's log-normal or a trace, scaled to the small model, as token prompts.

    spec = WorkloadSpec(kind=WorkloadKind.LOGNORMAL, num_requests=40, rate_rps=1.0, threshold_tokens=1024)
    requests = build_requests(spec)          # [BenchRequest(index, arrival_s, prompt_tokens, max_tokens)]

Scaling (the small model's context is 16K, the paper's lengths reach 128K): every prompt length is multiplied
by `length_factor`, by default `threshold_tokens / 19,400` so the paper's offload threshold t = 19.4K lands on
the deployment's threshold and the paper's share of offloaded requests (about half) is kept. Lengths are then
clamped to the context (`max_context_tokens - max_tokens - 1`). Outputs are a fixed `max_tokens` (the paper's
are 1,024; decode on two CPU cores cannot afford that, and the claim under test is about prefill and the link).

Prompts are token ids. Log-normal prompts are independent random ids (no prefix reuse). Trace prompts are
built from the trace's 512-token block hashes: block j's ids are a pure function of its hash, so two requests
sharing k hashed blocks share exactly their first k*512 tokens (the prefix cache sees the trace's reuse).
Arrivals are Poisson at `rate_rps`, or the trace's own times rescaled to a mean of `rate_rps`.
Deterministic in `seed`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from pathlib import Path

from prfaas.core.errors import ConfigError
from prfaas.workload import (
    BLOCK_TOKENS,
    PoissonArrivals,
    WorkloadRequest,
    load_trace,
    rescale_arrivals,
    scale_distribution,
    scale_lengths,
    synthetic_requests,
    truncated_lognormal,
)

PAPER_THRESHOLD_TOKENS = 19_400
DEFAULT_TRACE = Path(__file__).resolve().parents[3] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
FIRST_TOKEN_ID = 3  # ids below are BOS/EOS/PAD in the shipped tokenizer


class WorkloadKind(enum.Enum):
    LOGNORMAL = "lognormal"  # the paper's truncated log-normal (mu 9.90, sigma 1.00, [128, 131072]), scaled
    TRACE = "trace"  # a Mooncake JSONL / Azure CSV trace, scaled


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    kind: WorkloadKind = WorkloadKind.LOGNORMAL
    num_requests: int = 40
    rate_rps: float = 1.0
    threshold_tokens: int = 1024  # the deployment's offload threshold (sets the default length factor)
    length_factor: float | None = None  # None: threshold_tokens / 19,400
    max_context_tokens: int = 16384
    max_tokens: int = 16  # output tokens per request
    vocab_size: int = 2048
    seed: int = 0
    trace_path: Path | None = None  # None: the vendored Mooncake conversation trace

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ConfigError(f"num_requests must be >= 1, got {self.num_requests}")
        if not self.rate_rps > 0:
            raise ConfigError(f"rate_rps must be > 0, got {self.rate_rps}")
        if self.max_tokens < 1 or self.max_context_tokens <= self.max_tokens + 2:
            raise ConfigError("need 1 <= max_tokens < max_context_tokens - 2")
        if self.length_factor is not None and not self.length_factor > 0:
            raise ConfigError(f"length_factor must be > 0, got {self.length_factor}")

    @property
    def factor(self) -> float:
        if self.length_factor is not None:
            return self.length_factor
        return max(self.threshold_tokens, 1) / PAPER_THRESHOLD_TOKENS

    @property
    def max_prompt_tokens(self) -> int:
        return self.max_context_tokens - self.max_tokens - 1


@dataclass(frozen=True, slots=True)
class BenchRequest:
    index: int
    arrival_s: float
    prompt_tokens: tuple[int, ...]
    max_tokens: int


def workload_requests(spec: WorkloadSpec) -> list[WorkloadRequest]:
    """Arrival times and (scaled) lengths, before prompts are materialised."""
    if spec.kind is WorkloadKind.LOGNORMAL:
        dist = scale_distribution(truncated_lognormal(), spec.factor, spec.max_prompt_tokens)
        return synthetic_requests(dist, spec.max_tokens, PoissonArrivals(spec.rate_rps),
                                  num_requests=spec.num_requests, seed=spec.seed)
    trace = load_trace(spec.trace_path or DEFAULT_TRACE, limit=spec.num_requests)
    scaled = scale_lengths(trace, spec.factor, spec.max_prompt_tokens, output_factor=0.0)
    span_s = max(r.arrival_s for r in scaled) - min(r.arrival_s for r in scaled)
    if span_s > 0 and len(scaled) > 1:
        scaled = rescale_arrivals(scaled, (len(scaled) - 1) / spec.rate_rps / span_s)
    return scaled


def _block_ids(block_hash: int, vocab_size: int, salt: int) -> list[int]:
    rng = random.Random((block_hash * 1_000_003 + 17) ^ (salt << 48))
    return [rng.randrange(FIRST_TOKEN_ID, vocab_size) for _ in range(BLOCK_TOKENS)]


def prompt_for(request: WorkloadRequest, vocab_size: int, seed: int, salt: int = 0) -> tuple[int, ...]:
    """Token ids for one request: hashed blocks first (shared prefixes), then private random ids. Another
    `salt` gives other ids with the same lengths and the same sharing (nothing cached from an earlier run)."""
    ids: list[int] = []
    for block_hash in request.block_hashes:
        ids.extend(_block_ids(block_hash, vocab_size, salt))
    ids = ids[:request.input_tokens]
    rng = random.Random((seed << 32) ^ request.request_id ^ (salt << 56))
    ids.extend(rng.randrange(FIRST_TOKEN_ID, vocab_size) for _ in range(request.input_tokens - len(ids)))
    return tuple(ids)


def build_requests(spec: WorkloadSpec, salt: int = 0) -> list[BenchRequest]:
    """The workload as the load generator sends it, arrivals starting at 0 (`salt`: see `prompt_for`)."""
    reqs = workload_requests(spec)
    start_s = min(r.arrival_s for r in reqs)
    return [BenchRequest(i, r.arrival_s - start_s, prompt_for(r, spec.vocab_size, spec.seed, salt), spec.max_tokens)
            for i, r in enumerate(reqs)]
