"""Units of cancellation: the attempt table, the worker's withdraw, the inbox's abort/refuse, the budgets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from prfaas.serve.attempts import AttemptTable, PrefillCancelled, split_attempt_id
from prfaas.serve.backend import StubBackend
from prfaas.serve.budgets import prefill_refusal, state_refusal
from prfaas.serve.config import BudgetSection
from prfaas.serve.inbox import StateInbox, StateNotArrived
from prfaas.serve.messages import SamplingMsg
from prfaas.serve.worker import ModelWorker


def test_attempt_ids_split_into_request_and_number() -> None:
    assert split_attempt_id("12-3") == ("12", 3)
    assert split_attempt_id("cmpl-7-0") == ("cmpl-7", 0)
    assert split_attempt_id("plain") == ("plain", 0)
    assert split_attempt_id("x-") == ("x-", 0)


def test_an_attempt_of_a_request_alive_here_refuses_the_next_one() -> None:
    async def run() -> None:
        table = AttemptTable()
        live = table.open("5-0")
        assert table.get("5-0") is live and table.refusal("5-0") is None  # the same attempt: de-duplicated
        assert "attempt 0 of request 5" in (table.refusal("5-1") or "")
        assert table.refusal("6-1") is None
        assert table.cancel("5-0") is live and table.cancelled_total == 1
        with pytest.raises(PrefillCancelled):
            live.check()
        table.close("5-0", 409, b"x")
        assert await live.result == (409, b"x") and len(table) == 0 and table.refusal("5-1") is None

    asyncio.run(run())


def test_an_aborted_stall_wakes_at_once() -> None:
    async def run() -> float:
        live = AttemptTable().open("1-0")
        threading.Timer(0.05, live.cancelled.set).start()
        start = time.monotonic()
        with pytest.raises(PrefillCancelled):
            live.wait(600.0)
        return time.monotonic() - start

    assert asyncio.run(run()) < 600.0


def test_a_queued_job_is_withdrawn_and_never_runs() -> None:
    gate = threading.Event()
    ran: list[str] = []
    worker = ModelWorker(StubBackend(), max_batch=4, on_events=lambda _events: None)
    worker.start()
    try:
        blocker = worker.submit(lambda: gate.wait(30))
        queued = worker.submit(lambda: ran.append("queued"))
        assert worker.withdraw(queued, PrefillCancelled("gone"))
        gate.set()
        blocker.result(30)
        with pytest.raises(PrefillCancelled):
            queued.result(30)
        assert not worker.withdraw(blocker, PrefillCancelled("too late"))  # started (and done): not withdrawn
        assert ran == []
    finally:
        worker.stop()


def test_a_cancelled_decode_leaves_the_batch_and_the_admissions() -> None:
    worker = ModelWorker(StubBackend(step_s=0.01), max_batch=1, on_events=lambda _events: None)
    worker.start()
    try:
        worker.admit("a", bytearray(4), 1, SamplingMsg(max_tokens=100_000))
        worker.admit("b", bytearray(4), 1, SamplingMsg(max_tokens=100_000))  # waits: the batch holds one
        deadline = time.monotonic() + 30
        while worker.backend.num_running == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.num_waiting_admissions == 1 and worker.waiting_admission_bytes == 4
        worker.cancel("a")
        worker.cancel("b")
        while (worker.backend.num_running or worker.num_waiting_admissions) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.backend.num_running == 0 and worker.num_waiting_admissions == 0
    finally:
        worker.stop()


def test_the_inbox_aborts_a_waiting_decode_and_refuses_over_budget() -> None:
    async def run() -> None:
        inbox = StateInbox()
        waiting = asyncio.ensure_future(inbox.take("r-0", 30))
        await asyncio.sleep(0)
        inbox.abort("r-0")
        with pytest.raises(StateNotArrived, match="aborted"):
            await waiting
        inbox.put("r-1", bytearray(10))
        assert inbox.num_bytes == 10 and "r-1" in inbox
        inbox.abort("r-1")  # nobody waits: just dropped
        inbox.refuse("r-2", "over budget")
        with pytest.raises(StateNotArrived, match="over budget"):
            await inbox.take("r-2", 1)
        assert len(inbox) == 0 and inbox.num_bytes == 0

    asyncio.run(run())


def test_budgets_refuse_what_does_not_fit() -> None:
    budgets = BudgetSection(queued_prompt_tokens=100, waiting_state_bytes=1000)
    assert prefill_refusal(budgets, 60, 40) is None
    assert "budget of 100" in (prefill_refusal(budgets, 61, 40) or "")
    assert state_refusal(budgets, 999, 1) is None
    assert "budget of 1000 B" in (state_refusal(budgets, 999, 2) or "")


def test_an_abort_that_overtakes_its_prefill_is_remembered() -> None:
    table = AttemptTable()
    assert table.cancel("9-0") is None and table.was_aborted("9-0")  # nothing live yet: a tombstone
    assert not table.was_aborted("9-1")
    for i in range(5000):
        table.mark_aborted(f"x{i}-0")
    assert not table.was_aborted("9-0") and table.was_aborted("x4999-0")  # bounded


def test_the_allocator_can_be_tuned_and_trimmed_on_linux() -> None:
    import sys

    from prfaas.serve.memory import trim, tune_allocator

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert tune_allocator() is True
    trim()  # returns whether pages went back; it must not raise
