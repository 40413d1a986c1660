"""Every input answered correctly, through the real gateway and nodes (issue 10, API items 1-5 and the fuzzer).

One tiny deployment serves the module: max_tokens against the context, extreme sampling values, malformed bodies,
the published OpenAPI schema agreeing with validation, unsupported OpenAI parameters refused by name, and a
bounded schemathesis run over every /v1/ operation (no 5xx, answers conform to the published schema).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import openai
import pytest
from serve_helpers import complete, get_json, metrics, post

from prfaas.engine.tokenizer import load_default_tokenizer
from prfaas.serve.launcher import Launcher
from prfaas.serve.text import encode_chat

pytestmark = pytest.mark.network

PROMPT = "The scheduler routes short prompts to the local cluster"
CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens")


def _client(deployment: Launcher) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deployment.url}/v1", api_key="none", timeout=120, max_retries=0)


def _work_counters(url: str) -> dict[str, float]:
    """Counters that move when a request reaches the router or a node."""
    keep = ("prfaas_requests_by_reason_total", "prfaas_requests_by_route_total", "prfaas_failed_attempts_total")
    return {k: v for k, v in metrics(url).items() if k.startswith(keep)}


def _context_limit(url: str) -> int:
    code, reply = post(f"{url}/v1/completions", {"model": "default", "prompt": "0", "max_tokens": 10**12})
    assert code == 400
    match = CONTEXT_RE.search(reply["error"]["message"])
    assert match is not None, reply
    return int(match.group(1))


# --- 1. max_tokens against the context -------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [20_000, 10_000_000, 10**12])
def test_max_tokens_beyond_the_context_is_a_400_before_any_work(deployment: Launcher, max_tokens: int) -> None:
    before = _work_counters(deployment.url)
    code, reply = post(f"{deployment.url}/v1/completions",
                       {"model": "default", "prompt": "0", "max_tokens": max_tokens}, timeout_s=60)
    assert code == 400, reply
    error = reply["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "context_length_exceeded", "max_tokens", "invalid_request_error")
    assert f"needs {max_tokens + 1}: 1 prompt tokens + max_tokens {max_tokens}" in error["message"]
    assert CONTEXT_RE.search(error["message"])
    assert _work_counters(deployment.url) == before  # nothing was routed, prefilled or retried


def test_chat_max_tokens_beyond_the_context_with_the_openai_client(deployment: Launcher) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(deployment).chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=10**12)
    assert info.value.code == "context_length_exceeded" and info.value.param == "max_completion_tokens"
    assert "max_completion_tokens 1000000000000" in info.value.message


def test_the_context_boundary_is_exact(deployment: Launcher) -> None:
    limit = _context_limit(deployment.url)
    prompt = [(11 * i) % 900 + 5 for i in range(limit - 2)]
    code, reply = post(f"{deployment.url}/v1/completions",
                       {"model": "default", "prompt": prompt, "max_tokens": 3, "temperature": 0})
    assert code == 400 and f"needs {limit + 1}: {limit - 2} prompt tokens + max_tokens 3" in reply["error"]["message"]
    code, reply = post(f"{deployment.url}/v1/completions", {"model": "default", "prompt": [*prompt, 7, 7]})
    assert code == 400 and reply["error"]["param"] == "prompt" and f"prompt has {limit} tokens" in reply[
        "error"]["message"]
    fits = complete(deployment.url, prompt, 2)
    assert fits["usage"]["completion_tokens"] == 2 and fits["usage"]["prompt_tokens"] == limit - 2


def test_default_max_tokens(deployment: Launcher) -> None:
    client = _client(deployment)
    whole = client.completions.create(model="default", prompt=PROMPT, temperature=0)
    assert whole.usage is not None and whole.usage.completion_tokens == 16  # OpenAI's legacy default
    assert whole.choices[0].finish_reason == "length"
    # chat without a limit generates to the end of the context: a prompt 3 tokens short of it gets 3 tokens
    limit = _context_limit(deployment.url)
    tokenizer = load_default_tokenizer()
    def room_of(text: str) -> int:
        return limit - len(encode_chat(tokenizer, [("user", text)]))

    words = limit // 8
    while room_of(" ".join(f"word{i}" for i in range(words + 100))) > 3:
        words += 100
    content = " ".join(f"word{i}" for i in range(words))
    for _ in range(1000):  # then one short token at a time, to exactly 3 tokens short of the context
        room = room_of(content)
        if room <= 3:
            break
        content += " a"
    assert room == 3
    chat = client.chat.completions.create(model="default", messages=[{"role": "user", "content": content}],
                                          temperature=0)
    assert chat.usage is not None and chat.usage.completion_tokens <= 3
    assert chat.usage.prompt_tokens == limit - 3
    if chat.usage.completion_tokens < 3:
        assert chat.choices[0].finish_reason == "stop"  # only an end-of-text token ends it sooner


# --- 2. extreme sampling values ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["prfaas", "local", "colocated"])
def test_tiny_top_p_and_temperature_act_as_greedy_on_every_route(deployment: Launcher, route: str) -> None:
    long_prompt = " ".join(f"word{i}" for i in range(300))  # above the 256-token offload threshold
    greedy = complete(deployment.url, long_prompt, 8, route, temperature=0)["choices"][0]["text"]
    before = _work_counters(deployment.url)
    for extra in ({"temperature": 1e-46}, {"temperature": 1.0, "top_p": 5e-324}, {"temperature": 2.0, "top_p": 1e-300,
                                                                                   "seed": 5}):
        assert complete(deployment.url, long_prompt, 8, route, **extra)["choices"][0]["text"] == greedy, extra
    after = _work_counters(deployment.url)
    failed = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("prfaas_failed_attempts")}
    assert not any(failed.values()), failed


def test_the_issue_bodies_answer_200(deployment: Launcher) -> None:
    for body in (b'{"model":"default","prompt":"0","top_p":5e-324,"max_tokens":4}',
                 b'{"model":"default","prompt":"0","temperature":1e-46,"max_tokens":4}'):
        code, reply = post(f"{deployment.url}/v1/completions", body)
        assert code == 200, reply
        assert reply["usage"]["completion_tokens"] == 4


# --- 3. malformed bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"model":"default","prompt":"\xff"}', "not valid UTF-8"),
    (b'["model", "default"]', "must be a JSON object"),
    (b'42', "must be a JSON object"),
    (b'{"model": "default", "prompt": "x",', "not valid JSON"),
    (b'{"model": "default", "prompt": "x", "max_tokens": true}', "got `bool`"),
    (b'[' * 50_000 + b']' * 50_000, "nested too deeply"),
])
def test_malformed_bodies_are_openai_400s(deployment: Launcher, body: bytes, fragment: str) -> None:
    for path in ("/v1/completions", "/v1/chat/completions"):
        code, reply = post(f"{deployment.url}{path}", body)
        assert code == 400, reply
        assert fragment in reply["error"]["message"] and reply["error"]["type"] == "invalid_request_error"


def test_a_body_over_the_limit_is_a_413(deployment: Launcher) -> None:
    big = json.dumps({"model": "default", "prompt": "x" * 10_000_000}).encode()
    code, reply = post(f"{deployment.url}/v1/completions", big)
    assert code == 413 and "exceeds" in reply["error"]["message"]
    assert complete(deployment.url, PROMPT, 2)["usage"]["completion_tokens"] == 2  # still serving


# --- 4. the published schema and validation agree -----------------------------------------------------------


def test_openapi_publishes_request_response_and_error_schemas(deployment: Launcher) -> None:
    spec = get_json(f"{deployment.url}/openapi.json")
    schemas = spec["components"]["schemas"]
    for path, request in (("/v1/completions", "CompletionRequest"), ("/v1/chat/completions", "ChatRequest")):
        post_op = spec["paths"][path]["post"]
        assert post_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(request)
        assert {"200", "400", "404", "413"} <= set(post_op["responses"])
        assert post_op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
        assert "Retry-After" in post_op["responses"]["429"]["headers"]  # admission control (issue 11)
    assert spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].endswith("ModelList")
    assert schemas["CompletionRequest"]["properties"]["n"]["maximum"] == 1
    assert schemas["TextPart"]["required"] == ["type", "text"]
    assert {"ErrorResponse", "Completion", "ChatCompletion", "ChatCompletionChunk", "ModelList"} <= set(schemas)


def test_integral_floats_are_integers_and_text_parts_need_text(deployment: Launcher) -> None:
    code, reply = post(f"{deployment.url}/v1/completions",
                       {"model": "default", "prompt": PROMPT, "max_tokens": 1.0, "seed": -345.0, "temperature": 1})
    assert code == 200, reply
    assert reply["usage"]["completion_tokens"] == 1
    code, reply = post(f"{deployment.url}/v1/chat/completions",
                       {"model": "default", "max_tokens": 2,
                        "messages": [{"role": "user", "content": [{"type": "text"}]}]})
    assert code == 400 and "text" in reply["error"]["message"] and reply["error"]["param"].startswith("messages")
    code, reply = post(f"{deployment.url}/v1/chat/completions",
                       {"model": "default", "max_tokens": 2,
                        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert code == 200 and reply["choices"][0]["message"]["role"] == "assistant"


# --- 5. unsupported parameters are refused, never ignored ----------------------------------------------------


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"logprobs": 2}, "logprobs"), ({"echo": True}, "echo"), ({"best_of": 3}, "best_of"),
    ({"presence_penalty": 0.5}, "presence_penalty"), ({"logit_bias": {"50": 10}}, "logit_bias"),
    ({"suffix": "end"}, "suffix"),
])
def test_completion_parameters_we_do_not_implement_are_400(deployment: Launcher, kwargs: dict[str, Any],
                                                           param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(deployment).completions.create(model="default", prompt=PROMPT, max_tokens=2, **kwargs)
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    assert param in info.value.message


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"frequency_penalty": 1.0}, "frequency_penalty"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
])
def test_chat_parameters_we_do_not_implement_are_400(deployment: Launcher, kwargs: dict[str, Any],
                                                     param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(deployment).chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=2, **kwargs)
    assert info.value.param == param


def test_neutral_and_informational_parameters_are_served(deployment: Launcher) -> None:
    whole = _client(deployment).chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=2, user="u-1", logprobs=False,
        presence_penalty=0, frequency_penalty=0.0, logit_bias={}, extra_body={"a_future_parameter": 1})
    assert whole.usage is not None and whole.usage.completion_tokens == 2
    assert whole.choices[0].logprobs is None


# --- the fuzzer (runs last in this module) ------------------------------------------------------------------


def test_schemathesis_finds_no_5xx_and_no_schema_violation(deployment: Launcher) -> None:
    from prfaas.bench.api_fuzz import fuzz_api

    limit = _context_limit(deployment.url)
    report = fuzz_api(deployment.url, examples_per_case=60, budget_s=120, seed=10, context_tokens=limit)
    print(report.summary())
    assert report.examples >= 20  # the budget let a real sample run
    assert set(report.statuses) == {"POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models"}
    assert report.failures == []
    statuses = {code for counts in report.statuses.values() for code in counts}
    assert 200 in statuses and 400 in statuses and max(statuses) < 500
    with urllib.request.urlopen(f"{deployment.url}/health", timeout=10) as resp:
        assert resp.status == 200  # the deployment survived it
