"""A node's table of live prefill attempts: idempotent prefill, no second attempt of a request while one is alive,
and cancellation (an explicit `/abort`) within one prefill layer.

    table = AttemptTable()
    live = table.get(attempt_id)           # the same attempt again: await `live.result` instead of running it twice
    refusal = table.refusal(attempt_id)    # another attempt of the same request is alive here: refuse (409)
    live = table.open(attempt_id)          # ... prefill, with live.check() in the per-layer hook ...
    table.cancel(attempt_id)               # /abort: sets the flag, returns the attempt (its queued job / transfer)
    table.was_aborted(attempt_id)          # an abort that overtook its own prefill: the prefill is refused
    table.close(attempt_id)

An attempt id is `"<request id>-<attempt number>"` (`serve.driver`); ids without a numeric suffix are their own
request. The model thread checks `live.check()` before a queued prefill starts and after every layer, so an
aborted prefill stops within one layer; `live.wait(stall_s)` is the interruptible form of the debug stall.
`spans` keeps (request, attempt, start_s, end_s) of the last prefills the model thread ran (`time.monotonic`,
system-wide on Linux) so tests can check that two attempts of one request never ran at the same time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

SPAN_HISTORY = 512
TOMBSTONES = 4096  # aborted attempt ids remembered (an abort may overtake its own prefill or state)


class PrefillCancelled(Exception):
    """The prefill's attempt was aborted (its client went away, its gateway gave up on it, or a retry replaced it)."""


def split_attempt_id(attempt_id: str) -> tuple[str, int]:
    """`"12-3"` -> `("12", 3)`; an id without a numeric suffix is attempt 0 of itself."""
    base, sep, number = attempt_id.rpartition("-")
    if sep and base and number.isdigit():
        return base, int(number)
    return attempt_id, 0


@dataclass(slots=True)
class PrefillSpan:
    request: str
    attempt: int
    start_s: float
    end_s: float | None = None


@dataclass(slots=True)
class LiveAttempt:
    attempt_id: str
    request: str
    attempt: int
    result: asyncio.Future[tuple[int, bytes]]  # (status, body) of the first run: a duplicate answers with it
    cancelled: threading.Event = field(default_factory=threading.Event)
    job_future: Any = None  # the worker's concurrent Future while the prefill is queued or running
    transfer: Any = None  # the KV transfer (`OutboundTransfer`) while the state streams out

    def check(self) -> None:
        """Raise `PrefillCancelled` once the attempt was aborted (called on the model thread)."""
        if self.cancelled.is_set():
            raise PrefillCancelled(f"prefill of {self.attempt_id} aborted")

    def wait(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s`, waking at once (with `PrefillCancelled`) when the attempt is aborted."""
        self.cancelled.wait(timeout_s)
        self.check()


class AttemptTable:
    """Event-loop side; `spans` is also appended from the model thread (deque appends are atomic)."""

    def __init__(self) -> None:
        self._live: dict[str, LiveAttempt] = {}
        self.spans: deque[PrefillSpan] = deque(maxlen=SPAN_HISTORY)
        self.cancelled_total = 0
        self._aborted: OrderedDict[str, None] = OrderedDict()

    def mark_aborted(self, attempt_id: str) -> None:
        """Remember an aborted id, so that a prefill, a state or a decode call arriving after its abort is refused."""
        self._aborted[attempt_id] = None
        self._aborted.move_to_end(attempt_id)
        while len(self._aborted) > TOMBSTONES:
            self._aborted.popitem(last=False)

    def was_aborted(self, attempt_id: str) -> bool:
        return attempt_id in self._aborted

    def __len__(self) -> int:
        return len(self._live)

    def get(self, attempt_id: str) -> LiveAttempt | None:
        return self._live.get(attempt_id)

    def refusal(self, attempt_id: str) -> str | None:
        """Why a prefill of `attempt_id` must not run now (another attempt of its request is alive), or None."""
        request, attempt = split_attempt_id(attempt_id)
        for live in self._live.values():
            if live.request == request and live.attempt != attempt:
                return (f"attempt {live.attempt} of request {request} is still alive on this node; "
                        f"attempt {attempt} waits until it is aborted or done")
        return None

    def open(self, attempt_id: str) -> LiveAttempt:
        request, attempt = split_attempt_id(attempt_id)
        live = LiveAttempt(attempt_id, request, attempt, asyncio.get_running_loop().create_future())
        self._live[attempt_id] = live
        return live

    def cancel(self, attempt_id: str) -> LiveAttempt | None:
        self.mark_aborted(attempt_id)
        live = self._live.get(attempt_id)
        if live is not None and not live.cancelled.is_set():
            live.cancelled.set()
            self.cancelled_total += 1
        return live

    def close(self, attempt_id: str, status: int, body: bytes) -> None:
        live = self._live.pop(attempt_id, None)
        if live is not None and not live.result.done():
            live.result.set_result((status, body))

    def started(self, live: LiveAttempt) -> PrefillSpan:
        span = PrefillSpan(live.request, live.attempt, time.monotonic())
        self.spans.append(span)
        return span

    def span_rows(self) -> list[tuple[str, int, float, float | None]]:
        return [(s.request, s.attempt, s.start_s, s.end_s) for s in list(self.spans)]
