"""The OpenAI-compatible surface: request schemas (msgspec), validation, error bodies, response encoding.

Request bodies decode straight into Structs (`decode_completion`, `decode_chat`); a malformed body, a wrong
type or an out-of-range value raises `ApiError` carrying the HTTP status and the OpenAI error shape:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

Responses are pre-encoded bytes (msgspec JSON); streaming chunks are `data: {...}\\n\\n` lines ending in
`data: [DONE]`. Unknown request fields are ignored (clients send many); `n` > 1 is refused.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
from msgspec import Struct

_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`$")
_ENCODER = msgspec.json.Encoder()


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
        return _ENCODER.encode({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                          "code": self.code}})


class StreamOptions(Struct, frozen=True):
    include_usage: bool = False


class _Sampling(Struct, frozen=True, kw_only=True):
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1


class CompletionRequest(_Sampling, frozen=True, kw_only=True):
    prompt: str | list[Any]  # text, token ids, or a one-element list of text


class ChatMessage(Struct, frozen=True):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling, frozen=True, kw_only=True):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None


_COMPLETION_DECODER = msgspec.json.Decoder(CompletionRequest)
_CHAT_DECODER = msgspec.json.Decoder(ChatRequest)
DEFAULT_MAX_TOKENS = 16


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        param = match.group(1) if match else None
        missing = re.search(r"missing required field `([^`]+)`", message)
        if missing is not None:
            param = missing.group(1) if not param else f"{param}.{missing.group(1)}"
        raise ApiError(400, _PATH_RE.sub("", message), param=param) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


def _check_sampling(req: _Sampling, max_tokens: int | None) -> None:
    if req.n != 1:
        raise ApiError(400, "only n = 1 is supported", param="n")
    if max_tokens is not None and max_tokens <= 0:
        raise ApiError(400, f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens")
    if req.temperature is not None and not 0.0 <= req.temperature <= 2.0:
        raise ApiError(400, f"temperature must be in [0, 2], got {req.temperature}", param="temperature")
    if req.top_p is not None and not 0.0 < req.top_p <= 1.0:
        raise ApiError(400, f"top_p must be in (0, 1], got {req.top_p}", param="top_p")
    if any(not s for s in stop_list(req.stop)):
        raise ApiError(400, "stop strings must be non-empty", param="stop")
    if len(stop_list(req.stop)) > 4:
        raise ApiError(400, "at most 4 stop strings", param="stop")


def decode_completion(body: bytes) -> CompletionRequest:
    req: CompletionRequest = _decode(_COMPLETION_DECODER, body)
    _check_sampling(req, req.max_tokens)
    prompt = req.prompt
    if isinstance(prompt, list):
        is_text = len(prompt) == 1 and isinstance(prompt[0], str)
        is_ids = all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        if not (is_text or is_ids):
            raise ApiError(400, "prompt must be a string, a list of token ids, or a list with one string",
                           param="prompt")
    return req


def decode_chat(body: bytes) -> ChatRequest:
    req: ChatRequest = _decode(_CHAT_DECODER, body)
    _check_sampling(req, chat_max_tokens(req))
    if not req.messages:
        raise ApiError(400, "messages must not be empty", param="messages")
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
    return "".join(str(part.get("text", "")) for part in message.content if part.get("type") == "text")


# --- responses ------------------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
                    completion_tokens: int) -> bytes:
    return _ENCODER.encode({
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    })


def chat_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
              completion_tokens: int) -> bytes:
    return _ENCODER.encode({
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                     "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    })


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _ENCODER.encode(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def completion_chunk(rid: str, model: str, text: str, finish: str | None) -> bytes:
    return sse({"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]})


def chat_chunk(rid: str, model: str, delta: dict[str, str], finish: str | None) -> bytes:
    return sse({"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})


def usage_chunk(rid: str, model: str, obj: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    return sse({"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [],
                "usage": usage(prompt_tokens, completion_tokens)})


def error_event(error: ApiError) -> bytes:
    return b"data: " + error.body() + b"\n\n"
