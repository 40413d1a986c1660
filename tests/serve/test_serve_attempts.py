"""Retries that never duplicate, and the gateway deadline, through the real gateway and nodes (issue 11).

Stub model; the gateway gives a node call 2 s (`request_timeout_s`) and a request 8 s (`request_deadline_s`).
A prefill stalled on the PrfaaS node (debug hook) times out; the gateway aborts that attempt, and retries only once
the node acknowledged that its prefill stopped: the two attempts' prefill spans (recorded by the nodes' model
threads) never overlap. A node gets the same attempt id twice: it runs once; another attempt of a request whose
attempt is alive there is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest
from cancel_helpers import cancelled_count, held, node_tables, wait_until
from serve_helpers import metrics, post, ready_deployment

from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.deploy_secrets import load_shared_secret
from prfaas.serve.launcher import Launcher
from prfaas.serve.messages import AbortRequest, DecodeRequest, DecodeTarget, PrefillRequest, SamplingMsg, encode

pytestmark = pytest.mark.network

ATTEMPTS_TOML = """
[model]
name = "stub"
stub_step_s = 0.02

[gateway]
port = 0
allow_debug_hooks = true
heartbeat_interval_s = 0.2
request_timeout_s = 2.0
request_deadline_s = 8.0

[policy]
rebalance = false

[budgets]
queued_prompt_tokens = 6000
waiting_state_bytes = 5000
"""


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("attempts"), ATTEMPTS_TOML) as launcher:
        yield launcher


def _spans(dep: Launcher, request: str) -> list[tuple[str, int, float, float | None]]:
    rows = []
    for node in dep.cfg.nodes:
        spans = node_tables(dep, node.name).prefill_spans
        rows += [(node.name, attempt, start, end) for r, attempt, start, end in spans
                 if r.rpartition(".")[2] == request]  # the gateway prefixes its attempt ids (driver.attempt_prefix)
    return sorted(rows, key=lambda row: row[2])


def test_a_timed_out_prefill_is_aborted_before_its_retry_runs(dep: Launcher) -> None:
    before = node_tables(dep, "prfaas-0").prefills_cancelled_total
    timeouts = cancelled_count(metrics(dep.url), "attempt_timeout")
    status, body = post(f"{dep.url}/v1/completions",
                        {"model": "default", "prompt": list(range(1, 100)), "max_tokens": 5, "temperature": 0},
                        {"x-prfaas-route": "prfaas", "x-prfaas-debug-stall-s": "600"})
    assert status == 200 and body["usage"]["completion_tokens"] == 5, body
    spans = _spans(dep, body["id"].removeprefix("cmpl-"))
    assert [(name, attempt) for name, attempt, _s, _e in spans] == [("prfaas-0", 0), ("pd-0", 1)], spans
    first_end = spans[0][3]
    assert first_end is not None and first_end <= spans[1][2], spans  # attempt 1 started after attempt 0 stopped
    assert node_tables(dep, "prfaas-0").prefills_cancelled_total == before + 1
    assert cancelled_count(metrics(dep.url), "attempt_timeout") == timeouts + 1
    wait_until(lambda: not any(held(node_tables(dep, n.name)) for n in dep.cfg.nodes), "every table is empty")


async def _node_calls(dep: Launcher, calls: list[tuple[str, str, bytes]]) -> list[tuple[int, bytes]]:
    auth = ControlAuth(load_shared_secret(dep.cfg.transport, {}), RefusalRecorder())
    async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session:

        async def one(node: str, path: str, body: bytes) -> tuple[int, bytes]:
            section = dep.cfg.node(node)
            async with session.post(f"http://{section.host}:{section.port}{path}", data=body) as resp:
                return resp.status, await resp.read()

        return await asyncio.gather(*(one(*call) for call in calls))


def _prefill(dep: Launcher, attempt_id: str, stall_s: float, num_tokens: int = 49) -> bytes:
    target = dep.cfg.node("pd-1")
    decode_node = DecodeTarget(name=target.name, kv_host=target.host, kv_port=target.kv_port)
    return encode(PrefillRequest(request_id=attempt_id, token_ids=[1 + i % 1000 for i in range(num_tokens)],
                                 sampling=SamplingMsg(max_tokens=4), decode_target=decode_node, route="forced",
                                 debug_stall_s=stall_s))


def test_the_same_attempt_twice_runs_once_and_another_attempt_waits(dep: Launcher) -> None:
    key = f"dedup{time.monotonic_ns()}"
    first, again = asyncio.run(_node_calls(dep, [("prfaas-0", "/prefill", _prefill(dep, f"{key}-0", 1.0)),
                                                 ("prfaas-0", "/prefill", _prefill(dep, f"{key}-0", 1.0))]))
    assert first == again and first[0] == 200, (first, again)  # one answer for both
    assert len(_spans(dep, key)) == 1  # and one prefill
    abort = encode(AbortRequest(request_id=f"{key}-0"))
    asyncio.run(_node_calls(dep, [("pd-1", "/abort", abort)]))  # nobody decodes it: drop the arrived state

    async def overlapping() -> list[tuple[int, bytes]]:
        running = asyncio.ensure_future(_node_calls(dep, [("prfaas-0", "/prefill", _prefill(dep, f"{key}-1", 600))]))
        await asyncio.to_thread(wait_until, lambda: node_tables(dep, "prfaas-0").live_attempts == 1, "attempt 1 runs")
        refused = await _node_calls(dep, [("prfaas-0", "/prefill", _prefill(dep, f"{key}-2", 0))])
        await _node_calls(dep, [("prfaas-0", "/abort", encode(AbortRequest(request_id=f"{key}-1"))),
                                ("pd-1", "/abort", encode(AbortRequest(request_id=f"{key}-1")))])
        return [*refused, *await running]

    refused, aborted = asyncio.run(overlapping())
    assert refused[0] == 409 and b"attempt_live" in refused[1], refused
    assert aborted[0] == 409 and b"cancelled" in aborted[1], aborted
    assert [attempt for _n, attempt, _s, _e in _spans(dep, key)] == [0, 1]  # attempt 2 never ran
    wait_until(lambda: not any(held(node_tables(dep, n.name)) for n in dep.cfg.nodes), "every table is empty")


def test_a_request_past_its_deadline_is_cancelled_everywhere(dep: Launcher) -> None:
    deadlines = cancelled_count(metrics(dep.url), "deadline")
    status, body = post(f"{dep.url}/v1/completions",
                        {"model": "default", "prompt": [1, 2, 3], "max_tokens": 10_000, "temperature": 0})
    assert status == 504 and "deadline" in body["error"]["message"], body
    assert cancelled_count(metrics(dep.url), "deadline") == deadlines + 1
    wait_until(lambda: node_tables(dep, "pd-1").running_batch == 0, "the decode batch is empty again")


def test_a_node_refuses_work_beyond_its_budgets(dep: Launcher) -> None:
    """[budgets]: 6,000 queued prompt tokens per node, 5,000 B of states waiting for decode (stub: 1 B a token)."""
    key = f"budget{time.monotonic_ns()}"
    (too_long,) = asyncio.run(_node_calls(dep, [("prfaas-0", "/prefill", _prefill(dep, f"{key}-0", 0, 7000))]))
    assert too_long[0] == 503 and b"overloaded" in too_long[1], too_long
    (kept,) = asyncio.run(_node_calls(dep, [("pd-1", "/prefill", _prefill(dep, f"{key}-1", 0, 5500))]))
    assert kept[0] == 503 and b"wait for decode" in kept[1], kept
    (sent,) = asyncio.run(_node_calls(dep, [("prfaas-0", "/prefill", _prefill(dep, f"{key}-2", 0, 5500))]))
    assert sent[0] == 200, sent  # the transfer went through; the decode node's inbox refused the state
    claim = encode(DecodeRequest(request_id=f"{key}-2", first_token=1, num_prompt_tokens=5500,
                                 sampling=SamplingMsg(max_tokens=4), state_wait_s=5.0))
    (refused,) = asyncio.run(_node_calls(dep, [("pd-1", "/decode", claim)]))
    assert refused[0] == 409 and b"wait for decode" in refused[1], refused
    status, body = post(f"{dep.url}/v1/completions",
                        {"model": "default", "prompt": [1 + i % 1000 for i in range(7000)], "max_tokens": 2})
    assert status == 503 and "budget" in body["error"]["message"], body
    assert not any(held(node_tables(dep, n.name)) for n in dep.cfg.nodes)
