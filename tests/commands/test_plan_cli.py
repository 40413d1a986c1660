"""The `prfaas plan` / `prfaas bandwidth` CLI contract and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prfaas.cli import main

CONTRACT_KEYS = {"threshold_tokens", "n_prfaas", "n_p", "n_d", "theta_prfaas", "theta_pd_p", "theta_pd_d",
                 "lambda_max", "offload_fraction", "egress_gbps", "binding_stage"}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_paper_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["plan", "--scenario", "paper", "--json"], capsys)
    assert code == 0
    obj = json.loads(out)
    for key in ("prfaas_pd", "homogeneous", "naive"):
        assert set(obj[key]) >= CONTRACT_KEYS, key
    assert obj["homogeneous"]["threshold_tokens"] is None and obj["homogeneous"]["theta_prfaas"] is None
    assert obj["naive"]["theta_pd_p"] is None
    assert obj["prfaas_pd"]["n_p"] == 3 and obj["prfaas_pd"]["n_d"] == 5
    assert obj["speedup_vs_homogeneous"] == pytest.approx(
        obj["prfaas_pd"]["lambda_max"] / obj["homogeneous"]["lambda_max"], rel=1e-3)
    assert obj["speedup_vs_naive"] == pytest.approx(
        obj["prfaas_pd"]["lambda_max"] / obj["naive"]["lambda_max"], rel=1e-3)
    names = {a["name"] for a in obj["assumptions"]}
    assert {"pd_prefill_compute_scale_k", "bs_max", "t_decode_s"} <= names
    assert all({"name", "value", "source"} == set(a) for a in obj["assumptions"])


def test_plan_text_plot_and_fixed_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "curves.png"
    code, out, _ = run_cli(["plan", "--plot", str(png), "--threshold", "30000", "--json"], capsys)
    assert code == 0 and png.stat().st_size > 10_000
    obj = json.loads(out)
    assert obj["prfaas_pd"]["threshold_tokens"] == 30000
    assert obj["prfaas_pd"]["lambda_max"] < obj["optimal_prfaas_pd"]["lambda_max"]
    code, out, _ = run_cli(["plan"], capsys)
    assert code == 0 and "speedup vs homogeneous" in out and "paper Table 6" in out


def test_plan_with_a_trace_and_prefix_cache(capsys: pytest.CaptureFixture[str], mooncake_trace: Path) -> None:
    code, out, _ = run_cli(["plan", "--workload", str(mooncake_trace), "--json"], capsys)
    assert code == 0
    no_cache = json.loads(out)
    code, out, _ = run_cli(["plan", "--workload", str(mooncake_trace), "--cache-blocks", "50000", "--json"], capsys)
    cached = json.loads(out)
    assert any(a["name"] == "prefix_cache_token_hit_rate" and a["value"] > 0.1 for a in cached["assumptions"])
    # shorter uncached prompts make prefill cheaper, so more requests fit
    assert cached["prfaas_pd"]["lambda_max"] > no_cache["prfaas_pd"]["lambda_max"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["plan", "--prfaas-gpu", "h9000"], "unknown accelerator 'h9000'; known:"),
        (["plan", "--n-pd", "-3"], "n-pd must be >= 2"),
        (["plan", "--n-prfaas", "0"], "n-prfaas must be > 0"),
        (["plan", "--threshold", "500000"], "outside the length range"),
        (["plan", "--egress-gbps", "-1"], "egress-gbps must be > 0"),
        (["plan", "--scenario", "moon"], "unknown scenario 'moon'"),
        (["plan", "--slo-tokens-per-s", "80"], "needs --bs-max"),
        (["plan", "--workload", "/nonexistent/trace.jsonl"], "existing trace file"),
        (["bandwidth", "--model", "gpt-9", "--length", "1000"], "unknown model 'gpt-9'; known:"),
        (["bandwidth", "--gpus", "0", "--paper-examples"], "must be > 0"),
    ],
)
def test_bad_input_is_one_line_error(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_trace_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n{not json\n')
    code, _, err = run_cli(["plan", "--workload", str(trace)], capsys)
    assert code == 2 and f"{trace}:2" in err


def test_infeasible_slo_from_a_decode_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prfaas.perf.measured import DecodePoint, MeasuredProfile, PrefillPoint, save_profile_json

    slow = MeasuredProfile("slow", "m", "cpu", 1,
                           prefill=(PrefillPoint(1000, 1.0, 1e6), PrefillPoint(2000, 2.5, 2e6),
                                    PrefillPoint(4000, 7.0, 4e6)),
                           decode=(DecodePoint(1, 1000, 0.2), DecodePoint(4, 1000, 0.3), DecodePoint(8, 2000, 0.5)))
    path = tmp_path / "slow.json"
    save_profile_json(slow, path)
    code, _, err = run_cli(["plan", "--pd-profile", str(path), "--profile", str(path)], capsys)
    assert code == 2 and "infeasible" in err


def test_console_script_exit_code() -> None:
    result = subprocess.run([sys.executable, "-m", "prfaas.cli", "plan", "--n-pd", "1"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("prfaas: error:")


def test_plan_for_a_catalog_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["plan", "--model", "kimi-linear-48b-a3b", "--egress-gbps", "10", "--json"], capsys)
    assert code == 0
    obj = json.loads(out)
    names = {a["name"]: a for a in obj["assumptions"]}
    assert names["model"]["value"] == "kimi-linear-48b-a3b"
    assert "Table 3" in names["prefill_roofline_mfu"]["source"]
    assert obj["prfaas_pd"]["egress_gbps"] <= 10.0 + 1e-6  # the link cap is respected at Lambda_max
    # a model whose BF16 weights exceed 8 x 96 GB is reported, not planned
    code, _, err = run_cli(["plan", "--model", "qwen3.5-397b-a17b"], capsys)
    assert code == 2 and "do not fit" in err


def test_plan_config_file_and_flag_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "plan.toml"
    cfg.write_text('[plan]\nn_prfaas = 2\nn_pd = 6\negress_gbps = 50.0\n')
    code, out, _ = run_cli(["plan", "--config", str(cfg), "--json"], capsys)
    obj = json.loads(out)
    assert code == 0 and obj["prfaas_pd"]["n_prfaas"] == 2
    assert obj["prfaas_pd"]["n_p"] + obj["prfaas_pd"]["n_d"] == 6
    assert obj["homogeneous"]["n_p"] + obj["homogeneous"]["n_d"] == 8  # same instance count
    code, out, _ = run_cli(["plan", "--config", str(cfg), "--n-prfaas", "3", "--json"], capsys)
    assert json.loads(out)["prfaas_pd"]["n_prfaas"] == 3
    cfg.write_text('[plan]\nn_prfaas = 2\nbogus = 1\n')
    code, _, err = run_cli(["plan", "--config", str(cfg)], capsys)
    assert code == 2 and f"{cfg}:3" in err and "unknown key" in err


def test_plan_topology_json(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "topologies" / "two-by-two.toml"
    code, out, err = run_cli(["plan", "--topology", str(example), "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert [r["name"] for r in obj["regions"]] == ["us", "eu"]
    assert {lk["link_id"] for lk in obj["links"]} == {"prefill-us->us", "prefill-eu->eu", "prefill-eu->us",
                                                       "prefill-us->eu"}
    assert obj["total_rps"] == pytest.approx(obj["scale"] * (3.0 + 1.5), rel=1e-4)
    assert obj["gain_vs"]["dedicated"] > 1.0 and obj["gain_vs"]["alone"] > obj["gain_vs"]["dedicated"]
    assert obj["binding"]
    assert not any(a["name"] == "egress_gbps" for a in obj["assumptions"])


def test_plan_topology_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[topology.pd]]\nname = "x"\n\n[[topology.links]]\nprfaas = "nope"\npd = "x"\n')
    code, _, err = run_cli(["plan", "--topology", str(bad)], capsys)
    assert code != 0
    assert "bad.toml:5" in err and "unknown PrfaaS cluster 'nope'" in err
    code, _, err = run_cli(["plan", "--size-budget", "4"], capsys)
    assert code != 0 and "--topology" in err
