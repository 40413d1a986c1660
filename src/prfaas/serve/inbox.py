"""`StateInbox`: prompt states that arrived (over the KV transport, or from a colocated prefill) and wait for
their decode admission. Event-loop only: transport threads hand states over with `call_soon_threadsafe`.

    inbox.put(request_id, state)         # arrival
    state = await inbox.take(request_id, timeout_s)   # the decode request claims it (either order works)
    inbox.sweep(now_s)                   # drop states nobody claimed within `ttl_s` (their gateway gave up)
    inbox.abort(request_id)              # the request was cancelled: a waiting `take` fails, the state is dropped

`num_bytes` is what the held states weigh (a leak check: 0 once nothing waits).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


class StateNotArrived(Exception):
    """The state of a request did not arrive in time (or its transfer failed)."""


class StateInbox:
    def __init__(self, ttl_s: float = 120.0) -> None:
        self.ttl_s = ttl_s
        self._futures: dict[str, asyncio.Future[Any]] = {}
        self._created_s: dict[str, float] = {}
        self._takers: set[str] = set()

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._futures

    def _future(self, request_id: str) -> asyncio.Future[Any]:
        future = self._futures.get(request_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._futures[request_id] = future
            self._created_s[request_id] = time.monotonic()
        return future

    def put(self, request_id: str, state: Any) -> None:
        future = self._future(request_id)
        if not future.done():
            future.set_result(state)

    def refuse(self, request_id: str, message: str) -> None:
        """The state cannot be kept (over budget): its decode request, now or later, fails with `message`."""
        future = self._future(request_id)
        if not future.done():
            future.set_exception(StateNotArrived(message))
            future.exception()  # a refusal nobody claims is swept later, not logged as unretrieved

    def fail(self, request_id: str, message: str) -> None:
        future = self._futures.get(request_id)
        if future is not None and not future.done():
            future.set_exception(StateNotArrived(message))

    @property
    def num_bytes(self) -> int:
        return sum(state_nbytes(f.result()) for f in list(self._futures.values())
                   if f.done() and not f.cancelled() and f.exception() is None)

    def abort(self, request_id: str) -> None:
        future = self._futures.get(request_id)
        if future is not None and request_id in self._takers and not future.done():
            future.set_exception(StateNotArrived(f"{request_id} was aborted"))
        self.drop(request_id)

    async def take(self, request_id: str, timeout_s: float) -> Any:
        future = self._future(request_id)
        self._takers.add(request_id)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise StateNotArrived(f"state of {request_id} did not arrive within {timeout_s:.1f}s") from None
        finally:
            self._takers.discard(request_id)
            self.drop(request_id)

    def drop(self, request_id: str) -> None:
        future = self._futures.pop(request_id, None)
        self._created_s.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    def sweep(self, now_s: float) -> int:
        stale = [rid for rid, t in self._created_s.items() if now_s - t > self.ttl_s]
        for rid in stale:
            self.drop(rid)
        return len(stale)


def state_nbytes(state: Any) -> int:
    """What a held state weighs: `nbytes` of an engine state, the length of a stub's bytearray."""
    nbytes = getattr(state, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return len(state) if isinstance(state, (bytes, bytearray)) else 0
