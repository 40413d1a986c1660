"""Synthetic workloads: determinism, lengths, mix shift, synthetic prefix sessions, scaling."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.arrivals import PoissonArrivals, StepSchedule
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.generate import rescale_arrivals, scale_distribution, scale_lengths, synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.mixshift import MixShift, short_long_split, short_to_long_shift
from prfaas.workload.prefix import replay_prefix_cache
from prfaas.workload.request import WorkloadRequest
from prfaas.workload.sessions import SyntheticPrefixes
from prfaas.workload.stats import summarize_requests

PAPER = truncated_lognormal()


def test_paper_workload_with_poisson_arrivals() -> None:
    reqs = synthetic_requests(PAPER, 1024, PoissonArrivals(4.0), duration_s=1_000.0, seed=11)
    assert abs(len(reqs) - 4_000) < 4 * 4_000**0.5
    assert [r.request_id for r in reqs] == list(range(len(reqs)))
    assert [r.arrival_s for r in reqs] == sorted(r.arrival_s for r in reqs)
    assert all(r.output_tokens == 1024 and r.block_hashes == () for r in reqs)
    s = summarize_requests(reqs)
    assert all(128 <= r.input_tokens <= 131_072 for r in reqs)
    assert s.mean_input_tokens == pytest.approx(PAPER.mean(), rel=0.06)


def test_same_seed_same_workload() -> None:
    kwargs = {"duration_s": 200.0, "prefixes": SyntheticPrefixes(5, 0.5, 1024)}
    a = synthetic_requests(PAPER, 100, PoissonArrivals(2.0), seed=3, **kwargs)  # type: ignore[arg-type]
    b = synthetic_requests(PAPER, 100, PoissonArrivals(2.0), seed=3, **kwargs)  # type: ignore[arg-type]
    c = synthetic_requests(PAPER, 100, PoissonArrivals(2.0), seed=4, **kwargs)  # type: ignore[arg-type]
    assert a == b
    assert a != c


def test_outputs_do_not_move_arrivals_or_prompts() -> None:
    outputs = DiscreteLengthDistribution([10, 500], [1, 1])
    fixed = synthetic_requests(PAPER, 7, PoissonArrivals(2.0), duration_s=100.0, seed=5)
    drawn = synthetic_requests(PAPER, outputs, PoissonArrivals(2.0), duration_s=100.0, seed=5)
    assert [(r.arrival_s, r.input_tokens) for r in fixed] == [(r.arrival_s, r.input_tokens) for r in drawn]
    assert {r.output_tokens for r in drawn} == {10, 500}


def test_num_requests_gives_exactly_that_many() -> None:
    reqs = synthetic_requests(PAPER, 1, PoissonArrivals(50.0), num_requests=777, seed=1)
    assert len(reqs) == 777
    again = synthetic_requests(PAPER, 1, PoissonArrivals(50.0), num_requests=777, seed=1)
    assert reqs == again
    capped = synthetic_requests(PAPER, 1, PoissonArrivals(50.0), duration_s=100.0, num_requests=10, seed=1)
    assert len(capped) == 10


def test_num_requests_when_the_rate_starts_at_zero() -> None:
    late = StepSchedule((0.0, 30.0), (0.0, 5.0))
    reqs = synthetic_requests(PAPER, 1, late, num_requests=50, seed=2)
    assert len(reqs) == 50 and reqs[0].arrival_s >= 30.0


def test_generation_errors() -> None:
    with pytest.raises(ConfigError, match="duration_s or num_requests"):
        synthetic_requests(PAPER, 1, PoissonArrivals(1.0))
    with pytest.raises(ConfigError, match="no requests"):
        synthetic_requests(PAPER, 1, PoissonArrivals(0.0), duration_s=10.0)
    with pytest.raises(ConfigError, match="only 0 of 5"):
        synthetic_requests(PAPER, 1, PoissonArrivals(0.0), num_requests=5)
    with pytest.raises(ConfigError, match="output_tokens"):
        synthetic_requests(PAPER, -1, PoissonArrivals(1.0), duration_s=10.0)


# --- mix shift ---------------------------------------------------------------------------------------


def test_short_long_split_matches_conditional_means() -> None:
    short, long = short_long_split(PAPER, 19_400)
    assert short.max_tokens <= 19_400 < long.min_tokens
    assert short.mean() == pytest.approx(PAPER.mean_at_or_below(19_400))
    assert long.mean() == pytest.approx(PAPER.mean_above(19_400))
    with pytest.raises(ConfigError):
        short_long_split(PAPER, 1e9)


def test_mix_shift_moves_from_mostly_short_to_mostly_long() -> None:
    shift = short_to_long_shift(PAPER, 19_400, shift_start_s=100.0, shift_end_s=300.0)
    assert [shift.long_fraction(t) for t in (0.0, 100.0, 200.0, 300.0, 1e4)] == pytest.approx(
        [0.1, 0.1, 0.5, 0.9, 0.9])
    reqs = synthetic_requests(shift, 64, PoissonArrivals(20.0), duration_s=400.0, seed=8)
    t = np.array([r.arrival_s for r in reqs])
    is_long = np.array([r.input_tokens > 19_400 for r in reqs])
    assert is_long[t < 100].mean() == pytest.approx(0.1, abs=0.04)
    assert is_long[t >= 300].mean() == pytest.approx(0.9, abs=0.04)
    assert shift.mean_tokens(0.0) < PAPER.mean() < shift.mean_tokens(400.0)


def test_instant_mix_switch() -> None:
    short, long = short_long_split(PAPER, 19_400)
    switch = MixShift(short, long, 0.0, 1.0, 50.0, 50.0)
    assert switch.long_fraction(49.9) == 0.0 and switch.long_fraction(50.0) == 1.0
    with pytest.raises(ConfigError):
        MixShift(short, long, 0.0, 1.5, 0.0, 1.0)


# --- synthetic prefix sessions -------------------------------------------------------------------------


def _chains(prefixes: SyntheticPrefixes, seed: int = 0, n: int = 400) -> list[WorkloadRequest]:
    return synthetic_requests(PAPER, 16, PoissonArrivals(10.0), num_requests=n, seed=seed, prefixes=prefixes)


def test_no_sharing_means_no_repeated_blocks() -> None:
    reqs = _chains(SyntheticPrefixes(num_sessions=10, shared_fraction=0.0))
    assert summarize_requests(reqs).repeated_block_ref_fraction == 0.0
    assert all(len(r.block_hashes) == -(-r.input_tokens // 512) for r in reqs)


def test_system_prompt_and_session_history_are_shared() -> None:
    reqs = _chains(SyntheticPrefixes(num_sessions=4, shared_fraction=0.6, system_prompt_tokens=1500))
    assert {r.session_id for r in reqs} == {0, 1, 2, 3}
    for r in reqs:
        assert r.block_hashes[: min(2, len(r.block_hashes))] == (0, 1)[: len(r.block_hashes)]
    by_session: dict[int | None, list[WorkloadRequest]] = {}
    for r in reqs:
        by_session.setdefault(r.session_id, []).append(r)
    for members in by_session.values():
        a, b = members[0], members[1]
        shared = min(int(0.6 * a.input_tokens / 512), int(0.6 * b.input_tokens / 512))
        assert a.block_hashes[:shared] == b.block_hashes[:shared]
    # past the system prompt, different sessions never share a block
    firsts = [next(r for r in by_session[sid] if len(r.block_hashes) > 2) for sid in (0, 1)]
    assert firsts[0].block_hashes[2] != firsts[1].block_hashes[2]
    replay = replay_prefix_cache(reqs, None)
    assert 0.45 < replay.token_hit_rate < 0.6


def test_prefix_parameters_are_validated() -> None:
    for bad in ((0, 0.5, 0), (3, 1.5, 0), (3, 0.5, -1)):
        with pytest.raises(ConfigError):
            SyntheticPrefixes(*bad)


# --- scaling ---------------------------------------------------------------------------------------------


def test_scale_lengths_fits_the_context_window() -> None:
    # outputs are kept (up to max_tokens - 1) and prompts cut to what is left of the window
    reqs = [WorkloadRequest(0, 0.0, 131_072, 1024), WorkloadRequest(1, 1.0, 128, 1024),
            WorkloadRequest(2, 2.0, 64_000, 5000)]
    scaled = scale_lengths(reqs, 1 / 32, 4096)
    assert [(r.input_tokens, r.output_tokens) for r in scaled] == [(3072, 1024), (4, 1024), (1, 4095)]
    assert all(r.total_tokens <= 4096 for r in scaled)
    assert [r.arrival_s for r in scaled] == [0.0, 1.0, 2.0]
    halved = scale_lengths(reqs, 1 / 32, 4096, output_factor=0.5)
    assert [(r.input_tokens, r.output_tokens) for r in halved] == [(3584, 512), (4, 512), (1596, 2500)]


def test_scaled_chains_keep_prefix_sharing() -> None:
    a = WorkloadRequest(0, 0.0, 16_384, 1, tuple(range(32)))
    b = WorkloadRequest(1, 1.0, 16_384, 1, tuple(range(8)) + tuple(range(100, 124)))
    sa, sb = scale_lengths([a, b], 0.25, 100_000)
    assert sa.input_tokens == 4096
    assert sa.block_hashes == (3, 7, 11, 15, 19, 23, 27, 31)
    assert sb.block_hashes[:2] == sa.block_hashes[:2]  # originals share 8 blocks = 2 scaled blocks
    assert sb.block_hashes[2] != sa.block_hashes[2]
    assert scale_lengths([a], 2.0, 100_000)[0].block_hashes == ()


def test_scale_distribution() -> None:
    scaled = scale_distribution(PAPER, 1 / 32, 4096)
    assert scaled.min_tokens == 4 and scaled.max_tokens == 4096
    assert scaled.mean() == pytest.approx(PAPER.mean() / 32, rel=0.01)
    with pytest.raises(ConfigError):
        scale_distribution(PAPER, 0.0, 4096)


def test_rescale_arrivals_keeps_everything_else() -> None:
    reqs = [WorkloadRequest(0, 2.0, 600, 3, (1, 2)), WorkloadRequest(1, 5.0, 10, 1)]
    fast = rescale_arrivals(reqs, 0.5)
    assert [r.arrival_s for r in fast] == [1.0, 2.5]
    assert [(r.input_tokens, r.block_hashes) for r in fast] == [(600, (1, 2)), (10, ())]
    with pytest.raises(ConfigError):
        rescale_arrivals(reqs, 0.0)
