from __future__ import annotations

import pytest

from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.link import SimLink, Transfer, water_fill

GB = 1e9  # bytes


def test_water_fill_is_max_min_fair() -> None:
    assert water_fill(10.0, [None, None]) == [5.0, 5.0]
    assert water_fill(10.0, [1.0, None, None]) == [1.0, 4.5, 4.5]
    assert water_fill(10.0, [1.0, 2.0]) == [1.0, 2.0]  # capped flows never exceed their cap
    assert water_fill(0.0, [None]) == [0.0]
    rates = water_fill(12.0, [3.0, 100.0, None, 0.5])
    assert sum(rates) == pytest.approx(12.0)
    assert rates[3] == 0.5 and rates[0] == 3.0 and rates[1] == pytest.approx(rates[2])


def _delivered(log: list[tuple[int, float]], loop: EventLoop):  # type: ignore[no-untyped-def]
    return lambda f: log.append((f.transfer_id, loop.now_s))


def test_one_transfer_takes_size_over_capacity_plus_latency() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0, latency_s=0.01)
    log: list[tuple[int, float]] = []
    link.start(1 * GB, _delivered(log, loop))
    loop.run()
    assert log == [(1, pytest.approx(1.0 + 0.01))]  # 1 GB at 8 Gbps = 1 s
    assert link.transfers_total == 1 and link.num_in_flight == 0


def test_concurrent_transfers_share_the_capacity() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0)
    log: list[tuple[int, float]] = []
    link.start(1 * GB, _delivered(log, loop))
    link.start(2 * GB, _delivered(log, loop))
    loop.run()
    # both at 0.5 GB/s until the first ends at 2 s; the second then has 1 GB alone at 1 GB/s -> 3 s
    assert [t for _, t in log] == [pytest.approx(2.0), pytest.approx(3.0)]


def test_layer_wise_release_caps_a_transfer_until_its_prefill_ends() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=80.0)
    log: list[tuple[int, float]] = []
    flow = link.start(1 * GB, _delivered(log, loop), release_rate_bytes_per_s=0.5 * GB)  # prefill of 2 s
    loop.schedule(2.0, EventPriority.COMPLETION, lambda _: link.release_all(flow))
    loop.run()
    assert log == [(1, pytest.approx(2.0))]  # everything was sent as it was produced


def test_capacity_drop_slows_transfers_and_is_recorded() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0)
    log: list[tuple[int, float]] = []
    link.start(2 * GB, _delivered(log, loop))
    loop.schedule(1.0, EventPriority.SCRIPTED, lambda _: link.set_capacity(0.8))
    loop.run()
    # 1 GB in the first second, the remaining 1 GB at 0.1 GB/s -> 10 s more
    assert log == [(1, pytest.approx(11.0))]
    assert link.capacity_history == [(0.0, 8.0), (1.0, 0.8)]


def test_snapshot_reports_goodput_over_the_window_and_in_flight_state() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0, window_s=1.0)
    link.start(10 * GB, lambda f: None)
    loop.run(until_s=2.0)
    snap = link.snapshot()
    assert snap.goodput_gbps == pytest.approx(8.0)
    assert snap.utilisation == pytest.approx(1.0)
    assert snap.transfers_in_flight == 1
    assert snap.bytes_in_flight == 10 * GB  # declared bytes of unfinished transfers
    assert snap.bytes_total == pytest.approx(2 * GB, rel=1e-6)


def test_aborted_transfer_is_never_delivered_and_frees_its_share() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0)
    log: list[tuple[int, float]] = []
    doomed: Transfer = link.start(1 * GB, _delivered(log, loop))
    link.start(1 * GB, _delivered(log, loop))
    loop.schedule(1.0, EventPriority.SCRIPTED, lambda _: link.abort(doomed))
    loop.run()
    assert log == [(2, pytest.approx(1.5))]  # 0.5 GB by 1 s, then the full 1 GB/s
    assert link.transfers_failed == 1


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SimLink(EventLoop(), "l", capacity_gbps=-1.0)
    assert gbps_to_bytes_per_s(8.0) == GB


def test_rtt_inflates_only_while_the_link_is_saturated() -> None:
    loop = EventLoop()
    link = SimLink(loop, "l", capacity_gbps=8.0, latency_s=0.005, buffer_s=0.05)
    flow = link.start(1 * GB, lambda f: None, release_rate_bytes_per_s=0.5 * GB)  # paced below capacity
    loop.run(until_s=0.5)
    assert link.snapshot().rtt_ms == pytest.approx(10.0)
    link.release_all(flow)
    link.start(4 * GB, lambda f: None)  # backlogged: the buffer fills
    loop.run(until_s=1.0)
    assert link.snapshot().rtt_ms == pytest.approx(10.0 + 50.0)
