"""The offered-load ratio of a region (`policy.region_load`) and what it decides in a node's preemption rule
(`FairQueue.set_load` / `preempts`): a burst never pauses a calm region, a calm region cuts into a burst, and
regions as calm as each other fall back to the fair queue's own rule."""

from __future__ import annotations

import pytest

from prfaas.policy.fair_queue import FairQueue
from prfaas.policy.region_load import BURST_RATIO, MIN_ARRIVALS, NEUTRAL_RATIO, RegionLoadMeter, burst_order


def _arrivals(meter: RegionLoadMeter, start_s: float, end_s: float, rate_rps: float) -> None:
    t, step = start_s, 1.0 / rate_rps
    while t < end_s:
        meter.observe(t)
        t += step


def test_the_ratio_is_arrivals_over_the_window_against_the_expected_rate() -> None:
    meter = RegionLoadMeter(expected_rps=2.0, window_s=10.0)
    assert meter.ratio(0.0) == NEUTRAL_RATIO  # nothing seen yet
    _arrivals(meter, 0.0, 30.0, 2.0)
    assert meter.ratio(30.0) == pytest.approx(1.0, abs=0.06)
    _arrivals(meter, 30.0, 40.0, 10.0)  # 5x for a window
    assert meter.ratio(40.0) == pytest.approx(5.0, abs=0.11)
    assert meter.ratio(60.0) < 0.4  # 20 s of silence: the last 16 arrivals over the time since the oldest
    early = RegionLoadMeter(expected_rps=1.0, window_s=8.0)
    for k in range(MIN_ARRIVALS - 1):  # fewer than MIN_ARRIVALS: however fast, not yet a measure
        early.observe(0.01 * k)
    assert early.ratio(0.2) == NEUTRAL_RATIO
    early.observe(0.2)  # the 16th in 0.2 s, 8 s expected for them: over the time since the first arrival
    assert early.ratio(0.2) == pytest.approx(MIN_ARRIVALS / 0.2)


def test_a_slow_region_is_measured_over_its_last_arrivals_not_a_few_in_the_window() -> None:
    meter = RegionLoadMeter(expected_rps=0.3, window_s=10.0)  # ~3 arrivals a window: too few to tell a burst
    _arrivals(meter, 0.0, 200.0, 0.3)
    assert meter.ratio(200.0) == pytest.approx(1.0, abs=0.1)  # over its last MIN_ARRIVALS (~53 s)
    _arrivals(meter, 200.0, 215.0, 1.5)  # a 5x burst: within 15 s the window holds more than 16
    assert meter.ratio(215.0) == pytest.approx(5.0, abs=0.6)


def test_meter_arguments_are_checked() -> None:
    for rps, window in ((0.0, 10.0), (1.0, 0.0), (-1.0, 5.0)):
        with pytest.raises(ValueError, match="expected_rps > 0 and window_s > 0"):
            RegionLoadMeter(rps, window)


def test_burst_order_decides_only_when_the_ratios_are_far_apart() -> None:
    assert burst_order(5.0, 1.0) is False  # the queued region bursts: it never pauses the calm one
    assert burst_order(1.0, 5.0) is True  # the running region bursts: the calm one cuts in
    assert burst_order(1.0, 1.0 * BURST_RATIO) is None and burst_order(1.4, 0.7) is None  # noise, not a burst
    assert burst_order(0.0, 0.0) is None and burst_order(0.5, 0.0) is False and burst_order(0.0, 0.5) is True


def _running(q: FairQueue[str], item: str, region: str, cost_s: float) -> float:
    q.push(item, region, cost_s)
    _, got, start, cost = q.pop_entry()
    assert got == region
    return q.finish_tag(region, start, cost)


def test_a_bursting_region_never_pauses_a_calm_one_that_used_the_node_more() -> None:
    """The live failure this rule answers: the quiet region had used this node far more, so by the node's own
    history the bursting region was the lighter user and paused it."""
    q: FairQueue[str] = FairQueue()
    for _ in range(6):
        _running(q, "u", "us", 3.0)
    finish = _running(q, "u0", "us", 10.0)
    q.push("e0", "eu", 1.0)
    assert q.preempts(["us"], finish)  # by history alone eu (7x less use) pauses us
    q.set_load("us", 1.0)
    q.set_load("eu", 5.0)  # but eu is bursting, us is not
    assert not q.preempts(["us"], finish)


def test_a_calm_region_cuts_into_a_bursting_one_whatever_the_tags() -> None:
    q: FairQueue[str] = FairQueue()
    q.set_load("x", 5.0)
    q.set_load("y", 1.0)
    for _ in range(6):
        _running(q, "y", "y", 3.0)  # y used the node much more: no history argument for it
    finish = _running(q, "x0", "x", 1.0)
    q.push("y0", "y", 4.0)  # y's tag is after x0's finish: the fair order alone would let x0 end first
    assert q.preempts(["x"], finish)
    assert not q.preempts(["y", "x"], finish)  # still never nested over its own paused job


def test_neutral_or_close_ratios_keep_the_fair_queues_own_rule() -> None:
    def verdicts(loads: dict[str, float]) -> list[bool]:
        out = []
        for history in ([("x", 3.0)] * 6 + [("y", 3.0)], [("x", 3.0), ("y", 3.0)] * 4):
            q: FairQueue[str] = FairQueue()
            for region, load in loads.items():
                q.set_load(region, load)
            for region, cost in history:
                _running(q, region, region, cost)
            finish = _running(q, "x0", "x", 10.0)
            q.push("y0", "y", 1.0)
            out.append(q.preempts(["x"], finish))
        return out

    assert verdicts({}) == [True, False]
    assert verdicts({"x": 1.2, "y": 0.8}) == [True, False] == verdicts({"x": 1.0, "y": 1.0})
    with pytest.raises(ValueError, match="load ratio"):
        FairQueue().set_load("x", -1.0)


def test_a_bursting_regions_backlog_does_not_start_before_a_calm_regions_queued_job() -> None:
    """At the quiet region's home node, where it used the node a lot before (its finish tag is far ahead) and the
    bursting region rarely did: by start tags alone the burst's whole backlog starts first. With the regions'
    ratios 3x apart the calm region's queued job starts next, then the burst's in their own order; within 3x
    (or without ratios) the plain start-tag order stands."""
    def fill(q: FairQueue[str]) -> None:
        for k in range(6):
            q.push(f"us{k}", "us", 1.0)
            q.pop()  # us has used this node: its next start tag is 6 ahead
        for k in range(4):
            q.push(f"eu{k}", "eu", 1.0)  # the burst's backlog, start tags 5..8 (us-next: 6)
        q.push("us-next", "us", 1.0)

    plain: FairQueue[str] = FairQueue()
    fill(plain)
    assert [plain.pop()[0] for _ in range(5)] == ["eu0", "eu1", "us-next", "eu2", "eu3"]
    stamped: FairQueue[str] = FairQueue()
    fill(stamped)
    stamped.set_load("eu", 5.0)
    stamped.set_load("us", 1.0)
    assert stamped.head() == "us-next"
    assert [stamped.pop()[0] for _ in range(5)] == ["us-next", "eu0", "eu1", "eu2", "eu3"]
    close: FairQueue[str] = FairQueue()
    fill(close)
    close.set_load("eu", 2.5)
    close.set_load("us", 1.0)
    assert [close.pop()[0] for _ in range(5)] == ["eu0", "eu1", "us-next", "eu2", "eu3"]
    with pytest.raises(IndexError):
        FairQueue().pop()
