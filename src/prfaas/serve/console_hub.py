"""The console's live feed: one sampler task per gateway, fanned out to bounded subscriber queues.

    hub = ConsoleHub(gw)                 # gw: the Gateway (control plane, metrics, request log)
    hub.start(); await hub.close()
    hub.stop_streams()                   # from the server's signal handler: end the streams so shutdown needn't wait
    hub.on_request(record)               # the gateway calls it for every finished request
    sub = hub.subscribe()                # None when `MAX_SUBSCRIBERS` consoles are already connected
    async for chunk in hub.stream(sub): ...   # SSE text: "hello" (full snapshot), then "tick", "whatif"

Every `tick_s` the sampler builds one frame (`console_state.ConsoleState.sample`) and offers it to each
subscriber's queue (`QUEUE_FRAMES` deep). A subscriber whose queue is full is too slow: it is dropped (its stream
ends with an `event: dropped`) and the browser reconnects and starts again from a fresh snapshot, so the gateway
never holds more than QUEUE_FRAMES frames per console. The `hello` event carries this gateway process's
`boot_id`: a console that sees another boot id (a restarted gateway) throws its state away.

The what-if panel (`console_whatif`) runs in a worker thread, never on the event loop, at most once per
`whatif_interval_s`, only while a console is connected and new requests finished since the last run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from prfaas.core.lifecycle import ClusterKind
from prfaas.serve.console_state import ConsoleState, GatewayLike, effective_threshold
from prfaas.serve.console_whatif import what_if

_log = logging.getLogger(__name__)

QUEUE_FRAMES = 64
MAX_SUBSCRIBERS = 16
WHATIF_RECORDS = 5_000  # records (with finish times) kept for the what-if window
_END = object()


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    dropped: bool = False


def sse(event: str, payload: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"


class ConsoleHub:
    def __init__(self, gw: GatewayLike, *, tick_s: float = 0.5, whatif_interval_s: float = 15.0,
                 whatif_window_s: float = 120.0, request_log: Any = None) -> None:
        self.gw = gw
        self.tick_s = tick_s
        self.whatif_interval_s = whatif_interval_s
        self.whatif_window_s = whatif_window_s
        self.boot_id = secrets.token_hex(8)
        self.state = ConsoleState()
        self.timed_records: deque[dict[str, Any]] = deque(maxlen=WHATIF_RECORDS)
        if request_log is not None:  # a restarted gateway reloaded its log: the console starts from it
            self.state.load_requests(request_log.records)
            self.timed_records.extend(r for r in request_log.records if isinstance(r.get("finished_at_s"), float))
        self.subscribers: set[Subscriber] = set()
        self.whatif: dict[str, Any] | None = None
        self.whatif_runs = 0
        self.dropped_total = 0
        self._whatif_task: asyncio.Task[None] | None = None
        self._whatif_last_s = -float("inf")
        self._whatif_seen = 0  # timed records at the last run
        self._task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.closing = False

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop())

    def stop_streams(self) -> None:
        """End every console's stream and refuse new ones: the server is shutting down, and a graceful shutdown
        would otherwise wait on these endless responses. Callable from a signal handler (thread-safe)."""
        self.closing = True
        loop = self._event_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._end_all)

    def _end_all(self) -> None:
        for sub in list(self.subscribers):
            self._end(sub)

    async def close(self) -> None:
        for task in (self._task, self._whatif_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._end_all()

    def on_request(self, record: dict[str, Any]) -> None:
        self.state.add_request(record)
        self.timed_records.append(record)

    # --- subscribers ---------------------------------------------------------------------------------
    def subscribe(self) -> Subscriber | None:
        if self.closing or len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _end(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(_END)

    def _offer(self, chunk: bytes) -> None:
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(chunk)
            except asyncio.QueueFull:  # too slow: drop it; the browser reconnects from a fresh snapshot
                sub.dropped = True
                self.subscribers.discard(sub)
                self.dropped_total += 1
                _log.info("console subscriber dropped: %d frames behind", QUEUE_FRAMES)

    def hello(self) -> bytes:
        return sse("hello", {"boot_id": self.boot_id, "tick_s": self.tick_s, "snapshot": self.state.snapshot(),
                             "whatif": self.whatif})

    async def stream(self, sub: Subscriber) -> AsyncIterator[bytes]:
        """The SSE body of one console: the snapshot, then frames until it is dropped or disconnects."""
        try:
            yield self.hello()
            while True:
                chunk = await sub.queue.get()
                if sub.dropped:
                    yield sse("dropped", {"reason": f"more than {QUEUE_FRAMES} frames behind; reconnect"})
                    return
                if chunk is _END:
                    return
                yield chunk
        finally:
            self.unsubscribe(sub)

    # --- sampling ------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the console must never take the gateway down
                _log.exception("console sample failed")
            await asyncio.sleep(self.tick_s)

    def tick(self) -> dict[str, Any]:
        frame = self.state.sample(self.gw, time.monotonic(), time.time())
        frame["subscribers"] = len(self.subscribers)
        frame["boot_id"] = self.boot_id
        if self.subscribers:
            self._offer(sse("tick", frame))
        self._maybe_whatif()
        return frame

    # --- what-if -------------------------------------------------------------------------------------
    def cluster_dict(self) -> dict[str, Any]:
        control = self.gw.control
        view = control.nodes.view(time.monotonic())
        link = view.egress_link
        capacity = link.capacity_gbps if link is not None else None
        if capacity is None:
            capacity = next((lk.capacity_gbps for lk in control.cfg.links), None)
        return {"policy": control.policy_name, "threshold_tokens": control.threshold_tokens(),
                "effective_threshold_tokens": effective_threshold(control),
                "instances": [{"role": i.role.value, "is_up": i.is_up, "cluster": i.cluster.value}
                              for i in view.instances],
                "link_capacity_gbps": capacity, "max_batch": control.cfg.model.max_batch_size,
                "has_prfaas": any(i.cluster is ClusterKind.PRFAAS for i in view.instances)}

    def _maybe_whatif(self, force: bool = False) -> bool:
        now = time.monotonic()
        if self._whatif_task is not None and not self._whatif_task.done():
            return False
        if not force and (not self.subscribers or now - self._whatif_last_s < self.whatif_interval_s
                          or len(self.timed_records) == self._whatif_seen):
            return False
        self._whatif_last_s = now
        self._whatif_seen = len(self.timed_records)
        self._whatif_task = asyncio.create_task(self._run_whatif())
        return True

    def request_whatif(self, min_interval_s: float = 5.0) -> bool:
        """An operator's "run now": at most once per `min_interval_s`, one run at a time."""
        if time.monotonic() - self._whatif_last_s < min_interval_s:
            return False
        return self._maybe_whatif(force=True)

    async def _run_whatif(self) -> None:
        records = list(self.timed_records)
        cluster = self.cluster_dict()
        try:
            result = await asyncio.to_thread(what_if, records, cluster, self.whatif_window_s, time.time())
        except Exception as exc:
            _log.exception("console what-if failed")
            result = {"t": time.time(), "errors": [f"{type(exc).__name__}: {exc}"], "live": None,
                      "planner": None, "simulator": None, "setup": None}
        self.whatif = result
        self.whatif_runs += 1
        self._offer(sse("whatif", result))
