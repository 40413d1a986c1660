"""OpenAI request validation and the published schema, without processes: integral floats, content parts,
unsupported parameters, malformed bodies, and the generated OpenAPI document agreeing with the decoder."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from prfaas.serve.deploy_secrets import GatewayCredentials
from prfaas.serve.openai_api import ApiError, decode_chat, decode_completion, message_text
from prfaas.serve.openai_schema import UNSUPPORTED_CHAT, UNSUPPORTED_COMPLETION, ChatRequest, CompletionRequest
from prfaas.serve.openapi_doc import openapi_spec


def _error(decoder, body: bytes) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as info:
        decoder(body)
    return info.value


def test_integral_floats_are_integers_as_json_schema_says() -> None:
    req = decode_completion(b'{"model": "m", "prompt": [1.0, 2], "max_tokens": 1.0, "seed": -345.0}')
    assert (req.max_tokens, req.seed, req.prompt) == (1, -345, [1, 2])
    assert isinstance(req.max_tokens, int) and isinstance(req.seed, int)
    error = _error(decode_completion, b'{"model": "m", "prompt": "x", "max_tokens": 1.5}')
    assert error.status == 400 and error.param == "max_tokens"
    assert decode_completion(b'{"model": "m", "prompt": "x", "temperature": 1}').temperature == 1.0


def test_chat_text_part_needs_text_and_parts_are_text_only() -> None:
    ok = decode_chat(b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}')
    assert message_text(ok.messages[0]) == "hi"
    for part in (b'{"type": "text"}', b'{"text": "hi"}', b'{"type": "image_url", "image_url": {"url": "x"}}'):
        body = b'{"model": "m", "messages": [{"role": "user", "content": [' + part + b']}]}'
        assert _error(decode_chat, body).param is not None
    assert _error(decode_chat, b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}').status == 400


@pytest.mark.parametrize(("field", "value"), [
    ("logprobs", 2), ("echo", True), ("suffix", "x"), ("best_of", 2), ("presence_penalty", 0.5),
    ("frequency_penalty", -1.0), ("logit_bias", {"5": 10}),
])
def test_completion_refuses_unsupported_parameters_by_name(field: str, value: object) -> None:
    body = json.dumps({"model": "m", "prompt": "x", field: value}).encode()
    error = _error(decode_completion, body)
    assert (error.status, error.param, error.code) == (400, field, "unsupported_parameter")
    assert field in error.message
    neutral = json.dumps({"model": "m", "prompt": "x", field: None}).encode()
    assert decode_completion(neutral).prompt == "x"


@pytest.mark.parametrize(("field", "value"), [
    ("logprobs", True), ("top_logprobs", 3), ("tools", [{"type": "function"}]), ("tool_choice", "auto"),
    ("response_format", {"type": "json_object"}), ("store", True), ("functions", [{"name": "f"}]),
])
def test_chat_refuses_unsupported_parameters_by_name(field: str, value: object) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], field: value}).encode()
    error = _error(decode_chat, body)
    assert (error.status, error.param) == (400, field)


def test_neutral_values_and_informational_fields_pass() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": False, "top_logprobs": 0,
            "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "tools": [], "user": "u-1",
            "response_format": {"type": "text"}, "metadata": {"k": "v"}, "parallel_tool_calls": True,
            "some_future_field": [1, 2]}
    assert decode_chat(json.dumps(body).encode()).user == "u-1"


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"prompt": "\xff", "model": "m"}', "UTF-8"), (b'{"model": "m", "prompt": ', "not valid JSON"),
    (b'[1, 2]', "JSON object"), (b'"text"', "JSON object"), (b'', "not valid JSON"), (b'null', "JSON object"),
    (b'{"model": "m", "prompt": "x", "max_tokens": "5"}', "Expected `int"),
    (b'{"model": "m", "prompt": "x", "n": 2}', "n = 1"),
    (b'{"model": "m", "prompt": "x", "top_p": -0.5}', "top_p"),
    (b'{"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', "at most 4"),
    (b'{"model": "m", "prompt": [""]}', "empty"), (b'{"model": "m", "prompt": []}', "prompt"),
    (b'[' * 100_000 + b']' * 100_000, ""),
])
def test_malformed_bodies_are_400(body: bytes, fragment: str) -> None:
    error = _error(decode_completion, body)
    assert error.status == 400 and fragment in error.message + str(error.param)
    assert json.loads(error.body())["error"]["type"] == "invalid_request_error"


def test_unsupported_tables_name_declared_fields_and_neutral_values_decode() -> None:
    for kind, table, base in ((CompletionRequest, UNSUPPORTED_COMPLETION, {"model": "m", "prompt": "x"}),
                              (ChatRequest, UNSUPPORTED_CHAT, {"model": "m", "messages": [{"role": "user"}]})):
        assert set(table) <= set(kind.__struct_fields__)
        decoder = decode_completion if kind is CompletionRequest else decode_chat
        for name, neutral in table.items():
            for value in (None, *neutral):
                decoder(json.dumps({**base, name: value}).encode())  # accepted as the schema says


def test_published_schema_matches_the_structs() -> None:
    spec = openapi_spec("default", vocab_size=100)
    schemas = spec["components"]["schemas"]
    completion = schemas["CompletionRequest"]
    assert set(completion["required"]) == {"model", "prompt"}
    assert completion["properties"]["max_tokens"]["anyOf"][0] == {
        "type": "integer", "minimum": 1, "description": completion["properties"]["max_tokens"]["anyOf"][0][
            "description"]}
    ids = completion["properties"]["prompt"]["anyOf"][1]["items"]
    assert (ids["minimum"], ids["maximum"]) == (0, 99)
    assert schemas["TextPart"]["required"] == ["type", "text"]
    for path in ("/v1/completions", "/v1/chat/completions"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "404", "413"} <= set(responses)
        assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "ErrorResponse" in schemas and "ModelList" in schemas
    msgspec.json.encode(spec)  # serialisable as the gateway serves it


def test_fuzz_bounding_keeps_meaning_but_asks_for_few_tokens() -> None:
    from prfaas.bench.api_fuzz import FUZZ_MAX_TOKENS, bound_generation

    bodies: list[dict[str, object]] = [{"max_tokens": 5000}, {"max_completion_tokens": None}, {"max_tokens": 10**12},
                                       {"max_tokens": 0}, {"max_tokens": "x"}, {}]
    for body in bodies:
        bound_generation(body, context_tokens=16383)
    assert bodies == [{"max_tokens": FUZZ_MAX_TOKENS}, {"max_completion_tokens": None, "max_tokens": FUZZ_MAX_TOKENS},
                      {"max_tokens": 10**12}, {"max_tokens": 0}, {"max_tokens": "x"}, {"max_tokens": FUZZ_MAX_TOKENS}]


class _Tokenizer:
    def __len__(self) -> int:
        return 1000


def _gateway(context_tokens: int | None) -> Any:
    from prfaas.core.lifecycle import ClusterKind, Role
    from prfaas.serve.config import GatewaySection, default_config
    from prfaas.serve.gateway import Gateway
    from prfaas.serve.messages import NodeRegister

    gateway = Gateway(default_config(gateway=GatewaySection(route_wait_s=0.2)), _Tokenizer(),
                      shared_secret=b"a-test-deployment-secret", credentials=GatewayCredentials(None, ()))
    if context_tokens is not None:
        gateway.control.register(NodeRegister(
            name="pd-1", cluster=ClusterKind.PD, role=Role.PD_DECODE, control_url="http://127.0.0.1:9",
            kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=context_tokens))
    return gateway


def test_tokens_to_generate_defaults_and_the_context_check() -> None:
    gateway = _gateway(context_tokens=101)  # 100 tokens per request, prompt and output
    check = gateway._check_prompt
    assert check([1] * 10, None, 16) == 16  # completions: OpenAI's legacy default
    assert check([1] * 90, None, 16) == 10  # ... or what the context leaves
    assert check([1] * 10, None, None) == 90  # chat: to the end of the context
    assert check([1] * 10, 90, 16) == 90
    for tokens, max_tokens, param in (([1] * 10, 91, "max_tokens"), ([1] * 100, None, "prompt"),
                                      ([1] * 100, 1, "prompt")):
        with pytest.raises(ApiError) as info:
            check(tokens, max_tokens, 16)
        assert (info.value.code, info.value.param) == ("context_length_exceeded", param)
    with pytest.raises(ApiError) as info:
        check([1, 1000], 2, 16)
    assert info.value.param == "prompt" and "[0, 1000)" in info.value.message


def test_requests_wait_for_a_registered_context_then_503() -> None:
    import asyncio

    with pytest.raises(ApiError) as info:
        asyncio.run(_gateway(context_tokens=None).wait_for_context())
    assert info.value.status == 503
    asyncio.run(_gateway(context_tokens=101).wait_for_context())  # known: returns at once
