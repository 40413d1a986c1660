"""Cancellation end to end through the real gateway and nodes (issue 11): a client that leaves, streamed or not,
takes its request out of the prefill queue, stops its prefill and its decode; an operator abort does the same;
afterwards every per-request table of every node is empty.

Stub model (no torch) with 20 ms decode steps, so a 10,000-token decode lasts minutes unless it is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cancel_helpers import (
    LeavingClient,
    cancelled_count,
    held,
    node_tables,
    wait_until,
)
from serve_helpers import get_json, metrics, post, ready_deployment

from prfaas.serve.launcher import Launcher

pytestmark = pytest.mark.network

CANCEL_TOML = """
[model]
name = "stub"
stub_step_s = 0.02

[gateway]
port = 0
allow_debug_hooks = true
heartbeat_interval_s = 0.2

[policy]
rebalance = false
"""
LONG = {"model": "default", "prompt": list(range(1, 40)), "max_tokens": 10_000, "temperature": 0}
DECODE_NODE = "pd-1"
PREFILL_NODE = "prfaas-0"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("cancel"), CANCEL_TOML) as launcher:
        yield launcher


def _running(dep: Launcher, name: str = DECODE_NODE) -> int:
    return node_tables(dep, name).running_batch


def _held_anywhere(dep: Launcher) -> dict[str, dict[str, int]]:
    return {n.name: h for n in dep.cfg.nodes if (h := held(node_tables(dep, n.name)))}


def _wait_empty(dep: Launcher) -> None:
    try:
        wait_until(lambda: not _held_anywhere(dep), "every node table is empty")
    except AssertionError:
        raise AssertionError(f"still held: {_held_anywhere(dep)}") from None


def test_a_non_streamed_client_that_leaves_stops_its_decode(dep: Launcher) -> None:
    before = node_tables(dep, DECODE_NODE).decodes_cancelled_total
    gone_before = cancelled_count(metrics(dep.url), "client_disconnect")
    client = LeavingClient(dep, LONG)
    wait_until(lambda: _running(dep) == 1, "the request joins the decode batch")
    left_s = client.leave()
    wait_until(lambda: _running(dep) == 0, "the decode batch is empty again")
    removed_s = time.monotonic() - left_s
    print(f"non-streamed disconnect -> decode batch removal: {removed_s * 1000:.0f} ms")
    assert node_tables(dep, DECODE_NODE).decodes_cancelled_total == before + 1
    wait_until(lambda: cancelled_count(metrics(dep.url), "client_disconnect") == gone_before + 1,
               "the gateway counts the client that went away")
    _wait_empty(dep)


def test_a_streamed_client_that_leaves_stops_its_decode(dep: Launcher) -> None:
    before = node_tables(dep, DECODE_NODE).decodes_cancelled_total
    gone_before = cancelled_count(metrics(dep.url), "client_disconnect")
    client = LeavingClient(dep, {**LONG, "stream": True})
    assert b"data:" in client.read_some(200)  # tokens are streaming
    wait_until(lambda: _running(dep) == 1, "the request decodes")
    left_s = client.leave()
    wait_until(lambda: _running(dep) == 0, "the decode batch is empty again")
    print(f"streamed disconnect -> decode batch removal: {(time.monotonic() - left_s) * 1000:.0f} ms")
    assert node_tables(dep, DECODE_NODE).decodes_cancelled_total == before + 1
    wait_until(lambda: cancelled_count(metrics(dep.url), "client_disconnect") == gone_before + 1,
               "the gateway counts the client that went away (once)")
    _wait_empty(dep)


def test_clients_that_leave_stop_their_running_and_queued_prefills(dep: Launcher) -> None:
    """The first prefill stalls (debug hook) on the PrfaaS node; the second queues behind it. Both clients leave:
    the running prefill stops within its layer, the queued one leaves the queue, neither reaches decode."""
    before = node_tables(dep, PREFILL_NODE)
    stalled = LeavingClient(dep, {**LONG, "prompt": list(range(1, 200))},
                            {"x-prfaas-route": "prfaas", "x-prfaas-debug-stall-s": "600"})
    wait_until(lambda: node_tables(dep, PREFILL_NODE).live_attempts == 1, "the stalled prefill runs")
    queued = LeavingClient(dep, {**LONG, "prompt": list(range(2, 200))}, {"x-prfaas-route": "prfaas"})
    wait_until(lambda: node_tables(dep, PREFILL_NODE).queued_jobs == 1, "the second prefill queues")
    queued.leave()
    stalled.leave()
    wait_until(lambda: node_tables(dep, PREFILL_NODE).live_attempts == 0, "both prefills are gone")
    after = node_tables(dep, PREFILL_NODE)
    assert after.prefills_cancelled_total == before.prefills_cancelled_total + 2
    spans = [s for s in after.prefill_spans if s not in before.prefill_spans]
    assert len(spans) == 1 and spans[0][3] is not None  # only the stalled one ever started, and it ended
    assert node_tables(dep, DECODE_NODE).running_batch == 0
    _wait_empty(dep)


def test_an_operator_abort_ends_a_running_request(dep: Launcher) -> None:
    client = LeavingClient(dep, LONG)
    wait_until(lambda: _running(dep) == 1, "the request joins the decode batch")
    running = get_json(f"{dep.url}/admin/running", dep.admin_headers())["running"]
    assert len(running) == 1
    status, body = post(f"{dep.url}/admin/requests/{running[0]}/abort", b"", dep.admin_headers())
    assert status == 200 and body == {"aborted": running[0]}
    reply = client.read_some(1)
    client.leave()
    assert reply.startswith(b"HTTP/1.1 499"), reply[:100]
    wait_until(lambda: _running(dep) == 0, "the decode batch is empty again")
    status, body = post(f"{dep.url}/admin/requests/{running[0]}/abort", b"", dep.admin_headers())
    assert status == 404


def test_after_many_cancellations_every_table_is_empty(dep: Launcher) -> None:
    gone_before = cancelled_count(metrics(dep.url), "client_disconnect")
    clients = [LeavingClient(dep, {**LONG, "stream": i % 2 == 1}) for i in range(8)]
    wait_until(lambda: _running(dep) >= 1, "requests decode")
    for client in clients:
        client.leave()
    _wait_empty(dep)
    wait_until(lambda: cancelled_count(metrics(dep.url), "client_disconnect") >= gone_before + 8, "all counted")
    assert cancelled_count(metrics(dep.url), "client_disconnect") == gone_before + 8  # each once
    wait_until(lambda: get_json(f"{dep.url}/admin/running", dep.admin_headers())["running"] == [],
               "the gateway holds no request")
    ok = post(f"{dep.url}/v1/completions", {**LONG, "max_tokens": 5})
    assert ok[0] == 200 and ok[1]["usage"]["completion_tokens"] == 5  # the deployment serves normally after
