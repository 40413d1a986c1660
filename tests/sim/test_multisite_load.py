"""`sim.multisite_load.SiteLoad` gives the site selector the same numbers as a full scan of every instance."""

from __future__ import annotations

from typing import Any

import pytest
from multisite_kit import run_scenario

from prfaas.policy.sites import PrfaasSiteView, SitesView
from prfaas.sim.multisite import MultiSiteSimulator
from prfaas.sim.multisite_queue import FairPrefillQueue


def full_scan(sim: MultiSiteSimulator) -> dict[str, PrfaasSiteView]:
    """Every instance's servers read at this instant (what `sites_view` computed before `SiteLoad`)."""
    now = sim.loop.now_s
    sites: dict[str, PrfaasSiteView] = {}
    for name in sim.topology.prfaas_names:
        up, queued, work = 0, 0, 0.0
        by_region: dict[str, float] = {}
        for node in sim.cluster_nodes.get(name, ()):
            srv = node.prefill
            if not node.is_up or srv is None:
                continue
            up += 1
            queued += len(srv.queue) + len(srv.paused)
            if isinstance(srv.queue, FairPrefillQueue):
                for region, seconds in srv.queue.fair.queued_s_by_region().items():
                    by_region[region] = by_region.get(region, 0.0) + seconds
                    work += seconds
            for req, seconds in srv.paused:  # preempted prefills: their nominal work left
                region = sim.region_of[req.request_id]
                by_region[region] = by_region.get(region, 0.0) + seconds
                work += seconds
            if srv.current is not None and srv.busy_until_s is not None:
                left = max(srv.busy_until_s - now, 0.0)
                region = sim.region_of[srv.current.request_id]
                by_region[region] = by_region.get(region, 0.0) + left
                work += left
                queued += 1
        site_queue = sim.site_queues.get(name)
        if site_queue is not None:
            queued += len(site_queue)
            for region, seconds in site_queue.queued_s_by_region().items():
                by_region[region] = by_region.get(region, 0.0) + seconds
                work += seconds
        sites[name] = PrfaasSiteView(name, up, work, by_region, queued)
    return sites


@pytest.mark.parametrize(("scenario", "queue"), [("multisite_site_killed.toml", "cluster"),
                                                 ("multisite_link_degraded.toml", "node"),
                                                 ("multisite_burst_one_instance.toml", "node"),
                                                 ("multisite_burst.toml", "cluster")])
def test_sites_view_equals_a_full_scan_at_every_call(scenario: str, queue: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    original = MultiSiteSimulator.sites_view
    calls: list[int] = []
    busy: list[int] = []
    paused_views: list[int] = []

    def checked(sim: MultiSiteSimulator, **kwargs: Any) -> SitesView:
        got = original(sim, **kwargs)
        want = full_scan(sim)
        paused_views.extend(1 for nodes in sim.cluster_nodes.values() for n in nodes
                            if n.prefill is not None and n.prefill.paused)
        assert got.sites == want, (sim.loop.now_s, got.sites, want)  # floats compared exactly
        calls.append(1)
        busy.append(sum(1 for s in want.values() if s.queued_work_s > 0))
        return got

    monkeypatch.setattr(MultiSiteSimulator, "sites_view", checked)
    result = run_scenario(scenario, prefill_queue=queue)
    assert len(calls) > 100 and sum(busy) > 50  # many decisions, many of them with work queued
    if scenario == "multisite_burst_one_instance.toml":  # x's burst at the shared instance: y's jobs preempt
        assert paused_views, "no decision saw a paused prefill"
    assert result.records


def test_the_check_fails_when_a_touched_instance_is_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    from prfaas.sim import multisite_load

    original_refresh = multisite_load.SiteLoad.refresh
    original_view = MultiSiteSimulator.sites_view
    differs: list[bool] = []

    def forgetful(load: Any) -> None:
        load.dirty.discard(0)  # instance 0 of each cluster is read once, at the start, never again
        original_refresh(load)

    def compared(sim: MultiSiteSimulator, **kwargs: Any) -> SitesView:
        got = original_view(sim, **kwargs)
        differs.append(got.sites != full_scan(sim))
        return got

    monkeypatch.setattr(multisite_load.SiteLoad, "refresh", forgetful)
    monkeypatch.setattr(MultiSiteSimulator, "sites_view", compared)
    run_scenario("multisite_site_killed.toml")
    assert any(differs)


def test_a_sites_view_the_selector_keeps_keeps_its_link_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    from prfaas.policy.sites import SiteSelector

    original = SiteSelector.choose
    kept: list[tuple[SitesView, dict[str, Any]]] = []

    def keeping(selector: SiteSelector, pd: str, prompt_tokens: int, cached: Any, view: SitesView,
                now_s: float, base: int = 0) -> Any:
        if len(kept) < 30:
            links = view.links._links if hasattr(view.links, "_links") else view.links  # the SimLinks, untouched
            kept.append((view, {lid: link.snapshot() if hasattr(link, "snapshot") else link
                                for lid, link in links.items()}))
        return original(selector, pd, prompt_tokens, cached, view, now_s, base)

    monkeypatch.setattr(SiteSelector, "choose", keeping)
    run_scenario("multisite_link_degraded.toml")
    assert len(kept) == 30
    assert any(snap.bytes_in_flight > 0 for _, want in kept for snap in want.values())
    for view, want in kept:
        assert dict(view.links) == want
