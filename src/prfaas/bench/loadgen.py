"""The load generator: send a workload to the gateway's OpenAI API and time every request from its SSE stream.

    records = await drive(url, requests, LoadOptions(max_concurrency=16, time_budget_s=120))

Each request is a streamed `/v1/completions` call (token-id prompt, temperature 0, `include_usage`). TTFT is
the time to the first content chunk, TPOT (last - first chunk) / (completion tokens - 1), and the status is
classified as in `records` (COMPLETED / FAILED with a kind / LOST). Bounded in every dimension: at most
`max_concurrency` requests in flight, no request sent after `time_budget_s`, and each request abandoned (LOST)
after `request_timeout_s` or, with `stop_after_s`, when the run reaches that age (a saturated run's backlog is
not drained). A progress callback sees each finished record.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from prfaas.bench.records import FailureKind, RequestRecord, RequestStatus
from prfaas.bench.workload import BenchRequest

ProgressFn = Callable[[RequestRecord], None]


@dataclass(frozen=True, slots=True)
class LoadOptions:
    max_concurrency: int = 32
    time_budget_s: float = 600.0  # no request is sent after this many seconds
    request_timeout_s: float = 300.0  # a request silent this long is abandoned and counted LOST
    stop_after_s: float | None = None  # every request still running this long after the start is abandoned
    model: str = "default"
    keep_text: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _StreamState:
    """What one SSE stream has shown so far."""

    first_s: float | None = None
    last_s: float | None = None
    finish: str | None = None
    done: bool = False
    error: str | None = None
    completion_tokens: int | None = None
    chunks: int = 0
    text: str = ""
    gateway_id: int | None = None  # the gateway's request id (joins its /admin/requests log)

    def feed(self, payload: bytes, now_s: float) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        event: dict[str, Any] = json.loads(payload)
        if "error" in event:
            self.error = str(event["error"].get("message", event["error"]))
            return
        if self.gateway_id is None and isinstance(event.get("id"), str):
            self.gateway_id = _id_number(event["id"])
        if event.get("usage"):
            self.completion_tokens = int(event["usage"].get("completion_tokens", 0))
        for choice in event.get("choices", ()):
            if self.first_s is None:
                self.first_s = now_s
            self.last_s = now_s
            self.chunks += 1
            self.text += choice.get("text") or ""
            if choice.get("finish_reason") is not None:
                self.finish = str(choice["finish_reason"])


def _id_number(rid: str) -> int | None:
    tail = rid.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _body(req: BenchRequest, opts: LoadOptions) -> dict[str, Any]:
    return {"model": opts.model, "prompt": list(req.prompt_tokens), "max_tokens": req.max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}


def _record(req: BenchRequest, send_s: float, start: float, state: _StreamState, opts: LoadOptions,
            **extra: Any) -> RequestRecord:
    ttft = None if state.first_s is None else state.first_s - start
    latency = None if state.last_s is None else state.last_s - start
    tokens = state.completion_tokens if state.completion_tokens is not None else state.chunks
    tpot = None
    if state.first_s is not None and state.last_s is not None and tokens > 1:
        tpot = (state.last_s - state.first_s) / (tokens - 1)
    return RequestRecord(index=req.index, send_s=send_s, prompt_tokens=len(req.prompt_tokens),
                         max_tokens=req.max_tokens, ttft_s=ttft, latency_s=latency, completion_tokens=tokens,
                         tpot_s=tpot, text=state.text if opts.keep_text else None, gateway_id=state.gateway_id,
                         **extra)


async def _read_stream(resp: aiohttp.ClientResponse, state: _StreamState) -> None:
    async for line in resp.content:
        line = line.strip()
        if line.startswith(b"data:"):
            state.feed(line[5:].strip(), time.monotonic())
        if state.done:
            return


async def send_one(session: aiohttp.ClientSession, url: str, req: BenchRequest, opts: LoadOptions,
                   t0: float) -> RequestRecord:
    """One streamed request, classified (never raises for a network or server failure)."""
    start = time.monotonic()
    send_s = start - t0
    state = _StreamState()
    limit_s = opts.request_timeout_s
    if opts.stop_after_s is not None:
        limit_s = max(0.001, min(limit_s, opts.stop_after_s - send_s))
    timeout = aiohttp.ClientTimeout(total=limit_s, sock_connect=min(10.0, limit_s))
    try:
        async with session.post(f"{url}/v1/completions", json=_body(req, opts), timeout=timeout,
                                headers=dict(opts.headers)) as resp:
            if resp.status != 200:
                text = (await resp.read())[:300].decode("utf-8", "replace")
                return _record(req, send_s, start, state, opts, status=RequestStatus.FAILED,
                               http_status=resp.status, failure=FailureKind.HTTP_STATUS, error=text)
            await _read_stream(resp, state)
    except TimeoutError:
        return _record(req, send_s, start, state, opts, status=RequestStatus.LOST, http_status=200,
                       error=f"no end of stream within {limit_s:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return _record(req, send_s, start, state, opts, status=RequestStatus.FAILED,
                       failure=FailureKind.CONNECTION, error=repr(exc)[:300])
    if state.error is not None:
        return _record(req, send_s, start, state, opts, status=RequestStatus.FAILED, http_status=200,
                       failure=FailureKind.STREAM_ERROR, error=state.error)
    if state.finish is None or not state.done:
        return _record(req, send_s, start, state, opts, status=RequestStatus.LOST, http_status=200,
                       error="stream ended without a finish reason")
    return _record(req, send_s, start, state, opts, status=RequestStatus.COMPLETED, http_status=200)


async def drive(url: str, requests: Sequence[BenchRequest], opts: LoadOptions,
                progress: ProgressFn | None = None) -> list[RequestRecord]:
    """Send `requests` at their arrival times (bounded); return one record per request sent, by index."""
    records: list[RequestRecord] = []
    gate = asyncio.Semaphore(opts.max_concurrency)
    connector = aiohttp.TCPConnector(limit=opts.max_concurrency + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.monotonic()

        async def one(req: BenchRequest) -> None:
            try:
                record = await send_one(session, url, req, opts, t0)
            finally:
                gate.release()
            records.append(record)
            if progress is not None:
                progress(record)

        tasks: list[asyncio.Task[None]] = []
        for req in requests:
            delay = req.arrival_s - (time.monotonic() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - t0 > opts.time_budget_s:
                break
            await gate.acquire()
            tasks.append(asyncio.create_task(one(req)))
        await asyncio.gather(*tasks)
    return sorted(records, key=lambda r: r.index)


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class ProgressBar:
    """A one-line progress bar on a stream (stderr by default), redrawn as records finish."""

    def __init__(self, total: int, label: str = "bench", width: int = 30,
                 write: Callable[[str], None] | None = None) -> None:
        self.total = total
        self.label = label
        self.width = width
        self.done = 0
        self.failed = 0
        self._write = write or _stderr

    def __call__(self, record: RequestRecord) -> None:
        self.done += 1
        self.failed += record.status is not RequestStatus.COMPLETED
        filled = self.width * self.done // max(self.total, 1)
        end = "\n" if self.done >= self.total else ""
        self._write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
                    f" not completed: {self.failed}{end}")
