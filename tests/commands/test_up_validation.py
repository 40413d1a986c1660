"""`prfaas up` checks the whole configuration and the model once, before any process starts: bad input is one
line on stderr, exit status 2, and nothing started or written (no run folder, nothing in the current directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from prfaas.core.errors import ConfigError
from prfaas.serve.config import check_config, default_config, load_config, write_resolved


def _prfaas(args: list[str], cwd: Path, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_STATE_HOME": str(cwd / "state")}
    return subprocess.run([sys.executable, "-m", "prfaas.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("prfaas: error: ")
    return lines[0].removeprefix("prfaas: error: ")


def _nothing_written(cwd: Path, run_dir: Path, inputs: tuple[str, ...] = ()) -> None:
    """No run folder, no state directory, nothing in the current directory but the test's own inputs."""
    assert not run_dir.exists()
    assert {p.name for p in cwd.iterdir()} <= set(inputs)


def test_a_port_out_of_range_is_one_line_before_any_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _prfaas(["up", "--port", "80000", "--run-dir", str(run_dir)], tmp_path)
    assert _one_error_line(proc) == "prfaas up: gateway.port: Expected `int` <= 65535, got 80000"
    assert proc.stdout == ""
    _nothing_written(tmp_path, run_dir)


def test_the_cli_reports_what_each_child_would_report(tmp_path: Path) -> None:
    """`check_config` is the same check a child runs on the resolved config.json (message after the source)."""
    base = default_config()
    bad = msgspec.structs.replace(base, gateway=msgspec.structs.replace(base.gateway, port=80000))
    path = write_resolved(bad, tmp_path)
    with pytest.raises(ConfigError) as child:
        load_config(path)
    with pytest.raises(ConfigError) as cli:
        check_config(bad, str(path))
    assert str(cli.value) == str(child.value)
    no_decode = msgspec.structs.replace(base, nodes=base.nodes[:2])
    with pytest.raises(ConfigError, match="at least one pd_decode node"):
        check_config(no_decode)
    assert check_config(base) == base


def test_an_unsupported_checkpoint_is_the_profile_commands_one_line_error(tmp_path: Path) -> None:
    from prfaas.engine.hf import transformers

    checkpoint = tmp_path / "jamba"
    transformers.JambaConfig(num_hidden_layers=2, hidden_size=64).save_pretrained(str(checkpoint))
    run_dir = tmp_path / "run"
    up = _one_error_line(_prfaas(["up", "--model", str(checkpoint), "--run-dir", str(run_dir)], tmp_path))
    assert up.startswith("unknown model type 'jamba'; known: ")
    _nothing_written(tmp_path, run_dir, inputs=("jamba",))
    profile = _prfaas(["profile", "--model", str(checkpoint), "--out", str(tmp_path / "p.json")], tmp_path)
    assert _one_error_line(profile) == up


def test_a_model_that_is_no_name_and_no_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    message = _one_error_line(_prfaas(["up", "--model", "no-such-model", "--run-dir", str(run_dir)], tmp_path))
    assert message.startswith("unknown model 'no-such-model'; known: ")
    _nothing_written(tmp_path, run_dir)
