"""The connector's scheduler half (runs in vLLM's engine-core process): which requests send or load, and when.

A prefill request (`SendParams`) is streamed on the step that completes its prompt (chunked prefill: the last
chunk; earlier chunks' positions are read from the cache then too). A decode request (`RecvParams`) asks vLLM to
treat its first `num_tokens` positions as external: vLLM allocates their blocks, parks the request until the
worker half reports the load done (or failed), then computes only what follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prfaas.integrations.vllm.meta import LoadTask, SendTask, StepMeta
from prfaas.integrations.vllm.params import PARAMS_KEY, ParamsError, RecvParams, SendParams, parse

log = logging.getLogger("vllm.prfaas")  # under vLLM's logger: its handlers and level


@dataclass(slots=True)
class _Send:
    params: SendParams
    request: Any
    started: bool = False


def _parse(request: Any) -> SendParams | RecvParams | None:
    try:
        return parse(getattr(request, "kv_transfer_params", None))
    except ParamsError as exc:  # the engine must not crash on a bad request: it runs without a transfer
        log.warning("prfaas connector: request %s: %s (no transfer)", request.request_id, exc)
        return None


class SchedulerSide:
    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._sends: dict[str, _Send] = {}
        self._loads: list[LoadTask] = []
        self._failed: set[str] = set()  # requests whose load failed: vLLM recomputes them, never waits again
        self._kv_cache_manager: Any = None

    def bind(self, kv_cache_manager: Any) -> None:
        self._kv_cache_manager = kv_cache_manager

    def on_new_request(self, request: Any) -> None:
        params = _parse(request)
        if isinstance(params, SendParams):
            self._sends[request.request_id] = _Send(params, request)

    def matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        params = _parse(request)
        if not isinstance(params, RecvParams) or request.request_id in self._failed:
            return 0, False
        n = params.num_tokens
        if n >= request.num_tokens:
            log.warning("prfaas connector: request %s loads %d positions of a %d-token prompt: at least one must "
                        "be computed here; recomputing", request.request_id, n, request.num_tokens)
            return 0, False
        if num_computed_tokens >= n:
            return 0, False
        if num_computed_tokens < params.skip_tokens:
            log.warning("prfaas connector: request %s: the transfer starts at %d but this instance holds only %d "
                        "positions; recomputing", request.request_id, params.skip_tokens, num_computed_tokens)
            return 0, False
        return n - num_computed_tokens, True

    def after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        if num_external_tokens <= 0:
            return
        params = _parse(request)
        if not isinstance(params, RecvParams):
            return
        block_ids = tuple(tuple(int(b) for b in group) for group in blocks.get_block_ids())
        start = params.num_tokens - num_external_tokens
        self._loads.append(LoadTask(request.request_id, params.transfer_id, start, params.num_tokens, block_ids,
                                    params.wait_s))

    def build_meta(self, scheduler_output: Any) -> StepMeta:
        meta = StepMeta(loads=self._loads)
        self._loads = []
        scheduled: dict[str, int] = scheduler_output.num_scheduled_tokens
        for req_id, send in self._sends.items():
            if send.started or not scheduled.get(req_id):
                continue
            request = send.request
            n = request.num_prompt_tokens
            if request.num_computed_tokens + scheduled[req_id] < n:
                continue  # an earlier chunk of a chunked prefill
            skip = min(send.params.skip_tokens, n - 1)
            start = skip - skip % self.block_size
            block_ids = tuple(tuple(int(b) for b in group) for group in self._kv_cache_manager.get_block_ids(req_id))
            meta.sends.append(SendTask(req_id, send.params.transfer_id, send.params.peer_host, send.params.peer_port,
                                       start, n, block_ids))
            send.started = True
        return meta

    def load_failed(self, req_ids: set[str]) -> None:
        self._failed |= req_ids

    def finished(self, request: Any) -> dict[str, Any] | None:
        """The prfaas part of the response's `kv_transfer_params` (the state was copied out: blocks free now)."""
        self._failed.discard(request.request_id)
        send = self._sends.pop(request.request_id, None)
        if send is None:
            return None
        return {PARAMS_KEY: {"transfer_id": send.params.transfer_id, "num_tokens": request.num_prompt_tokens,
                             "streamed": send.started}}
