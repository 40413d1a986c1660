"""Fixtures of the simulator tests; helpers live in `simkit`."""

from __future__ import annotations

import pytest
from simkit import small_deployment

from prfaas.sim.deployment import Deployment


@pytest.fixture
def deployment() -> Deployment:
    return small_deployment()
