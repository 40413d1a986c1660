"""The simulator's incremental snapshot answers exactly like a plain `ClusterView`."""

from __future__ import annotations

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
