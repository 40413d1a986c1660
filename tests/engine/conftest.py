"""Engine test fixtures: tiny checkpoints of every family (saved once per session), the default model, and one
reusable decode child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from engine_helpers import FAMILIES, DecodeChild, TinyModels

from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.tiny import save_tiny_checkpoint


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: save_tiny_checkpoint(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_models(tiny_paths: dict[str, Path]) -> TinyModels:
    return TinyModels(tiny_paths)


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    return load_model("default")


@pytest.fixture(scope="session")
def decode_child() -> Iterator[DecodeChild]:
    child = DecodeChild()
    try:
        yield child
    finally:
        child.close()
