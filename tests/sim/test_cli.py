"""`prfaas simulate` end to end, in process: outputs on success, one-line errors and exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.cli import main

TINY = """
seed = 3
duration_s = 120.0

[cluster]
n_prfaas = 2
n_pd_prefill = 2
n_pd_decode = 2

[workload]
output_tokens = 64

[workload.arrivals]
kind = "poisson"
rate_rps = 1.0
"""


def _write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prfaas: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_config_run_writes_records_summary_config_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--config", str(cfg), "--policy", "prfaas", "--policy", "homogeneous", "--out", str(out),
              "--json"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"prfaas", "homogeneous"}
    assert summary["homogeneous"]["egress_gbps_mean"] == 0.0
    assert summary["prfaas"]["num_finished"] == summary["prfaas"]["num_requests"] > 50
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "summary.json", "records-prfaas.jsonl", "records-homogeneous.jsonl",
            "ttft_cdf.png", "egress-prfaas.png", "roles-prfaas.png"} <= written
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["seed"] == 3 and resolved["link"]["capacity_gbps"] == 100.0  # defaults are resolved
    lines = (out / "records-prfaas.jsonl").read_text().splitlines()
    assert len(lines) == summary["prfaas"]["num_requests"]
    first = json.loads(lines[0])
    assert {"arrival_s", "route", "prefill_queue_s", "prefill_s", "transfer_s", "ttft_s", "tpot_s",
            "finish_s"} <= set(first)


def test_unknown_policy_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, TINY + '\n[policy]\nname = "round-robin"\n')
    err = _fails(["simulate", "--config", str(cfg)], capsys)
    assert "policy.name" in err and "round-robin" in err and "prfaas-cache-aware" in err and ":" in err
    err = _fails(["simulate", "--config", str(_write(tmp_path, TINY, "ok.toml")), "--policy", "nope"], capsys)
    assert "unknown policy 'nope'" in err


def test_negative_capacity_names_key_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, TINY + "\n[link]\ncapacity_gbps = -10.0\n")
    err = _fails(["simulate", "--config", str(cfg)], capsys)
    line = TINY.count("\n") + 3
    assert f"scenario.toml:{line}: link.capacity_gbps" in err


def test_empty_trace_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    cfg = _write(tmp_path, TINY.replace("[workload]\n", '[workload]\nkind = "trace"\ntrace = "empty.jsonl"\n'))
    err = _fails(["simulate", "--config", str(cfg)], capsys)
    assert "empty.jsonl" in err


@pytest.mark.parametrize(("events", "needle"), [
    ('[[events]]\ntime_s = 10.0\nkind = "explode"\n', "events[0].kind"),
    ('[[events]]\ntime_s = 10.0\nkind = "link_capacity"\n', "needs capacity_gbps"),
    ('[[events]]\ntime_s = -1.0\nkind = "node_fail"\ninstance = "prfaas-0"\n', "events[0].time_s"),
    ('[[events]]\ntime_s = 5.0\nkind = "node_fail"\ninstance = "prfaas-9"\n', "unknown instance 'prfaas-9'"),
    ('[[events]]\ntime_s = 5.0\nkind = "node_fail"\ninstance = "prfaas-0"\ncolour = "red"\n', "events[0].colour"),
    ("[[events]\ntime_s = 5.0\n", "TOML syntax error"),
])
def test_malformed_event_script_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str], events: str,
                                            needle: str) -> None:
    cfg = _write(tmp_path, TINY + "\n" + events)
    err = _fails(["simulate", "--config", str(cfg)], capsys)
    assert needle in err


def test_scenario_and_config_are_exclusive_and_scenarios_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert "exactly one" in _fails(["simulate"], capsys)
    assert "unknown scenario 'moon'" in _fails(["simulate", "--scenario", "moon"], capsys)
    assert "cannot read" in _fails(["simulate", "--config", "/nonexistent/x.toml"], capsys)


@pytest.mark.parametrize("arrivals", [
    'kind = "burst"\nbase_rps = 0.5\nburst_rps = 4.0\nperiod_s = 60.0\nburst_s = 10.0\n',
    'kind = "diurnal"\nmean_rps = 1.0\namplitude_rps = 0.9\nperiod_s = 120.0\n',
    'kind = "step"\nstart_times_s = [0.0, 60.0]\nstep_rates_rps = [0.2, 3.0]\n',
])
def test_modulated_arrivals_follow_their_rate(tmp_path: Path, arrivals: str) -> None:
    from prfaas.sim.build import build_inputs
    from prfaas.sim.config import load_config

    text = TINY.replace('kind = "poisson"\nrate_rps = 1.0\n', arrivals)
    inputs = build_inputs(load_config(_write(tmp_path, text)))
    times = [r.arrival_s for r in inputs.requests]
    assert times == sorted(times) and times[-1] < 120.0
    if "burst" in arrivals:  # 10 s bursts at 4/s vs 50 s at 0.5/s: bursts hold most arrivals
        in_burst = sum((t % 60.0) < 10.0 for t in times)
        assert in_burst > 0.5 * len(times)
    if "step" in arrivals:
        assert sum(t >= 60.0 for t in times) > 5 * sum(t < 60.0 for t in times)
