"""`prfaas simulate --scenario paper --json`: the per-configuration contract (short run for CI)."""

from __future__ import annotations

import json

import pytest

from prfaas.cli import main

KEYS = {"policy", "throughput_rps", "ttft_mean_s", "ttft_p90_s", "egress_gbps_mean", "offload_fraction"}


def test_paper_scenario_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--scenario", "paper", "--json", "--duration-s", "300"])
    assert exit_info.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    rows = {row["configuration"]: row for row in out["configurations"]}
    assert set(rows) == {"prfaas_pd", "homogeneous", "naive"}
    for row in rows.values():
        assert set(row) >= KEYS
    assert [rows[k]["policy"] for k in ("prfaas_pd", "homogeneous", "naive")] == ["prfaas", "homogeneous",
                                                                                   "naive-offload"]
    # at the same load PrfaaS-PD beats homogeneous on TTFT and throughput, and only it routes by length
    assert rows["prfaas_pd"]["ttft_mean_s"] < rows["homogeneous"]["ttft_mean_s"]
    assert rows["prfaas_pd"]["throughput_rps"] > rows["homogeneous"]["throughput_rps"]
    assert 0.3 < rows["prfaas_pd"]["offload_fraction"] < 0.7
    assert rows["naive"]["offload_fraction"] == 1.0 and rows["homogeneous"]["egress_gbps_mean"] == 0.0
