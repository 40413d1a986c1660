"""Engine test fixtures: tiny checkpoints of every family (saved once per session), the default model, and one
reusable decode child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine_helpers import DecodeChild
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.tiny import TINY_CONFIGS, save_tiny_checkpoint

FAMILIES = tuple(TINY_CONFIGS)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: save_tiny_checkpoint(family, root / family) for family in FAMILIES}


class TinyModels:
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._models: dict[str, LoadedModel] = {}

    def __getitem__(self, family: str) -> LoadedModel:
        if family not in self._models:
            self._models[family] = load_model(str(self.paths[family]))
        return self._models[family]


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
