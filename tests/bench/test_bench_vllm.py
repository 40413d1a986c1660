"""`prfaas bench compare --engine vllm`, end to end at CI size: three real vLLM servers (one per node, started once),
two policies, a few requests each. Every policy has its records and summary, nothing is lost, and the vLLM servers
are gone when the command has returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from tests.integrations.vllm_fixtures import require_venv

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(2400)]

POLICIES = ("homogeneous", "prfaas")
REQUESTS = 3


def test_compare_engine_vllm_runs_each_policy_and_stops_the_servers(tmp_path: Path) -> None:
    require_venv()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "prfaas.cli", "bench", "compare", "--engine", "vllm", "--no-sites", "--tiny",
           "--requests", str(REQUESTS), "--rate-rps", "1", "--max-tokens", "4", "--policies", ",".join(POLICIES),
           "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2300)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "vLLM servers ready" in proc.stdout
    compared = json.loads((out / "compare.json").read_text())
    assert [row["policy"] for row in compared["rows"]] == list(POLICIES)
    for policy in POLICIES:
        records = [json.loads(line) for line in (out / policy / "records.jsonl").read_text().splitlines()]
        assert len(records) == REQUESTS
        summary = json.loads((out / policy / "summary.json").read_text())
        assert summary["sent"] == REQUESTS and summary["lost"] == 0, summary
        assert summary["completed"] + summary["failed"] == REQUESTS
        assert summary["completed"] > 0, summary
    config = json.loads((out / "deploy" / "config.json").read_text())
    assert {n["engine"] for n in config["nodes"]} == {"vllm"}
    vllm_urls = [n["vllm_url"] for n in config["nodes"]]
    assert len(vllm_urls) == 3
    for url in vllm_urls:  # stopped with the command
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=5)
