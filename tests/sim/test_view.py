"""The simulator's incremental snapshot answers exactly like a plain `ClusterView`."""

from __future__ import annotations

import pytest
from simkit import requests, small_deployment

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.config import PolicyConfig
from prfaas.policy.registry import make_router
from prfaas.policy.types import ClusterView
from prfaas.sim.events import EventPriority
from prfaas.sim.simulator import Simulator

GROUPS = [(c, r) for c in ClusterKind for r in Role]


def test_indexed_view_matches_the_base_class_through_a_run() -> None:
    dep = small_deployment(n_prfaas=3, n_p=2, n_d=3)
    sim = Simulator(dep, make_router("prfaas", PolicyConfig(threshold_tokens=4000)),
                    requests([1000, 9000, 30000, 500, 12000] * 6, gap_s=0.1))
    checked = 0

    def check(_: object) -> None:
        nonlocal checked
        view = sim.view()
        plain = ClusterView(instances=view.instances, links=view.links, time_s=view.time_s)
        assert view.instances == tuple(n.view() for n in sim.nodes.values())
        for cluster, role in GROUPS:
            assert view.up_instances(cluster, role) == plain.up_instances(cluster, role)
            assert tuple(view.ranked(cluster, role)) == plain.ranked(cluster, role)
        checked += 1
        if sim.is_active:
            sim.loop.schedule(sim.loop.now_s + 0.05, EventPriority.SAMPLE, check, None)

    sim.loop.schedule(0.0, EventPriority.SAMPLE, check, None)
    sim.loop.schedule(1.0, EventPriority.SCRIPTED, lambda _: sim.fail_node("prfaas-1"), None)
    sim.loop.schedule(1.5, EventPriority.SCRIPTED, lambda _: sim.begin_role_change("pd-4", Role.PD_PREFILL, 1.6),
                      None)
    sim.loop.schedule(2.0, EventPriority.SCRIPTED, lambda _: sim.recover_node("prfaas-1"), None)
    sim.run()
    assert checked > 20
    assert sim.nodes["pd-4"].role is Role.PD_PREFILL


def _sim_with(route_hook: object) -> Simulator:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=4000))
    original = router.route

    def route(req, view, now_s):  # type: ignore[no-untyped-def]
        route_hook(view)  # type: ignore[operator]
        return original(req, view, now_s)

    router.route = route  # type: ignore[method-assign]
    return Simulator(small_deployment(n_prfaas=2, n_p=2, n_d=2), router,
                     requests([1000, 9000, 30000, 500] * 5, gap_s=0.1))


def test_the_live_view_answers_like_the_base_class_at_every_routing_decision() -> None:
    seen = 0

    def check(view: ClusterView) -> None:
        nonlocal seen
        plain = ClusterView(instances=tuple(view.instances), links=dict(view.links), time_s=view.time_s)
        for cluster, role in GROUPS:
            assert view.up_instances(cluster, role) == plain.up_instances(cluster, role)
            assert view.has_up_instances(cluster, role) == plain.has_up_instances(cluster, role)
            assert tuple(view.ranked(cluster, role)) == plain.ranked(cluster, role)
        seen += 1

    _sim_with(check).run()
    assert seen == 20


@pytest.mark.parametrize("keep_links_only", [False, True])
def test_a_view_or_link_mapping_the_router_keeps_no_longer_changes(keep_links_only: bool) -> None:
    kept: list[tuple[object, tuple[object, ...], dict[str, object]]] = []
    sims: list[Simulator] = []

    def keep(view: ClusterView) -> None:
        held = view.links if keep_links_only else view  # the mapping alone must keep it too
        links_now = {lid: link.snapshot() for lid, link in sims[0].links.items()}  # not read through the view
        kept.append((held, tuple(view.instances), links_now))

    sim = _sim_with(keep)
    sims.append(sim)
    sim.run()
    assert len(kept) == 20
    for held, instances_then, links_then in kept:
        links = held if keep_links_only else held.links  # type: ignore[attr-defined]
        assert dict(links) == links_then  # the same answers after the run as at its decision
        if not keep_links_only:
            assert held.instances == instances_then  # type: ignore[attr-defined]
    final = tuple(n.view() for n in sim.nodes.values())
    assert any(instances != final for _, instances, _ in kept)  # the nodes did move on meanwhile
