from __future__ import annotations

import pytest
from simkit import FixedStep, LinearPrefill

from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.request import SimRequest
from prfaas.sim.servers import DecodeServer, PrefillServer
from prfaas.workload.request import WorkloadRequest


def _req(i: int, n: int = 1000, out: int = 10) -> SimRequest:
    return SimRequest(WorkloadRequest(i, 0.0, n, out))


def test_prefill_is_fcfs_one_at_a_time() -> None:
    loop = EventLoop()
    done: list[tuple[int, float]] = []
    srv = PrefillServer(loop, LinearPrefill(a=0.0, b=1e-3), lambda r: None, lambda r, d: None,
                        lambda r: done.append((r.request_id, loop.now_s)))
    for i, n in enumerate((1000, 2000, 500)):
        srv.enqueue(_req(i, n))
    assert srv.num_queued == 2 and srv.busy_until_s == pytest.approx(1.0)
    loop.run()
    assert done == [(0, pytest.approx(1.0)), (1, pytest.approx(3.0)), (2, pytest.approx(3.5))]
    assert srv.busy_time_s(loop.now_s) == pytest.approx(3.5)
    assert srv.is_idle


def test_prefill_fail_returns_running_then_queued() -> None:
    loop = EventLoop()
    srv = PrefillServer(loop, LinearPrefill(), lambda r: None, lambda r, d: None, lambda r: None)
    for i in range(3):
        srv.enqueue(_req(i))
    lost = srv.fail()
    assert [r.request_id for r in lost] == [0, 1, 2]
    loop.run()  # the stale completion must not fire
    assert srv.is_idle


def test_decode_batches_continuously_and_queues_beyond_bs_max() -> None:
    loop = EventLoop()
    done: dict[int, float] = {}
    srv = DecodeServer(loop, FixedStep(0.01), max_batch=2, on_join=lambda r: None,
                       on_done=lambda r: done.__setitem__(r.request_id, loop.now_s))
    srv.admit(_req(0, out=10))
    srv.admit(_req(1, out=30))
    srv.admit(_req(2, out=10))  # waits for a slot
    assert srv.batch_size == 2 and len(srv.waiting) == 1
    loop.schedule(0.05, EventPriority.ARRIVAL, lambda _: srv.admit(_req(3, out=5)))
    loop.run()
    # r0 leaves at step 10 (0.1 s), r2 joins then and leaves 10 steps later (0.2 s); r3 waits behind r2
    assert done[0] == pytest.approx(0.10)
    assert done[1] == pytest.approx(0.30)
    assert done[2] == pytest.approx(0.20)
    assert done[3] == pytest.approx(0.25)
    # occupancy: 2 slots busy from 0 to 0.3 s (the batch never dropped below 2 before 0.25 s)
    assert srv.occupancy_time_s(loop.now_s) == pytest.approx(0.1 * 2 + 0.1 * 2 + 0.05 * 2 + 0.05 * 1)


def test_decode_step_time_follows_batch_and_context() -> None:
    class ByBatch:
        name = "by-batch"

        def t_step_s(self, batch_size: int, context_tokens: float) -> float:
            return 0.01 * batch_size

    loop = EventLoop()
    done: dict[int, float] = {}
    srv = DecodeServer(loop, ByBatch(), max_batch=4, on_join=lambda r: None,
                       on_done=lambda r: done.__setitem__(r.request_id, loop.now_s))
    srv.admit(_req(0, out=10))
    srv.admit(_req(1, out=20))
    loop.run()
    assert done[0] == pytest.approx(10 * 0.02)  # batch of 2
    assert done[1] == pytest.approx(0.2 + 10 * 0.01)  # then alone
