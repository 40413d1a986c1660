"""The regions' fair order at a vLLM node: prefills enter vLLM in `policy.fair_queue.FairQueue` order.

    turns = PrefillTurns(budget_tokens=16384, weights=region_weights(cfg))
    async with turns.turn(attempt_id, "us", len(prompt), msg.region_load, msg.start_within_s) as waited_s:
        ...  # the prefill's vLLM call; leave the block when its first token is back

vLLM schedules what it holds first come, first served (chunked prefill gives the oldest running prompts the step's
token budget first), and it has no safe point where a prefill could be paused. An adapter that forwarded every
prefill at once would hand the order to vLLM: one region's burst of long prompts, queued inside vLLM, would make
another region's offload at a shared PrfaaS node wait for all of them. So the adapter keeps the queue: a prefill
enters vLLM while the prompt tokens of the prefills inside it (sent, first token not yet back) stay within
`budget_tokens`, or when none is inside (a prompt above the budget runs alone); the others wait here and enter in
the fair order over regions (start-time fair queueing weighted by the regions' traffic shares, the same queue
and weights as our engine's worker, `serve.prefill_order`; the gateways' offered-load stamps are kept for the
queue's rule, though without safe points nothing is preempted). The head of the fair order waits until it fits:
a small prompt never overtakes it.

The budget's default (16,384 prompt tokens) is about two of vLLM's scheduler steps of batched tokens at its
common `max_num_batched_tokens` settings: the prompts of the next step are already inside vLLM (no idle gap
between prefills), while a quiet region's offload waits behind at most that much of another region's work (plus,
unavoidably, the residual of one longer prompt that runs alone). Short prompts (a PD-P node's) still batch. 0
turns the gate off (every prefill goes to vLLM at once, vLLM's own order).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

from prfaas.policy.fair_queue import FairQueue
from prfaas.serve.sites import FALLBACK_S_PER_TOKEN

DEFAULT_BUDGET_TOKENS = 16_384  # prompt tokens of the prefills inside vLLM at once (module docstring)


class TurnWithdrawn(Exception):
    """The prefill was withdrawn (`PrefillTurns.withdraw`: its attempt was aborted) while it waited for its turn."""


class TurnDeadlinePassed(Exception):
    """The prefill's turn did not come within its start deadline (`start_within_s`): it left the queue unsent."""


class PrefillTurns:
    """Admission of prefills into one vLLM instance (module docstring). One event loop; not thread-safe."""

    def __init__(self, budget_tokens: int = DEFAULT_BUDGET_TOKENS, weights: Mapping[str, float] | None = None) -> None:
        if budget_tokens < 0:
            raise ValueError(f"budget_tokens must be >= 0, got {budget_tokens}")
        self.budget_tokens = budget_tokens
        self._queue: FairQueue[tuple[asyncio.Future[None], int]] = FairQueue(weights)
        self.inside_tokens = 0  # prompt tokens of the prefills inside vLLM now
        self.inside = 0  # prefills inside vLLM now
        self.waited_total = 0  # prefills that waited for their turn (counter)
        self._waiting: dict[str, asyncio.Future[None]] = {}  # key -> the future of a prefill waiting its turn

    @property
    def waiting(self) -> int:
        """Prefills waiting for their turn (read by the heartbeat thread: a length, atomic in CPython)."""
        return len(self._queue)

    def _fits(self, num_tokens: int) -> bool:
        return self.inside == 0 or self.inside_tokens + num_tokens <= self.budget_tokens

    def _enter(self, num_tokens: int) -> None:
        self.inside += 1
        self.inside_tokens += num_tokens

    def _leave(self, num_tokens: int) -> None:
        self.inside -= 1
        self.inside_tokens -= num_tokens
        self._admit()

    def _admit(self) -> None:
        """Let the heads of the fair order in while they fit; a busy period that ends is told to the queue."""
        while len(self._queue):  # a queued future is never done: every way out of the queue removes it (_drop)
            future, num_tokens = self._queue.head()
            if not self._fits(num_tokens):
                return
            self._queue.pop()
            self._enter(num_tokens)
            future.set_result(None)
        if self.inside == 0:
            self._queue.idle()

    def _drop(self, future: asyncio.Future[None]) -> None:
        """Take a waiting prefill out of the queue; it may have been the head that held the others back."""
        self._queue.remove(lambda entry: entry[0] is future)
        self._admit()

    def withdraw(self, key: str) -> bool:
        """Take the prefill `key` out of the queue if it waits for its turn: its `turn` raises `TurnWithdrawn`.
        False when it does not wait (inside vLLM already, or unknown)."""
        future = self._waiting.pop(key, None)
        if future is None or future.done():
            return False
        future.set_exception(TurnWithdrawn(key))
        self._drop(future)
        return True

    @contextlib.asynccontextmanager
    async def turn(self, key: str, region: str, num_tokens: int, load: float | None = None,
                   start_within_s: float | None = None) -> AsyncIterator[float]:
        """Wait for prefill `key`'s turn into vLLM; inside the block it is in (yields the seconds it waited).
        Leaving the block (the first token is back, or the call failed or was cancelled) frees its tokens.
        Raises `TurnWithdrawn` when `withdraw(key)` took it out of the queue first, `TurnDeadlinePassed` when its
        turn did not come within `start_within_s` (the gateway's admission deadline; None: none)."""
        num_tokens = max(num_tokens, 0)
        if self.budget_tokens == 0:
            yield 0.0
            return
        started_s = time.monotonic()
        if load is not None:
            self._queue.set_load(region, load)
        # every prefill goes through the fair queue (its tags count the prefills that entered at once, too)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.push((future, num_tokens), region, num_tokens * FALLBACK_S_PER_TOKEN)
        self._admit()
        if not future.done():
            self.waited_total += 1
            self._waiting[key] = future
            try:
                await asyncio.wait_for(future, start_within_s)  # None: no deadline
            except TimeoutError:  # wait_for cancelled the future: out of the queue, unsent
                self._drop(future)
                raise TurnDeadlinePassed(f"{key} did not enter vLLM within {start_within_s} s") from None
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # let in, then cancelled before it ran: free it
                    self._leave(num_tokens)
                else:  # still queued (the task's cancel cancelled the future it awaited)
                    future.cancel()
                    self._drop(future)
                raise
            finally:
                if self._waiting.get(key) is future:
                    del self._waiting[key]
        try:
            yield time.monotonic() - started_s
        finally:
            self._leave(num_tokens)
