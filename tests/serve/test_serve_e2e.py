"""End to end through real processes: the official `openai` client against `prfaas` on a tiny default model.

One deployment (gateway, PrfaaS node, PD-P, PD-D) serves the whole module; the PrfaaS kill test runs last.
"""

from __future__ import annotations

import asyncio
import threading
import time

import openai
import pytest
from serve_helpers import complete, get_json, metrics, post

from prfaas.serve.demo import DemoWorkload, format_report, run_demo
from prfaas.serve.launcher import Launcher

pytestmark = pytest.mark.network

SHORT_PROMPT = "The scheduler routes short prompts to the local cluster"
LONG_PROMPT = " ".join(f"token{i}" for i in range(400))  # well above the 256-token threshold


def _client(deployment: Launcher) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deployment.url}/v1", api_key="none", timeout=60, max_retries=0)


def test_models_and_health(deployment: Launcher) -> None:
    models = _client(deployment).models.list()
    assert [m.id for m in models.data] == ["default"]
    health = get_json(f"{deployment.url}/health")
    assert health["ready"] is True
    assert set(health["nodes"]) == {"prfaas-0", "pd-0", "pd-1"}


def test_openai_client_stream_matches_non_stream(deployment: Launcher) -> None:
    client = _client(deployment)
    whole = client.completions.create(model="default", prompt=SHORT_PROMPT, max_tokens=12, temperature=0)
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert whole.usage.prompt_tokens > 0
    assert whole.choices[0].finish_reason == "length"
    stream = client.completions.create(model="default", prompt=SHORT_PROMPT, max_tokens=12, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        pieces.extend(c.text for c in chunk.choices)
    assert "".join(pieces) == whole.choices[0].text
    assert usage is not None and usage.completion_tokens == 12


def test_chat_stream_and_non_stream(deployment: Launcher) -> None:
    client = _client(deployment)
    messages = [{"role": "user", "content": "Say something about prefill."}]
    whole = client.chat.completions.create(model="default", messages=messages, max_tokens=10, temperature=0)
    assert whole.choices[0].message.role == "assistant"
    assert whole.usage is not None and whole.usage.completion_tokens == 10
    stream = client.chat.completions.create(model="default", messages=messages, max_tokens=10, temperature=0,
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole.choices[0].message.content


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 7}])
def test_output_identical_across_routes(deployment: Launcher, sampling: dict[str, float]) -> None:
    texts = {route: complete(deployment.url, LONG_PROMPT, 16, route, **sampling)["choices"][0]["text"]
             for route in ("prfaas", "local", "colocated")}
    assert texts["prfaas"] == texts["local"] == texts["colocated"], texts
    if "seed" in sampling:
        other = complete(deployment.url, LONG_PROMPT, 16, "local", **{**sampling, "seed": 8})["choices"][0]["text"]
        assert other != texts["local"]  # the seed matters, so the equality above is not vacuous


def test_threshold_offloads_long_and_keeps_short_local(deployment: Launcher) -> None:
    before = metrics(deployment.url)
    fresh_long = " ".join(f"fresh{i}" for i in range(400))  # nothing of it is cached anywhere yet
    complete(deployment.url, fresh_long, 4)
    complete(deployment.url, SHORT_PROMPT + " fresh", 4)
    after = metrics(deployment.url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    reasons = {k: delta(k) for k in after if k.startswith("prfaas_requests_by_reason_total") and delta(k)}
    assert sum(reasons.values()) == 2, reasons

    assert delta('prfaas_requests_by_reason_total{reason="long_offload"}') == 1
    assert delta('prfaas_requests_by_reason_total{reason="short_local"}') == 1
    assert delta('prfaas_transfer_bytes_total{route="prfaas"}') > 0
    assert after["prfaas_threshold_tokens"] == 256
    assert after['prfaas_link_bytes{link="prfaas->pd"}'] > 0
    assert 0 <= after['prfaas_link_utilisation{link="prfaas->pd"}'] <= 1.5
    assert after['prfaas_link_rtt_ms{link="prfaas->pd"}'] >= 0
    assert after['prfaas_role_count{role="pd_decode"}'] == 1
    assert 'prfaas_node_queue_requests{node="pd-0"}' in after


def test_nodes_report_their_prefix_caches_to_the_gateway_index(deployment: Launcher) -> None:
    def index() -> dict[str, dict[str, int]]:
        return get_json(f"{deployment.url}/admin/cluster", deployment.admin_headers())["kv_index"]

    before = index()["prfaas-0"]
    prompt = [(7 * i) % 500 + 10 for i in range(1_100)]  # two complete 512-token blocks, offloaded (> 256)
    complete(deployment.url, prompt, 2)
    deadline = time.monotonic() + 60  # anti-hang bound (reports come every heartbeat)
    while time.monotonic() < deadline:
        now = index()["prfaas-0"]
        if now["report_seq"] > before["report_seq"]:
            break
        time.sleep(0.1)
    assert now["report_seq"] > before["report_seq"] > 0  # the node's report with the new blocks was applied
    assert now["blocks"] >= 2
    assert all(entry["report_seq"] > 0 for entry in index().values())  # every node reports its cache
    assert metrics(deployment.url).get("prfaas_cache_resyncs_total", 0.0) == 0  # reports never skipped one


def test_stop_string_and_max_tokens(deployment: Launcher) -> None:
    base = complete(deployment.url, SHORT_PROMPT, 16, temperature=1.0, seed=3)["choices"][0]["text"]
    assert len(base) > 4
    stop = base[2:4]
    cut = complete(deployment.url, SHORT_PROMPT, 16, temperature=1.0, seed=3, stop=[stop])["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["text"] == base[: base.find(stop)]


def test_concurrent_requests_all_complete(deployment: Launcher) -> None:
    client = openai.AsyncOpenAI(base_url=f"{deployment.url}/v1", api_key="none", timeout=120, max_retries=0)

    refused: list[int] = []

    async def one(i: int) -> str:
        """A client that honours admission control: a 429 is retried after its Retry-After (36 at once is more
        than the default queue bounds admit); anything else fails the test."""
        prompt = LONG_PROMPT if i % 4 == 0 else f"{SHORT_PROMPT} number {i}"
        while True:
            try:
                result = await client.completions.create(model="default", prompt=prompt, max_tokens=8,
                                                         temperature=0)
                return result.choices[0].finish_reason or ""
            except openai.RateLimitError as exc:
                refused.append(i)
                await asyncio.sleep(float(exc.response.headers["retry-after"]))

    async def run() -> list[str]:
        try:
            return list(await asyncio.gather(*(one(i) for i in range(36))))
        finally:
            await client.close()

    reasons = asyncio.run(asyncio.wait_for(run(), timeout=600))  # anti-hang bound only
    assert reasons == ["length"] * 36
    assert len(refused) < 36 * 50  # refusals are answered at once and end: the burst drains


BAD_REQUESTS = [
    (b"{not json", 400, None),
    (b'{"model": "default"}', 400, "prompt"),
    (b'{"model": "default", "prompt": "x", "max_tokens": "ten"}', 400, "max_tokens"),
    (b'{"model": "default", "prompt": "x", "max_tokens": 0}', 400, "max_tokens"),
    (b'{"model": "default", "prompt": "x", "max_tokens": -3}', 400, "max_tokens"),
    (b'{"model": "default", "prompt": "x", "temperature": 9}', 400, "temperature"),
    (b'{"model": "nope", "prompt": "x"}', 404, "model"),
    (b'{"model": "default", "prompt": [1, 2, 99999]}', 400, "prompt"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_REQUESTS)
def test_bad_requests_get_openai_errors(deployment: Launcher, body: bytes, status: int, param: str | None) -> None:
    code, reply = post(f"{deployment.url}/v1/completions", body)
    assert code == status
    assert reply["error"]["message"]
    assert reply["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert reply["error"]["param"] == param


def test_prompt_over_context_and_bad_chat(deployment: Launcher) -> None:
    code, reply = post(f"{deployment.url}/v1/completions", {"model": "default", "prompt": [5] * 17000})
    assert code == 400 and reply["error"]["code"] == "context_length_exceeded"
    code, reply = post(f"{deployment.url}/v1/chat/completions", {"model": "default", "messages": "hi"})
    assert code == 400 and reply["error"]["param"] == "messages"
    code, reply = post(f"{deployment.url}/v1/completions", {"model": "default", "prompt": "x"},
                       {"x-prfaas-route": "moon"})
    assert code == 400
    with pytest.raises(openai.BadRequestError):
        _client(deployment).completions.create(model="default", prompt="x", max_tokens=0)
    assert complete(deployment.url, SHORT_PROMPT, 4)["choices"][0]["finish_reason"] == "length"  # still serving


def test_admin_policy_change_at_run_time(deployment: Launcher) -> None:
    code, reply = post(f"{deployment.url}/admin/policy", {"threshold_tokens": 100000}, deployment.admin_headers())
    assert code == 200 and reply["threshold_tokens"] == 100000
    try:
        before = metrics(deployment.url)
        complete(deployment.url, LONG_PROMPT, 2)
        after = metrics(deployment.url)
        key = 'prfaas_requests_by_reason_total{reason="short_local"}'
        assert after[key] - before.get(key, 0) == 1
        code, reply = post(f"{deployment.url}/admin/policy", {"name": "no-such-policy"}, deployment.admin_headers())
        assert code == 400 and "known" in reply["error"]["message"]
    finally:
        post(f"{deployment.url}/admin/policy", {"threshold_tokens": 256}, deployment.admin_headers())


def test_role_switch_under_load_loses_no_request(deployment: Launcher) -> None:
    client = openai.AsyncOpenAI(base_url=f"{deployment.url}/v1", api_key="none", timeout=120, max_retries=0)

    async def one(i: int) -> str:
        await asyncio.sleep(0.02 * i)
        prompt = f"{SHORT_PROMPT} {i}" if i % 3 else LONG_PROMPT
        result = await client.completions.create(model="default", prompt=prompt, max_tokens=12, temperature=0)
        return result.choices[0].finish_reason or ""

    async def switch() -> int:
        await asyncio.sleep(0.15)
        code, _ = await asyncio.to_thread(post, f"{deployment.url}/admin/roles",
                                          {"roles": {"pd-0": "pd_decode", "pd-1": "pd_prefill"}},
                                          deployment.admin_headers(), 120.0)
        return code

    async def run() -> tuple[list[str], int]:
        try:
            results = await asyncio.gather(switch(), *(one(i) for i in range(20)))
        finally:
            await client.close()
        return [str(r) for r in results[1:]], int(results[0])

    reasons, code = asyncio.run(run())
    assert code == 200
    assert reasons == ["length"] * 20
    cluster = get_json(f"{deployment.url}/admin/cluster", deployment.admin_headers())
    roles = {i["instance_id"]: i["role"] for i in cluster["instances"]}
    assert roles["pd-0"] == "pd_decode" and roles["pd-1"] == "pd_prefill"
    assert complete(deployment.url, SHORT_PROMPT, 4)["choices"][0]["finish_reason"] == "length"
    code, _ = post(f"{deployment.url}/admin/roles", {"roles": {"pd-0": "pd_prefill", "pd-1": "pd_decode"}},
                   deployment.admin_headers())
    assert code == 200


def test_demo_report_against_live_deployment(deployment: Launcher) -> None:
    workload = DemoWorkload(num_requests=8, rate_rps=8.0, median_tokens=300, min_tokens=64, max_tokens=1024,
                            output_tokens=4, seed=1)
    report = asyncio.run(run_demo(deployment.url, workload, admin_headers=deployment.admin_headers()))
    assert len(report.records) == 8
    routes = {r["route"] for r in report.records}
    assert routes <= {"prfaas", "local"} and all(r["ttft_s"] > 0 for r in report.records)
    assert [p.source for p in report.predictions] == ["simulator", "planner"], report.prediction_errors
    text = format_report(report)
    assert "live" in text and "simulator" in text and "planner" in text


def test_admin_rebalance_runs_the_policy_rebalancer(deployment: Launcher) -> None:
    code, plan = post(f"{deployment.url}/admin/rebalance", b"", deployment.admin_headers())
    assert code == 200
    assert plan["reason"] in {"warming_up", "at_minimum", "balanced", "cooldown", "threshold_only"}
    assert plan["role_changes"] == []  # one PD-P and one PD-D: nothing may be converted


def test_zz_killing_prfaas_mid_transfer_recomputes_locally(deployment: Launcher) -> None:
    expected = complete(deployment.url, LONG_PROMPT + " again", 8, "local")["choices"][0]["text"]
    before = metrics(deployment.url)
    result: dict[str, object] = {}

    def request() -> None:
        result["body"] = post(f"{deployment.url}/v1/completions",
                              {"model": "default", "prompt": LONG_PROMPT + " again", "max_tokens": 8,
                               "temperature": 0}, {"x-prfaas-debug-stall-s": "60", "x-prfaas-route": "prfaas"}, 90.0)

    thread = threading.Thread(target=request)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the PrfaaS node holds the stalled transfer
        link = get_json(f"{deployment.url}/admin/cluster", deployment.admin_headers())["links"].get("prfaas->pd")
        if link and link["transfers_in_flight"] > 0:
            break
        time.sleep(0.05)
    deployment.kill("prfaas-0")
    thread.join(90)
    assert not thread.is_alive()
    code, body = result["body"]  # type: ignore[misc]
    assert code == 200, body
    assert body["choices"][0]["text"] == expected
    after = metrics(deployment.url)
    key = 'prfaas_failed_attempts_total{kind="prefill_node_lost"}'
    assert after.get(key, 0) - before.get(key, 0) == 1
    time.sleep(2.0)  # heartbeat timeout: the node is out of routing
    health = get_json(f"{deployment.url}/health")
    assert health["nodes"]["prfaas-0"]["up"] is False
    before = metrics(deployment.url)
    complete(deployment.url, " ".join(f"unseen{i}" for i in range(400)), 4)
    after = metrics(deployment.url)
    key = 'prfaas_requests_by_reason_total{reason="prfaas_down_local"}'
    assert after.get(key, 0) - before.get(key, 0) == 1
