"""`bench paper-scenario`: scenarios (a) link drop and (b) mix shift live on the emulated engine beside the simulator.

Fast: the compressed specs, the shared workload and configuration, the simulator side's directions. Slow (root:
two emulated sites): the quick versions live, asserting directions, nothing lost and sim ~ live offload shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.bench.netns import can_emulate
from prfaas.bench.paper_config import PaperScale
from prfaas.bench.paper_scenarios import (
    SPLIT_TOKENS,
    ScenarioOptions,
    ScenarioResult,
    Side,
    run_scenario,
    scenario_deploy_config,
    scenario_policy_config,
    scenario_requests,
    scenario_spec,
)
from prfaas.bench.paper_scenarios_report import PhaseRow, format_scenario, phase_rows
from prfaas.core.lifecycle import Role

QUICK = PaperScale(time_scale=1.0)  # as `bench paper-scenario --quick`


def _thresholds(side: Side, k: float, start_s: float, end_s: float) -> list[int]:
    return [s.threshold_tokens for s in side.samples
            if s.threshold_tokens is not None and start_s * k <= s.time_s < end_s * k]


def _rows(result: ScenarioResult) -> dict[tuple[str, str, str], PhaseRow]:
    return {(r.policy, r.side, r.phase): r for r in phase_rows(result)}


def test_specs_are_compressed_and_bad_names_refused() -> None:
    drop = scenario_spec("link-drop")
    assert drop.duration_s == 300 and drop.link_events == ((120.0, 4.0), (180.0, 40.0)) and drop.link_gbps == 40
    assert drop.policies == ("prfaas", "prfaas-bandwidth-aware")
    assert "drop at 120 s for 60 s" in drop.compression
    mix = scenario_spec("mix-shift")
    assert (mix.n_p, mix.n_d, mix.rate_rps, mix.rebalance) == (2, 6, 2.0, True)
    assert mix.mix is not None and (mix.mix.start_long_fraction, mix.mix.end_long_fraction) == (0.2, 0.8)
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_spec("flood")


def test_both_sides_share_workload_and_policy_config() -> None:
    spec = scenario_spec("mix-shift", quick=True)
    scale = PaperScale()
    a, b = scenario_requests(spec, scale), scenario_requests(spec, scale)
    assert [(r.arrival_s, r.input_tokens) for r in a] == [(r.arrival_s, r.input_tokens) for r in b]
    assert max(r.arrival_s for r in a) < scale.emulation.duration_s(spec.duration_s)
    assert spec.mix is not None
    k = scale.time_scale
    early = [r for r in a if r.arrival_s < spec.mix.shift_start_s * k]
    late = [r for r in a if r.arrival_s >= spec.mix.shift_end_s * k]
    long_share = [sum(r.input_tokens > SPLIT_TOKENS for r in part) / len(part) for part in (early, late)]
    assert long_share[0] < 0.4 < 0.6 < long_share[1]
    cfg = scenario_deploy_config(spec, "prfaas", scale, tls=False)
    assert cfg.policy.rebalance and cfg.gateway.rebalance_interval_s == pytest.approx(spec.control_interval_s * k)
    assert cfg.links[0].capacity_gbps == pytest.approx(scale.emulation.link_gbps(spec.link_gbps))
    roles = [n.role for n in cfg.nodes]
    assert roles.count(Role.PD_PREFILL) == 2 and roles.count(Role.PD_DECODE) == 6
    policy = scenario_policy_config(cfg)  # what the gateway builds, and the simulator gets
    assert policy.rebalancer.conversion_s == pytest.approx(spec.rebalancer["conversion_s"] * k)


def test_simulator_side_directions(tmp_path: Path) -> None:
    """The simulator alone (seconds): the bandwidth-aware router raises t and offloads less during the drop,
    relaxes after; the long-term loop converts PD-D -> PD-P as the mix shifts."""
    drop = run_scenario(ScenarioOptions(out_dir=tmp_path, scenario="link-drop", quick=True, live=False,
                                        scale=QUICK, progress=False), log=lambda _line: None)
    rows = _rows(drop)
    before, during, after = (rows["prfaas-bandwidth-aware", "sim", p] for p in ("before", "during", "after"))
    assert before.threshold_max is not None and during.threshold_max is not None
    assert during.threshold_max > before.threshold_max
    assert during.offload_share is not None and before.offload_share is not None
    assert during.offload_share < before.offload_share
    assert after.offload_share is not None and after.offload_share > during.offload_share
    last = drop.runs[0].sim.samples[-1].threshold_tokens
    assert last == before.threshold_max  # relaxed back to the base t
    mix = run_scenario(ScenarioOptions(out_dir=tmp_path, scenario="mix-shift", quick=True, live=False,
                                       scale=QUICK, progress=False), log=lambda _line: None)
    switches = mix.runs[0].sim.role_switches
    assert any(a == Role.PD_DECODE.value and b == Role.PD_PREFILL.value for _, _, a, b in switches)
    assert all(run.sim.lost == 0 for run in (*drop.runs, *mix.runs))
    assert "during" in format_scenario(mix) and (tmp_path / "mix-shift-prfaas.png").exists()


def _assert_nothing_lost_and_shares_close(result: ScenarioResult) -> None:
    for run in result.runs:
        assert run.live is not None and run.live.lost == 0 and run.live.failed == 0
        assert sum(r.ok for r in run.live.requests) == len(run.live.requests) == result.num_requests
    for (pol, side, phase), row in _rows(result).items():
        if side == "live" and row.offload_share is not None:
            sim = _rows(result)[pol, "sim", phase]
            assert sim.offload_share is not None
            assert row.offload_share == pytest.approx(sim.offload_share, abs=0.25)  # loose: ~30-70 requests


@pytest.mark.slow
@pytest.mark.skipif(not can_emulate()[0], reason="the live link drop needs two emulated sites (root)")
def test_quick_link_drop_live(tmp_path: Path) -> None:
    """About 2 minutes: the quick link drop live (12 emulated nodes, k_t = 1) beside the simulator."""
    drop = run_scenario(ScenarioOptions(out_dir=tmp_path / "drop", scenario="link-drop", quick=True, scale=QUICK,
                                        progress=False), log=lambda _line: None)
    rows = _rows(drop)
    policy = "prfaas-bandwidth-aware"
    before, during, after = (rows[policy, "live", p] for p in ("before", "during", "after"))
    assert before.threshold_max is not None and during.threshold_max is not None
    assert during.threshold_max > before.threshold_max  # the live loop raised t during the drop
    assert during.offload_share is not None and before.offload_share is not None
    assert during.offload_share < before.offload_share
    assert after.offload_share is not None and after.offload_share > during.offload_share
    live = drop.runs[0].live
    assert live is not None
    (_, _, back_at), = [p for p in drop.spec["phases"] if p[0] == "during"]
    after_t = _thresholds(live, QUICK.time_scale, back_at, drop.spec["duration_s"])
    assert after_t and min(after_t) < during.threshold_max  # relaxes once the link is back
    _assert_nothing_lost_and_shares_close(drop)


@pytest.mark.slow
def test_quick_mix_shift_live(tmp_path: Path) -> None:
    """About 4 minutes: the quick mix shift live (the long-term loop converts PD-D to PD-P) beside the simulator."""
    mix = run_scenario(ScenarioOptions(out_dir=tmp_path / "mix", scenario="mix-shift", quick=True, scale=QUICK,
                                       progress=False), log=lambda _line: None)
    mix_live = mix.runs[0].live
    assert mix_live is not None
    assert max(s.n_pd_prefill for s in mix_live.samples) > 2  # at least one PD-D became PD-P
    _assert_nothing_lost_and_shares_close(mix)
