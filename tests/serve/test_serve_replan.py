"""The live rebalancer re-optimises the threshold with the planner when the config names a profile."""

from __future__ import annotations

import msgspec
import pytest

from prfaas.perf.measured import DecodePoint, MeasuredProfile, PrefillPoint, save_profile_json
from prfaas.planner.optimize import optimize_threshold
from prfaas.serve.config import default_config
from prfaas.serve.replan import live_reoptimiser, live_scenario
from prfaas.workload.distribution import DiscreteLengthDistribution


@pytest.fixture()
def profile_path(tmp_path):  # type: ignore[no-untyped-def]
    # prefill ~ quadratic in length, state linear; decode is fast enough never to bind
    profile = MeasuredProfile(
        "cpu", "default", "cpu", 1,
        prefill=tuple(PrefillPoint(n, 0.02 + 2e-4 * n + 5e-8 * n * n, 1e5 + 2e3 * n) for n in (256, 1024, 4096)),
        decode=(DecodePoint(1, 1000, 0.001), DecodePoint(8, 1000, 0.0012), DecodePoint(16, 2000, 0.0015)),
    )
    path = tmp_path / "profile.json"
    save_profile_json(profile, path)
    return path


def test_no_profile_means_no_planner() -> None:
    assert live_reoptimiser(default_config()) is None


def test_profile_builds_the_deployment_scenario(profile_path) -> None:  # type: ignore[no-untyped-def]
    base = default_config()
    cfg = msgspec.structs.replace(base, policy=msgspec.structs.replace(base.policy, profile=str(profile_path)))
    scenario = live_scenario(cfg, str(profile_path))
    assert scenario.n_prfaas == 1 and scenario.n_pd == 2
    assert scenario.egress_gbps == base.links[0].capacity_gbps
    reoptimise = live_reoptimiser(cfg)
    assert reoptimise is not None
    lengths = DiscreteLengthDistribution.from_samples([300, 600, 900, 2000, 3000, 3500] * 20)
    threshold = reoptimise(1, 1, lengths)
    assert 0 <= threshold <= 3500
    # it is the planner's threshold search on the live lengths for the new counts
    expected = optimize_threshold(scenario.replace(lengths=lengths), 1, 1).threshold_tokens
    assert threshold == round(expected)
    assert 300 <= threshold < 3500  # an interior optimum: both prefill stages carry traffic


def test_state_bytes_curve_interpolates_node_points() -> None:
    from prfaas.serve.replan import StateBytesCurve

    curve = StateBytesCurve([(1, 1_100), (1024, 103_400), (256, 26_600)])  # 1000 + 100 * l
    assert curve(1) == 1_100 and curve(1024) == 103_400
    assert curve(512) == pytest.approx(1000 + 100 * 512)
    assert curve(4096) == pytest.approx(1000 + 100 * 4096)  # the last segment extends
    with pytest.raises(ValueError):
        StateBytesCurve([])


def test_node_reports_exact_state_bytes_for_the_stub_backend() -> None:
    from prfaas.serve.backend import StubBackend
    from prfaas.serve.node import state_bytes_points
    from prfaas.serve.replan import StateBytesCurve

    backend = StubBackend()
    points = state_bytes_points(backend)
    assert points[0][0] == 1 and points[-1][0] == backend.max_context_tokens - 1
    curve = StateBytesCurve(points)
    for n in (7, 300, 5000):
        assert curve(n) == pytest.approx(backend.expected_layout(n).total_bytes, rel=1e-9)
