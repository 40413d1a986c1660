"""`prfaas bench sites run` in short (root + namespaces; skipped otherwise): 2 PrfaaS sites x 2 PD regions, one
gateway per region in its region's namespace, emulated engine, per-region Poisson load, a PrfaaS site SIGKILLed
mid-run: nothing lost, every region served, offloads after the fault only at the surviving site, each region's
records and report written, every namespace deleted.

Slow (~45 s here: 8 processes start in 6 namespaces, then ~15 s of load): the smallest live multi-site run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bench_helpers import two_by_two_toml
from typer.testing import CliRunner

from prfaas.bench.netns import can_emulate, namespace_exists

_OK, _WHY = can_emulate()
pytestmark = [pytest.mark.network, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(not _OK, reason=_WHY or "no netns")]

TOPOLOGY = two_by_two_toml(0.5, (("pf-a", "rb"), ("pf-b", "ra")))


def test_sites_run_with_a_site_lost_loses_nothing(tmp_path: Path) -> None:
    from prfaas.cli import build_app

    topo = tmp_path / "topo.toml"
    topo.write_text(TOPOLOGY, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(["bench"]), [
        "bench", "sites", "run", "--topology", str(topo), "--requests", "8", "--load", "0.5", "--fault", "site-lost",
        "--fault-target", "pf-a", "--fault-at-s", "4", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text())
    assert report["fault"] == "site-lost" and report["fault_target"] == "pf-a"
    fault_s = report["fault_s"]
    regions = {r["region"]: r for r in report["regions"]}
    assert set(regions) == {"ra", "rb"}
    for region in regions.values():
        assert region["sent"] == 8 and region["completed"] == 8 and region["lost"] == 0 and region["failed"] == 0
        assert region["ttft_mean_s"] > 0 and region["ttft_p90_s"] >= region["ttft_mean_s"] * 0.5
        assert abs(sum(region["offload_share"].values()) - 1.0) < 1e-9
    assert "lost 0" in result.output and "region ra" in result.output
    # after the kill (+ the 2 s heartbeat timeout + a request's time), no offload is prefilled at pf-a
    for name in ("ra", "rb"):
        records = [json.loads(line) for line in (out / f"records-{name}.jsonl").read_text().splitlines()]
        log = {row["id"]: row for row in json.loads((out / f"gateway-log-{name}.json").read_text())}
        late = [log[r["gateway_id"]] for r in records if r["send_s"] > fault_s + 0.5 and r["gateway_id"] in log]
        assert all(row.get("prefill_node") != "pf-a-0" for row in late), late
    path = json.loads((out / "overhead.json").read_text())  # 6 probes per region before the load, both fitted
    assert path["num_points"] == 12 and path["fixed_s"] > 0 and sorted(path["points"]) == ["ra", "rb"]
    assert (out / "report-without-path.json").exists()
    config = json.loads((out / "deploy" / "config.json").read_text())
    assert {g["region"] for g in config["gateways"]} == {"ra", "rb"}
    namespaces = re.findall(r"namespace (\S+),", result.output)
    assert len(namespaces) == 4 and not any(namespace_exists(ns) for ns in namespaces)
