"""The request driver against scripted nodes: what a node refuses as input (400) or fails on in its engine (500),
at prefill or during decode, is answered once and never retried; a failed transfer (502) is retried. And the model
thread types a failing decode step as an engine error."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from aiohttp import web

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.backend import ENGINE_ERROR, INPUT_ERROR, DecodeEvent, StubBackend
from prfaas.serve.config import default_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.driver import ForcedRoute, GenerationJob, RequestDriver, RequestFailed
from prfaas.serve.messages import ErrorReply, NodeRegister, PrefillReply, SamplingMsg, TokenChunk, encode
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.worker import ModelWorker

ANSWERS = {
    400: web.Response(status=400, body=encode(ErrorReply(kind="bad_request", message="prompt too long for pd-0"))),
    500: web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble"),
    502: web.Response(status=502, body=encode(ErrorReply(kind="transfer", message="peer went away"))),
}


async def _drive(status: int, decode_finish: str = INPUT_ERROR) -> tuple[RequestFailed, int, float]:
    """Run one request against scripted nodes: /prefill answers `status` (200: a reply, then /decode streams one
    chunk with an error and `decode_finish`). Returns the error, the node calls and the failed-attempt count."""
    calls: list[str] = []

    async def prefill(request: web.Request) -> web.Response:
        calls.append(request.path)
        if status == 200:
            reply = PrefillReply(request_id="1-0", first_token=3, num_prompt_tokens=20, num_cached_tokens=0,
                                 queue_s=0.0, prefill_s=0.0, transfer_bytes=1, transfer_s=0.0)
            return web.Response(body=encode(reply))
        answer = ANSWERS[status]
        return web.Response(status=answer.status, body=answer.body)

    async def decode(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        chunk = TokenChunk(request_id="1-0", token_ids=[], finish_reason=decode_finish, error="step raised")
        return web.Response(body=encode(chunk) + b"\n", content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_post("/prefill", prefill)
    app.router.add_post("/decode", decode)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    metrics = GatewayMetrics()
    control = ControlPlane(default_config(), metrics)
    for name, cluster, role in (("prfaas-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pd-0", ClusterKind.PD, Role.PD_PREFILL), ("pd-1", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url=f"http://127.0.0.1:{port}",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=999))
    job = GenerationJob(1, tuple(range(10, 30)), SamplingMsg(max_tokens=4), ForcedRoute.LOCAL)
    try:
        async with aiohttp.ClientSession() as session:
            driver = RequestDriver(control, session)
            with pytest.raises(RequestFailed) as info:
                async for _delta in driver.generate(job):
                    pass
    finally:
        await runner.cleanup()
    failed = sum(s.value for m in metrics.failed_attempts.collect() for s in m.samples if s.name.endswith("_total"))
    return info.value, len(calls), failed


@pytest.mark.parametrize("status", [400, 500])
def test_input_and_engine_errors_are_answered_once_never_retried(status: int) -> None:
    error, calls, failed_attempts = asyncio.run(_drive(status))
    assert (error.status, calls, failed_attempts) == (status, 1, 0)
    assert ("prompt too long" if status == 400 else "prefill on pd-0 failed") in str(error)


def test_a_failed_transfer_is_retried() -> None:
    error, calls, failed_attempts = asyncio.run(_drive(502))
    assert error.status == 503 and calls > 1 and failed_attempts == calls


@pytest.mark.parametrize(("finish", "status"), [(INPUT_ERROR, 400), (ENGINE_ERROR, 500)])
def test_decode_errors_are_typed_and_never_retried(finish: str, status: int) -> None:
    error, calls, failed_attempts = asyncio.run(_drive(200, finish))
    assert (error.status, calls, failed_attempts) == (status, 2, 0)  # one prefill, one decode


class _FailingStepBackend(StubBackend):
    def decode_step(self) -> list[DecodeEvent]:
        raise RuntimeError("invalid multinomial distribution")


def test_a_failing_decode_step_ends_its_requests_as_engine_errors() -> None:
    events: list[DecodeEvent] = []
    done = threading.Event()

    def on_events(batch: list[DecodeEvent]) -> None:
        events.extend(batch)
        done.set()

    backend = _FailingStepBackend()
    worker = ModelWorker(backend, max_batch=2, on_events=on_events)
    worker.start()
    try:
        worker.admit("r0", bytearray(3), 1, SamplingMsg(max_tokens=4))
        assert done.wait(10)
    finally:
        worker.stop()
    assert [(e.request_id, e.finish_reason) for e in events] == [("r0", ENGINE_ERROR)]
    assert "invalid multinomial distribution" in (events[0].error or "")
