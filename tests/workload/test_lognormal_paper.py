"""The paper's truncated log-normal against PAPER.md §9 workload statistics, and the hit-rate model."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.prefix import uncached_after_hit_rate

THRESHOLD_TOKENS = 19_400


@pytest.fixture(scope="module")
def paper() -> DiscreteLengthDistribution:
    return truncated_lognormal()


def test_paper_workload_statistics(paper: DiscreteLengthDistribution) -> None:
    assert paper.min_tokens == 128
    assert paper.max_tokens == 131_072
    assert paper.mean() == pytest.approx(27_500, rel=0.01)
    assert paper.quantile(0.5) == pytest.approx(19_200, rel=0.01)
    assert paper.prob_above(THRESHOLD_TOKENS) == pytest.approx(0.496, abs=0.002)
    assert paper.mean_above(THRESHOLD_TOKENS) == pytest.approx(45_000, rel=0.015)
    assert paper.mean_at_or_below(THRESHOLD_TOKENS) == pytest.approx(10_200, rel=0.01)


def test_paper_law_of_total_expectation(paper: DiscreteLengthDistribution) -> None:
    p = paper.prob_above(THRESHOLD_TOKENS)
    above = paper.mean_above(THRESHOLD_TOKENS)
    below = paper.mean_at_or_below(THRESHOLD_TOKENS)
    assert above is not None and below is not None
    assert p * above + (1 - p) * below == pytest.approx(paper.mean(), rel=1e-9)


SMALL = DiscreteLengthDistribution([100, 512, 1000, 2048, 5000], [1, 1, 1, 1, 1])


def _as_dict(d: DiscreteLengthDistribution) -> dict[int, float]:
    return {int(length): round(float(p), 12) for length, p in zip(d.lengths, d.probs, strict=True)}


def test_hit_rate_zero_changes_nothing() -> None:
    assert _as_dict(uncached_after_hit_rate(SMALL, 0.0)) == _as_dict(SMALL)


def test_hit_rate_half_rounds_down_to_whole_blocks() -> None:
    # 100, 512, 1000: h*L < 512, nothing cached; 2048 -> 1024 cached; 5000 -> floor(2500/512)=4 blocks cached
    expected = {100: 0.2, 512: 0.2, 1000: 0.2, 1024: 0.2, 2952: 0.2}
    assert _as_dict(uncached_after_hit_rate(SMALL, 0.5)) == expected


def test_full_hit_rate_leaves_last_partial_block_or_one_token() -> None:
    # 100 -> no whole block; 512 -> 511 cached; 1000 -> 512 cached; 2048 -> 2047 cached; 5000 -> 4608 cached
    expected = {1: 0.4, 100: 0.2, 392: 0.2, 488: 0.2}
    assert _as_dict(uncached_after_hit_rate(SMALL, 1.0)) == expected


def test_hit_rate_mean_on_paper_distribution(paper: DiscreteLengthDistribution) -> None:
    h = 0.3
    uncached = uncached_after_hit_rate(paper, h)
    lengths = paper.lengths.astype(np.int64)
    cached = np.minimum((np.floor(h * lengths / 512)).astype(np.int64) * 512, lengths - 1)
    assert uncached.mean() == pytest.approx(float(np.dot(paper.probs, lengths - cached)), rel=1e-12)
    # block rounding only ever caches less than the nominal fraction
    assert (1 - h) * paper.mean() <= uncached.mean() < (1 - h) * paper.mean() + 512


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_hit_rate_outside_unit_interval_is_an_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="hit rate"):
        uncached_after_hit_rate(SMALL, bad)
