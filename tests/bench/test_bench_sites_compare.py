"""`bench sites compare|chaos` without a live run: argument checks (nothing starts on a bad one), the request path
measured from records and added to the prediction, and the compare and chaos reports built from fake records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from prfaas.bench.paper_overhead import RequestOverhead
from prfaas.bench.records import RequestRecord, RequestStatus
from prfaas.bench.sites_compare import chaos_targets, check_selectors
from prfaas.bench.sites_compare_report import (
    ChaosRun,
    SelectorRuns,
    after_fault,
    chaos_report,
    compare_rows,
    faulted_site_and_regions,
    format_chaos,
    format_compare,
    window_p90_s,
)
from prfaas.bench.sites_overhead import (
    PROBE_LENGTHS_TOKENS,
    cross_run_paths,
    fit_probes,
    path_points,
    probe_requests,
    run_points,
)
from prfaas.bench.sites_predict import predict_sites
from prfaas.bench.sites_report import region_reports
from prfaas.bench.sites_run import RegionRun, SitesFault, SitesRunResult, SitesRunSpec
from prfaas.bench.workload import WorkloadSpec, build_requests
from prfaas.core.errors import ConfigError
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology

TOPOLOGY = SiteTopology(
    prfaas=[PrfaasSite(name="pf-a", instances=4), PrfaasSite(name="pf-b", instances=4)],
    pd=[PdSite(name="ra", instances=8, traffic_rps=1.0), PdSite(name="rb", instances=8, traffic_rps=0.5)],
    links=[SiteLink(prfaas="pf-a", pd="ra", capacity_gbps=100, latency_s=0.002),
           SiteLink(prfaas="pf-b", pd="rb", capacity_gbps=100, latency_s=0.002),
           SiteLink(prfaas="pf-a", pd="rb", capacity_gbps=50, latency_s=0.02),
           SiteLink(prfaas="pf-b", pd="ra", capacity_gbps=50, latency_s=0.02)])
TOPOLOGY_TOML = """
[[topology.prfaas]]
name = "pf-a"
instances = 1
[[topology.pd]]
name = "ra"
instances = 2
traffic_rps = 1.0
[[topology.links]]
prfaas = "pf-a"
pd = "ra"
capacity_gbps = 100
latency_s = 0.002
"""


def _record(index: int, send_s: float, ttft_s: float | None, tokens: int = 1000,
            status: RequestStatus = RequestStatus.COMPLETED) -> RequestRecord:
    return RequestRecord(index=index, send_s=send_s, prompt_tokens=tokens, max_tokens=8, status=status,
                         ttft_s=ttft_s, gateway_id=index + 1)


def _live(spec: SitesRunSpec) -> SitesRunResult:
    """Fake live records: each region's workload as the run draws it; odd requests offloaded to pf-b."""
    regions = {}
    for index, pd in enumerate(TOPOLOGY.pd):
        rate = TOPOLOGY.traffic_weights()[index] * spec.load / spec.time_scale
        wl = WorkloadSpec(num_requests=spec.requests_per_region, rate_rps=rate, threshold_tokens=spec.threshold_tokens,
                          length_factor=spec.length_factor, max_context_tokens=131072 + spec.max_tokens + 2,
                          max_tokens=spec.max_tokens, seed=spec.seed * 1000 + index)
        records = [_record(r.index, r.arrival_s, 1.0 + 0.1 * r.index, len(r.prompt_tokens))
                   for r in build_requests(wl, salt=index + 1)]
        log = [{"id": r.index + 1, "route": "prfaas" if r.index % 2 else "local", "prefill_node": "pf-b-0"}
               for r in records]
        regions[pd.name] = RegionRun(pd.name, records, log, rate)
    return SitesRunResult(regions=regions, site_of={"pf-a-0": "pf-a", "pf-b-0": "pf-b"})


# --- arguments -----------------------------------------------------------------------------------
def test_selectors_are_checked() -> None:
    assert check_selectors(["home-only", " prfaas-sites"]) == ["home-only", "prfaas-sites"]
    with pytest.raises(ConfigError, match=r"unknown site selector 'nope'.*home-only"):
        check_selectors(["home-only", "nope"])
    with pytest.raises(ConfigError, match="repeats"):
        check_selectors(["home-only", "home-only"])
    with pytest.raises(ConfigError, match="at least one"):
        check_selectors(["", " "])


def test_chaos_targets_default_and_are_checked() -> None:
    assert chaos_targets(TOPOLOGY, None, None) == ("pf-a", "pf-a->ra")
    assert chaos_targets(TOPOLOGY, "pf-b", None) == ("pf-b", "pf-b->rb")
    assert chaos_targets(TOPOLOGY, "pf-b", "pf-a->rb") == ("pf-b", "pf-a->rb")
    with pytest.raises(ConfigError, match="'ra' is not a PrfaaS cluster"):
        chaos_targets(TOPOLOGY, "ra", None)
    with pytest.raises(ConfigError, match="'x->y' is not a link"):
        chaos_targets(TOPOLOGY, None, "x->y")


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "--selectors", "home-only,bogus"], "unknown site selector 'bogus'"),
    (["compare", "--probes", "-1"], "--probes must be >= 0"),
    (["chaos", "--lost-site", "ra"], "'ra' is not a PrfaaS cluster"),
    (["chaos", "--degraded-link", "pf-a->zz"], "'pf-a->zz' is not a link"),
    (["chaos", "--fault-at-s", "0"], "--fault-at-s must be > 0"),
])
def test_bad_arguments_fail_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    from prfaas.cli import build_app

    topo = tmp_path / "topo.toml"
    topo.write_text(TOPOLOGY_TOML, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(["bench"]), ["bench", "sites", args[0], "--topology", str(topo),
                                                       *args[1:], "--out", str(out)])
    assert result.exit_code != 0
    assert message in result.output + str(result.exception)
    assert not out.exists()  # no run folder: nothing was started


# --- the request path ----------------------------------------------------------------------------
def test_path_points_are_ttft_minus_the_logged_queue_prefill_and_transfer() -> None:
    records = [_record(0, 0.0, 0.50, 1500), _record(1, 0.0, 0.80, 5000),
               _record(2, 0.0, None, 100, RequestStatus.FAILED), _record(3, 0.0, 0.9, 100)]
    log = [{"id": 1, "queue_s": 0.1, "prefill_s": 0.2}, {"id": 2, "queue_s": None, "prefill_s": 0.5,
                                                          "transfer_s": 0.05},
           {"id": 3, "prefill_s": 0.1}, {"id": 4}]  # 3 failed, 4 has no prefill time
    assert path_points(records, log) == [(1500, pytest.approx(0.2)), (5000, pytest.approx(0.25))]
    probe = fit_probes({"ra": [(1500, 0.20), (1500, 0.22), (1500, 0.21)], "rb": [(1500, 0.30)]})
    assert probe.overhead.num_points == 4 and probe.overhead.per_token_s == 0.0
    assert probe.overhead.fixed_s == pytest.approx(0.215)  # the pooled median (one length bin)
    assert probe.as_json()["points"]["rb"] == [[1500, 0.30]]


def test_the_path_under_load_comes_from_the_other_runs_only() -> None:
    live = _chaos_result(None, None)
    live.regions["ra"].log = [{**row, "queue_s": 0.5, "prefill_s": 0.25} for row in live.regions["ra"].log]
    points = run_points(live.regions)  # rb's log is empty: only ra's 8 completed requests
    assert points == [(1000, pytest.approx(0.25 + i)) for i in range(8)]
    paths = cross_run_paths({"a": [(1000, 0.1)] * 3, "b": [(1000, 0.3)] * 3, "c": []})
    assert paths["a"] is not None and paths["a"].fixed_s == pytest.approx(0.3)  # b's (c has none)
    assert paths["b"] is not None and paths["b"].fixed_s == pytest.approx(0.1)
    assert paths["c"] is not None and paths["c"].num_points == 6
    assert cross_run_paths({"alone": [(1000, 0.1)]}) == {"alone": None}


def test_probes_are_short_local_prompts_cycling_the_lengths() -> None:
    probes = probe_requests(0, 6, 8)
    assert [len(p.prompt_tokens) for p in probes] == [*PROBE_LENGTHS_TOKENS, *PROBE_LENGTHS_TOKENS]
    assert max(PROBE_LENGTHS_TOKENS) < SitesRunSpec().threshold_tokens  # prefilled locally
    assert probe_requests(1, 1, 8)[0].prompt_tokens != probes[0].prompt_tokens  # no prefix shared across regions


def test_a_constant_path_adds_itself_to_every_simulated_ttft() -> None:
    spec = SitesRunSpec(requests_per_region=20, load=0.5, max_nodes_per_cluster=1, seed=3)
    live = _live(spec)
    bare = predict_sites(TOPOLOGY, spec, live)
    path = predict_sites(TOPOLOGY, spec, live, overhead=RequestOverhead(fixed_s=0.4, num_points=3))
    assert bare.overhead is None and path.overhead is not None
    for name in live.regions:  # no fault: shifting every arrival by 0.4 s shifts the whole run
        assert path.regions[name]["ttft_mean_s"] == pytest.approx(bare.regions[name]["ttft_mean_s"] + 0.4)
        assert path.regions[name]["offload_share"] == bare.regions[name]["offload_share"]
    sent = sorted(r.send_s for run in live.regions.values() for r in run.records)
    assert sorted(row[1] for row in path.rows()) == pytest.approx(sent)  # rows keep the live send times
    # residuals reorder the simulated arrivals: still every request once, in its region, from its send time
    spread = predict_sites(TOPOLOGY, spec, live, overhead=RequestOverhead(0.05, 0.0, 5, (0.0, 1.5, -0.04, 0.9)))
    rows = spread.rows()
    assert sorted(row[1] for row in rows) == pytest.approx(sent)
    assert {name: sum(row[0] == name for row in rows) for name in live.regions} == {"ra": 20, "rb": 20}
    assert spread.regions["ra"]["ttft_mean_s"] > bare.regions["ra"]["ttft_mean_s"] + 0.05


# --- reports -------------------------------------------------------------------------------------
def test_compare_rows_put_each_selector_beside_the_simulator_both_ways() -> None:
    spec = SitesRunSpec(requests_per_region=10, load=0.5, max_nodes_per_cluster=1, seed=1)
    live = _live(spec)
    runs = {}
    for selector, path_s in (("home-only", 0.3), ("prfaas-sites", 0.5)):
        sim_path = {"ra": {"ttft_mean_s": 2.0, "ttft_p90_s": 3.0, "offload_share": {"local": 1.0}},
                    "rb": {"ttft_mean_s": 1.0 + path_s, "ttft_p90_s": 2.0, "offload_share": {"pf-b": 1.0}}}
        sim_bare = {k: {**v, "ttft_mean_s": v["ttft_mean_s"] - path_s} for k, v in sim_path.items()}
        loaded = None
        if selector == "prfaas-sites":
            loaded = region_reports(live, sim={k: {**v, "ttft_mean_s": 4.0} for k, v in sim_path.items()})
        runs[selector] = SelectorRuns(region_reports(live, sim=sim_path), region_reports(live, sim=sim_bare), loaded)
    rows = compare_rows(runs)
    assert [(r["region"], r["selector"]) for r in rows] == [("ra", "home-only"), ("ra", "prfaas-sites"),
                                                            ("rb", "home-only"), ("rb", "prfaas-sites")]
    ra = rows[0]
    assert ra["ttft_mean_rel_err"] == pytest.approx((2.0 - ra["ttft_mean_s"]) / ra["ttft_mean_s"])
    assert ra["nopath_ttft_mean_rel_err"] == pytest.approx((1.7 - ra["ttft_mean_s"]) / ra["ttft_mean_s"])
    assert ra["offload_share"] == {"local": 0.5, "pf-b": 0.5} and ra["lost"] == 0
    assert ra["loaded_ttft_mean_s"] is None and rows[1]["loaded_ttft_mean_s"] == 4.0
    assert rows[1]["loaded_ttft_mean_rel_err"] == pytest.approx((4.0 - ra["ttft_mean_s"]) / ra["ttft_mean_s"])
    text = format_compare(rows, {"home-only": "300 ms"})
    assert "request path (home-only): 300 ms" in text and "local 50%|100%" in text and text.endswith("lost 0")
    mean_line = next(line for line in text.splitlines() if "TTFT mean" in line)
    assert mean_line.count("|") == 3 and "2.00 (" in mean_line and "1.70 (" in mean_line and "n/a (n/a)" in mean_line


def _chaos_result(fault: SitesFault | None, target: str | None) -> SitesRunResult:
    """Region ra: 8 requests 1 s apart; pf-a before 4 s; after it local until 5.5 s, then pf-b. rb: local."""
    ra = [_record(i, float(i), 1.0 + i) for i in range(8)]
    ra_log = [{"id": i + 1, "route": "prfaas" if i < 4 or i >= 6 else "local",
               "prefill_node": "pf-a-0" if i < 4 else "pf-b-0"} for i in range(8)]
    rb = [_record(i, float(i), 0.5, status=RequestStatus.LOST if i == 7 else RequestStatus.COMPLETED)
          for i in range(8)]
    regions = {"ra": RegionRun("ra", ra, ra_log, 1.0), "rb": RegionRun("rb", rb, [], 1.0)}
    result = SitesRunResult(regions=regions, site_of={"pf-a-0": "pf-a", "pf-b-0": "pf-b"})
    if fault is not None:
        result.fault, result.fault_target, result.fault_s = fault.value, target, 3.5
    return result


def test_chaos_report_gives_the_window_and_where_offloads_went() -> None:
    sim_rows: list[Any] = [("ra", float(i), "pf-b" if i >= 4 else "pf-a", 0.5 + i) for i in range(8)]
    base = ChaosRun(_chaos_result(None, None), sim_rows)
    faults = {"site-lost": ChaosRun(_chaos_result(SitesFault.SITE_LOST, "pf-a"), sim_rows)}
    [report] = chaos_report(TOPOLOGY, base, faults)
    assert report["faulted_site"] == "pf-a" and report["fault_s"] == 3.5 and report["lost"] == 1
    ra, rb = report["regions"]
    assert ra["affected"] and rb["affected"]  # pf-a links to both
    assert ra["window_p90_s"] == 8.0 and ra["sim_window_p90_s"] == 7.5  # sent at 4..7 s
    assert ra["live_after"] == {"places": {"local": 2, "pf-b": 2}, "first_other_s": pytest.approx(2.5)}
    assert ra["sim_after"] == {"places": {"pf-b": 4}, "first_other_s": pytest.approx(0.5)}
    assert rb["lost"] == 1 and rb["live_after"]["first_other_s"] is None
    text = format_chaos([report])
    assert "first offload to another site: live 2.5 s, sim 0.5 s" in text and "lost 1  <--" in text
    with pytest.raises(ValueError, match="no fault"):
        chaos_report(TOPOLOGY, base, {"x": base})


def test_faulted_site_and_window_helpers() -> None:
    assert faulted_site_and_regions(TOPOLOGY, SitesFault.LINK_DEGRADED, "pf-b->ra") == ("pf-b", ["ra"])
    assert faulted_site_and_regions(TOPOLOGY, SitesFault.SITE_LOST, "pf-b") == ("pf-b", ["rb", "ra"])
    rows: list[Any] = [("ra", 0.0, "pf-a", 1.0), ("ra", 2.0, "pf-a", 9.0), ("ra", 3.0, "pf-b", None)]
    assert window_p90_s(rows, "ra", 1.0) == 9.0 and window_p90_s(rows, "rb", 0.0) is None
    assert after_fault(rows, "ra", 1.0, "pf-a") == {"places": {"pf-a": 1}, "first_other_s": None}
