"""Serve test fixtures: one tiny deployment (gateway + PrfaaS + PD-P + PD-D processes) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import TINY_TOML, ready_deployment

from prfaas.serve.launcher import Launcher


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("deploy"), TINY_TOML) as launcher:
        yield launcher
