"""Fixtures for the workload tests: where the vendored Mooncake trace and the Azure format fixture live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prfaas.workload.request import WorkloadRequest
from prfaas.workload.traces import read_mooncake_jsonl

DATA_DIR = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[2]
MOONCAKE_NAME = "mooncake_conversation_trace.jsonl"


def _trace_dirs() -> list[Path]:
    dirs = [REPO_ROOT / "data" / "traces"]
    if "PRFAAS_TRACE_DIR" in os.environ:
        dirs.insert(0, Path(os.environ["PRFAAS_TRACE_DIR"]))
    return dirs


@pytest.fixture(scope="session")
def mooncake_path() -> Path:
    for d in _trace_dirs():
        if (d / MOONCAKE_NAME).is_file():
            return d / MOONCAKE_NAME
    raise AssertionError(f"{MOONCAKE_NAME} is vendored under data/traces/ and must be present")


@pytest.fixture(scope="session")
def mooncake_requests(mooncake_path: Path) -> list[WorkloadRequest]:
    return read_mooncake_jsonl(mooncake_path)


@pytest.fixture()
def azure_fixture_path() -> Path:
    return DATA_DIR / "azure_format_fixture.csv"
