"""Sampling parameters and token selection (greedy, temperature, top-p), reproducible per token.

A seeded request draws token `index` from a generator seeded with (seed, index), so the choice does not depend
on which process samples it, on the batch it shares, or on how many tokens came before in this process: a
prefill node picking token 0 and a decode node picking tokens 1.. give the same sequence as one process would.

Extreme but valid values never break the draw: a temperature below `GREEDY_BELOW_TEMPERATURE` is greedy (dividing
by it would overflow float32), the logits are shifted by their maximum before scaling, and top-p always keeps the
most likely token (a top_p that underflows float32, e.g. 5e-324, samples that token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prfaas.engine.errors import InvalidSamplingError

_SEED_STRIDE = 1_000_003
_SEED_MOD = 2**63 - 1
GREEDY_BELOW_TEMPERATURE = 1e-5


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens and when to stop. `temperature < GREEDY_BELOW_TEMPERATURE` (0 included) is greedy.
    `max_tokens` counts every generated token, the prefill's first token included."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidSamplingError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not (self.temperature >= 0.0 and math.isfinite(self.temperature)):
            raise InvalidSamplingError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidSamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop_strings):
            raise InvalidSamplingError("stop strings must be non-empty")

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW_TEMPERATURE


GREEDY = SamplingParams()


def _generator(seed: int | None, token_index: int, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * _SEED_STRIDE + token_index) % _SEED_MOD)
    return generator


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of `probs` [V] outside the smallest set whose mass reaches `top_p` (always keeps the most
    likely token, however small `top_p` is)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
    outside[..., 0] = False
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def sample_token(logits: torch.Tensor, params: SamplingParams, token_index: int) -> int:
    """Pick one token from `logits` [V] for generated position `token_index`."""
    if params.is_greedy:
        return int(torch.argmax(logits).item())
    scaled = logits.float()
    probs = torch.softmax((scaled - scaled.max()) / params.temperature, dim=-1)
    probs = top_p_filter(probs, params.top_p)
    generator = _generator(params.seed, token_index, probs.device)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def sample_batch(logits: torch.Tensor, params: list[SamplingParams], token_indices: list[int]) -> list[int]:
    """One token per row of `logits` [B, V]; greedy rows share one argmax."""
    greedy = torch.argmax(logits, dim=-1).tolist()
    return [
        int(greedy[row]) if p.is_greedy else sample_token(logits[row], p, token_indices[row])
        for row, p in enumerate(params)
    ]
