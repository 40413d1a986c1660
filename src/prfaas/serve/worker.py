"""`ModelWorker`: the one thread of a node process that touches the model.

    worker = ModelWorker(backend, max_batch=32, on_events=deliver)     # deliver runs on this thread
    worker.start()
    future = worker.submit(lambda: backend.prefill(...), region="us", cost_s=0.4)   # concurrent.futures.Future
    worker.admit(request_id, state, first_token, sampling)             # joins the decode batch when there is room
    worker.cancel(request_id)                                          # leaves the batch within one step
    worker.withdraw(future, exc)                                       # a queued job leaves the queue (fails)
    worker.stop()

Loop: run one submitted job, admit waiting decodes while the batch has room, run one decode step, repeat; sleep
when there is nothing to do. Queued jobs start in `policy.fair_queue.FairQueue` order (start-time fair queueing,
the simulator's policy object) over the PD regions that sent them, weighted by `region_weights` (unknown regions
weigh 1): a region with one prefill waits behind about one job of each other backlogged region, not behind their
whole backlog. A job without a region (every job of a deployment without [topology]; a node's own release and trim
jobs) is in region `NO_REGION`: jobs of one region start in submission order, so a node that only gets jobs
without a region is FIFO exactly, and a region-less job of cost 0 among regional ones starts at the current
virtual time (before queued work that is behind it in the fair order). Jobs and decode steps alternate, so a
long prefill delays the running batch by at most one prefill. The asyncio loop never waits on this thread: it
wraps the futures. `busy_s_total` is the time spent in jobs and steps (utilisation for the rebalancer).

Preemption (`preempt=True`, the default): a backend with safe points inside its prefill (the emulated engine and
our torch engine: between layers; a vLLM node's prefill is one call to its server, with none) calls
`preempt_point()` there. When the fair order says the first queued job's turn comes before
the running job ends, it is of another region and that region is the lighter user of this node (less backlogged,
or far less recent use; `FairQueue.preempts`), that job runs to its end right there,
nested (itself pausable), and then the paused job goes on; `preempt_point` returns the seconds it was paused so
the backend's own timing excludes them. So a region under its share waits about one layer, not a whole prefill
of a bursting region. A region never preempts a job of its own (nor one stacked above its own paused job); at
most `MAX_NESTED_JOBS` jobs are stacked. `preemptions_total` counts the nested starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from prfaas.policy.fair_queue import MAX_NESTED_JOBS, FairQueue
from prfaas.serve.backend import ENGINE_ERROR, INPUT_ERROR, Backend, BackendInputError, DecodeEvent
from prfaas.serve.inbox import state_nbytes
from prfaas.serve.messages import SamplingMsg

T = TypeVar("T")
NO_REGION = ""  # the fair queue's region of jobs that carry none (topology region names are never empty)
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Admission:
    request_id: str
    state: Any
    first_token: int
    sampling: SamplingMsg


class ModelWorker:
    def __init__(self, backend: Backend, max_batch: int, on_events: Callable[[list[DecodeEvent]], None],
                 region_weights: Mapping[str, float] | None = None, *, preempt: bool = True) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._on_events = on_events
        self._cond = threading.Condition()
        self._jobs: FairQueue[tuple[Callable[[], Any], Future[Any]]] = FairQueue(region_weights)
        self._admissions: deque[_Admission] = deque()
        self._cancels: set[str] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self.busy_s_total = 0.0
        self.preemptions_total = 0
        self._preempt = preempt
        self._stack: list[tuple[str, float, float]] = []  # (region, virtual finish, cost s): running job, paused ones
        if preempt and hasattr(backend, "preempt_point"):
            backend.preempt_point = self.preempt_point

    @property
    def num_queued_jobs(self) -> int:
        return len(self._jobs)

    @property
    def num_waiting_admissions(self) -> int:
        return len(self._admissions)

    @property
    def waiting_admission_bytes(self) -> int:
        with self._cond:
            return sum(state_nbytes(a.state) for a in self._admissions)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def submit(self, job: Callable[[], T], region: str | None = None, cost_s: float = 0.0,
               load: float | None = None) -> Future[T]:
        """Queue `job` for the model thread. `region`: the PD region it serves (None: `NO_REGION`); `cost_s`: its
        expected seconds on this thread (the fair order's cost; irrelevant while one region queues); `load`: the
        region's offered-load ratio its gateway stamped (`FairQueue.set_load`; None: unchanged)."""
        future: Future[T] = Future()
        with self._cond:
            if region is not None and load is not None:
                self._jobs.set_load(region, load)
            self._jobs.push((job, future), NO_REGION if region is None else region, cost_s)
            self._cond.notify()
        return future

    def admit(self, request_id: str, state: Any, first_token: int, sampling: SamplingMsg) -> None:
        with self._cond:
            self._admissions.append(_Admission(request_id, state, first_token, sampling))
            self._cond.notify()

    def cancel(self, request_id: str) -> None:
        with self._cond:
            self._cancels.add(request_id)
            self._cond.notify()

    def withdraw(self, future: Future[Any], exc: BaseException) -> bool:
        """Take a job that has not started out of the queue and fail its future with `exc`; False if it started."""
        with self._cond:
            if not self._jobs.remove(lambda entry: entry[1] is future):
                return False
        if future.set_running_or_notify_cancel():
            future.set_exception(exc)
        return True

    def _has_work(self) -> bool:
        return bool(self._jobs or self._cancels or self.backend.num_running
                    or (self._admissions and self.backend.num_running < self.max_batch))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._has_work():
                    self._cond.wait(0.5)
                if self._stopped:
                    return
                entry = self._jobs.pop_entry() if self._jobs else None
                cancels, self._cancels = self._cancels, set()
            started = time.monotonic()
            if entry is not None:
                self._run_entry(entry)
            self._apply_cancels(cancels)
            self._admit_waiting()
            if self.backend.num_running:
                self._step()
            self.busy_s_total += time.monotonic() - started

    def _run_entry(self, entry: tuple[tuple[Callable[[], Any], Future[Any]], str, float, float]) -> None:
        (job, future), region, start, cost_s = entry
        self._stack.append((region, self._jobs.finish_tag(region, start, cost_s), cost_s))
        try:
            _run_job(job, future)
        finally:
            self._stack.pop()
            if self._preempt and not self._stack:
                with self._cond:
                    self._jobs.idle()  # a no-op unless nothing is queued: the busy period ends (FairQueue.idle)

    def preempt_point(self) -> float:
        """A safe point of the running job (model thread only): run the queued jobs that preempt it, each to its
        end; the seconds spent (0.0 when none did). See the module docstring."""
        paused_since: float | None = None
        while self._stack and len(self._stack) < MAX_NESTED_JOBS:
            with self._cond:
                regions = [region for region, _, _ in self._stack]
                _, finish_tag, cost_s = self._stack[-1]
                if self._stopped or not self._jobs.preempts(regions, finish_tag, cost_s):
                    break
                entry = self._jobs.pop_entry()
            if paused_since is None:
                paused_since = time.monotonic()
            self.preemptions_total += 1
            self._run_entry(entry)
        return 0.0 if paused_since is None else time.monotonic() - paused_since

    def _apply_cancels(self, cancels: set[str]) -> None:
        for request_id in cancels:
            self.backend.decode_remove(request_id)
        if cancels:
            with self._cond:
                self._admissions = deque(a for a in self._admissions if a.request_id not in cancels)

    def _admit_waiting(self) -> None:
        while self.backend.num_running < self.max_batch:
            with self._cond:
                if not self._admissions:
                    return
                adm = self._admissions.popleft()
            try:
                reason = self.backend.decode_add(adm.request_id, adm.state, adm.first_token, adm.sampling)
            except BackendInputError as exc:
                self._on_events([DecodeEvent(adm.request_id, None, INPUT_ERROR, str(exc))])
                continue
            if reason is not None:
                self._on_events([DecodeEvent(adm.request_id, None, reason)])

    def _step(self) -> None:
        try:
            events = self.backend.decode_step()
        except Exception as exc:  # a failed step must not kill the node silently: fail its requests
            _log.exception("decode step failed")
            events = []
            for request_id in self.backend.request_ids:
                self.backend.decode_remove(request_id)
                events.append(DecodeEvent(request_id, None, ENGINE_ERROR, f"decode step failed: {exc}"))
        self._on_events(events)


def _run_job(job: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(job())
    except BaseException as exc:
        future.set_exception(exc)
