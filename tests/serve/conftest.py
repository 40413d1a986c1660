"""Serve test fixtures: one tiny deployment (gateway + PrfaaS + PD-P + PD-D processes) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import tiny_config_file

from prfaas.serve.config import load_config
from prfaas.serve.launcher import Launcher


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
