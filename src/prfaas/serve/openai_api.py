"""The OpenAI-compatible surface: request decoding and validation, error bodies, response encoding.

Request bodies decode into the Structs of `serve.openai_schema` (`decode_completion`, `decode_chat`); a malformed
body, a wrong type, an out-of-range value or an unsupported parameter raises `ApiError` carrying the HTTP status and
the OpenAI error shape:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

Numbers follow JSON Schema: an integral float (`1.0`, `-345.0`) is an integer. Unknown fields are ignored (clients
send many); known OpenAI parameters that prfaas does not implement are refused unless neutral
(`UNSUPPORTED_COMPLETION`, `UNSUPPORTED_CHAT`).
Responses are pre-encoded bytes (msgspec JSON); streaming chunks are `data: {...}\\n\\n` lines ending in
`data: [DONE]`.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

import msgspec

from prfaas.serve.openai_schema import (
    UNSUPPORTED_CHAT,
    UNSUPPORTED_COMPLETION,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessage,
    ChatRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ErrorDetail,
    ErrorResponse,
    FinishReason,
    Usage,
)

T = TypeVar("T")

DEFAULT_MAX_TOKENS = 16  # /v1/completions without max_tokens (OpenAI's legacy default); chat: rest of the context
MAX_BODY_BYTES = 4 * 1024 * 1024  # a larger request body is a 413
_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`$")
_ENCODER = msgspec.json.Encoder()
_FRIENDLY = {"n": "only n = 1 is supported (one choice per request)",
             "stop": "stop must be a non-empty string or a list of at most 4 non-empty strings"}


class ApiError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code

    def body(self) -> bytes:
        detail = ErrorDetail(message=self.message, type=self.kind, param=self.param, code=self.code)
        return _ENCODER.encode(ErrorResponse(error=detail))


def body_too_large(size_bytes: int | None = None) -> ApiError:
    got = f" ({size_bytes} bytes)" if size_bytes is not None else ""
    return ApiError(413, f"request body exceeds {MAX_BODY_BYTES} bytes{got}", code="request_too_large")


# --- requests -------------------------------------------------------------------------------------------


def _integral_floats_to_ints(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer; msgspec does not. Rewrite integral floats in place (iteratively:
    a deeply nested body must not exhaust the Python stack)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in list(items):
            if isinstance(item, float) and item.is_integer():
                node[key] = int(item)
            elif isinstance(item, (dict, list)):
                stack.append(item)
    return value


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        raw = msgspec.json.decode(body)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not valid UTF-8 ({exc.reason})") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(raw).__name__}")
    try:
        return msgspec.convert(_integral_floats_to_ints(raw), kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        param = match.group(1) if match else None
        missing = re.search(r"missing required field `([^`]+)`", message)
        if missing is not None:
            param = missing.group(1) if not param else f"{param}.{missing.group(1)}"
        top = param.split(".")[0].split("[")[0] if param else None
        text = _FRIENDLY.get(top, "") if top else ""
        raise ApiError(400, f"{text} ({_PATH_RE.sub('', message)})" if text else _PATH_RE.sub("", message),
                       param=param) from None


def _refuse_unsupported(req: Any, table: dict[str, tuple[Any, ...]]) -> None:
    for name, neutral in table.items():
        value = getattr(req, name, None)
        if value is not None and not any(value == v and type(value) is type(v) for v in neutral):
            raise ApiError(400, f"`{name}` is not supported by this server; remove it or send null",
                           param=name, code="unsupported_parameter")


def decode_completion(body: bytes) -> CompletionRequest:
    req = _decode(body, CompletionRequest)
    _refuse_unsupported(req, UNSUPPORTED_COMPLETION)
    if isinstance(req.prompt, list):
        is_text = len(req.prompt) == 1 and isinstance(req.prompt[0], str)
        is_ids = all(isinstance(t, int) for t in req.prompt)
        if not (is_text or is_ids):
            raise ApiError(400, "prompt must be a string, a list of token ids, or a list with one string",
                           param="prompt")
        if is_text and not req.prompt[0]:
            raise ApiError(400, "the prompt is empty", param="prompt")
    return req


def decode_chat(body: bytes) -> ChatRequest:
    req = _decode(body, ChatRequest)
    _refuse_unsupported(req, UNSUPPORTED_CHAT)
    return req


def chat_max_tokens(req: ChatRequest) -> int | None:
    return req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens


def stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def message_text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


# --- responses ------------------------------------------------------------------------------------------


def _finish(finish: str | None) -> FinishReason | None:
    if finish is None:
        return None
    return "stop" if finish == "stop" else "length"


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


def completion_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
                    completion_tokens: int) -> bytes:
    choice = CompletionChoice(index=0, text=text, finish_reason=_finish(finish))
    return _ENCODER.encode(Completion(id=rid, created=int(time.time()), model=model, choices=[choice],
                                      usage=usage(prompt_tokens, completion_tokens)))


def chat_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
              completion_tokens: int) -> bytes:
    choice = ChatChoice(index=0, message=AssistantMessage(content=text), finish_reason=_finish(finish))
    return _ENCODER.encode(ChatCompletion(id=rid, created=int(time.time()), model=model, choices=[choice],
                                          usage=usage(prompt_tokens, completion_tokens)))


def sse(payload: msgspec.Struct) -> bytes:
    return b"data: " + _ENCODER.encode(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def completion_chunk(rid: str, model: str, text: str, finish: str | None) -> bytes:
    choice = CompletionChoice(index=0, text=text, finish_reason=_finish(finish))
    return sse(Completion(id=rid, created=int(time.time()), model=model, choices=[choice]))


def chat_chunk(rid: str, model: str, delta: ChatDelta, finish: str | None) -> bytes:
    choice = ChatChunkChoice(index=0, delta=delta, finish_reason=_finish(finish))
    return sse(ChatCompletionChunk(id=rid, created=int(time.time()), model=model, choices=[choice]))


def usage_chunk(rid: str, model: str, chat: bool, prompt_tokens: int, completion_tokens: int) -> bytes:
    used = usage(prompt_tokens, completion_tokens)
    if chat:
        return sse(ChatCompletionChunk(id=rid, created=int(time.time()), model=model, choices=[], usage=used))
    return sse(Completion(id=rid, created=int(time.time()), model=model, choices=[], usage=used))


def error_event(error: ApiError) -> bytes:
    return b"data: " + error.body() + b"\n\n"
