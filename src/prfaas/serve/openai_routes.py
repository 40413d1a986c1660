"""The gateway's OpenAI routes: POST /v1/completions, POST /v1/chat/completions (SSE with `stream`), GET /v1/models.

    add_openai_routes(app, gateway)      # also installs the published OpenAPI document as app.openapi()

The body is read with a size cap (`MAX_BODY_BYTES`, else 413), decoded and validated (`serve.openai_api`), turned
into a `GenerationJob` by the gateway (which checks the prompt and max_tokens against the context before any work)
and run. Every error is an OpenAI-style body with a 4xx or 5xx status; a failure after the stream started is an
error event before `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from prfaas.serve.admission import AdmissionTicket, OverloadError
from prfaas.serve.cancel import (
    Cancelled,
    CancelReason,
    CancelWatch,
    note_cancelled,
    run_until_cancelled,
    stream_until_cancelled,
)
from prfaas.serve.driver import GenerationJob, RequestFailed
from prfaas.serve.openai_api import (
    MAX_BODY_BYTES,
    SSE_DONE,
    ApiError,
    body_too_large,
    chat_body,
    chat_chunk,
    completion_body,
    completion_chunk,
    decode_chat,
    decode_completion,
    error_event,
    usage_chunk,
)
from prfaas.serve.openai_schema import ChatDelta, Model, ModelList
from prfaas.serve.openapi_doc import openapi_spec
from prfaas.serve.text import TextStream

if TYPE_CHECKING:
    from prfaas.serve.gateway import Gateway

_log = logging.getLogger(__name__)
_JSON = "application/json"
_DRAIN_FACTOR = 16


def status_of(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestFailed):
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return ApiError(exc.status, str(exc), kind=kind)
    return ApiError(500, f"internal error: {exc}", kind="server_error")


def api_error_response(error: ApiError) -> Response:
    headers = error.headers if isinstance(error, OverloadError) else None
    return Response(error.body(), status_code=error.status, media_type=_JSON, headers=headers)


async def read_body(request: Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, or `ApiError` 413 when it exceeds `limit_bytes`. An oversized body is read and dropped
    up to `_DRAIN_FACTOR` x the limit so the client, still sending, gets the 413 rather than a reset connection;
    beyond that the answer comes at once (or the connection closes) without reading more."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _DRAIN_FACTOR * limit_bytes:
        raise body_too_large(int(declared))
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > _DRAIN_FACTOR * limit_bytes:
            break
        if size <= limit_bytes:
            parts.append(part)
    if size > limit_bytes:
        raise body_too_large(size if size <= _DRAIN_FACTOR * limit_bytes else None)
    return b"".join(parts)


def add_openai_routes(app: FastAPI, gw: Gateway) -> None:
    model_name = gw.cfg.model.served_name
    spec = openapi_spec(model_name, len(gw.tokenizer))
    app.openapi = lambda: spec  # type: ignore[method-assign]

    async def serve(request: Request, chat: bool) -> Response:
        try:
            body = await read_body(request)
            req: Any = decode_chat(body) if chat else decode_completion(body)
            await gw.wait_for_context()
            job = gw.chat_job(request, req) if chat else gw.completion_job(request, req)
            # checked before any routing work: beyond a bound the request is refused at once (429 / 503)
            ticket = gw.admission.admit(job.request_id, len(job.prompt_tokens))
        except ApiError as exc:
            gw.metrics.errors.labels(str(exc.status)).inc()
            return api_error_response(exc)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{job.request_id}"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            events = _cancellable_sse(gw, gw.cancel_watch(request, job), rid,
                                      _sse(gw, job, rid, model_name, chat, include_usage, ticket))
            weakref.finalize(events, ticket.release)  # a stream never started (client gone at once) frees it too
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            text, finish, num_out = await run_until_cancelled(gw.cancel_watch(request, job), gw.run(job))
        except Cancelled as exc:
            note_cancelled(gw.metrics.cancelled, rid, exc)
            return api_error_response(cancelled_error(exc))
        except Exception as exc:
            error = status_of(exc)
            gw.metrics.errors.labels(str(error.status)).inc()
            if error.status >= 500:
                _log.warning("request %s failed: %s", rid, exc)
            return api_error_response(error)
        finally:
            ticket.release()
        encoder = chat_body if chat else completion_body
        return Response(encoder(rid, model_name, text, finish, len(job.prompt_tokens), num_out), media_type=_JSON)

    @app.post("/v1/completions", include_in_schema=False)
    async def completions(request: Request) -> Response:
        return await serve(request, chat=False)

    @app.post("/v1/chat/completions", include_in_schema=False)
    async def chat_completions(request: Request) -> Response:
        return await serve(request, chat=True)

    models_body = ModelList(data=[Model(id=model_name, created=0, owned_by="prfaas")])

    @app.get("/v1/models", include_in_schema=False)
    async def models() -> Response:
        return Response(msgspec.json.encode(models_body), media_type=_JSON)


def cancelled_error(exc: Cancelled) -> ApiError:
    if exc.reason is CancelReason.DEADLINE:
        return ApiError(504, str(exc), kind="server_error")
    return ApiError(499, f"request cancelled: {exc}", kind="invalid_request_error")


async def _cancellable_sse(gw: Gateway, watch: CancelWatch, rid: str,
                           chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` until the client leaves (the stream just ends), the deadline passes or an abort (an error event
    and `[DONE]` for a client still there)."""
    try:
        async for chunk in stream_until_cancelled(watch, chunks):
            yield chunk
    except Cancelled as exc:
        note_cancelled(gw.metrics.cancelled, rid, exc)
        if exc.reason is not CancelReason.CLIENT_GONE:
            yield error_event(cancelled_error(exc))
            yield SSE_DONE
    except (GeneratorExit, asyncio.CancelledError):  # the server saw the client leave first (a write failed)
        note_cancelled(gw.metrics.cancelled, rid, Cancelled(CancelReason.CLIENT_GONE, "client went away"))
        raise


async def _sse(gw: Gateway, job: GenerationJob, rid: str, model: str, chat: bool,
               include_usage: bool, ticket: AdmissionTicket) -> AsyncIterator[bytes]:
    try:
        async for event in _sse_events(gw, job, rid, model, chat, include_usage):
            yield event
    finally:
        ticket.release()  # a stream the client left ends here too (when its generator is closed)


async def _sse_events(gw: Gateway, job: GenerationJob, rid: str, model: str, chat: bool,
                      include_usage: bool) -> AsyncIterator[bytes]:
    stream = TextStream(gw.tokenizer, job.sampling.stop_strings)
    if chat:
        yield chat_chunk(rid, model, ChatDelta(role="assistant", content=""), None)
    try:
        async for text, finish in gw.pieces(job, stream):
            if chat:
                yield chat_chunk(rid, model, ChatDelta(content=text) if text else ChatDelta(), finish)
            else:
                yield completion_chunk(rid, model, text, finish)
    except Exception as exc:
        error = status_of(exc)
        gw.metrics.errors.labels(str(error.status)).inc()
        if error.status >= 500:
            _log.warning("request %s failed: %s", rid, exc)
        yield error_event(error)
    if include_usage:
        yield usage_chunk(rid, model, chat, len(job.prompt_tokens), stream.num_tokens)
    yield SSE_DONE
