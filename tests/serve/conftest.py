"""Serve test fixtures: one tiny deployment (gateway + PrfaaS + PD-P + PD-D processes) per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prfaas.serve.config import load_config
from prfaas.serve.launcher import Launcher

TINY_TOML = """
[model]
num_layers = 4
hidden_size = 128
max_batch_size = 32

[gateway]
port = 0
allow_debug_hooks = true
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
route_wait_s = 30.0

[policy]
threshold_tokens = 256
rebalance = false
"""


def tiny_config_file(directory: Path, extra: str = "") -> Path:
    path = directory / "deploy.toml"
    path.write_text(TINY_TOML + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    root = tmp_path_factory.mktemp("deploy")
    launcher = Launcher(load_config(tiny_config_file(root)), root / "run")
    launcher.start()
    try:
        launcher.wait_ready(timeout_s=120)
        yield launcher
    finally:
        launcher.stop()
