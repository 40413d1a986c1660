"""Simulated instances: an FCFS prefill server and a continuously batching decode server.

Prefill (batching model: FCFS, one request at a time per instance, run to completion): a request's
prefill takes `PrefillCostModel.t_prefill_s(uncached, cached)`; the cached prefix is looked up when the
prefill starts (`on_start` fills `req.cached_tokens` / `req.uncached_tokens`).

Preemption (optional, `set_queue(queue, preemption)`, as the live node's `serve.worker`): the queue may be another
order than FCFS (`sim.multisite_queue.FairPrefillQueue`), and a server given a `Preemption` asks it, whenever its
queue or its running job changes (an arrival, a start, a resume: the simulator's safe point is "at once"), whether
the running job `stack[-1]` (which paused `stack[:-1]`) should yield to the first queued job. If so the running
prefill is paused: its remaining nominal work is kept, its completion event cancelled (`_version`), it goes on a
stack, and the queued job starts (itself pausable). When a job ends and the stack is not empty, the top paused job
resumes with its remaining work, unless the queue says the first queued job preempts it again (then that one runs,
nested). Paused requests count as queued (`num_queued`, `queued_tokens` with all their uncached tokens, as the
running one's count) and are reported by `fail()`; `busy_until_s` is the running job's end. Hooks
`on_pause(req)` / `on_resume(req, remaining_duration_s)` let the simulator pause the layer-wise release of the
request's state (`SimLink.set_release`). The server stays compute-busy on its host across a pause.

Decode (continuous batching, `max_batch` = BS_max slots): requests join and leave at step boundaries;
a request occupies a slot for `output_tokens` steps. Simulated batch-wise, not per token: between two
batch changes the batch is fixed, so the step time `DecodeCostModel.t_step_s(B, mean context)` is
constant and the server advances a fractional step counter `steps_done += dt / step_s`. A request
that joins at step s leaves at step `s + output_tokens`; the next event is the earliest such step.
This is the fluid version of step-synchronous batching (a join waits at most one step in reality); the
step time is re-evaluated at every batch change with the batch's current mean context (prompt plus
tokens generated so far), so context growth is followed piecewise.
Requests that find every slot taken wait FCFS in the decode queue.

Both servers keep busy-time integrals for utilisation and report every request they hold on `fail()`.

Host sharing (optional, `sim.host_share`): a server given a `HostShare` runs at the host's speed (<= 1) while it
is compute-busy; a prefill's remaining nominal work and a decode batch's step rate are rescaled whenever the
host's busy set changes (`rescale`). Without one the speed stays 1.0 and the arithmetic is the unshared one.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.host_share import HostShare
from prfaas.sim.prefill_queue import Preemption, PrefillQueue
from prfaas.sim.request import SimRequest

RequestHook = Callable[[SimRequest], None]
StartHook = Callable[[SimRequest, float], None]


def _no_pause(req: SimRequest) -> None:
    return None


def _no_resume(req: SimRequest, remaining_duration_s: float) -> None:
    return None


class PrefillServer:
    """Prefill queue of one instance: FCFS, or the order of the queue given to `set_queue` (then maybe preempting)."""

    __slots__ = (
        "_paused",
        "_preemption",
        "_version",
        "_work_left_s",
        "_work_since_s",
        "busy_s",
        "busy_since_s",
        "busy_until_s",
        "cost",
        "current",
        "host",
        "lookup",
        "loop",
        "on_done",
        "on_pause",
        "on_resume",
        "on_start",
        "preemptions_total",
        "queue",
        "queued_tokens",
        "speed",
    )

    def __init__(self, loop: EventLoop, cost: PrefillCostModel, lookup: RequestHook, on_start: StartHook,
                 on_done: RequestHook, host: HostShare | None = None) -> None:
        """`lookup(req)` fixes the cached/uncached split at start; then `on_start(req, duration_s)` (the wall time
        expected at the host's speed when it starts)."""
        self.loop = loop
        self.cost = cost
        self.lookup = lookup
        self.on_start = on_start
        self.on_done = on_done
        self.on_pause: RequestHook = _no_pause
        self.on_resume: StartHook = _no_resume
        self.queue: PrefillQueue = deque()
        self.current: SimRequest | None = None
        self.queued_tokens = 0  # uncached tokens of the queued and the paused requests
        self.busy_s = 0.0
        self.busy_since_s = 0.0
        self.busy_until_s: float | None = None
        self._version = 0
        self.host = host
        self.speed = 1.0
        self._work_left_s = 0.0  # nominal seconds of the running prefill not yet done at `_work_since_s`
        self._work_since_s = 0.0
        self._preemption: Preemption | None = None
        self._paused: list[tuple[SimRequest, float]] = []  # (request, nominal seconds left), in pause order
        self.preemptions_total = 0  # jobs started nested in another (a pause each)

    def set_queue(self, queue: PrefillQueue, preemption: Preemption | None = None) -> None:
        """Replace the FCFS queue by `queue` (before any request came). `preemption`: pause the running prefill
        when it says so (module docstring); None: every prefill runs to completion."""
        if self.current is not None or self.queue:
            raise ValueError("set_queue on a server that already holds requests")
        self.queue = queue
        self._preemption = preemption

    @property
    def num_queued(self) -> int:
        """Requests waiting: queued, and paused by a preemption."""
        return len(self.queue) + len(self._paused)

    @property
    def is_idle(self) -> bool:
        return self.current is None and not self.queue and not self._paused

    @property
    def paused(self) -> tuple[tuple[SimRequest, float], ...]:
        """The paused prefills, in pause order: (request, nominal seconds of work left)."""
        return tuple(self._paused)

    def busy_time_s(self, now_s: float) -> float:
        """Seconds spent prefilling since creation (including the running prefill up to now)."""
        return self.busy_s + (now_s - self.busy_since_s if self.current is not None else 0.0)

    def enqueue(self, req: SimRequest) -> None:
        req.prefill_enqueue_s = self.loop.now_s
        self.queue.append(req)
        self.queued_tokens += req.uncached_tokens
        if self.current is None:
            self._start_next()
        elif self._preemption is not None:
            self._preempt_while_due()

    def _start_next(self) -> None:
        if not self.queue:
            return
        req = self.queue.popleft()
        self.queued_tokens -= req.uncached_tokens
        now = self.loop.now_s
        self.current = req
        self.busy_since_s = now
        self.lookup(req)
        work_s = self.cost.t_prefill_s(max(req.uncached_tokens, 1), req.cached_tokens)
        req.prefill_start_s = now
        self.on_start(req, self._run_for(work_s))

    def _run_for(self, work_s: float) -> float:
        """The current prefill has `work_s` nominal seconds left from now: at the host's speed, schedule its end;
        the wall seconds it will take."""
        now = self.loop.now_s
        duration = work_s
        if self.host is not None:
            self.speed = self.host.set_busy(self, True)
            self._work_left_s = work_s
            self._work_since_s = now
            duration = work_s / self.speed
        self.busy_until_s = now + duration
        self._version += 1
        self.loop.schedule(self.busy_until_s, EventPriority.COMPLETION, self._finish, self._version)
        return duration

    def rescale(self, speed: float) -> None:
        """The host's busy set changed: the running prefill continues at `speed` (see `sim.host_share`)."""
        if self.current is None:
            return
        now = self.loop.now_s
        self._work_left_s = max(self._work_left_s - (now - self._work_since_s) * self.speed, 0.0)
        self._work_since_s = now
        self.speed = speed
        self.busy_until_s = now + self._work_left_s / speed
        self._version += 1
        self.loop.schedule(self.busy_until_s, EventPriority.COMPLETION, self._finish, self._version)

    def _finish(self, version: int) -> None:
        if version != self._version or self.current is None:
            return
        req = self.current
        now = self.loop.now_s
        self.busy_s += now - self.busy_since_s
        self.current = None
        self.busy_until_s = None
        req.prefill_end_s = now
        if self._preemption is None:
            self._start_next()
        else:
            self._preemption.forget(req)
            self._next_after_finish(self._preemption)
        if self.host is not None and self._idle():  # a method: mypy's narrowing of `current` is stale here
            self.host.set_busy(self, False)
        self.on_done(req)

    def _idle(self) -> bool:
        return self.current is None

    # --- preemption (module docstring) -----------------------------------------------------------
    def _next_after_finish(self, preemption: Preemption) -> None:
        """A job ended: resume the top paused job, unless the first queued job preempts it again; then run the
        queued jobs that preempt whatever runs."""
        if self._paused:
            if self.queue and preemption.should_yield([r for r, _ in self._paused]):
                self.preemptions_total += 1
                self._start_next()  # nested in the paused stack
            else:
                self._resume()
        else:
            self._start_next()
        self._preempt_while_due()

    def _preempt_while_due(self) -> None:
        preemption = self._preemption
        assert preemption is not None
        while self.current is not None and self.queue:
            if not preemption.should_yield([*(r for r, _ in self._paused), self.current]):
                return
            self._pause()
            self.preemptions_total += 1
            self._start_next()

    def _pause(self) -> None:
        """Stop the running prefill now and keep its remaining nominal work (host speed accrued up to now)."""
        req = self.current
        assert req is not None and self.busy_until_s is not None
        now = self.loop.now_s
        if self.host is not None:
            left_s = max(self._work_left_s - (now - self._work_since_s) * self.speed, 0.0)
        else:
            left_s = max(self.busy_until_s - now, 0.0)
        self.busy_s += now - self.busy_since_s
        self._paused.append((req, left_s))
        self.queued_tokens += req.uncached_tokens
        self.current = None
        self.busy_until_s = None
        self._version += 1  # its completion event is void
        self.on_pause(req)

    def _resume(self) -> None:
        req, left_s = self._paused.pop()
        self.queued_tokens -= req.uncached_tokens
        self.current = req
        self.busy_since_s = self.loop.now_s
        self.on_resume(req, self._run_for(left_s))

    def fail(self) -> list[SimRequest]:
        """The instance died: return the running, paused (last paused first) and queued requests, and reset."""
        now = self.loop.now_s
        lost: list[SimRequest] = []
        if self.current is not None:
            self.busy_s += now - self.busy_since_s
            lost.append(self.current)
            self.current = None
        lost.extend(r for r, _ in reversed(self._paused))
        self._paused.clear()
        if self._preemption is not None:
            for req in lost:
                self._preemption.forget(req)
        lost.extend(self.queue)
        self.queue.clear()
        self.queued_tokens = 0
        self.busy_until_s = None
        self._version += 1
        if self.host is not None:
            self.host.set_busy(self, False)
        return lost


class DecodeServer:
    """Continuous-batching decode of one instance (see the module docstring for the batch-wise model)."""

    __slots__ = ("_batch", "_last_s", "_seq", "_sum_input", "_sum_join", "_version", "cost", "host", "loop",
                 "max_batch", "occupancy_s", "on_done", "on_join", "speed", "step_s", "steps_done", "waiting",
                 "waiting_tokens")

    def __init__(self, loop: EventLoop, cost: DecodeCostModel, max_batch: int, on_join: RequestHook,
                 on_done: RequestHook, host: HostShare | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.loop = loop
        self.cost = cost
        self.max_batch = max_batch
        self.on_join = on_join
        self.on_done = on_done
        self._batch: list[tuple[float, int, SimRequest]] = []  # heap of (finish step, seq, request)
        self.waiting: deque[SimRequest] = deque()
        self.waiting_tokens = 0
        self.steps_done = 0.0
        self.step_s = 0.0
        self.occupancy_s = 0.0  # integral of batch size over time
        self._last_s = loop.now_s
        self._sum_input = 0.0
        self._sum_join = 0.0
        self._seq = 0
        self._version = 0
        self.host = host
        self.speed = 1.0

    @property
    def batch_size(self) -> int:
        return len(self._batch)

    @property
    def is_idle(self) -> bool:
        return not self._batch and not self.waiting

    def occupancy_time_s(self, now_s: float) -> float:
        return self.occupancy_s + len(self._batch) * (now_s - self._last_s)

    def admit(self, req: SimRequest) -> None:
        """The request's state arrived: join the batch now if a slot is free, else wait FCFS."""
        self._advance()
        req.decode_enqueue_s = self.loop.now_s
        if len(self._batch) < self.max_batch and not self.waiting:
            self._join(req)
        else:
            self.waiting.append(req)
            self.waiting_tokens += req.wl.input_tokens
        self._reschedule()

    def _join(self, req: SimRequest) -> None:
        req.decode_start_s = self.loop.now_s
        if req.wl.output_tokens <= 0:
            self.on_join(req)
            self.on_done(req)
            return
        req.join_step = self.steps_done
        self._seq += 1
        heapq.heappush(self._batch, (self.steps_done + req.wl.output_tokens, self._seq, req))
        self._sum_input += req.wl.input_tokens
        self._sum_join += self.steps_done
        self.on_join(req)

    def _advance(self) -> None:
        now = self.loop.now_s
        dt = now - self._last_s
        if dt > 0:
            if self._batch:
                self.occupancy_s += len(self._batch) * dt
                self.steps_done += dt * self.speed / self.step_s
            self._last_s = now

    def _reschedule(self) -> None:
        self._version += 1
        n = len(self._batch)
        if self.host is not None:
            self.speed = self.host.set_busy(self, n > 0)
        if n == 0:
            return
        mean_ctx = (self._sum_input + n * self.steps_done - self._sum_join) / n
        self.step_s = self.cost.t_step_s(n, mean_ctx)
        steps_left = max(self._batch[0][0] - self.steps_done, 0.0)
        next_s = self.loop.now_s + steps_left * self.step_s
        if self.host is not None:
            next_s = self.loop.now_s + steps_left * self.step_s / self.speed
        self.loop.schedule(next_s, EventPriority.COMPLETION, self._on_tick, self._version)

    def _on_tick(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done: list[SimRequest] = []
        eps = 1e-6
        while self._batch and self._batch[0][0] <= self.steps_done + eps:
            _, _, req = heapq.heappop(self._batch)
            self._sum_input -= req.wl.input_tokens
            self._sum_join -= req.join_step
            done.append(req)
        if not self._batch:
            self._sum_input = 0.0
            self._sum_join = 0.0
        while self.waiting and len(self._batch) < self.max_batch:
            req = self.waiting.popleft()
            self.waiting_tokens -= req.wl.input_tokens
            self._join(req)
        self._reschedule()
        for req in done:
            self.on_done(req)

    def fail(self) -> list[SimRequest]:
        """The instance died: return every request in the batch and the queue, and reset."""
        self._advance()
        lost = [r for _, _, r in sorted(self._batch)] + list(self.waiting)
        self._batch.clear()
        self.waiting.clear()
        self.waiting_tokens = 0
        self._sum_input = 0.0
        self._sum_join = 0.0
        self._version += 1
        if self.host is not None:
            self.speed = self.host.set_busy(self, False)
        return lost

    def rescale(self, speed: float) -> None:
        """The host's busy set changed: steps so far accrue at the old speed, the rest at `speed`."""
        self._advance()
        self.speed = speed
        self._reschedule()
