"""Gateway side of cancellation: a request nobody waits for any more stops everywhere.

    result = await run_until_cancelled(watch, gw.run(job))            # non-streamed; `Cancelled` when it ends
    async for chunk in stream_until_cancelled(watch, sse_chunks): ...  # streamed: the same, between chunks
    watch = CancelWatch(request, registry, request_id, deadline_s)     # what ends a request early
    registry.abort(request_id)                                         # explicit abort (POST /admin/requests/.../abort)

A request ends early for one `CancelReason`: its client went away (the ASGI `http.disconnect` arrives, whether
the response has started or not), its gateway deadline passed (`gateway.request_deadline_s`), or an operator
aborted it. The generation task is then cancelled; `RequestDriver.generate` sees the cancellation and sends
`/abort` for its live attempt to the nodes involved (`abort_attempt`), which drop it from the prefill queue, stop
its prefill within one layer, abort its transfer and remove it from the decode batch within one decode step.
Each is counted in `prfaas_requests_cancelled_total{reason}` and logged at INFO, never as a node failure. An attempt
that timed out is aborted the same way before any retry (`reason="attempt_timeout"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from prfaas.serve.messages import AbortRequest, encode

if TYPE_CHECKING:
    from starlette.requests import Request

    from prfaas.serve.cluster import NodeRecord

T = TypeVar("T")
_log = logging.getLogger(__name__)
ABORT_TIMEOUT_S = 10.0
_background: set[asyncio.Task[Any]] = set()


class CancelReason(enum.Enum):
    CLIENT_GONE = "client_disconnect"
    DEADLINE = "deadline"
    ABORTED = "abort"
    ATTEMPT_TIMEOUT = "attempt_timeout"  # one attempt (not the request) was aborted before a retry


class Cancelled(Exception):
    def __init__(self, reason: CancelReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def cancelled_counter(registry: CollectorRegistry) -> Counter:
    return Counter("prfaas_requests_cancelled", "Requests (or attempts, reason attempt_timeout) ended early, by "
                   "reason: client_disconnect, deadline, abort, attempt_timeout", ["reason"], registry=registry)


class AbortRegistry:
    """Request id -> the event an explicit abort sets (only requests running now)."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._events)

    def request_ids(self) -> list[int]:
        return sorted(self._events)

    def open(self, request_id: int) -> asyncio.Event:
        event = self._events[request_id] = asyncio.Event()
        return event

    def close(self, request_id: int) -> None:
        self._events.pop(request_id, None)

    def abort(self, request_id: int) -> bool:
        event = self._events.get(request_id)
        if event is not None:
            event.set()
        return event is not None


@dataclass
class CancelWatch:
    request: Request
    registry: AbortRegistry
    request_id: int
    deadline_s: float | None = None
    _aborted: asyncio.Event | None = field(default=None, init=False)

    def open(self) -> None:
        """Register for explicit aborts (when the request starts running; `close` when it ends)."""
        self._aborted = self.registry.open(self.request_id)

    def close(self) -> None:
        self.registry.close(self.request_id)

    async def wait(self) -> Cancelled:
        """Return (never raise) why the request must end, when that happens."""
        assert self._aborted is not None, "open() first"
        waits = {asyncio.ensure_future(self._disconnect()): CancelReason.CLIENT_GONE,
                 asyncio.ensure_future(self._aborted.wait()): CancelReason.ABORTED}
        try:
            done, _ = await asyncio.wait(waits, timeout=self.deadline_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if not done:
            return Cancelled(CancelReason.DEADLINE, f"request deadline of {self.deadline_s:.1f}s passed")
        reason = waits[done.pop()]
        if reason is CancelReason.CLIENT_GONE:
            return Cancelled(reason, "client went away")
        return Cancelled(reason, "aborted by an operator")

    async def _disconnect(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                return
            await asyncio.sleep(0.05)  # a stray body message after the body was read: keep listening


async def run_until_cancelled(watch: CancelWatch, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or `Cancelled` (with `work` cancelled and awaited) when `watch` fires first."""
    watch.open()
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(watch.wait())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        await _cancel(task)
        raise watcher.result()
    finally:
        watcher.cancel()
        if not task.done():
            await _cancel(task)
        watch.close()


async def stream_until_cancelled(watch: CancelWatch, chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """`chunks`, ended by `Cancelled` (the pending chunk cancelled) when `watch` fires between or during them."""
    watch.open()
    watcher = asyncio.ensure_future(watch.wait())
    step: asyncio.Future[tuple[bool, Any]] | None = None
    try:
        while True:
            step = asyncio.ensure_future(_next(chunks))
            await asyncio.wait({step, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                await _cancel(step)
                raise watcher.result()
            found, chunk = step.result()
            if not found:
                return
            yield chunk
    finally:
        watcher.cancel()
        watch.close()
        if step is not None and not step.done():  # this stream was cancelled itself: so is the chunk it waited for
            await _cancel(step)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await _aclose(chunks)


async def _next(chunks: AsyncIterator[T]) -> tuple[bool, Any]:
    try:
        return True, await chunks.__anext__()
    except StopAsyncIteration:
        return False, None


async def _aclose(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def note_cancelled(counter: Counter, request_name: str, exc: Cancelled) -> None:
    counter.labels(exc.reason.value).inc()
    _log.info("request %s cancelled: %s", request_name, exc)


# --- node side of an attempt's abort (used by `serve.driver`) ------------------------------------------------
@dataclass
class LiveAttemptRef:
    """The attempt a generation runs now: its id and the nodes that hold something of it."""

    attempt_id: str | None = None
    nodes: list[NodeRecord] = field(default_factory=list)

    def set(self, attempt_id: str, nodes: Iterable[NodeRecord]) -> None:
        self.attempt_id = attempt_id
        self.nodes = list({n.name: n for n in nodes}.values())

    def clear(self) -> None:
        self.attempt_id, self.nodes = None, []


async def abort_attempt(session: aiohttp.ClientSession, attempt_id: str, nodes: Iterable[NodeRecord]) -> bool:
    """Send `/abort` for `attempt_id` to each node; True when every node acknowledged it (the prefill stopped)."""
    body = encode(AbortRequest(request_id=attempt_id))

    async def one(node: NodeRecord) -> bool:
        try:
            async with session.post(f"{node.info.control_url}/abort", data=body,
                                    timeout=aiohttp.ClientTimeout(total=ABORT_TIMEOUT_S)) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            _log.info("abort of %s on %s not acknowledged: %r", attempt_id, node.name, exc)
            return False

    unique = list({n.name: n for n in nodes}.values())
    return all(await asyncio.gather(*(one(n) for n in unique)))


def abort_in_background(session: aiohttp.ClientSession, live: LiveAttemptRef) -> None:
    """Abort `live`'s attempt without waiting (the caller is being cancelled itself)."""
    if live.attempt_id is None or session.closed:
        return
    task = asyncio.ensure_future(abort_attempt(session, live.attempt_id, live.nodes))
    _background.add(task)
    task.add_done_callback(_background.discard)
    live.clear()


def pending_aborts() -> Awaitable[Any]:
    """Wait for the aborts sent in the background (the gateway's shutdown; each is bounded by ABORT_TIMEOUT_S)."""
    return asyncio.gather(*_background, return_exceptions=True)
