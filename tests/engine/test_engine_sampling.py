"""The sampler with extreme but valid values: a tiny top_p samples the top token, a tiny temperature is greedy."""

from __future__ import annotations

import pytest
import torch

from prfaas.engine.sampling import SamplingParams, sample_batch, sample_token, top_p_filter


def _logits(seed: int = 0, vocab: int = 512) -> torch.Tensor:
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 4


@pytest.mark.parametrize("top_p", [5e-324, 1e-300, 1e-46, 1e-12])
def test_tiny_top_p_samples_the_most_likely_token(top_p: float) -> None:
    logits = _logits()
    params = SamplingParams(temperature=1.0, top_p=top_p, seed=3)
    picks = {sample_token(logits, params, index) for index in range(20)}
    assert picks == {int(torch.argmax(logits))}


@pytest.mark.parametrize("temperature", [1e-46, 1e-30, 1e-8, 5e-324])
def test_tiny_temperature_is_greedy(temperature: float) -> None:
    params = SamplingParams(temperature=temperature, top_p=0.9, seed=1)
    assert params.is_greedy
    logits = torch.stack([_logits(seed) for seed in range(4)])
    assert sample_batch(logits, [params] * 4, [0, 1, 2, 3]) == torch.argmax(logits, dim=-1).tolist()


def test_small_temperature_above_the_greedy_cut_still_samples_without_nan() -> None:
    logits = _logits() * 1000  # large logits / a small temperature overflow without the max shift
    params = SamplingParams(temperature=1e-4, seed=5)
    assert not params.is_greedy
    assert sample_token(logits, params, 0) == int(torch.argmax(logits))


def test_top_p_filter_keeps_the_nucleus() -> None:
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    kept = top_p_filter(probs, 0.7)
    assert kept.tolist() == pytest.approx([0.0, 0.5, 0.3, 0.0])
    assert top_p_filter(probs, 5e-324).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.0])


def test_seeded_sampling_still_varies_with_the_seed() -> None:
    logits = _logits(vocab=64) / 8
    draws = {seed: [sample_token(logits, SamplingParams(temperature=1.0, seed=seed), i) for i in range(16)]
             for seed in (1, 2)}
    assert draws[1] != draws[2]
