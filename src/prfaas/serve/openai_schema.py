"""The OpenAI-compatible request and response shapes, as msgspec Structs: the one definition.

Requests decode into these Structs (`serve.openai_api`), responses are encoded from them, and the published
`/openapi.json` is generated from them (`serve.openapi_doc`), so validation and the schema cannot disagree.
Constraints live in `Meta` annotations (they become JSON Schema keywords). Known OpenAI parameters that prfaas
does not implement are declared with their OpenAI types so the schema shows them; any value other than their
neutral one is refused with a 400 (`UNSUPPORTED_*`). Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

NOT_SUPPORTED = ("Not supported by prfaas: any value other than the neutral one (null, false, 0, empty) is refused "
                 "with a 400.")

PositiveInt = Annotated[int, Meta(ge=1)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
MaxTokens = Annotated[int, Meta(ge=1, description=(
    "Tokens to generate. Default: 16 for /v1/completions; for chat, up to the end of the context. "
    "prompt tokens + max_tokens above the context is a 400 (code context_length_exceeded)."))]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0, description="0 (or below 1e-5) is greedy.")]
TopP = Annotated[float, Meta(gt=0.0, le=1.0, description="Nucleus mass; the most likely token is always kept.")]
Stop = NonEmptyStr | Annotated[list[NonEmptyStr], Meta(max_length=4)]
Unsupported = Annotated[Any, Meta(description=NOT_SUPPORTED)]


class StreamOptions(Struct, frozen=True, kw_only=True):
    include_usage: bool = False


class _Sampling(Struct, frozen=True, kw_only=True):
    model: str
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Meta(ge=1, le=1, description="Only 1 choice per request is supported.")] = 1
    user: Annotated[str | None, Meta(description="Informational; logged nowhere.")] = None
    presence_penalty: Annotated[float | None, Meta(description=NOT_SUPPORTED)] = None
    frequency_penalty: Annotated[float | None, Meta(description=NOT_SUPPORTED)] = None
    logit_bias: Annotated[dict[str, float] | None, Meta(description=NOT_SUPPORTED)] = None


class CompletionRequest(_Sampling, frozen=True, kw_only=True):
    # a text, a list of token ids, or a list holding one text (openapi_doc publishes the exact shape)
    prompt: NonEmptyStr | Annotated[list[int | str], Meta(min_length=1)]
    echo: Annotated[bool | None, Meta(description=NOT_SUPPORTED)] = None
    logprobs: Annotated[int | None, Meta(description=NOT_SUPPORTED)] = None
    suffix: Annotated[str | None, Meta(description=NOT_SUPPORTED)] = None
    best_of: Annotated[int | None, Meta(description=NOT_SUPPORTED)] = None


class TextPart(Struct, frozen=True, kw_only=True):
    type: Literal["text"]
    text: str


class ChatMessage(Struct, frozen=True, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class ChatRequest(_Sampling, frozen=True, kw_only=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: Annotated[bool | None, Meta(description=NOT_SUPPORTED)] = None
    top_logprobs: Annotated[int | None, Meta(description=NOT_SUPPORTED)] = None
    tools: Annotated[list[dict[str, Any]] | None, Meta(description=NOT_SUPPORTED)] = None
    tool_choice: Annotated[str | dict[str, Any] | None, Meta(description=NOT_SUPPORTED)] = None
    parallel_tool_calls: Annotated[bool | None, Meta(description="Informational: no tools are called.")] = None
    functions: Annotated[list[dict[str, Any]] | None, Meta(description=NOT_SUPPORTED)] = None
    function_call: Annotated[str | dict[str, Any] | None, Meta(description=NOT_SUPPORTED)] = None
    response_format: Annotated[dict[str, Any] | None, Meta(description=NOT_SUPPORTED)] = None
    store: Annotated[bool | None, Meta(description=NOT_SUPPORTED)] = None
    metadata: Annotated[dict[str, str] | None, Meta(description="Informational; stored nowhere.")] = None
    modalities: Annotated[list[str] | None, Meta(description=NOT_SUPPORTED)] = None
    audio: Unsupported = None
    prediction: Unsupported = None
    reasoning_effort: Annotated[str | None, Meta(description=NOT_SUPPORTED)] = None


# Each unsupported parameter and the values that leave the request unchanged (None always does).
_UNSUPPORTED_BOTH: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0), "logit_bias": ({},)}
UNSUPPORTED_COMPLETION: dict[str, tuple[Any, ...]] = {
    **_UNSUPPORTED_BOTH, "echo": (False,), "logprobs": (), "suffix": ("",), "best_of": (1,)}
UNSUPPORTED_CHAT: dict[str, tuple[Any, ...]] = {
    **_UNSUPPORTED_BOTH, "logprobs": (False,), "top_logprobs": (0,), "tools": ([],), "tool_choice": ("none",),
    "functions": ([],), "function_call": ("none",), "response_format": ({"type": "text"},), "store": (False,),
    "modalities": (["text"],), "audio": (), "prediction": (), "reasoning_effort": (),
}


# --- responses ------------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(Struct, frozen=True, kw_only=True):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(Struct, frozen=True, kw_only=True):
    """A /v1/completions answer; also each streamed chunk (usage only on the last one, with no choices)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(Struct, frozen=True, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None


class ChatChoice(Struct, frozen=True, kw_only=True):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: None = None


class ChatCompletion(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(Struct, frozen=True, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(Struct, frozen=True, kw_only=True):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None
    logprobs: None = None


class ChatCompletionChunk(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class Model(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(Struct, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Struct, frozen=True, kw_only=True):
    error: ErrorDetail
