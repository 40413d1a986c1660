"""Shared test settings: no hub access, bounded runs, the vendored trace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
MOONCAKE_TRACE = REPO_ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"


@pytest.fixture(scope="session")
def mooncake_trace() -> Path:
    """The vendored Mooncake conversation trace (Apache-2.0, see data/traces/NOTICE.md)."""
    assert MOONCAKE_TRACE.exists(), f"vendored trace missing: {MOONCAKE_TRACE}"
    return MOONCAKE_TRACE
