"""Helpers for engine tests: random prompts, in-process decode, and one reusable decode child process.

The child stands in for a decode node: it receives a state's layout, pre-allocates the tensors
(`HybridState.allocate`), receives the raw bytes straight into their views over a pipe, and decodes with a
`DecodeWorker`. It is started once per test session (imports cost seconds) and keeps models loaded by reference.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from prfaas.engine.decode import DecodeWorker
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.sampling import SamplingParams
from prfaas.engine.state import HybridState
from prfaas.engine.tiny import TINY_CONFIGS

CHILD_TIMEOUT_S = 120.0
FAMILIES = tuple(TINY_CONFIGS)


class TinyModels:
    """Tiny checkpoints of every family, loaded by path on first use."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._models: dict[str, LoadedModel] = {}

    def __getitem__(self, family: str) -> LoadedModel:
        if family not in self._models:
            self._models[family] = load_model(str(self.paths[family]))
        return self._models[family]


def random_prompt(num_tokens: int, vocab_size: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (num_tokens,), generator=generator).tolist()


def decode_all(worker: DecodeWorker, first_tokens: dict[str, int]) -> dict[str, list[int]]:
    """Step `worker` until empty; every request's tokens, first token included."""
    tokens = {rid: [t] for rid, t in first_tokens.items()}
    for _ in range(10_000):
        if not worker.num_running:
            return tokens
        for event in worker.step():
            tokens[event.request_id].append(event.token_id)
    raise AssertionError("decode did not finish")


def decode_in_process(loaded: LoadedModel, state: HybridState, first_token: int, params: SamplingParams) -> list[int]:
    worker = DecodeWorker(loaded, max_batch_size=1)
    if worker.add("r", state, first_token, params) is not None:
        return [first_token]
    return decode_all(worker, {"r": first_token})["r"]


def _load(ref: str, seed: int) -> LoadedModel:
    return load_model(ref, seed=seed, num_threads=1)


def _child_main(conn: Connection) -> None:
    models: dict[str, LoadedModel] = {}
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, ref, seed, layout, first_token, params = message
        state = HybridState.allocate(layout)
        for view in state.tensor_views():
            conn.recv_bytes_into(view)
        try:
            if ref not in models:
                models[ref] = _load(ref, seed)
            conn.send(("tokens", decode_in_process(models[ref], state, first_token, params)))
        except Exception as exc:  # report to the parent; the child keeps serving
            conn.send(("error", type(exc).__name__, str(exc)))


class DecodeChild:
    """A decode process reused across tests."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(target=_child_main, args=(child_conn,), daemon=True)
        self._process.start()

    def decode(
        self, ref: str, state: HybridState, first_token: int, params: SamplingParams, seed: int = 0
    ) -> tuple[Any, ...]:
        """Ship `state` to the child and decode there: ("tokens", list) or ("error", type, message)."""
        self._conn.send(("decode", ref, seed, state.layout(), first_token, params))
        for view in state.tensor_views():
            self._conn.send_bytes(view)
        if not self._conn.poll(CHILD_TIMEOUT_S):
            raise TimeoutError("decode child did not answer")
        reply: tuple[Any, ...] = self._conn.recv()
        return reply

    def close(self) -> None:
        try:
            self._conn.send(("stop",))
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
