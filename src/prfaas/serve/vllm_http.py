"""The OpenAI calls a vLLM adapter node makes to its vLLM instance (`serve.vllm_node`), and SSE parsing.

    client = VllmClient(session, "http://127.0.0.1:8100", model="tiny")
    body = completion_body(client.model, prompt_ids, sampling, max_tokens=1, stream=False, kv_params=...)
    first = await client.complete(body)                   # VllmTokens(token_ids, finish_reason, cached_tokens)
    async for part in client.stream(body):                # one VllmTokens per SSE chunk
        ...

Prompts go as token ids and `return_token_ids: true` brings token ids back (never text), so the gateway's
tokenizer stays the only one. Closing a stream (leaving the `async for`, cancelling the task) closes its HTTP
connection, and vLLM aborts a request whose connection closed. Nothing of vLLM is imported.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from prfaas.serve.messages import SamplingMsg


class VllmError(Exception):
    """The vLLM instance answered with an error; `status` is its HTTP status (0: it could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def is_input_error(self) -> bool:
        """vLLM refused the input (400/422: a prompt too long, bad sampling): the client's fault, never retried."""
        return self.status in (400, 422)


@dataclass(frozen=True, slots=True)
class VllmTokens:
    token_ids: tuple[int, ...]
    finish_reason: str | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens where vLLM reports it


def completion_body(model: str, prompt_ids: Sequence[int], sampling: SamplingMsg, *, max_tokens: int, stream: bool,
                    kv_params: dict[str, Any] | None) -> dict[str, Any]:
    """One /v1/completions body: token-id prompt, our sampling, token ids back. Stop strings are the gateway's
    (it detokenizes); vLLM stops on EOS unless `ignore_eos`."""
    body: dict[str, Any] = {"model": model, "prompt": list(prompt_ids), "max_tokens": max_tokens,
                            "temperature": sampling.temperature, "top_p": sampling.top_p,
                            "ignore_eos": sampling.ignore_eos, "return_token_ids": True, "stream": stream}
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if kv_params is not None:
        body["kv_transfer_params"] = kv_params
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def parse_choice(doc: dict[str, Any]) -> VllmTokens:
    """The first choice of a completion (or one stream chunk): its new token ids and finish reason."""
    choices = doc.get("choices") or []
    usage = doc.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    if not choices:  # the final usage-only chunk of a stream
        return VllmTokens((), None, cached if isinstance(cached, int) else None)
    choice = choices[0]
    ids = choice.get("token_ids")
    if ids is None:
        raise VllmError(502, "vLLM returned no token_ids (a vLLM without return_token_ids support?)")
    return VllmTokens(tuple(int(t) for t in ids), choice.get("finish_reason"),
                      cached if isinstance(cached, int) else None)


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON documents of a server-sent-events body (`data: {...}` lines) up to `data: [DONE]`."""
    async for raw in content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[len(b"data:"):].strip()
        if data == b"[DONE]":
            return
        doc = json.loads(data)
        if isinstance(doc, dict) and "error" in doc and "choices" not in doc:
            error = doc["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise VllmError(500, f"vLLM stream error: {message}")
        yield doc


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace")
    error = doc.get("error", doc) if isinstance(doc, dict) else doc
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)


class VllmClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, model: str | None = None,
                 timeout_s: float = 300.0) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=timeout_s)

    async def models(self) -> list[dict[str, Any]]:
        """GET /v1/models (each with `id` and, from vLLM, `max_model_len`)."""
        try:
            async with self.session.get(f"{self.base_url}/v1/models",
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise VllmError(resp.status, _error_text(body))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise VllmError(0, f"{self.base_url} unreachable: {exc!r}") from None
        return list(json.loads(body).get("data", []))

    async def complete(self, body: dict[str, Any]) -> VllmTokens:
        try:
            async with self.session.post(f"{self.base_url}/v1/completions", json=body, timeout=self.timeout) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise VllmError(resp.status, _error_text(data))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise VllmError(0, f"{self.base_url} unreachable: {exc!r}") from None
        return parse_choice(json.loads(data))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[VllmTokens]:
        """The chunks of a streaming completion; leaving the iteration closes the connection (vLLM aborts)."""
        try:
            async with self.session.post(f"{self.base_url}/v1/completions", json=body, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise VllmError(resp.status, _error_text(await resp.read()))
                async for doc in sse_events(resp.content):
                    yield parse_choice(doc)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise VllmError(0, f"{self.base_url} stream lost: {exc!r}") from None
