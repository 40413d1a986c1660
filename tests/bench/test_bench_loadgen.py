"""The load generator against a scripted loopback SSE server: every way a request can end is classified."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from prfaas.bench.loadgen import LoadOptions, ProgressBar, drive
from prfaas.bench.records import FailureKind, RequestStatus
from prfaas.bench.workload import BenchRequest

BEHAVIOURS = ("ok", "error_event", "truncated", "http_503", "hang", "reset")
pytestmark = pytest.mark.network


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(text: str, finish: str | None = None) -> bytes:
    return _event({"id": "cmpl-7", "choices": [{"index": 0, "text": text, "finish_reason": finish}]})


async def _completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    behaviour = BEHAVIOURS[body["prompt"][0]]
    if behaviour == "http_503":
        return web.json_response({"error": {"message": "no route"}}, status=503)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk("a"))
    if behaviour == "ok":
        await asyncio.sleep(0.05)
        await resp.write(_chunk("b"))
        await resp.write(_chunk("c", "length"))
        await resp.write(_event({"id": "cmpl-7", "choices": [], "usage": {"completion_tokens": 3}}))
        await resp.write(b"data: [DONE]\n\n")
    elif behaviour == "error_event":
        await resp.write(_event({"error": {"message": "decode node lost"}}))
        await resp.write(b"data: [DONE]\n\n")
    elif behaviour == "hang":
        await asyncio.sleep(6)  # past the 3 s client deadline
    elif behaviour == "reset":
        assert request.transport is not None
        request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


async def _serve() -> tuple[web.AppRunner, int]:
    """The scripted SSE server on a free loopback port."""
    app = web.Application()
    app.router.add_post("/v1/completions", _completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def _run() -> list[object]:
    runner, port = await _serve()
    try:
        requests = [BenchRequest(i, 0.01 * i, (i, 5, 6), 3) for i in range(len(BEHAVIOURS))]
        seen: list[str] = []
        bar = ProgressBar(len(requests), write=seen.append)
        records = await asyncio.wait_for(
            drive(f"http://127.0.0.1:{port}", requests, LoadOptions(max_concurrency=3, request_timeout_s=3.0,
                                                                     keep_text=True), bar), timeout=60)
        assert len(seen) == len(requests) and seen[-1].endswith("\n") and "6/6" in seen[-1]
        return list(records)
    finally:
        await runner.cleanup()


def test_every_ending_is_classified() -> None:
    records = asyncio.run(_run())
    by = {BEHAVIOURS[r.index]: r for r in records}  # type: ignore[attr-defined]
    ok = by["ok"]
    assert ok.status is RequestStatus.COMPLETED and ok.completion_tokens == 3 and ok.text == "abc"
    assert ok.gateway_id == 7 and ok.ttft_s is not None and ok.tpot_s is not None
    assert ok.latency_s is not None and ok.latency_s >= ok.ttft_s + 0.04
    assert ok.tpot_s == pytest.approx((ok.latency_s - ok.ttft_s) / 2)
    assert by["error_event"].status is RequestStatus.FAILED
    assert by["error_event"].failure is FailureKind.STREAM_ERROR and by["error_event"].error == "decode node lost"
    assert by["http_503"].status is RequestStatus.FAILED and by["http_503"].http_status == 503
    assert by["http_503"].failure is FailureKind.HTTP_STATUS and "no route" in (by["http_503"].error or "")
    assert by["truncated"].status is RequestStatus.LOST  # a clean end without a finish is silent loss
    assert by["hang"].status is RequestStatus.LOST and "within 3s" in (by["hang"].error or "")
    assert by["reset"].status is RequestStatus.FAILED and by["reset"].failure is FailureKind.CONNECTION


def test_time_budget_bounds_what_is_sent() -> None:
    async def run() -> int:
        app = web.Application()
        app.router.add_post("/v1/completions", _completions)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            requests = [BenchRequest(i, 0.3 * i, (0, 1), 3) for i in range(10)]
            records = await drive(f"http://127.0.0.1:{port}", requests, LoadOptions(time_budget_s=0.5))
            assert all(r.status is RequestStatus.COMPLETED for r in records)
            return len(records)
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == 2  # arrivals at 0.0 and 0.3 s only


async def _run_with_stop() -> list[object]:
    runner, port = await _serve()
    try:
        hang, ok = BEHAVIOURS.index("hang"), BEHAVIOURS.index("ok")
        # Two hanging streams sent at 0 s and 0.5 s and one that finishes: the run stops 1.5 s after its start,
        # so the first is cut after ~1.5 s and the second after ~1.0 s, though each could wait 30 s.
        requests = [BenchRequest(0, 0.0, (hang, 1), 3), BenchRequest(1, 0.5, (hang, 2), 3),
                    BenchRequest(2, 0.6, (ok, 3), 3)]
        opts = LoadOptions(max_concurrency=3, request_timeout_s=30.0, stop_after_s=1.5)
        return list(await asyncio.wait_for(drive(f"http://127.0.0.1:{port}", requests, opts), timeout=20))
    finally:
        await runner.cleanup()


def test_stop_after_cuts_every_running_stream_at_the_runs_deadline() -> None:
    records = asyncio.run(_run_with_stop())
    first, second, done = records  # type: ignore[misc]
    assert done.status is RequestStatus.COMPLETED
    for rec in (first, second):
        assert rec.status is RequestStatus.LOST and rec.error.startswith("no end of stream within")
    # each stream's own limit is what was left of the run at its send time
    limit_first = float(first.error.split("within ")[1].rstrip("s"))
    limit_second = float(second.error.split("within ")[1].rstrip("s"))
    assert limit_first == pytest.approx(1.5, abs=0.05) and limit_second == pytest.approx(1.0, abs=0.2)
