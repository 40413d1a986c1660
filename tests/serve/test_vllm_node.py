"""The gateway driving vLLM instances through adapter nodes (`serve.vllm_node`), end to end against fake vLLMs
(tests/serve/fake_vllm.py): the real gateway and adapter processes, the fakes in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_vllm import FakeCluster, FakeVllm, next_token
from serve_helpers import get_json, metrics, post, ready_deployment

from prfaas.catalog.models import load_model
from prfaas.core.blocks import block_hash_chain
from prfaas.perf.arch import s_kv_bytes
from prfaas.serve.launcher import Launcher
from prfaas.transport.ports import free_port

pytest.importorskip("zmq")

NODES = (("prfaas-0", "prfaas", "prfaas_prefill"), ("pd-0", "pd", "pd_prefill"), ("pd-1", "pd", "pd_decode"))
VLLM_KEY = "fake-vllm-key-0123"  # every fake takes /v1/* calls with it only (vLLM's --api-key)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeVllm]]:
    cluster = FakeCluster()
    started = {name: FakeVllm(cluster, kv_port=free_port(), events_endpoint=f"tcp://127.0.0.1:{free_port()}",
                              step_s=0.01, api_key=VLLM_KEY).start() for name, _c, _r in NODES}
    yield started
    for fake in started.values():
        fake.close()


def _toml(fakes: dict[str, FakeVllm]) -> str:
    text = """
[model]
num_layers = 4
hidden_size = 128

[gateway]
port = 0
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
route_wait_s = 10.0

[policy]
threshold_tokens = 256
rebalance = false
failure = { max_attempts = 3 }
"""
    for name, cluster, role in NODES:
        fake = fakes[name]
        text += f"""
[[nodes]]
name = "{name}"
cluster = "{cluster}"
role = "{role}"
engine = "vllm"
vllm_url = "{fake.url}"
kv_port = {fake.kv_port}
telemetry_url = "{fake.url}"
kv_events_endpoint = "{fake.events_endpoint}"
state_bytes_model = "qwen3-next-80b-a3b"
vllm_api_key_env = "PRFAAS_TEST_VLLM_KEY"
"""
    return text


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, FakeVllm]) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("vllm"), _toml(fakes),
                          env={"PRFAAS_TEST_VLLM_KEY": VLLM_KEY}) as launcher:
        yield launcher
    assert all(fake.unauthorized == 0 for fake in fakes.values())  # the adapters sent the key on every call


def _prompt(n: int, salt: int) -> list[int]:
    return [100 + (i * 7 + salt * 13) % 800 for i in range(n)]


def _expected(prompt: list[int], n: int) -> list[int]:
    seq, out = list(prompt), []
    for _ in range(n):
        out.append(next_token(seq))
        seq.append(out[-1])
    return out


def _complete(url: str, prompt: list[int], max_tokens: int, route: str | None = None) -> dict[str, Any]:
    headers = {"x-prfaas-route": route} if route else {}
    status, body = post(f"{url}/v1/completions", {"model": "default", "prompt": prompt, "max_tokens": max_tokens,
                                                  "temperature": 0}, headers)
    assert status == 200, body
    return body


def _new_calls(fake: FakeVllm, since: int) -> list[Any]:
    return fake.calls[since:]


def _wait_for(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout_s}s")


def _cluster(deployment: Launcher) -> dict[str, Any]:
    return get_json(f"{deployment.url}/admin/cluster", deployment.admin_headers())


def test_forced_prfaas_route_sends_and_receives_through_the_connector_params(
        deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    prompt = _prompt(300, 1)
    marks = {name: len(f.calls) for name, f in fakes.items()}
    bytes_before = metrics(deployment.url).get('prfaas_transfer_bytes_total{route="prfaas"}', 0.0)
    prfaas = _complete(deployment.url, prompt, 8, "prfaas")["choices"][0]["text"]
    shipped = metrics(deployment.url)['prfaas_transfer_bytes_total{route="prfaas"}'] - bytes_before
    assert shipped == s_kv_bytes(load_model("qwen3-next-80b-a3b"), 300)  # S_kv of the shipped prompt
    (send,) = _new_calls(fakes["prfaas-0"], marks["prfaas-0"])
    assert send.body["prompt"] == prompt and send.body["max_tokens"] == 1 and not send.stream
    params = send.body["kv_transfer_params"]["prfaas"]
    assert params["kind"] == "send" and params["peer_port"] == fakes["pd-1"].kv_port
    assert params["peer_host"] == "127.0.0.1" and params["skip_tokens"] == 0
    (recv,) = _new_calls(fakes["pd-1"], marks["pd-1"])
    first = _expected(prompt, 1)[0]
    assert recv.stream and recv.body["prompt"] == [*prompt, first] and recv.body["max_tokens"] == 7
    recv_params = recv.body["kv_transfer_params"]["prfaas"]
    assert recv_params == {**recv_params, "kind": "recv", "num_tokens": 300, "transfer_id": params["transfer_id"]}
    assert recv.finished
    assert [first, *recv.tokens] == _expected(prompt, 8)  # the decode continued from the transferred prompt
    assert fakes["pd-0"].calls[marks["pd-0"]:] == []
    colocated_mark = len(fakes["pd-1"].calls)
    colocated = _complete(deployment.url, prompt, 8, "colocated")["choices"][0]["text"]
    (one,) = _new_calls(fakes["pd-1"], colocated_mark)  # one stream for the whole request
    assert one.stream and one.body["max_tokens"] == 8 and "kv_transfer_params" not in one.body
    assert one.tokens == _expected(prompt, 8)
    assert prfaas == colocated


@pytest.mark.parametrize("stop_at", [0, 2])
def test_an_end_of_sequence_token_ends_every_route_alike(deployment: Launcher, fakes: dict[str, FakeVllm],
                                                          stop_at: int) -> None:
    """vLLM stops at EOS; a first token that is EOS ends the request at the prefill (PrefillReply.finish_reason)."""
    prompt = _prompt(300, 20 + stop_at)
    expected = _expected(prompt, stop_at + 1)
    for fake in fakes.values():
        fake.stop_token = expected[-1]
    try:
        decode_calls = len(fakes["pd-1"].calls)
        bodies = {route: _complete(deployment.url, prompt, 12, route) for route in ("prfaas", "colocated")}
    finally:
        for fake in fakes.values():
            fake.stop_token = None
    for body in bodies.values():
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["completion_tokens"] == stop_at + 1
    assert bodies["prfaas"]["choices"][0]["text"] == bodies["colocated"]["choices"][0]["text"]
    new = _new_calls(fakes["pd-1"], decode_calls)  # colocated: one stream; prfaas: a decode only if token 0 went on
    assert len(new) == (1 if stop_at == 0 else 2)


def test_local_route_prefills_on_pd_prefill_and_decodes_on_pd_decode(
        deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    prompt = _prompt(40, 2)
    marks = {name: len(f.calls) for name, f in fakes.items()}
    text = _complete(deployment.url, prompt, 5, "local")["choices"][0]["text"]
    (send,) = _new_calls(fakes["pd-0"], marks["pd-0"])
    assert send.body["kv_transfer_params"]["prfaas"]["peer_port"] == fakes["pd-1"].kv_port
    (recv,) = _new_calls(fakes["pd-1"], marks["pd-1"])
    assert recv.body["kv_transfer_params"]["prfaas"]["kind"] == "recv"
    assert text == _complete(deployment.url, prompt, 5, "colocated")["choices"][0]["text"]
    single = _complete(deployment.url, _prompt(30, 3), 1, "local")  # max_tokens 1: the prefill answers it all
    assert single["usage"]["completion_tokens"] == 1


def test_a_lost_transfer_fails_the_decode_load_and_is_retried_per_policy(
        deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    prompt = _prompt(350, 6)
    marks = {name: len(f.calls) for name, f in fakes.items()}
    fakes["pd-1"].cluster.drop_next_sends = 1  # the PrfaaS node's first transfer never reaches pd-1
    text = _complete(deployment.url, prompt, 6, "prfaas")["choices"][0]["text"]
    assert len(_new_calls(fakes["prfaas-0"], marks["prfaas-0"])) == 2  # the attempt was prefilled again
    failed, retried = _new_calls(fakes["pd-1"], marks["pd-1"])
    assert not failed.tokens and not failed.finished  # vLLM failed the load: no token from a missing state
    # token 0 was already streamed: the retry prefills prompt + token 0 (its first token is token 1) and decodes on
    assert retried.body["prompt"][:-1] == [*prompt, _expected(prompt, 1)[0]]
    assert retried.finished and retried.tokens == _expected(prompt, 6)[2:]
    assert text == _complete(deployment.url, prompt, 6, "colocated")["choices"][0]["text"]


def test_transfers_lost_every_time_end_in_a_clear_error(deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    mark = len(fakes["pd-1"].calls)
    fakes["pd-1"].cluster.drop_next_sends = 3  # max_attempts
    status, body = post(f"{deployment.url}/v1/completions", {"model": "default", "prompt": _prompt(300, 8),
                                                             "max_tokens": 6, "temperature": 0},
                        {"x-prfaas-route": "prfaas"})
    assert status == 503 and "after 3 attempts" in body["error"]["message"], body
    assert all(not c.tokens for c in _new_calls(fakes["pd-1"], mark))
    fakes["pd-1"].cluster.drop_next_sends = 0


def test_a_decode_stream_cut_mid_way_is_reprefilled_and_continues(
        deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    prompt = _prompt(320, 30)
    mark = len(fakes["pd-1"].calls)
    fakes["pd-1"].cut_stream_after = 3
    body = _complete(deployment.url, prompt, 10, "prfaas")
    cut, resumed = _new_calls(fakes["pd-1"], mark)
    assert cut.disconnected and len(cut.tokens) == 3 and resumed.finished
    assert body["usage"]["completion_tokens"] == 10 and body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["text"] == _complete(deployment.url, prompt, 10, "colocated")["choices"][0]["text"]


def test_vllm_load_and_connector_links_reach_the_cluster_view(
        deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    fakes["pd-0"].waiting = 5
    try:
        def seen() -> dict[str, Any] | None:
            view = _cluster(deployment)
            pd0 = next(i for i in view["instances"] if i["instance_id"] == "pd-0")
            return view if pd0["queued_requests"] >= 5 else None

        view = _wait_for(seen)
    finally:
        fakes["pd-0"].waiting = 0
    egress = view["links"]["prfaas->pd"]
    assert egress["goodput_gbps"] == pytest.approx(1.5)  # prfaas-0's connector telemetry
    assert egress["bytes_total"] == 12345


def test_kv_events_reach_the_gateway_kv_index(deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    fake = fakes["pd-0"]
    prompt = _prompt(1100, 9)  # never requested: only the events can tell the gateway about it

    def blocks() -> int:
        return int(_cluster(deployment)["kv_index"]["pd-0"]["blocks"])

    before = blocks()
    fake.publish_stored(prompt)
    _wait_for(lambda: blocks() >= before + 2)  # 1100 tokens: two whole 512-token blocks
    fake.publish_removed(prompt, from_block=40)  # 16-token block 40 sits inside our second 512-token block
    _wait_for(lambda: blocks() == before + 1)
    assert len(block_hash_chain(prompt, include_partial=False)) == 2


def test_abort_closes_the_vllm_stream(deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    fake = fakes["pd-1"]
    mark = len(fake.calls)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(post(
        f"{deployment.url}/v1/completions", {"model": "default", "prompt": _prompt(50, 4), "max_tokens": 3000,
                                             "temperature": 0}, {"x-prfaas-route": "colocated"}, 60.0)))
    thread.start()
    try:
        running = _wait_for(lambda: get_json(f"{deployment.url}/admin/running", deployment.admin_headers())["running"])
        _wait_for(lambda: len(fake.calls) > mark and len(fake.calls[mark].tokens) > 5)
        status, _ = post(f"{deployment.url}/admin/requests/{running[0]}/abort", b"", deployment.admin_headers())
        assert status == 200
        _wait_for(lambda: fake.calls[mark].disconnected)
    finally:
        thread.join(30)
    assert not fake.calls[mark].finished
    assert results and results[0][0] != 200


def test_role_switch_is_routing_only(deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    """kv_both connectors: PD-P <-> PD-D changes what the gateway routes, at once, without touching vLLM."""
    calls = {name: len(f.calls) for name, f in fakes.items()}
    for role in ("pd_decode", "pd_prefill"):
        status, body = post(f"{deployment.url}/admin/roles", {"roles": {"pd-0": role}}, deployment.admin_headers())
        assert status == 200 and body["switched"] == [{"name": "pd-0", "role": role, "drained_s": 0.0}], body
        _wait_for(lambda role=role: get_json(f"{deployment.url}/health")["nodes"]["pd-0"]["role"] == role)
    assert {name: len(f.calls) for name, f in fakes.items()} == calls


def test_vllm_down_is_retried_then_taken_out_of_routing(deployment: Launcher, fakes: dict[str, FakeVllm]) -> None:
    fake = fakes["prfaas-0"]
    prompt = _prompt(400, 5)
    fake.stop()
    try:
        # the gateway still routes to prfaas-0 for a moment: its failed prefill is recomputed locally (policy)
        body = _complete(deployment.url, prompt, 4, "prfaas")
        assert body["usage"]["completion_tokens"] == 4

        def down() -> bool:
            return not get_json(f"{deployment.url}/health")["nodes"]["prfaas-0"]["up"]

        _wait_for(down)
        mark = len(fakes["pd-0"].calls)
        _complete(deployment.url, prompt, 4)  # long, but the only PrfaaS node is down: served locally
        assert len(fakes["pd-0"].calls) > mark
    finally:
        fake.start()
    _wait_for(lambda: get_json(f"{deployment.url}/health")["nodes"]["prfaas-0"]["up"])


def test_bad_vllm_url_is_a_clear_config_error(tmp_path: Path) -> None:
    from prfaas.core.errors import ConfigError
    from prfaas.serve.config import load_config

    path = tmp_path / "deploy.toml"
    path.write_text('[[nodes]]\nname = "pd-1"\ncluster = "pd"\nrole = "pd_decode"\nengine = "vllm"\n'
                    'vllm_url = "localhost:8100"\nkv_port = 9000\n'
                    '[[nodes]]\nname = "pd-0"\ncluster = "pd"\nrole = "pd_prefill"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vllm_url.*not an http\(s\)://host:port URL"):
        load_config(path)
