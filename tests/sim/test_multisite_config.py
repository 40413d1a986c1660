"""`prfaas simulate --config` on a `[topology]` scenario: per-region and per-link summaries, records with region
and site, and one-line errors naming the key and line for bad multi-site input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.cli import main

TWO_BY_ONE = """
seed = 2
duration_s = 40.0

[workload]
output_tokens = 32

[[topology.prfaas]]
name = "A"
instances = 2

[[topology.prfaas]]
name = "B"
instances = 2

[[topology.pd]]
name = "us"
instances = 6
prefill_instances = 2
traffic_rps = 1.0

[[topology.links]]
prfaas = "A"
pd = "us"
capacity_gbps = 50
latency_s = 0.002

[[topology.links]]
prfaas = "B"
pd = "us"
capacity_gbps = 50
latency_s = 0.02
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "multi.toml"
    path.write_text(text)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    code = exc.value.code
    return int(code) if isinstance(code, int) else 1, captured.out, captured.err.strip()


def test_topology_scenario_prints_regions_and_links(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, TWO_BY_ONE + '\n[[events]]\ntime_s = 10.0\nkind = "site_fail"\nsite = "A"\n')
    code, out, _ = _run(["simulate", "--config", str(cfg)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("us ") for line in lines)
    assert any(line.startswith("A->us ") for line in lines) and any(line.startswith("B->us ") for line in lines)
    out_dir = tmp_path / "out"
    code, out, _ = _run(["simulate", "--config", str(cfg), "--json", "--out", str(out_dir)], capsys)
    assert code == 0
    summary = json.loads(out)
    us = summary["regions"]["us"]
    assert us["num_finished"] == us["num_requests"] > 20
    assert sum(us["offloads_by_site"].values()) > 0 and set(us["offloads_by_site"]) <= {"A", "B"}
    assert set(summary["links"]) == {"A->us", "B->us"}
    records = [json.loads(line) for line in (out_dir / "records.jsonl").read_text().splitlines()]
    assert len(records) == us["num_requests"]
    assert {r["region"] for r in records} == {"us"}
    assert {r["prfaas_site"] for r in records if r["prefill_cluster"] == "prfaas"} <= {"A", "B"}
    assert not any(r["prfaas_site"] == "A" and r["arrival_s"] >= 10.0 for r in records)  # A is dead from 10 s


@pytest.mark.parametrize(("extra", "key"), [
    ('\n[[events]]\ntime_s = 1.0\nkind = "link_capacity"\nlink = "prfaas->pd"\ncapacity_gbps = 1.0\n',
     "events[0].link"),
    ('\n[[events]]\ntime_s = 1.0\nkind = "site_fail"\nsite = "C"\n', "events[0].site"),
    ('\n[[events]]\ntime_s = 1.0\nkind = "node_fail"\ninstance = "prfaas-0"\n', "events[0].instance"),
    ('\n[regions.eu.workload]\noutput_tokens = 8\n', "regions.eu"),
    ('\n[sites]\nselector = "nearest"\n', "sites.selector"),
    ('\n[cluster]\nn_prfaas = 3\n', "cluster.n_prfaas"),
])
def test_bad_multisite_input_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                           key: str) -> None:
    code, _, err = _run(["simulate", "--config", str(_write(tmp_path, TWO_BY_ONE + extra))], capsys)
    assert code == 2
    assert err.startswith("prfaas: error:") and "\n" not in err and key in err and "multi.toml:" in err


def test_missing_split_and_topology_only_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_split = TWO_BY_ONE.replace("prefill_instances = 2\n", "")
    code, _, err = _run(["simulate", "--config", str(_write(tmp_path, no_split))], capsys)
    assert code == 2 and "topology.pd[0].prefill_instances" in err
    two_cluster = ('[workload.arrivals]\nrate_rps = 1.0\n\n'
                   '[[events]]\ntime_s = 1.0\nkind = "site_fail"\nsite = "prfaas"\n')
    code, _, err = _run(["simulate", "--config", str(_write(tmp_path, two_cluster))], capsys)
    assert code == 2 and "events[0].kind" in err and "[topology]" in err
    sites = '[workload.arrivals]\nrate_rps = 1.0\n\n[sites]\ntarget_queue_s = 1.0\n'
    code, _, err = _run(["simulate", "--config", str(_write(tmp_path, sites))], capsys)
    assert code == 2 and "sites" in err and "[topology]" in err
