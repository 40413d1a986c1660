"""`prfaas bench sites run --engine vllm`: the many-sites system on real engines at CI size (root + namespaces + the
vLLM venv; skipped without namespaces, failing without the venv where PRFAAS_REQUIRE_VLLM=1). Two PrfaaS sites and
two PD regions, one vLLM server per node in its cluster's namespace (6 servers, tiny Qwen3-Next), one gateway per
region, a PrfaaS site SIGKILLed mid-run. Long prompts of both regions are prefilled by vLLM at a PrfaaS site and
their state crosses that site's capped link into the region's PD-D vLLM server, which decodes; nothing is lost
through the kill; every server and namespace is gone when the command returns.

Slow (minutes: six vLLM servers start on two cores, then ~40 s of load).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import two_by_two_toml
from tests.integrations.vllm_fixtures import require_venv

from prfaas.bench.netns import can_emulate, namespace_exists

_OK, _WHY = can_emulate()
pytestmark = [pytest.mark.network, pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(2400),
              pytest.mark.skipif(not _OK, reason=_WHY or "no netns")]

REQUESTS = 8
FAULT_AT_S = 20.0


def test_sites_run_on_vllm_offloads_across_sites_and_loses_nothing_when_a_site_dies(tmp_path: Path) -> None:
    require_venv()
    topo = tmp_path / "topo.toml"
    topo.write_text(two_by_two_toml(1.0, (("pf-a", "rb"), ("pf-b", "ra"))), encoding="utf-8")
    out = tmp_path / "out"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "prfaas.cli", "bench", "sites", "run", "--engine", "vllm", "--topology", str(topo),
           "--requests", str(REQUESTS), "--load", "0.05", "--max-tokens", "4", "--fault", "site-lost",
           "--fault-target", "pf-a", "--fault-at-s", str(FAULT_AT_S), "--seed", "3", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2300)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "vLLM servers ready" in proc.stdout and "engine vllm" in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["fault"] == "site-lost" and report["fault_target"] == "pf-a"
    regions = {r["region"]: r for r in report["regions"]}
    assert set(regions) == {"ra", "rb"}
    for region in regions.values():
        assert region["sent"] == REQUESTS and region["lost"] == 0, region
        assert region["completed"] + region["failed"] == REQUESTS and region["completed"] > 0, region
    config = json.loads((out / "deploy" / "config.json").read_text())
    assert {n["engine"] for n in config["nodes"]} == {"vllm"} and len(config["nodes"]) == 6
    assert {g["region"] for g in config["gateways"]} == {"ra", "rb"}

    offloaded = {}  # region -> {PrfaaS node: completed offloads}
    for name in ("ra", "rb"):
        records = [json.loads(line) for line in (out / f"records-{name}.jsonl").read_text().splitlines()]
        log = {row["id"]: row for row in json.loads((out / f"gateway-log-{name}.json").read_text())}
        rows = [log[r["gateway_id"]] for r in records if r["status"] == "completed" and r["gateway_id"] in log]
        by_node: dict[str, int] = {}
        for row in rows:
            if row.get("route") == "prfaas":
                by_node[row["prefill_node"]] = by_node.get(row["prefill_node"], 0) + 1
                assert row.get("decode_node", "").startswith(name), row  # decoded in its own region
        offloaded[name] = by_node
        late = [log[r["gateway_id"]] for r in records  # after the kill (+ heartbeat timeout): never at pf-a
                if r["send_s"] > report["fault_s"] + 6.0 and r["gateway_id"] in log]
        assert all(row.get("prefill_node") != "pf-a-0" for row in late), late
    assert all(offloaded[name] for name in ("ra", "rb")), offloaded  # both regions prefilled on vLLM at a site
    assert sum(report["tx_bytes"].values()) > 0, report["tx_bytes"]  # state crossed the capped links

    namespaces = re.findall(r"namespace (\S+),", proc.stdout)  # deleted, with every server that ran in them
    assert len(namespaces) == 4 and not any(namespace_exists(ns) for ns in namespaces)
