"""The gateway's published OpenAPI document, generated from the Structs in `serve.openai_schema`.

    spec = openapi_spec(served_model="default", vocab_size=49152)    # installed as the app's `openapi()`

`msgspec.json.schema_components` turns the request, response and error Structs into `components.schemas`; this
module only adds the paths, the status codes each answers (every 4xx with the error body) and what msgspec cannot
express: a prompt is a text, a list of token ids below the vocabulary size, or a list of exactly one text; `model`
is the one served name; an unsupported OpenAI parameter accepts only null or its neutral value (`UNSUPPORTED_*`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from prfaas.serve.openai_api import MAX_BODY_BYTES
from prfaas.serve.openai_schema import (
    NOT_SUPPORTED,
    UNSUPPORTED_CHAT,
    UNSUPPORTED_COMPLETION,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Completion,
    CompletionRequest,
    ErrorResponse,
    ModelList,
)

_REF = "#/components/schemas/{name}"
_ERROR_CODES = {
    "400": "Malformed body, wrong type, value out of range, unsupported parameter, or prompt + max_tokens above "
           "the context (code context_length_exceeded).",
    "401": "API keys are configured and the request carries none or a wrong one (`Authorization: Bearer KEY`).",
    "404": "Unknown model (code model_not_found).",
    "413": f"Request body above {MAX_BODY_BYTES} bytes.",
    "429": "Admission control refused the request at once: the gateway's in-flight bound or every prefill node's "
           "queue bound is reached (code rate_limit_exceeded); retry after the `Retry-After` header's seconds.",
    "500": "The engine failed on this request (not retried), or a gateway fault.",
    "503": "No node can serve the request now (nodes starting, lost or switching roles; attempts exhausted), or "
           "no capacity at all / the request could not start within the queue deadline (code server_overloaded, "
           "with `Retry-After`).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _errors(codes: tuple[str, ...]) -> dict[str, Any]:
    body = {"application/json": {"schema": _ref("ErrorResponse")}}
    answers: dict[str, Any] = {code: {"description": _ERROR_CODES[code], "content": body} for code in codes}
    if "429" in answers:
        answers["429"]["headers"] = {"Retry-After": {
            "description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}}
    return answers


def _generation(request: str, answer: str, chunk: str, summary: str) -> dict[str, Any]:
    stream = {  # OpenAPI before 3.2: the schema of one event
        "type": "object", "required": ["data"],
        "properties": {"data": {
            "anyOf": [{"const": "[DONE]"},
                      {"type": "string", "contentMediaType": "application/json",
                       "contentSchema": {"anyOf": [_ref(chunk), _ref("ErrorResponse")]}}],
            "description": f"A {chunk} (or an ErrorResponse if the request fails mid-stream) as JSON; the last "
                           "event is `[DONE]`."}},
    }
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {
            "200": {"description": f"The answer ({answer}); with `stream: true`, {chunk} events.",
                    "content": {"application/json": {"schema": _ref(answer)},
                                "text/event-stream": {"schema": stream}}},
            **_errors(("400", "401", "404", "413", "429", "500", "503")),
        },
    }}


def _prompt_schema(vocab_size: int) -> dict[str, Any]:
    return {"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": vocab_size - 1}},
        {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string", "minLength": 1}},
    ], "description": "A text, a list of token ids, or a list holding one text."}


def openapi_spec(served_model: str, vocab_size: int, version: str = "1") -> dict[str, Any]:
    structs = [CompletionRequest, ChatRequest, Completion, ChatCompletion, ChatCompletionChunk, ModelList,
               ErrorResponse]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    components["CompletionRequest"]["properties"]["prompt"] = _prompt_schema(vocab_size)
    for name, unsupported in (("CompletionRequest", UNSUPPORTED_COMPLETION), ("ChatRequest", UNSUPPORTED_CHAT)):
        properties = components[name]["properties"]
        properties["model"] = {"type": "string", "enum": [served_model],
                               "description": "The served model; another name is a 404 (code model_not_found)."}
        for param, neutral in unsupported.items():  # what is accepted: null or the neutral value
            properties[param] = {"enum": [None, *neutral], "description": NOT_SUPPORTED}
    paths = {
        "/v1/completions": _generation("CompletionRequest", "Completion", "Completion",
                                       "Text completion (OpenAI legacy completions)."),
        "/v1/chat/completions": _generation("ChatRequest", "ChatCompletion", "ChatCompletionChunk",
                                            "Chat completion."),
        "/v1/models": {"get": {"summary": "The served model.", "responses": {
            "200": {"description": "One model.", "content": {"application/json": {"schema": _ref("ModelList")}}},
            **_errors(("401",)),
        }}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "prfaas gateway (OpenAI-compatible)", "version": version,
                 "description": "Unknown request fields are ignored; known OpenAI parameters that prfaas does "
                                "not implement are refused with a 400 unless neutral. See docs/api-errors.md."},
        "paths": paths,
        "components": {"schemas": components},
    }
