"""`bench.sites_predict`: the multi-site simulator beside a live `bench sites run`, on the run's own requests
(no live run: a SitesRunSpec and fake live records). Same requests (count, arrivals, lengths, outputs, region),
the live node counts and emulated link caps, a site-lost fault moving the simulated offloads off the lost site,
a link-degraded fault as the link's capacity / 10, and the report showing sim beside live with the error.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from prfaas.bench.records import RequestRecord, RequestStatus
from prfaas.bench.sites_predict import fault_script, live_node_counts, predict_sites, sim_topology
from prfaas.bench.sites_report import format_reports, region_reports, sim_prediction
from prfaas.bench.sites_run import (
    HEARTBEAT_S,
    RegionRun,
    SitesFault,
    SitesRunResult,
    SitesRunSpec,
    _nodes,
    sites_config,
)
from prfaas.bench.workload import WorkloadSpec, build_requests
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology
from prfaas.serve.config import PolicySection
from prfaas.sim.deployment import ScriptKind
from prfaas.sim.multisite_deployment import SiteEventKind

TOPOLOGY = SiteTopology(
    prfaas=[PrfaasSite(name="pf-a", instances=4), PrfaasSite(name="pf-b", instances=4)],
    pd=[PdSite(name="ra", instances=8, traffic_rps=1.0), PdSite(name="rb", instances=8, traffic_rps=0.5)],
    links=[SiteLink(prfaas="pf-a", pd="ra", capacity_gbps=100, latency_s=0.002),
           SiteLink(prfaas="pf-b", pd="rb", capacity_gbps=100, latency_s=0.002),
           SiteLink(prfaas="pf-a", pd="rb", capacity_gbps=50, latency_s=0.02),
           SiteLink(prfaas="pf-b", pd="ra", capacity_gbps=50, latency_s=0.02)])
FAULT_AT_S = 4.0


def _spec(fault: SitesFault | None = None, target: str | None = None) -> SitesRunSpec:
    return SitesRunSpec(requests_per_region=30, load=0.5, max_nodes_per_cluster=1, fault=fault,
                        fault_at_s=FAULT_AT_S, fault_target=target, seed=3)


def _live(spec: SitesRunSpec, fault_target: str | None = None) -> SitesRunResult:
    """Fake live records: each region's workload as `sites_run._region_requests` draws it, sent 10 ms late."""
    regions = {}
    for index, pd in enumerate(TOPOLOGY.pd):
        rate = TOPOLOGY.traffic_weights()[index] * spec.load / spec.time_scale
        wl = WorkloadSpec(num_requests=spec.requests_per_region, rate_rps=rate, threshold_tokens=spec.threshold_tokens,
                          length_factor=spec.length_factor, max_context_tokens=131072 + spec.max_tokens + 2,
                          max_tokens=spec.max_tokens, seed=spec.seed * 1000 + index)
        records = [RequestRecord(index=r.index, send_s=r.arrival_s + 0.01, prompt_tokens=len(r.prompt_tokens),
                                 max_tokens=r.max_tokens, status=RequestStatus.COMPLETED, ttft_s=1.0 + 0.1 * r.index,
                                 gateway_id=r.index + 1)
                   for r in build_requests(wl, salt=index + 1)]
        log: list[dict[str, Any]] = [{"id": r.index + 1, "route": "prfaas" if r.index % 2 else "local",
                                      "prefill_node": "pf-b-0"} for r in records]
        regions[pd.name] = RegionRun(pd.name, records, log, rate)
    result = SitesRunResult(regions=regions, site_of={"pf-a-0": "pf-a", "pf-b-0": "pf-b"})
    if spec.fault is not None:
        result.fault, result.fault_target, result.fault_s = spec.fault.value, fault_target, FAULT_AT_S + 0.05
    return result


def test_node_counts_and_links_are_the_live_runs() -> None:
    spec = SitesRunSpec(max_nodes_per_cluster=2)
    names = [*TOPOLOGY.prfaas_names, *TOPOLOGY.pd_names]
    fake_sites = SimpleNamespace(info=SimpleNamespace(addr=dict.fromkeys(names, "10.0.0.1")))
    live = _nodes(TOPOLOGY, fake_sites, spec)  # type: ignore[arg-type]
    counts = live_node_counts(TOPOLOGY, spec)
    for name, (first, second) in counts.items():
        mine = [n for n in live if n.site == name]
        if name in TOPOLOGY.prfaas_names:
            assert first == len(mine) and second == 0
        else:
            assert first == sum(n.role is Role.PD_PREFILL for n in mine)
            assert second == sum(n.role is Role.PD_DECODE for n in mine)
    topo = sim_topology(TOPOLOGY, spec)
    assert [s.instances for s in topo.prfaas] == [2, 2]
    assert [(r.instances, r.prefill_instances) for r in topo.pd] == [(4, 2), (4, 2)]
    assert [lk.capacity_gbps for lk in topo.links] == pytest.approx(
        [lk.capacity_gbps * spec.link_scale for lk in TOPOLOGY.links])
    assert all(n.cluster is ClusterKind.PRFAAS for n in live if n.site in TOPOLOGY.prfaas_names)


@pytest.mark.parametrize("preemption", [True, False])
def test_the_prediction_preempts_prefills_when_the_live_nodes_do(preemption: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One setting, `SitesRunSpec.prefill_preemption`: the live nodes' `[policy] prefill_preemption` and the
    simulator's `preempt_prefill`."""
    import prfaas.bench.sites_predict as predict_module

    spec = dataclasses.replace(_spec(), prefill_preemption=preemption)
    names = [*TOPOLOGY.prfaas_names, *TOPOLOGY.pd_names]
    fake_sites = SimpleNamespace(info=SimpleNamespace(addr=dict.fromkeys(names, "10.0.0.1")))
    assert sites_config(TOPOLOGY, fake_sites, spec).policy.prefill_preemption is preemption  # type: ignore[arg-type]
    seen: list[Any] = []
    original = predict_module.simulate_multisite

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((kwargs["prefill_queue"], kwargs["preempt_prefill"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(predict_module, "simulate_multisite", spy)
    predict_sites(TOPOLOGY, spec, _live(spec))
    assert seen == [("node", preemption)]
    assert SitesRunSpec().prefill_preemption is PolicySection().prefill_preemption  # the live default


def test_prediction_runs_on_the_live_requests() -> None:
    spec = _spec()
    live = _live(spec)
    pred = predict_sites(TOPOLOGY, spec, live)
    assert len(pred.requests) == sum(len(run.records) for run in live.regions.values()) == 60
    for name, run in live.regions.items():
        sent = sorted((r.send_s, r.prompt_tokens, r.max_tokens) for r in run.records)
        mine = sorted((q.arrival_s, q.input_tokens, q.output_tokens) for q in pred.requests
                      if pred.region_of[q.request_id] == name)
        assert mine == sent
        by_index = {r.index: r for r in run.records}
        for q in pred.requests:  # each simulated request maps back to its live record
            if pred.region_of[q.request_id] == name:
                assert by_index[pred.live_index_of[q.request_id]].send_s == q.arrival_s
    assert pred.script == ()
    for name in live.regions:
        region = pred.regions[name]
        assert region["sent"] == 30 and region["completed"] == 30
        assert region["ttft_mean_s"] > 0 and region["ttft_p90_s"] >= region["ttft_mean_s"] * 0.5
        assert sum(region["offload_share"].values()) == pytest.approx(1.0)
    offloaded = [r for r in pred.sim.records if r.prfaas_site]
    assert {r.prfaas_site for r in offloaded} == {"pf-a", "pf-b"}  # both sites used without a fault
    long_ones = [r for r in pred.sim.records if r.input_tokens > spec.threshold_tokens]
    assert len(offloaded) >= len(long_ones) // 2  # the threshold is the run's


def test_site_lost_moves_the_simulated_offloads_off_the_lost_site() -> None:
    base = predict_sites(TOPOLOGY, _spec(), _live(_spec()))
    spec = _spec(SitesFault.SITE_LOST, "pf-a")
    live = _live(spec, "pf-a")
    pred = predict_sites(TOPOLOGY, spec, live)
    [event] = pred.script
    assert event.kind is SiteEventKind.SITE_FAIL and event.site == "pf-a" and event.time_s == live.fault_s

    def at_a_after(p: Any) -> int:
        return sum(r.prfaas_site == "pf-a" and r.arrival_s >= FAULT_AT_S for r in p.sim.records)

    assert at_a_after(base) > 0  # without the fault pf-a takes offloads after FAULT_AT_S
    assert at_a_after(pred) == 0
    at_b = [sum(r.prfaas_site == "pf-b" for r in p.sim.records) for p in (base, pred)]
    assert at_b[1] > at_b[0]
    assert all(r.is_ok for r in pred.sim.records)


def test_link_degraded_is_the_links_capacity_over_ten() -> None:
    spec = _spec(SitesFault.LINK_DEGRADED, "pf-a->ra")
    live = _live(spec, "pf-a->ra")
    [event] = fault_script(TOPOLOGY, spec, live)
    assert event.kind is ScriptKind.LINK_CAPACITY and event.link_id == "pf-a->ra"
    assert event.capacity_gbps == pytest.approx(100 * spec.link_scale / 10)
    assert event.time_s == live.fault_s
    pred = predict_sites(TOPOLOGY, spec, live)
    history = pred.sim.links["pf-a->ra"].capacity_history
    assert history[-1] == pytest.approx((live.fault_s, 100 * spec.link_scale / 10))


def test_report_shows_sim_beside_live_with_the_error() -> None:
    spec = _spec(SitesFault.SITE_LOST, "pf-a")
    live = _live(spec, "pf-a")
    sim = sim_prediction(TOPOLOGY, spec, live)
    reports = region_reports(live, sim=sim)
    ra = next(r for r in reports if r.region == "ra")
    assert ra.sim is not None
    assert ra.sim["ttft_mean_rel_err"] == pytest.approx((sim["ra"]["ttft_mean_s"] - ra.ttft_mean_s) / ra.ttft_mean_s)
    live_b = ra.offload_share.get("pf-b", 0.0)
    assert ra.sim["offload_share_err_pp"]["pf-b"] == pytest.approx(
        100 * (sim["ra"]["offload_share"].get("pf-b", 0.0) - live_b))
    text = format_reports(reports, live)
    assert "(sim " in text and "err " in text and " pp)" in text
    no_sim = format_reports(region_reports(live), live)
    assert "sim n/a" in no_sim


def test_a_requests_path_residual_follows_it_across_runs_whose_merge_numbers_differ() -> None:
    """The measured path's residual a simulated request gets is picked by its region and live index: a burst's
    extra requests in one region renumber the merged requests, and the other region's requests must keep their
    residuals, or the burst-vs-baseline comparison of that region measures the renumbering."""
    import dataclasses

    from prfaas.bench.paper_overhead import RequestOverhead

    spec = _spec()
    base = _live(spec)
    burst = _live(spec)
    ra = burst.regions["ra"]
    extra = [RequestRecord(index=len(ra.records) + k, send_s=0.001 * (k + 1), prompt_tokens=500, max_tokens=8,
                           status=RequestStatus.COMPLETED, ttft_s=1.0) for k in range(3)]  # before everything
    burst.regions["ra"] = dataclasses.replace(ra, records=[*extra, *ra.records])
    overhead = RequestOverhead(0.01, 0.0, 7, tuple(0.05 * k for k in range(7)))  # residuals 0..0.3 s

    def rb_paths(result: SitesRunResult) -> list[float]:
        pred = predict_sites(TOPOLOGY, spec, result, overhead=overhead)
        sent = {rid: (pred.region_of[rid], pred.live_index_of[rid]) for rid in pred.region_of}
        live_send = {(name, r.index): r.send_s for name, run in result.regions.items() for r in run.records}
        return [rec.arrival_s - live_send[sent[rec.request_id]]  # the path the simulator put in front of it
                for rec in pred.sim.records if pred.region_of[rec.request_id] == "rb"]

    paths = rb_paths(base)
    assert sorted(paths) == pytest.approx(sorted(rb_paths(burst)))
    assert len(set(round(p, 6) for p in paths)) > 3  # different residuals per request: the check has teeth


def test_the_probes_a_gateway_admitted_before_the_load_reach_the_simulated_meters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A region gateway's offered-load meter counts the path probes sent before the load (`policy.region_load`);
    `PathProbe.arrivals_before` puts their send times on the load's clock (negative), `predict_sites` hands them
    to the simulator's meters, and `overhead.json` keeps them (a prediction can be recomputed from the folder)."""
    import prfaas.bench.sites_predict as predict_module
    from prfaas.bench.sites_overhead import fit_probes

    probe = fit_probes({"ra": [(1_500, 0.05)], "rb": [(1_500, 0.06)]},
                       {"ra": [100.0, 100.4], "rb": [101.0, 101.5]})
    start_mono_s = 103.0
    before = probe.arrivals_before(start_mono_s)
    assert before == {"ra": pytest.approx([-3.0, -2.6]), "rb": pytest.approx([-2.0, -1.5])}
    assert probe.arrivals_before(None) == {}  # a run that did not note its start: nothing (a cold meter)
    assert probe.as_json(start_mono_s)["sent_before_load_s"] == before
    spec = _spec()
    live = _live(spec)
    seen: list[Any] = []
    original = predict_module.simulate_multisite

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((kwargs["load_history"], kwargs["gateway_heartbeat_s"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(predict_module, "simulate_multisite", spy)
    predict_sites(TOPOLOGY, spec, live, before_load_s=before)
    predict_sites(TOPOLOGY, spec, live)
    # and the selector sees the sites as the live gateways do, through the live nodes' heartbeat interval
    assert seen == [(before, HEARTBEAT_S), (None, HEARTBEAT_S)]
    assert sites_config(TOPOLOGY, SimpleNamespace(info=SimpleNamespace(addr=dict.fromkeys(  # type: ignore[arg-type]
        [*TOPOLOGY.prfaas_names, *TOPOLOGY.pd_names], "10.0.0.1"))), spec).gateway.heartbeat_interval_s == HEARTBEAT_S
