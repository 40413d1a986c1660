"""`prfaas bench sites compare` live, in short (root + namespaces; skipped otherwise): 2 PrfaaS sites x 2 PD
regions (rb also linked to pf-a), home-only then prfaas-sites on the same requests, each on its own deployment
with request-path probes: the same requests in both runs, nothing lost, home-only offloads only to a region's
home site, the path measured and written, both predictions in the combined report, every namespace deleted.

Slow (~1.5 min here: two deployments of 8 processes in 4 namespaces, 3 probes and 5 requests per region each).
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

TOPOLOGY = two_by_two_toml(1.0, (("pf-a", "rb"),))


def test_sites_compare_runs_each_selector_on_the_same_requests(tmp_path: Path) -> None:
    from prfaas.cli import build_app

    topo = tmp_path / "topo.toml"
    topo.write_text(TOPOLOGY, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(["bench"]), [
        "bench", "sites", "compare", "--topology", str(topo), "--selectors", "home-only,prfaas-sites",
        "--requests", "5", "--load", "0.5", "--probes", "3", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [(r["region"], r["selector"]) for r in rows] == [("ra", "home-only"), ("ra", "prfaas-sites"),
                                                            ("rb", "home-only"), ("rb", "prfaas-sites")]
    for row in rows:
        assert row["sent"] == 5 and row["completed"] == 5 and row["lost"] == 0
        assert row["sim_ttft_mean_s"] > row["nopath_ttft_mean_s"] > 0  # the measured path adds to the sim
        assert row["loaded_ttft_mean_s"] > row["nopath_ttft_mean_s"]  # the path under load, from the other run
    for region, home in (("ra", "pf-a"), ("rb", "pf-b")):  # home-only: the lowest-latency site or local
        row = next(r for r in rows if r["selector"] == "home-only" and r["region"] == region)
        assert set(row["offload_share"]) <= {"local", home}
    sent = {}
    for selector in ("home-only", "prfaas-sites"):
        for region in ("ra", "rb"):
            records = [json.loads(x) for x in (out / selector / f"records-{region}.jsonl").read_text().splitlines()]
            sent.setdefault(region, []).append(sorted((r["index"], r["prompt_tokens"]) for r in records))
        path = json.loads((out / selector / "overhead.json").read_text())
        assert path["num_points"] == 6 and path["fixed_s"] > 0  # 3 probes in each of 2 regions
        loaded = json.loads((out / selector / "report-loaded-path.json").read_text())["loaded_path"]
        assert loaded["measured_on"] == [s for s in ("home-only", "prfaas-sites") if s != selector]
        assert loaded["num_points"] == 10  # the other run's 5 requests in each of 2 regions
        assert (out / selector / "report-without-path.json").exists()
    assert all(a == b for a, b in sent.values())  # the same requests under both selectors
    assert "lost 0" in result.output and "request path (home-only)" in result.output
    namespaces = re.findall(r"namespace (\S+),", result.output)
    assert len(namespaces) == 8 and not any(namespace_exists(ns) for ns in namespaces)
