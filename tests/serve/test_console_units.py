"""The console's state and feed without processes: threshold changes and their reasons, bounded memory, slow
subscribers dropped, the what-if panel (planner + simulator from a window of request records), rate limits."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import msgspec
import pytest

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.bandwidth_aware import BandwidthSignals
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.policy.types import RebalancePlan, RebalanceReason
from prfaas.serve.config import default_config
from prfaas.serve.console_hub import QUEUE_FRAMES, ConsoleHub
from prfaas.serve.console_routes import static_files
from prfaas.serve.console_state import ConsoleState, histograms
from prfaas.serve.console_whatif import MIN_REQUESTS, what_if
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import NodeRegister
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.request_log import RequestLog


@dataclasses.dataclass
class _Gw:
    control: ControlPlane
    metrics: GatewayMetrics


def _gw(policy: str = "prfaas", threshold: int = 1000) -> _Gw:
    metrics = GatewayMetrics()
    control = ControlPlane(default_config(), metrics)
    for name, cluster, role in (("prfaas-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pd-0", ClusterKind.PD, Role.PD_PREFILL), ("pd-1", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url="http://127.0.0.1:9",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=99))
    control.set_policy(policy, threshold)
    return _Gw(control, metrics)


def _record(i: int, n: int, route: str, reason: str, finished_at_s: float | None = None) -> dict[str, Any]:
    prefill = 1e-4 * n + 0.002
    out = {"id": i, "prompt_tokens": n, "uncached_tokens": n, "route": route, "reason": reason,
           "prefill_s": prefill, "queue_s": 0.001, "transfer_bytes": 64 * n if route == "prfaas" else 0,
           "transfer_s": 0.01 if route == "prfaas" else None, "attempt": 0, "ttft_s": prefill + 0.01,
           "latency_s": prefill + 0.16, "completion_tokens": 16, "prefill_node": "pd-0", "decode_node": "pd-1"}
    if finished_at_s is not None:
        out["finished_at_s"] = finished_at_s
    return out


def _sample(state: ConsoleState, gw: _Gw) -> dict[str, Any]:
    return state.sample(gw, time.monotonic(), time.time())


def test_each_threshold_change_is_recorded_once_with_its_reason() -> None:
    gw = _gw("prfaas-bandwidth-aware", 1000)
    state = ConsoleState()
    first = _sample(state, gw)
    assert [e["kind"] for e in first["events"]] == ["initial"]
    assert _sample(state, gw)["events"] == []  # nothing changed: nothing recorded

    gw.control.set_policy(None, 1200)
    (admin,) = _sample(state, gw)["events"]
    assert admin["kind"] == "admin" and "POST /admin/policy" in admin["reason"] and admin["threshold_tokens"] == 1200

    gw.control.last_plan = RebalancePlan(1.0, RebalanceReason.THRESHOLD_ONLY, new_threshold_tokens=900)
    gw.control.set_policy(None, 900)
    (rebalance,) = _sample(state, gw)["events"]
    assert rebalance["kind"] == "rebalance" and "threshold_only" in rebalance["reason"]

    router = gw.control.router
    assert isinstance(router, BandwidthAwareRouter)
    router.controller.config = dataclasses.replace(router.controller.config, control_interval_s=0.0)
    hot = BandwidthSignals(utilisation=0.97, capacity_gbps=1.0, goodput_gbps=0.97)
    for k in range(3):
        router.controller.update(hot, float(k), 900)
    frame = _sample(state, gw)
    (raised,) = frame["events"]
    assert raised["kind"] == "short_term" and "raised" in raised["reason"] and "egress link hot" in raised["reason"]
    assert raised["threshold_tokens"] == router.effective_threshold() > 900 and raised["base_tokens"] == 900
    assert frame["router"]["controller"]["cause"] == "link"
    assert [e["kind"] for e in state.snapshot()["events"]] == ["initial", "admin", "rebalance", "short_term"]

    gw.control.set_policy("prfaas", None)
    (swap,) = _sample(state, gw)["events"]
    assert swap["kind"] == "policy" and "prfaas" in swap["reason"]


def test_requests_counters_and_series_stay_bounded() -> None:
    gw = _gw()
    state = ConsoleState(history_points=5, requests_kept=3, events_kept=2)
    for i in range(10):
        state.add_request(_record(i + 1, 2000 if i % 2 else 100, "prfaas" if i % 2 else "local",
                                  "long_offload" if i % 2 else "short_local"))
    frame = _sample(state, gw)
    assert len(frame["requests"]) == 3 and [r["id"] for r in frame["requests"]] == [8, 9, 10]
    assert frame["counts"]["by_reason"] == {"short_local": 5, "long_offload": 5}
    assert frame["counts"]["by_route"]["prfaas"] == 5 and frame["counts"]["offload_fraction"] == 0.5
    assert frame["requests"][0]["decode_s"] == pytest.approx(0.15)
    for _ in range(20):
        _sample(state, gw)
    snap = state.snapshot()
    assert len(snap["threshold_series"]) == 5 and len(snap["requests"]) == 3
    assert _sample(state, gw)["requests"] == []  # a request is sent in one frame only


def test_a_restarted_gateway_starts_the_console_from_its_request_log(tmp_path: Any) -> None:
    log = RequestLog(tmp_path / "log.jsonl")
    log.append(_record(log.next_id(), 2000, "prfaas", "long_offload", finished_at_s=time.time()))
    log.close()
    hub = ConsoleHub(_gw(), request_log=RequestLog(tmp_path / "log.jsonl"))
    assert [r["id"] for r in hub.state.snapshot()["requests"]] == [1]
    assert hub.state.by_reason == {"long_offload": 1} and len(hub.timed_records) == 1


def test_latency_histograms_per_route_come_from_the_gateway_metrics() -> None:
    gw = _gw()
    for v in (0.02, 0.03, 0.4):
        gw.metrics.ttft["prfaas"].observe(v)
    gw.metrics.itl["local"].observe(0.004)
    h = histograms(gw.metrics)
    assert h["ttft"]["prfaas"]["count"] == 3 and h["ttft"]["prfaas"]["le"][-1] is None
    assert h["ttft"]["prfaas"]["counts"][-1] == 3 and h["ttft"]["local"]["count"] == 0
    assert h["itl"]["local"]["sum"] == pytest.approx(0.004)


def test_a_slow_subscriber_is_dropped_and_told_so() -> None:
    async def main() -> None:
        hub = ConsoleHub(_gw())
        slow, fast = hub.subscribe(), hub.subscribe()
        assert slow is not None and fast is not None
        for _ in range(QUEUE_FRAMES):
            hub.tick()
            await fast.queue.get()
        assert not slow.dropped and len(hub.subscribers) == 2
        hub.tick()  # one frame more than the slow one's queue holds
        assert slow.dropped and hub.subscribers == {fast} and hub.dropped_total == 1
        chunks = [c async for c in hub.stream(slow)]
        assert chunks[0].startswith(b"event: hello\n") and chunks[-1].startswith(b"event: dropped\n")
        assert len(chunks) == 2  # hello, then the drop notice: the queued frames are not replayed
        await hub.close()

    asyncio.run(main())


def test_hello_carries_a_boot_id_and_the_full_snapshot() -> None:
    async def main() -> None:
        hub = ConsoleHub(_gw())
        hub.tick()
        sub = hub.subscribe()
        assert sub is not None
        stream = hub.stream(sub)
        name, _, data = (await anext(stream)).partition(b"\ndata: ")
        hello = msgspec.json.decode(data)
        assert name == b"event: hello" and hello["boot_id"] == hub.boot_id
        assert hello["snapshot"]["frame"]["router"]["threshold_tokens"] == 1000
        assert {n["name"] for n in hello["snapshot"]["frame"]["nodes"]} == {"prfaas-0", "pd-0", "pd-1"}
        hub.tick()
        tick = await anext(stream)
        assert tick.startswith(b"event: tick\n") and hub.boot_id.encode() in tick
        await stream.aclose()
        assert hub.subscribers == set()  # a closed stream unsubscribes
        assert ConsoleHub(_gw()).boot_id != hub.boot_id
        await hub.close()

    asyncio.run(main())


def _window(count: int, now: float) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out = []
    for i in range(count):
        n = int(min(8000, max(64, rng.lognormvariate(6.7, 1.0))))
        route, reason = ("prfaas", "long_offload") if n > 1000 else ("local", "short_local")
        out.append(_record(i + 1, n, route, reason, finished_at_s=now - 60 + i))
    return out


CLUSTER = {"policy": "prfaas", "threshold_tokens": 1000, "effective_threshold_tokens": 1000, "max_batch": 32,
           "link_capacity_gbps": 1.0,
           "instances": [{"role": r, "is_up": True} for r in ("prfaas_prefill", "pd_prefill", "pd_decode")]}


def test_what_if_puts_planner_and_simulator_next_to_the_live_window() -> None:
    now = time.time()
    records = [*_window(60, now), _record(999, 5000, "prfaas", "long_offload", finished_at_s=now - 500)]
    result = what_if(records, CLUSTER, 120.0, now)
    assert result["errors"] == []
    live = result["live"]
    assert live["requests"] == 60  # the record older than the window is left out
    assert 0 < live["offload_fraction"] < 1 and live["threshold_tokens"] == 1000
    assert result["setup"]["n_prfaas"] == 1 and result["setup"]["rate_rps"] == pytest.approx(1.0, rel=0.05)
    sim, plan = result["simulator"], result["planner"]
    assert sim["ttft_mean_s"] > 0 and 0 < sim["offload_fraction"] < 1
    assert plan["throughput_rps"] > 0 and plan["threshold_tokens"] > 0


def test_what_if_needs_enough_requests_in_the_window() -> None:
    now = time.time()
    result = what_if(_window(MIN_REQUESTS - 1, now), CLUSTER, 120.0, now)
    assert result["live"] is None and result["planner"] is None
    assert f"needs at least {MIN_REQUESTS}" in result["errors"][0]


def test_what_if_runs_off_the_event_loop_and_is_rate_limited() -> None:
    async def main() -> None:
        hub = ConsoleHub(_gw(), whatif_interval_s=3600)
        for r in _window(20, time.time()):
            hub.on_request(r)
        assert hub._maybe_whatif() is False  # no console connected: nothing runs
        sub = hub.subscribe()
        assert sub is not None
        assert hub.request_whatif() is True
        assert hub.request_whatif() is False  # one at a time, and at most once per 5 s
        assert hub._whatif_task is not None
        await hub._whatif_task
        assert hub.whatif_runs == 1 and hub.whatif is not None and hub.whatif["live"]["requests"] == 20
        assert (await sub.queue.get()).startswith(b"event: whatif\n")
        hub.tick()
        assert hub.whatif_runs == 1  # the automatic run waits for its interval
        await hub.close()

    asyncio.run(main())


def test_the_static_console_is_shipped_and_references_only_shipped_files() -> None:
    files = static_files()
    assert {"index.html", "console.js", "views.js", "charts.js", "console.css"} <= set(files)
    page = files["index.html"].decode()
    for name in ("console.js", "console.css"):
        assert f"/console/static/{name}" in page
    for name, body in files.items():
        if name.endswith(".js"):
            for line in body.decode().splitlines():
                if line.startswith("import "):
                    assert line.split('"./')[1].split('"')[0] in files, line
    assert "<script>" not in page and " style=" not in page  # nothing inline: the CSP allows none


def test_the_number_of_connected_consoles_is_bounded() -> None:
    from prfaas.serve.console_hub import MAX_SUBSCRIBERS

    hub = ConsoleHub(_gw())
    subs = [hub.subscribe() for _ in range(MAX_SUBSCRIBERS)]
    assert all(s is not None for s in subs) and hub.subscribe() is None
    hub.unsubscribe(subs[0])  # type: ignore[arg-type]
    assert hub.subscribe() is not None


def test_a_raise_names_the_signals_over_their_high_marks() -> None:
    from prfaas.policy.bandwidth_aware import BandwidthAwareConfig
    from prfaas.serve.console_state import hot_signals

    c = BandwidthAwareConfig()
    assert hot_signals(c, BandwidthSignals(utilisation=0.5, rtt_ms=1.0), 1.0) == []
    hot = hot_signals(c, BandwidthSignals(utilisation=0.95, rtt_ms=4.0, retransmit_rate=0.02,
                                          queue_per_instance=5.0), 1.0)
    assert [h.split()[0] for h in hot] == ["utilisation", "RTT", "retransmits", "PrfaaS"]
    assert "4.0x its 1.00 ms baseline" in hot[1]


def test_a_role_conversion_in_progress_is_shown_on_its_node() -> None:
    gw = _gw()
    state = ConsoleState()
    gw.control.nodes.begin_switch("pd-1", Role.PD_PREFILL)
    nodes = {n["name"]: n for n in _sample(state, gw)["nodes"]}
    assert nodes["pd-1"]["converting"] and nodes["pd-1"]["pending_role"] == "pd_prefill"
    assert nodes["pd-1"]["role"] == "draining" and not nodes["pd-0"]["converting"]
    gw.control.nodes.finish_switch("pd-1", Role.PD_PREFILL)
    nodes = {n["name"]: n for n in _sample(state, gw)["nodes"]}
    assert not nodes["pd-1"]["converting"] and nodes["pd-1"]["role"] == "pd_prefill"
    assert [n["name"] for n in _sample(state, gw)["nodes"]] == ["pd-0", "pd-1", "prfaas-0"]


def test_stopping_the_streams_ends_every_console_and_refuses_new_ones() -> None:
    async def main() -> None:
        hub = ConsoleHub(_gw(), tick_s=0.05)
        hub.start()
        sub = hub.subscribe()
        assert sub is not None
        stream = hub.stream(sub)
        assert (await anext(stream)).startswith(b"event: hello\n")
        hub.stop_streams()  # as the server's signal handler calls it
        rest = [chunk async for chunk in stream]  # ends (a tick or two may come first), never hangs
        assert all(c.startswith(b"event: tick\n") for c in rest)
        assert hub.subscribers == set() and hub.subscribe() is None
        await hub.close()

    asyncio.run(asyncio.wait_for(main(), 30))
