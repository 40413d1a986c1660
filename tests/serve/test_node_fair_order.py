"""A node's queued prefills start in weighted fair order across the PD regions that sent them (`serve.worker` with
`policy.fair_queue.FairQueue`); jobs without a region keep FIFO. Worker units, the config's weights and costs, the
gateway stamping its region, and an in-process node (emulated engine) answering signed /prefill calls."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.attempts import PrefillCancelled, split_attempt_id
from prfaas.serve.backend import StubBackend
from prfaas.serve.config import EngineKind, default_config, load_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.driver import ForcedRoute, GenerationJob, RequestDriver
from prfaas.serve.emulated_backend import make_emulated_backend
from prfaas.serve.messages import NodeRegister, PrefillReply, PrefillRequest, SamplingMsg, TokenChunk, decode, encode
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.prefill_order import prefill_cost_s, region_weights
from prfaas.serve.worker import ModelWorker

ANTI_HANG_S = 60.0


class _Gated:
    """A worker whose first job holds the model thread until `release()`, so that the rest queue behind it."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.worker = ModelWorker(StubBackend(), max_batch=4, on_events=lambda _events: None, region_weights=weights)
        self.started: list[str] = []
        self._gate = threading.Event()
        self._blocking = threading.Event()
        self._lock = threading.Lock()
        self.worker.start()
        self.blocker = self.submit("blocker", "ra", 1.0)
        assert self._blocking.wait(ANTI_HANG_S)  # running: what follows queues

    def submit(self, name: str, region: str | None, cost_s: float) -> Any:
        def job() -> str:
            with self._lock:
                self.started.append(name)
            if name == "blocker":
                self._blocking.set()
                assert self._gate.wait(ANTI_HANG_S)
            return name

        return self.worker.submit(job, region=region, cost_s=cost_s)

    def release_and_drain(self, futures: list[Any]) -> list[str]:
        self._gate.set()
        for future in [self.blocker, *futures]:
            future.exception(ANTI_HANG_S)
        self.worker.stop()
        return self.started


def test_a_lone_region_b_job_starts_after_about_one_region_a_job_not_the_burst() -> None:
    gated = _Gated()
    burst = [gated.submit(f"a{i}", "ra", 1.0) for i in range(5)]
    lone = gated.submit("b0", "rb", 1.0)
    assert gated.worker.num_queued_jobs == 6
    order = gated.release_and_drain([*burst, lone])
    assert order == ["blocker", "b0", "a0", "a1", "a2", "a3", "a4"], order  # FIFO would start b0 last


def test_weights_give_a_region_its_share_of_starts() -> None:
    gated = _Gated({"ra": 2.0, "rb": 1.0})
    futures = [gated.submit(f"a{i}", "ra", 1.0) for i in range(6)] + [gated.submit(f"b{i}", "rb", 1.0)
                                                                      for i in range(3)]
    order = gated.release_and_drain(futures)[1:]
    # both backlogged: ra (weight 2) starts two jobs per rb job
    assert [name[0] for name in order] == ["b", "a", "a", "b", "a", "a", "b", "a", "a"], order


def test_jobs_without_a_region_keep_fifo_whatever_their_cost() -> None:
    gated = _Gated()
    costs = [5.0, 0.1, 3.0, 0.0, 9.0, 0.2]
    futures = [gated.submit(f"j{i}", None, cost) for i, cost in enumerate(costs)]
    order = gated.release_and_drain(futures)
    assert order == ["blocker", *(f"j{i}" for i in range(len(costs)))]


def test_a_queued_regional_job_is_withdrawn_and_never_runs() -> None:
    gated = _Gated()
    kept = gated.submit("a0", "ra", 1.0)
    gone = gated.submit("b0", "rb", 1.0)
    assert gated.worker.num_queued_jobs == 2
    assert gated.worker.withdraw(gone, PrefillCancelled("aborted while queued"))
    assert gated.worker.num_queued_jobs == 1
    assert not gated.worker.withdraw(gone, PrefillCancelled("twice"))
    order = gated.release_and_drain([kept])
    with pytest.raises(PrefillCancelled):
        gone.result(ANTI_HANG_S)
    assert order == ["blocker", "a0"]


def test_a_cancelled_queued_job_is_skipped_and_the_order_goes_on() -> None:
    gated = _Gated()
    first = gated.submit("a0", "ra", 1.0)
    skipped = gated.submit("b0", "rb", 1.0)
    last = gated.submit("b1", "rb", 1.0)
    assert skipped.cancel()  # what `admission.await_start` does when the start deadline passes
    order = gated.release_and_drain([first, last])
    assert order == ["blocker", "a0", "b1"]


# --- preemption at a backend's safe points ------------------------------------------------------------------
class _PausableBackend(StubBackend):
    preempt_point: Any = None  # what the worker sets (as on the emulated engine)


class _SafePoints:
    """A worker whose jobs are scripted: each waits for its gate, then reaches one safe point and ends."""

    def __init__(self, *, preempt: bool = True) -> None:
        self.backend = _PausableBackend()
        self.worker = ModelWorker(self.backend, max_batch=4, on_events=lambda _events: None, preempt=preempt)
        self.events: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.running: dict[str, threading.Event] = {}
        self.paused_s: dict[str, float] = {}
        self._lock = threading.Lock()
        self.worker.start()

    def submit(self, name: str, region: str, cost_s: float) -> Any:
        self.gates[name], self.running[name] = threading.Event(), threading.Event()

        def job() -> str:
            with self._lock:
                self.events.append(f"{name}+")
            self.running[name].set()
            assert self.gates[name].wait(ANTI_HANG_S)
            point = self.backend.preempt_point
            self.paused_s[name] = point() if point is not None else 0.0
            with self._lock:
                self.events.append(f"{name}-")
            return name

        return self.worker.submit(job, region=region, cost_s=cost_s)


def test_another_regions_job_runs_nested_at_a_safe_point_and_the_paused_one_resumes() -> None:
    w = _SafePoints()
    a0 = w.submit("a0", "ra", 10.0)
    assert w.running["a0"].wait(ANTI_HANG_S)
    a1 = w.submit("a1", "ra", 1.0)  # ra's own next job: never preempts a0
    b0 = w.submit("b0", "rb", 1.0)  # rb idle: its turn (tag 0) comes before a0's finish (tag 10)
    w.gates["b0"].set()
    w.gates["a0"].set()  # a0 reaches its safe point: b0 runs there, to its end
    assert b0.result(ANTI_HANG_S) == "b0" and a0.result(ANTI_HANG_S) == "a0"
    w.gates["a1"].set()
    assert a1.result(ANTI_HANG_S) == "a1"
    w.worker.stop()
    assert w.events == ["a0+", "b0+", "b0-", "a0-", "a1+", "a1-"], w.events
    assert w.worker.preemptions_total == 1
    assert w.paused_s["a0"] > 0.0 and w.paused_s["b0"] == 0.0  # a0 learns how long it was paused


def test_without_preemption_or_for_a_late_turn_or_without_a_backlog_the_running_job_ends_first() -> None:
    for preempt, b_cost_after_s, a_backlog in ((False, 0.0, True), (True, 20.0, True), (True, 0.0, False)):
        w = _SafePoints(preempt=preempt)
        a0 = w.submit("a0", "ra", 10.0)
        assert w.running["a0"].wait(ANTI_HANG_S)
        # ra's backlog (2 s, more than rb's 1 s behind b_early): without one, ra is never paused
        a1 = w.submit("a1", "ra", 2.0) if a_backlog else None
        if b_cost_after_s:  # b_early (tag 0) preempts; then rb's next tag (20) is after a0's finish (10)
            w.submit("b_early", "rb", b_cost_after_s)
            w.gates["b_early"].set()
        b0 = w.submit("b0", "rb", 1.0)
        w.gates["b0"].set()
        if a1 is not None:
            w.gates["a1"].set()
        w.gates["a0"].set()
        assert a0.result(ANTI_HANG_S) == "a0" and b0.result(ANTI_HANG_S) == "b0"
        assert a1 is None or a1.result(ANTI_HANG_S) == "a1"
        w.worker.stop()
        if not preempt:  # a1 (tag 10) and b0 (tag 0): the fair order starts b0 first once a0 ends
            assert w.events == ["a0+", "a0-", "b0+", "b0-", "a1+", "a1-"] and w.worker.preemptions_total == 0, w.events
        elif b_cost_after_s:  # b_early (tag 0) preempts; b0 (tag 20, behind b_early's 20 s) is checked again after
            # it and waits; a1 (tag 10) then comes before b0
            assert w.events == ["a0+", "b_early+", "b_early-", "a0-", "a1+", "a1-", "b0+", "b0-"], w.events
            assert w.worker.preemptions_total == 1
        else:  # rb's turn comes first, but ra has nothing queued: calm regions do not pause each other
            assert w.events == ["a0+", "a0-", "b0+", "b0-"] and w.worker.preemptions_total == 0, w.events


def test_our_torch_engine_runs_another_regions_prefill_between_two_layers() -> None:
    """The torch backend's safe points (engine.prefill): a PrfaaS node on our own engine pauses a running prefill
    between two layers for another region's turn; both prefills give what they give alone."""
    from prfaas.serve.torch_backend import TorchBackend

    model = msgspec.structs.replace(default_config().model, num_layers=4, hidden_size=128)
    backend = TorchBackend.load(model)
    sampling = SamplingMsg(max_tokens=1)
    long_prompt, short_prompt = list(range(3, 203)), list(range(7, 47))
    alone = {name: backend.prefill(f"{name}-alone", tokens, sampling, None).first_token
             for name, tokens in (("a0", long_prompt), ("b0", short_prompt))}
    worker = ModelWorker(backend, max_batch=4, on_events=lambda _events: None)
    assert backend.preempt_point == worker.preempt_point  # the worker wires the engine's safe points
    order: list[str] = []
    layers_a0: list[int] = []
    queued: dict[str, Any] = {}

    def prefill(name: str, tokens: list[int]) -> Any:
        def job() -> int:
            order.append(f"{name}+")

            def on_layer(index: int, _views: Any) -> None:
                if name != "a0":
                    return
                layers_a0.append(index)
                if len(layers_a0) == 1:  # a0 is in its first layer: the others queue now
                    queued["a1"] = worker.submit(prefill("a1", short_prompt), region="ra", cost_s=2.0)
                    queued["b0"] = worker.submit(prefill("b0", short_prompt), region="rb", cost_s=1.0)

            out = backend.prefill(name, tokens, sampling, on_layer)
            order.append(f"{name}-")
            return out.first_token

        return job

    worker.start()
    try:
        a0 = worker.submit(prefill("a0", long_prompt), region="ra", cost_s=10.0)
        assert a0.result(ANTI_HANG_S) == alone["a0"]
        assert queued["b0"].result(ANTI_HANG_S) == alone["b0"] and queued["a1"].result(ANTI_HANG_S) == alone["b0"]
    finally:
        worker.stop()
    assert order == ["a0+", "b0+", "b0-", "a0-", "a1+", "a1-"], order
    assert worker.preemptions_total == 1
    assert layers_a0 == sorted(set(layers_a0)) and len(layers_a0) == 4  # each of a0's layers once, in order


def test_the_emulated_prefill_moves_its_remaining_layers_by_the_pause() -> None:
    cfg = default_config()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    from prfaas.serve.emulated_backend import EmulatedBackend

    base = make_emulated_backend(msgspec.structs.replace(cfg.model, engine="emulated"), ClusterKind.PRFAAS)
    backend = EmulatedBackend(base.prefill_model, 0.01, clock=lambda: now[0], sleep=sleep)
    tokens = [1 + i % 1000 for i in range(8000)]
    duration_s = backend.expected_prefill_s(len(tokens))
    backend.prefill("r-0", tokens, SamplingMsg(max_tokens=2), None)
    assert now[0] == pytest.approx(duration_s)
    calls: list[float] = []

    def point() -> float:  # another prefill ran here for 1 s (once)
        calls.append(now[0])
        if len(calls) == 1:
            now[0] += 1.0
            return 1.0
        return 0.0

    backend.preempt_point = point
    now[0] = 0.0
    backend.prefill("r-1", tokens, SamplingMsg(max_tokens=2), None)
    assert len(calls) == len(backend.layers) - 1  # between layers, not after the last
    assert now[0] == pytest.approx(duration_s + 1.0)  # its own layers still take their time after the pause


# --- the deployment's weights and costs ---------------------------------------------------------------------
TOPOLOGY_TOML = """
[model]
name = "stub"
[gateway]
port = 0
[[gateways]]
region = "ra"
port = 0
[[gateways]]
region = "rb"
port = 0
[[topology.prfaas]]
name = "pa"
[[topology.pd]]
name = "ra"
instances = 2
prefill_instances = 1
{ra_traffic}
[[topology.pd]]
name = "rb"
instances = 4
prefill_instances = 1
{rb_traffic}
[[topology.links]]
prfaas = "pa"
pd = "ra"
capacity_gbps = 10
[[topology.links]]
prfaas = "pa"
pd = "rb"
capacity_gbps = 10
[[nodes]]
name = "pa-0"
cluster = "prfaas"
role = "prfaas_prefill"
site = "pa"
[[nodes]]
name = "ra-d"
cluster = "pd"
role = "pd_decode"
site = "ra"
[[nodes]]
name = "rb-d"
cluster = "pd"
role = "pd_decode"
site = "rb"
"""


def _topology_config(tmp_path: Path, ra_traffic: str = "", rb_traffic: str = "") -> Any:
    path = tmp_path / "deploy.toml"
    path.write_text(TOPOLOGY_TOML.format(ra_traffic=ra_traffic, rb_traffic=rb_traffic), encoding="utf-8")
    return load_config(path)


def test_region_weights_are_the_fair_share_weights(tmp_path: Path) -> None:
    assert region_weights(default_config()) == {}  # no topology: every region weighs 1
    assert region_weights(_topology_config(tmp_path)) == {"ra": 2.0, "rb": 4.0}  # instance counts
    traffic = _topology_config(tmp_path, "traffic_rps = 3.0", "traffic_rps = 1.5")
    assert region_weights(traffic) == {"ra": 3.0, "rb": 1.5}


def test_prefill_cost_is_the_emulated_engines_seconds_else_proportional_to_tokens() -> None:
    cfg = default_config()
    emulated = make_emulated_backend(cfg.model, ClusterKind.PRFAAS)
    assert prefill_cost_s(emulated, 20_000) == emulated.prefill_model.t_prefill_s(20_000) > 0
    stub = StubBackend()
    assert prefill_cost_s(stub, 1_000) > 0
    assert prefill_cost_s(stub, 2_000) == pytest.approx(2 * prefill_cost_s(stub, 1_000))


def test_a_region_gateway_stamps_its_region_on_the_prefill() -> None:
    sent = asyncio.run(_prefills_sent("ra")), asyncio.run(_prefills_sent(None))
    assert [[(m.region, m.region_load) for m in msgs] for msgs in sent] == [[("ra", 1.0)], [(None, 1.0)]]  # no
    # topology: no meter, the neutral ratio


def test_attempt_ids_are_unique_across_region_gateways_and_gateway_restarts() -> None:
    """Every gateway counts its requests from the same start; a PrfaaS node serving two regions keys prefills,
    transfers and aborts by attempt id, so the ids carry the gateway's region and a token of its process."""
    ids = [m.request_id for region in ("ra", "rb", "ra") for m in asyncio.run(_prefills_sent(region))]
    assert len(set(ids)) == 3  # the same request number 1, attempt 0, in three gateways (the third a restart)
    assert ids[0].startswith("ra.") and ids[1].startswith("rb.") and all(i.endswith(".1-0") for i in ids)
    assert split_attempt_id(ids[0]) == (ids[0].removesuffix("-0"), 0)


def test_a_region_gateway_stamps_its_offered_load_and_the_node_queue_takes_it() -> None:
    from prfaas.policy.region_load import RegionLoadMeter

    meter = RegionLoadMeter(expected_rps=2.0, window_s=4.0)
    now_s = time.monotonic()  # the gateway's clock
    meter.observe(now_s - 10.0)  # an old arrival: the window is full (and this one out of it)
    for k in range(20):  # 20 arrivals in the last 4 s at an expected 2 req/s, then the request itself: 21 / 8
        meter.observe(now_s - 3.9 + k * 0.19)
    (msg,) = asyncio.run(_prefills_sent("ra", meter))
    region, load = msg.region, msg.region_load
    assert region == "ra" and 2.5 < load <= 21 / 8
    worker = ModelWorker(StubBackend(), max_batch=4, on_events=lambda _events: None)
    worker.submit(lambda: None, region="ra", cost_s=1.0, load=load)
    assert worker._jobs._load == {"ra": load}  # what FairQueue.preempts compares


def test_the_gateway_meter_counts_its_region_against_its_weight_in_the_deployments_time(tmp_path: Path) -> None:
    from prfaas.policy.region_load import LOAD_WINDOW_S
    from prfaas.serve.prefill_order import region_load_meter

    assert region_load_meter(default_config()) is None  # no topology
    cfg = _topology_config(tmp_path, "traffic_rps = 3.0", "traffic_rps = 1.5")
    eu = msgspec.structs.replace(cfg, gateway=msgspec.structs.replace(cfg.gateway, region="rb"))
    meter = region_load_meter(eu)
    assert meter is not None and meter.expected_rps == 1.5 and meter.window_s == LOAD_WINDOW_S
    emulated = msgspec.structs.replace(eu, model=msgspec.structs.replace(
        eu.model, engine=EngineKind.EMULATED, emulated=msgspec.structs.replace(eu.model.emulated, time_scale=0.25)))
    assert region_load_meter(emulated).window_s == LOAD_WINDOW_S * 0.25  # type: ignore[union-attr]
    other = msgspec.structs.replace(cfg, gateway=msgspec.structs.replace(cfg.gateway, region="nowhere"))
    assert region_load_meter(other) is None


async def _prefills_sent(region: str | None, meter: Any = None) -> list[PrefillRequest]:
    """Drive request 1 through a gateway (region `region`; `meter`: its offered-load meter) against a scripted
    node; the prefill requests it sent."""
    seen: list[PrefillRequest] = []

    async def prefill(request: web.Request) -> web.Response:
        msg = decode(await request.read(), PrefillRequest)
        seen.append(msg)
        return web.Response(body=encode(PrefillReply(request_id=msg.request_id, first_token=3, num_prompt_tokens=20,
                                                     num_cached_tokens=0, queue_s=0.0, prefill_s=0.0,
                                                     transfer_bytes=0, transfer_s=None)))

    async def decode_stream(request: web.Request) -> web.Response:
        chunk = TokenChunk(request_id="x", token_ids=[4], finish_reason="length")
        return web.Response(body=encode(chunk) + b"\n", content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_post("/prefill", prefill)
    app.router.add_post("/decode", decode_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = default_config()
    cfg = msgspec.structs.replace(base, gateway=msgspec.structs.replace(base.gateway, region=region))
    control = ControlPlane(cfg, GatewayMetrics())
    for name, role in (("pd-0", Role.PD_PREFILL), ("pd-1", Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=ClusterKind.PD, role=role, control_url=f"http://127.0.0.1:{port}",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=999))
    try:
        async with aiohttp.ClientSession() as session:
            job = GenerationJob(1, tuple(range(10, 30)), SamplingMsg(max_tokens=2), ForcedRoute.LOCAL)
            driver = RequestDriver(control, session)
            if meter is not None:
                driver.region_load = meter
            async for _delta in driver.generate(job):
                pass
    finally:
        await runner.cleanup()
    return seen


# --- live: an in-process node (emulated engine) answering signed /prefill calls ------------------------------
def test_node_starts_queued_prefills_in_fair_order_across_regions(tmp_path: Path) -> None:
    """Region ra's burst of five prefills queues behind a running ra job; then one rb prefill arrives (and one rb
    prefill whose start deadline passes while queued: shed). rb's prefill starts next, not after the burst."""
    text = TOPOLOGY_TOML.format(ra_traffic="", rb_traffic="").replace('name = "stub"', LIVE_MODEL)
    (tmp_path / "deploy.toml").write_text(text + '\n[transport]\ntls = "off"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "deploy.toml")
    starts, statuses, queued_seen = asyncio.run(_live_order(cfg))
    assert statuses == {"shed": 503, **{f"a{i}": 200 for i in range(5)}, "b0": 200}, statuses
    assert queued_seen == 7  # the heartbeat counts every queued prefill (the shed one until the thread skips it)
    assert starts == ["b0", "a0", "a1", "a2", "a3", "a4"], starts  # FIFO: b0 last


LIVE_MODEL = 'engine = "emulated"\n[model.emulated]\ntime_scale = 0.02'


async def _live_order(cfg: Any) -> tuple[list[str], dict[str, int], int]:
    from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
    from prfaas.serve.messages import DecodeTarget
    from prfaas.serve.node import NodeServer

    secret = b"s" * 32
    backend = make_emulated_backend(cfg.model, ClusterKind.PRFAAS)
    node = NodeServer(cfg, "pa-0", backend, secret)
    await node.start()
    gate, blocking = threading.Event(), threading.Event()
    prompt = [1 + i % 1000 for i in range(4000)]
    node.worker.submit(lambda: (blocking.set(), gate.wait(ANTI_HANG_S)), region="ra",
                       cost_s=prefill_cost_s(backend, len(prompt)))  # an ra prefill running
    assert await asyncio.to_thread(blocking.wait, ANTI_HANG_S)
    target = DecodeTarget(name="pa-0", kv_host="127.0.0.1", kv_port=node.receiver.address[1])
    statuses: dict[str, int] = {}

    async def send(session: aiohttp.ClientSession, name: str, region: str, within_s: float | None = None) -> None:
        msg = PrefillRequest(request_id=f"{name}-0", token_ids=prompt, sampling=SamplingMsg(max_tokens=2),
                             decode_target=target, route="forced", region=region, start_within_s=within_s)
        async with session.post(f"{node.control_url}/prefill", data=encode(msg)) as resp:
            await resp.read()
            statuses[name] = resp.status

    async def queued(n: int) -> None:
        for _ in range(int(ANTI_HANG_S / 0.01)):
            if node.worker.num_queued_jobs >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{n} jobs never queued")

    try:
        auth = ControlAuth(secret, RefusalRecorder())
        async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session:
            calls = [asyncio.ensure_future(send(session, f"a{i}", "ra")) for i in range(5)]
            await queued(5)
            await send(session, "shed", "rb", within_s=0.05)  # answered while the gate holds: it never started
            calls.append(asyncio.ensure_future(send(session, "b0", "rb")))
            await queued(7)
            queued_seen = node.heartbeat(with_cache_report=False).queued_requests
            gate.set()
            await asyncio.gather(*calls)
        spans = sorted(node.attempts.span_rows(), key=lambda row: row[2])
        return [row[0] for row in spans], statuses, queued_seen
    finally:
        gate.set()
        await node.close()


@pytest.mark.parametrize("preemption", [True, False])
def test_node_pauses_a_running_prefill_for_another_regions_turn(tmp_path: Path, preemption: bool) -> None:
    """Two ra prefills and one rb prefill queue behind a running job; ra's first starts first (same tag, sent
    first), rb's turn comes before it ends and ra has a backlog (its second prefill) where rb has none: rb's runs
    between two of ra's layers and ends first (`prefill_preemption` false: after ra's)."""
    text = TOPOLOGY_TOML.format(ra_traffic="", rb_traffic="").replace('name = "stub"', LIVE_MODEL)
    policy = "" if preemption else "\n[policy]\nprefill_preemption = false\n"
    (tmp_path / "deploy.toml").write_text(text + policy + '\n[transport]\ntls = "off"\n', encoding="utf-8")
    spans, preemptions = asyncio.run(_live_pair(load_config(tmp_path / "deploy.toml")))
    (a_start, a_end), (b_start, b_end) = spans["a0-0"], spans["b0-0"]
    if preemption:
        assert a_start < b_start < b_end < a_end, spans
        # b0's, and maybe the node's own region-less state releases (cost 0), run at safe points of ra's jobs
        assert preemptions >= 1
    else:
        assert a_start < a_end <= b_start < b_end, spans
        assert preemptions == 0


async def _live_pair(cfg: Any) -> tuple[dict[str, tuple[float, float]], int]:
    from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
    from prfaas.serve.messages import DecodeTarget
    from prfaas.serve.node import NodeServer

    secret = b"s" * 32
    backend = make_emulated_backend(cfg.model, ClusterKind.PRFAAS)
    node = NodeServer(cfg, "pa-0", backend, secret)
    await node.start()
    gate, blocking = threading.Event(), threading.Event()
    node.worker.submit(lambda: (blocking.set(), gate.wait(ANTI_HANG_S)), region="rc", cost_s=0.0)
    assert await asyncio.to_thread(blocking.wait, ANTI_HANG_S)
    target = DecodeTarget(name="pa-0", kv_host="127.0.0.1", kv_port=node.receiver.address[1])

    async def send(session: aiohttp.ClientSession, name: str, region: str, num_tokens: int) -> int:
        msg = PrefillRequest(request_id=f"{name}-0", token_ids=[1 + i % 1000 for i in range(num_tokens)],
                             sampling=SamplingMsg(max_tokens=2), decode_target=target, route="forced", region=region)
        async with session.post(f"{node.control_url}/prefill", data=encode(msg)) as resp:
            await resp.read()
            return resp.status

    try:
        auth = ControlAuth(secret, RefusalRecorder())
        async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session:
            calls = []
            for name, region, num_tokens in (("a0", "ra", 8000), ("a1", "ra", 500), ("b0", "rb", 500)):
                calls.append(asyncio.ensure_future(send(session, name, region, num_tokens)))
                for _ in range(int(ANTI_HANG_S / 0.01)):
                    if node.worker.num_queued_jobs >= len(calls):
                        break
                    await asyncio.sleep(0.01)
            assert node.worker.num_queued_jobs == 3
            gate.set()
            assert await asyncio.gather(*calls) == [200, 200, 200]
        spans = {f"{row[0]}-{row[1]}": (row[2], row[3]) for row in node.attempts.span_rows() if row[3] is not None}
        return spans, node.tables().prefill_preemptions_total
    finally:
        gate.set()
        await node.close()
