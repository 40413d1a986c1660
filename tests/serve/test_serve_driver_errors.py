"""The request driver against scripted nodes: what a node refuses as input (400) or fails on in its engine (500) is
answered once and never retried; a failed transfer (502) is retried."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import default_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.driver import ForcedRoute, GenerationJob, RequestDriver, RequestFailed
from prfaas.serve.messages import ErrorReply, NodeRegister, SamplingMsg, encode
from prfaas.serve.metrics import GatewayMetrics

ANSWERS = {
    400: web.Response(status=400, body=encode(ErrorReply(kind="bad_request", message="prompt too long for pd-0"))),
    500: web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble"),
    502: web.Response(status=502, body=encode(ErrorReply(kind="transfer", message="peer went away"))),
}


async def _drive(status: int) -> tuple[RequestFailed, int, float]:
    calls: list[str] = []

    async def prefill(request: web.Request) -> web.Response:
        calls.append(request.path)
        answer = ANSWERS[status]
        return web.Response(status=answer.status, body=answer.body)

    app = web.Application()
    app.router.add_post("/prefill", prefill)
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
