"""The multi-site region view (`sim.view.live_view` over a PD and a PrfaaS cluster's builders) answers as the
merged snapshot would, and a kept view stays as it was."""

from __future__ import annotations

from typing import Any

import pytest
from multisite_kit import run_scenario

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.types import ClusterView
from prfaas.sim.multisite import MultiSiteSimulator
from prfaas.sim.view import LiveClusterView

KEYS = [(c, r) for c in ClusterKind for r in Role]


def answers(view: ClusterView) -> dict[str, Any]:
    return {"instances": view.instances, "time_s": view.time_s,
            "links": {lid: view.links[lid] for lid in sorted(view.links)},
            "up": [view.up_instances(c, r) for c, r in KEYS],
            "has_up": [view.has_up_instances(c, r) for c, r in KEYS],
            "ranked": [tuple(view.ranked(c, r)) for c, r in KEYS]}


def test_live_views_answer_as_the_merged_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MultiSiteSimulator._live_region_view
    checked: list[int] = []

    def both(sim: MultiSiteSimulator, region: str, site: str | None, now_s: float) -> ClusterView:
        live = original(sim, region, site, now_s)
        assert isinstance(live, LiveClusterView)
        assert answers(live) == answers(sim.region_view(region, site))
        checked.append(int(site is not None))
        return original(sim, region, site, now_s)

    monkeypatch.setattr(MultiSiteSimulator, "_live_region_view", both)
    run_scenario("multisite_site_killed.toml")
    assert len(checked) > 300 and 0 < sum(checked) < len(checked)  # with and without a PrfaaS cluster


def test_a_kept_view_is_sealed_as_it_was_at_the_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MultiSiteSimulator._live_region_view
    kept: list[tuple[ClusterView, dict[str, Any], Any]] = []

    def keeping(sim: MultiSiteSimulator, region: str, site: str | None, now_s: float) -> ClusterView:
        view = original(sim, region, site, now_s)
        if len(kept) < 40 and site is not None:
            kept.append((view, answers(sim.region_view(region, site)), None))
        return view

    monkeypatch.setattr(MultiSiteSimulator, "_live_region_view", keeping)
    run_scenario("multisite_link_degraded.toml")
    assert len(kept) == 40
    for view, want, _ in kept:
        assert answers(view) == want


def test_views_the_router_does_not_keep_are_not_sealed(monkeypatch: pytest.MonkeyPatch) -> None:
    original = LiveClusterView._seal
    sealed: list[int] = []

    def counting(view: LiveClusterView) -> None:
        sealed.append(1)
        original(view)

    monkeypatch.setattr(LiveClusterView, "_seal", counting)
    result = run_scenario("multisite_link_degraded.toml")
    assert len(result.records) > 300 and not sealed  # the routers read the view and let it go
