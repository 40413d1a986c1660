from __future__ import annotations

import pytest

from prfaas.sim.events import EventLoop, EventPriority


def test_events_run_in_time_then_priority_then_schedule_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.schedule(1.0, EventPriority.DISPATCH, seen.append, "dispatch@1")
    loop.schedule(1.0, EventPriority.ARRIVAL, seen.append, "arrival@1")
    loop.schedule(0.5, EventPriority.SAMPLE, seen.append, "sample@0.5")
    loop.schedule(1.0, EventPriority.COMPLETION, seen.append, "completion@1-a")
    loop.schedule(1.0, EventPriority.COMPLETION, seen.append, "completion@1-b")
    loop.run()
    assert seen == ["sample@0.5", "completion@1-a", "completion@1-b", "arrival@1", "dispatch@1"]
    assert loop.now_s == 1.0
    assert loop.num_events == 5


def test_handlers_can_schedule_at_the_same_instant_and_until_stops() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def tick(n: int) -> None:
        seen.append(loop.now_s)
        if n:
            loop.schedule(loop.now_s + 1.0, EventPriority.CONTROL, tick, n - 1)

    loop.schedule(0.0, EventPriority.CONTROL, tick, 10)
    loop.run(until_s=3.5)
    assert seen == [0.0, 1.0, 2.0, 3.0]
    assert loop.now_s == 3.5
    assert loop.num_pending == 1


def test_scheduling_in_the_past_is_an_error() -> None:
    loop = EventLoop(start_s=5.0)
    with pytest.raises(ValueError, match="past"):
        loop.schedule(4.0, EventPriority.ARRIVAL, print)
