"""The region gateways' view of the PrfaaS sites in the simulator (`sim.multisite_gateway`, used by the predictions
of live `bench sites` runs): each node's prefill tokens as of its last heartbeat, the region's own in flight
exactly, T(tokens) per node; and a simulation in which that staleness decides a site choice."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from prfaas.bench.sites_predict import sim_deployment
from prfaas.bench.sites_run import SitesRunSpec
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology
from prfaas.policy.types import InstanceView
from prfaas.sim.multisite_gateway import GatewaySiteViews
from prfaas.sim.multisite_run import simulate_multisite
from prfaas.workload.request import WorkloadRequest

SCENARIOS = Path(__file__).parent / "scenarios"

SITE_OF = {"a-0": "A", "a-1": "A", "b-0": "B"}


def quadratic_s(site: str, tokens: float, cached: float) -> float:
    """A superlinear prefill time: T(a + b) > T(a) + T(b), so one call per node's total is checked."""
    assert cached == 0.0
    return (2.0 if site == "B" else 1.0) * (tokens / 1000.0) ** 2


def test_another_regions_work_shows_at_the_next_heartbeat_and_its_own_at_once() -> None:
    views = GatewaySiteViews(0.5, SITE_OF, quadratic_s)
    up = ["a-0", "a-1"]
    assert views.site_parts(0.0, "x", "A", up) == (0.0, 0.0, 0)  # the heartbeat at 0: nothing held
    views.sent(0.1, 1, "x", "a-0", 1_000)
    views.sent(0.2, 2, "y", "a-0", 2_000)
    # before the heartbeat at 0.5: each region sees its own prefill only
    assert views.site_parts(0.3, "x", "A", up) == (1.0, 1.0, 1)
    assert views.site_parts(0.3, "y", "A", up) == (4.0, 4.0, 1)
    # from 0.5 on the node's heartbeat holds both: T(3,000 tokens) in one call; queued: the larger of the
    # heartbeat's not-started prefills (one of the two runs) and the region's own in flight
    assert views.site_parts(0.5, "x", "A", up) == (9.0, 1.0, 1)
    views.sent(0.55, 3, "y", "a-0", 1_000)
    assert views.site_parts(0.55, "y", "A", up) == (9.0, 9.0, 2)  # own: 3,000 tokens, 2 prefills
    views.answered(0.6, 1)  # x's reply is back: x knows at once, y only from the next heartbeat
    assert views.site_parts(0.6, "x", "A", up) == (9.0, 0.0, 1)
    assert views.site_parts(0.99, "y", "A", up) == (9.0, 9.0, 2)
    assert views.site_parts(1.0, "y", "A", up) == (9.0, 9.0, 2)  # the beat at 1.0: y's two, one running
    assert views.site_parts(1.0, "y", "B", ["b-0"]) == (0.0, 0.0, 0)  # another site's nodes are not counted
    assert views.site_parts(1.0, "y", "A", ["a-1"]) == (0.0, 0.0, 0)  # a node that is down (not up) neither


def test_a_heartbeat_reports_the_state_it_found_not_a_later_one() -> None:
    """No change between two heartbeats: the one at 1.0 holds what the change at 0.2 left, though the first
    query after it comes at 1.7 after more changes at 1.6."""
    views = GatewaySiteViews(0.5, SITE_OF, quadratic_s)
    views.sent(0.2, 1, "x", "a-0", 1_000)
    views.sent(1.6, 2, "x", "a-0", 3_000)  # the beats at 0.5, 1.0, 1.5 found only request 1
    assert views.site_parts(1.7, "y", "A", ["a-0"]) == (1.0, 0.0, 0)
    assert views.site_parts(2.0, "y", "A", ["a-0"]) == (16.0, 0.0, 1)


def test_a_prfaas_node_as_a_gateways_router_sees_it() -> None:
    """`serve.cluster`'s node view: queued tokens the larger of the heartbeat's and the region's own in flight,
    queued requests the heartbeat's not-started ones plus the region's own in flight; no busy-until estimate."""
    views = GatewaySiteViews(0.5, SITE_OF, quadratic_s)
    exact = InstanceView("a-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL, queued_requests=5, queued_tokens=9_999,
                         busy_until_s=3.0)
    views.sent(0.1, 1, "x", "a-0", 1_000)
    views.sent(0.2, 2, "x", "a-0", 2_000)
    views.sent(0.3, 3, "y", "a-0", 500)
    seen_by_y = views.instance_view(0.4, "y", exact)
    assert (seen_by_y.queued_tokens, seen_by_y.queued_requests, seen_by_y.busy_until_s) == (500, 1, None)
    assert seen_by_y.instance_id == "a-0" and seen_by_y.role is Role.PRFAAS_PREFILL
    seen_by_y = views.instance_view(0.5, "y", exact)  # the beat: 3,500 tokens, 3 held, 2 not started
    assert (seen_by_y.queued_tokens, seen_by_y.queued_requests) == (3_500, 3)
    seen_by_x = views.instance_view(0.5, "x", exact)
    assert (seen_by_x.queued_tokens, seen_by_x.queued_requests) == (3_500, 4)


def test_a_retried_request_is_counted_once_and_bad_intervals_are_refused() -> None:
    views = GatewaySiteViews(0.5, SITE_OF, quadratic_s)
    views.sent(0.1, 7, "x", "a-0", 1_000)
    views.sent(0.2, 7, "x", "b-0", 1_000)  # its attempt at a-0 was abandoned and retried at b-0
    assert views.site_parts(0.3, "x", "A", ["a-0"]) == (0.0, 0.0, 0)
    assert views.site_parts(0.3, "x", "B", ["b-0"]) == (2.0, 2.0, 1)
    views.answered(0.4, 7)
    views.answered(0.4, 7)  # twice, or for a request never sent: nothing
    views.answered(0.4, 99)
    assert views.site_parts(0.6, "x", "B", ["b-0"]) == (0.0, 0.0, 0)
    with pytest.raises(ValueError, match="heartbeat_s"):
        GatewaySiteViews(0.0, SITE_OF, quadratic_s)


TOPOLOGY = SiteTopology(
    prfaas=[PrfaasSite(name="A", instances=1), PrfaasSite(name="B", instances=1)],
    pd=[PdSite(name="x", instances=2, traffic_rps=1.0), PdSite(name="y", instances=2, traffic_rps=1.0)],
    links=[SiteLink(prfaas=s, pd=r, capacity_gbps=100, latency_s=0.005) for s in ("A", "B") for r in ("x", "y")])


@pytest.mark.parametrize(("heartbeat_s", "y_first_site"), [(None, "B"), (0.5, "A")])
def test_within_a_heartbeat_a_region_does_not_see_anothers_offload(heartbeat_s: float | None,
                                                                   y_first_site: str) -> None:
    """x offloads a long prompt at 0.1 s (both sites idle: A, first in order); y offloads one at 0.2 s. The exact
    view shows A busy and sends y to B; a live gateway of y has heard nothing since A's heartbeat at 0 s, so A
    looks idle and y's prompt queues there too. y's next offload at 0.7 s comes after the heartbeat at 0.5 s,
    which reported both at A: it goes to B (the exact view has seen them all along)."""
    spec = SitesRunSpec(max_nodes_per_cluster=1)
    deployment = sim_deployment(TOPOLOGY, spec)
    requests = [WorkloadRequest(0, 0.1, 60_000, 4), WorkloadRequest(1, 0.2, 60_000, 4),
                WorkloadRequest(2, 0.7, 60_000, 4)]
    result = simulate_multisite(deployment, "prfaas", requests, {0: "x", 1: "y", 2: "y"}, prefill_queue="node",
                                gateway_heartbeat_s=heartbeat_s)
    site = {r.request_id: r.prfaas_site for r in result.records}
    assert site[0] == "A" and site[1] == y_first_site
    if heartbeat_s is not None:
        assert site[2] == "B"
        by_id = {r.request_id: r for r in result.records}
        assert by_id[1].prefill_queue_s > 0.1  # it waited behind x's prefill at A


def test_the_gateways_view_needs_a_site_selector() -> None:
    deployment = sim_deployment(TOPOLOGY, SitesRunSpec(max_nodes_per_cluster=1))
    with pytest.raises(ValueError, match="SiteSelector"):
        simulate_multisite(deployment, "prfaas", [WorkloadRequest(0, 0.1, 60_000, 4)], {0: "x"}, selector=None,
                           prefill_queue="node", gateway_heartbeat_s=0.5)


@pytest.mark.parametrize(("heartbeat_s", "y_node"), [(None, "B-0"), (0.5, "A-0")])
def test_within_a_heartbeat_a_regions_router_takes_the_node_another_region_just_filled(
        heartbeat_s: float | None, y_node: str) -> None:
    """Two nodes per site. x's prompt at 0.1 s goes to A-0; y's at 0.2 s: the exact view sends it to the idle site
    B; y's live gateway has heard nothing from A since the heartbeat at 0 s, so site A and its node A-0 (first by
    name among equals) look idle, and y's prompt queues behind x's there."""
    topology = msgspec.structs.replace(TOPOLOGY, prfaas=[PrfaasSite(name="A", instances=2),
                                                         PrfaasSite(name="B", instances=2)])
    deployment = sim_deployment(topology, SitesRunSpec(max_nodes_per_cluster=2))
    requests = [WorkloadRequest(0, 0.1, 60_000, 4), WorkloadRequest(1, 0.2, 60_000, 4)]
    result = simulate_multisite(deployment, "prfaas", requests, {0: "x", 1: "y"}, prefill_queue="node",
                                gateway_heartbeat_s=heartbeat_s)
    node = {r.request_id: r.prefill_instance for r in result.records}
    assert node == {0: "A-0", 1: y_node}


@pytest.mark.parametrize(("setting", "expected"), [(None, None), ("0.5", 0.5)])
def test_the_sites_gateway_heartbeat_knob_reaches_the_simulator(setting: str | None, expected: float | None,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[sites] gateway_heartbeat_s` (unset: the exact view) is what `prfaas simulate --config` passes on; a
    non-positive interval is refused at load, naming the key."""
    import prfaas.sim.multisite_report as report_module
    from prfaas.core.errors import ConfigError
    from prfaas.sim.config import load_config

    base = (SCENARIOS / "multisite_burst_one_instance.toml").read_text()
    text = base
    if setting is not None:
        text = base.replace('prefill_queue = "node"\n', f'prefill_queue = "node"\ngateway_heartbeat_s = {setting}\n')
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    seen: list[float | None] = []
    monkeypatch.setattr(report_module, "simulate_multisite",
                        lambda *args, **kwargs: seen.append(kwargs["gateway_heartbeat_s"]))
    report_module.run_config(load_config(path))
    assert seen == [expected]
    path.write_text(base.replace('prefill_queue = "node"\n', 'prefill_queue = "node"\ngateway_heartbeat_s = 0\n'))
    with pytest.raises(ConfigError, match="gateway_heartbeat_s"):
        load_config(path)
