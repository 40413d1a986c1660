"""The gateway process: OpenAI-compatible API, node registry endpoints, metrics and admin (FastAPI).

    app = build_gateway(cfg, shared_secret=..., credentials=...)   # FastAPI app; uvicorn runs it (`serve.main`)

Console:  GET /console (the page), /admin/console/* (its live feed; `serve.console_routes`, docs/console.md).
Public:   POST /v1/completions, POST /v1/chat/completions (SSE with `stream`), GET /v1/models, GET /health,
          GET /metrics (Prometheus).
Admin:    GET /admin/cluster (the ClusterView the router sees), GET /admin/requests?since=ID (per-request log),
          POST /admin/policy {"name", "threshold_tokens"},
          POST /admin/roles {"roles": {"pd-0": "pd_decode"}} (drain, then switch), POST /admin/rebalance,
          POST /admin/sites/links {"link_id", "capacity_gbps"} (many sites: a link's capacity now).
Internal: POST /internal/register, POST /internal/heartbeat (nodes; `serve.messages`).
Auth (`serve.gateway_auth`): /admin/* needs the admin token, /v1/* an API key when keys are configured,
/internal/* the nodes' control-plane signature; every call to a node is signed and its answer checked.

Header `x-prfaas-route: prfaas|local|colocated` forces the route; `x-prfaas-debug-stall-s` (only with
`gateway.allow_debug_hooks`) stalls the prefill node's transfer after its first layer. Responses are
pre-encoded bytes; every error is an OpenAI-style body; the gateway keeps serving after any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import Response

from prfaas.core.errors import PrfaasError
from prfaas.core.lifecycle import Role
from prfaas.serve.admission import AdmissionControl
from prfaas.serve.cancel import AbortRegistry, CancelWatch, pending_aborts
from prfaas.serve.config import DeployConfig
from prfaas.serve.console_hub import ConsoleHub
from prfaas.serve.console_routes import add_console_routes
from prfaas.serve.console_state import effective_threshold
from prfaas.serve.control import ControlPlane, RoleSwitchError
from prfaas.serve.deploy_secrets import GatewayCredentials
from prfaas.serve.driver import AttemptInfo, ForcedRoute, GenerationJob, RequestDriver
from prfaas.serve.gateway_auth import BearerAuthMiddleware, internal_refusal, make_gateway_auth
from prfaas.serve.messages import (
    Heartbeat,
    HeartbeatReply,
    NodeRegister,
    ProtocolVersionError,
    RegisterReply,
    SamplingMsg,
    decode,
    encode,
)
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.openai_api import (
    DEFAULT_MAX_TOKENS,
    ApiError,
    chat_max_tokens,
    message_text,
    stop_list,
)
from prfaas.serve.openai_routes import add_openai_routes
from prfaas.serve.openai_schema import ChatRequest, CompletionRequest
from prfaas.serve.request_log import RequestLog
from prfaas.serve.text import TextStream, encode_chat, encode_prompt, load_tokenizer

_log = logging.getLogger(__name__)
_JSON = "application/json"


def _info_dict(info: AttemptInfo) -> dict[str, Any]:
    return {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}


class AdminPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str | None = None
    threshold_tokens: int | None = None


class AdminSiteLink(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    link_id: str
    capacity_gbps: float


class AdminRoles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    roles: dict[str, Role]


def _json(payload: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


def _api_error(error: ApiError) -> Response:
    return Response(error.body(), status_code=error.status, media_type=_JSON)


def _context_error(limit: int, prompt_tokens: int, max_tokens: int | None, param: str) -> ApiError:
    if max_tokens is None or prompt_tokens >= limit:
        return ApiError(400, f"This model's maximum context length is {limit} tokens, but the prompt has "
                             f"{prompt_tokens} tokens (at most {limit - 1}, to leave room for one generated token). "
                             "Shorten the prompt.", param="prompt", code="context_length_exceeded")
    return ApiError(400, f"This model's maximum context length is {limit} tokens, but the request needs "
                         f"{prompt_tokens + max_tokens}: {prompt_tokens} prompt tokens + {param} {max_tokens}. "
                         f"Shorten the prompt or lower {param}.", param=param, code="context_length_exceeded")


class Gateway:
    def __init__(self, cfg: DeployConfig, tokenizer: Any, shared_secret: bytes,
                 credentials: GatewayCredentials) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.metrics = GatewayMetrics()
        self.auth = make_gateway_auth(cfg.gateway, shared_secret, credentials,
                                      lambda surface, reason: self.metrics.auth_refused.labels(surface, reason).inc())
        self.control = ControlPlane(cfg, self.metrics)
        self.admission = AdmissionControl(cfg.admission, self.control)
        self.session: aiohttp.ClientSession | None = None
        self.driver: RequestDriver | None = None
        self.aborts = AbortRegistry()
        log_path = cfg.gateway.request_log
        self.request_log = RequestLog(Path(log_path) if log_path else None)
        self.console = ConsoleHub(self, request_log=self.request_log)  # the operator's console (`/console`)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self.session = aiohttp.ClientSession(connector=connector,
                                             middlewares=(self.auth.control.client_middleware("node_reply"),))
        self.driver = RequestDriver(self.control, self.session, self.admission)
        self.control.start(self.session)
        self.console.start()

    async def close(self) -> None:
        await self.console.close()
        await self.control.close()
        await pending_aborts()  # aborts sent in the background reach their nodes before the session closes
        if self.session is not None:
            await self.session.close()
        self.request_log.close()

    # --- request preparation ---------------------------------------------------------------------
    async def wait_for_context(self) -> None:
        """Wait (at most `gateway.route_wait_s`) until a node has registered its context length, so that every
        request is checked against it before any work; 503 if none registers in time."""
        deadline = time.monotonic() + self.cfg.gateway.route_wait_s
        while self.control.nodes.max_context_tokens() is None:
            if time.monotonic() >= deadline:
                raise ApiError(503, "no node has registered yet, so the model's context length is unknown; retry",
                               kind="server_error")
            await asyncio.sleep(0.05)

    def _check_model(self, model: str) -> None:
        if model != self.cfg.model.served_name:
            raise ApiError(404, f"The model `{model}` does not exist; this server serves "
                                f"`{self.cfg.model.served_name}`", param="model", code="model_not_found")

    def _check_prompt(self, tokens: list[int], max_tokens: int | None, default_tokens: int | None,
                      max_tokens_param: str = "max_tokens") -> int:
        """The number of tokens to generate; `ApiError` (before any work) when the prompt is empty, holds ids
        outside the vocabulary, or prompt + max_tokens exceeds the context the nodes registered."""
        if not tokens:
            raise ApiError(400, "the prompt is empty", param="prompt")
        vocab = len(self.tokenizer)
        if any(not 0 <= t < vocab for t in tokens):
            raise ApiError(400, f"prompt token ids must be in [0, {vocab})", param="prompt")
        context = self.control.nodes.max_context_tokens()
        limit = None if context is None else context - 1  # tokens a request may hold, prompt and output
        if limit is not None and len(tokens) + (max_tokens or 1) > limit:
            raise _context_error(limit, len(tokens), max_tokens, max_tokens_param)
        if max_tokens is not None:
            return max_tokens
        room = None if limit is None else limit - len(tokens)
        if default_tokens is None:  # chat: up to the end of the context
            return room if room is not None else DEFAULT_MAX_TOKENS
        return default_tokens if room is None else min(default_tokens, room)

    def _job(self, request: Request, tokens: list[int], max_tokens: int | None, default_tokens: int | None,
             temperature: float | None, top_p: float | None, seed: int | None, stop: list[str],
             max_tokens_param: str = "max_tokens") -> GenerationJob:
        limit = self._check_prompt(tokens, max_tokens, default_tokens, max_tokens_param)
        forced = None
        header = request.headers.get("x-prfaas-route")
        if header:
            try:
                forced = ForcedRoute(header.strip().lower())
            except ValueError:
                raise ApiError(400, f"x-prfaas-route must be one of prfaas, local, colocated; got {header!r}",
                               param="x-prfaas-route") from None
        stall = 0.0
        if self.cfg.gateway.allow_debug_hooks:
            stall = float(request.headers.get("x-prfaas-debug-stall-s", "0") or 0)
        sampling = SamplingMsg(max_tokens=limit, temperature=1.0 if temperature is None else temperature,
                               top_p=1.0 if top_p is None else top_p, seed=seed, stop_strings=tuple(stop))
        return GenerationJob(self.request_log.next_id(), tuple(tokens), sampling, forced, stall)

    def completion_job(self, request: Request, req: CompletionRequest) -> GenerationJob:
        self._check_model(req.model)
        prompt = req.prompt
        if isinstance(prompt, str):
            tokens = encode_prompt(self.tokenizer, prompt)
        elif prompt and isinstance(prompt[0], str):
            tokens = encode_prompt(self.tokenizer, str(prompt[0]))
        else:
            tokens = [int(t) for t in prompt]
        return self._job(request, tokens, req.max_tokens, DEFAULT_MAX_TOKENS, req.temperature, req.top_p, req.seed,
                         stop_list(req.stop))

    def chat_job(self, request: Request, req: ChatRequest) -> GenerationJob:
        self._check_model(req.model)
        try:
            tokens = encode_chat(self.tokenizer, [(m.role, message_text(m)) for m in req.messages])
        except Exception as exc:  # a model's chat template may refuse a role order or a role (jinja raises)
            raise ApiError(400, f"the model's chat template cannot render these messages: {exc}",
                           param="messages") from None
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        return self._job(request, tokens, chat_max_tokens(req), None, req.temperature, req.top_p, req.seed,
                         stop_list(req.stop), param)

    # --- generation ------------------------------------------------------------------------------
    def cancel_watch(self, request: Request, job: GenerationJob) -> CancelWatch:
        """What ends `job` early: its client leaving, the request deadline, an abort (`serve.cancel`)."""
        return CancelWatch(request, self.aborts, job.request_id, self.cfg.gateway.request_deadline_s)

    async def run(self, job: GenerationJob) -> tuple[str, str, int]:
        """(text, finish_reason, completion tokens) of a non-streamed request."""
        stream = TextStream(self.tokenizer, job.sampling.stop_strings)
        finish = "length"
        async for piece, reason in self.pieces(job, stream):
            del piece
            if reason is not None:
                finish = reason
        return stream.text, finish, stream.num_tokens

    async def pieces(self, job: GenerationJob, stream: TextStream) -> AsyncIterator[tuple[str, str | None]]:
        """Text deltas with the finish reason on the last one; records TTFT / ITL by route."""
        assert self.driver is not None
        start = last = time.monotonic()
        route = "local"
        record: dict[str, Any] = {"id": job.request_id, "prompt_tokens": len(job.prompt_tokens)}
        async for delta in self.driver.generate(job):
            now = time.monotonic()
            route = delta.route
            if delta.info is not None:
                record.update(_info_dict(delta.info))
            if stream.num_tokens == 0:
                record["ttft_s"] = now - start
                self.metrics.ttft[route].observe(now - start)
            else:
                self.metrics.itl[route].observe((now - last) / max(len(delta.token_ids), 1))
            last = now
            text = stream.push(delta.token_ids)
            if stream.stopped:
                yield text + stream.finish(), "stop"
                break
            if delta.finish_reason is not None:
                yield text + stream.finish(), delta.finish_reason
                break
            if text:
                yield text, None
        self.metrics.by_route[route].inc()
        record.update(route=route, completion_tokens=stream.num_tokens, latency_s=time.monotonic() - start,
                      finished_at_s=time.time())
        self.request_log.append(record)
        self.console.on_request(record)


def build_gateway(cfg: DeployConfig, *, shared_secret: bytes, credentials: GatewayCredentials,
                  tokenizer: Any | None = None) -> FastAPI:
    gw = Gateway(cfg, tokenizer if tokenizer is not None else load_tokenizer(cfg.model), shared_secret, credentials)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="prfaas gateway", lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    app.state.gateway = gw
    app.add_middleware(BearerAuthMiddleware, auth=gw.auth)
    add_openai_routes(app, gw)
    _add_public_routes(app, gw)
    _add_internal_routes(app, gw)
    _add_admin_routes(app, gw)
    _add_cancel_routes(app, gw)
    add_console_routes(app, gw.console)
    return app


def _add_public_routes(app: FastAPI, gw: Gateway) -> None:
    @app.get("/health")
    async def health() -> Response:
        counts = gw.control.nodes.role_counts()
        ready = counts[Role.PD_DECODE] > 0 and (counts[Role.PD_PREFILL] + counts[Role.PRFAAS_PREFILL]) > 0
        nodes = {r.name: {"up": r.is_up, "role": r.role.value, "cluster": r.cluster.value}
                 for r in gw.control.nodes.nodes.values()}
        return _json({"status": "ok" if ready else "starting", "ready": ready, "nodes": nodes},
                     200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        # the threshold in force: t' of the bandwidth-aware loop, not only the base t
        gw.metrics.refresh(gw.control.nodes, time.monotonic(), effective_threshold(gw.control))
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


def _add_internal_routes(app: FastAPI, gw: Gateway) -> None:
    def _signed(response: Response, nonce: str) -> Response:
        response.headers.update(gw.auth.control.reply_header(nonce, response.status_code))
        return response

    @app.post("/internal/register")
    async def register(request: Request) -> Response:
        nonce, body = await gw.auth.verify_internal(request)
        if nonce is None:
            return _api_error(internal_refusal())
        try:
            msg = decode(body, NodeRegister)
        except ProtocolVersionError as exc:
            return _signed(_api_error(ApiError(400, str(exc))), nonce)
        gw.control.register(msg)
        return _signed(Response(encode(RegisterReply(accepted=True)), media_type=_JSON), nonce)

    @app.post("/internal/heartbeat")
    async def heartbeat(request: Request) -> Response:
        nonce, body = await gw.auth.verify_internal(request)
        if nonce is None:
            return _api_error(internal_refusal())
        try:
            msg = decode(body, Heartbeat)
        except ProtocolVersionError as exc:
            return _signed(_api_error(ApiError(400, str(exc))), nonce)
        known = gw.control.nodes.heartbeat(msg, time.monotonic())
        resync = gw.control.apply_cache_report(msg) if known else False
        return _signed(Response(encode(HeartbeatReply(known=known, cache_resync=resync)), media_type=_JSON), nonce)


def _add_admin_routes(app: FastAPI, gw: Gateway) -> None:
    @app.get("/admin/cluster")
    async def cluster() -> Response:
        control = gw.control
        view = control.nodes.view(time.monotonic())
        return _json({"policy": control.policy_name, "threshold_tokens": control.threshold_tokens(),
                      "instances": msgspec.to_builtins(list(view.instances)),
                      "links": msgspec.to_builtins(dict(view.links)),
                      "kv_index": control.kv_index_summary(),
                      "last_rebalance": msgspec.to_builtins(control.last_plan),
                      "sites": control.sites.summary() if control.sites is not None else None})

    @app.post("/admin/policy")
    async def policy(request: Request) -> Response:
        try:
            msg = msgspec.json.decode(await request.body(), type=AdminPolicy)
            gw.control.set_policy(msg.name, msg.threshold_tokens)
        except (msgspec.DecodeError, ValueError) as exc:
            return _api_error(ApiError(400, str(exc)))
        except PrfaasError as exc:  # UnknownNameError lists the valid policies
            return _api_error(ApiError(400, str(exc), param="name"))
        return _json({"policy": gw.control.policy_name, "threshold_tokens": gw.control.threshold_tokens()})

    @app.post("/admin/roles")
    async def roles(request: Request) -> Response:
        try:
            msg = msgspec.json.decode(await request.body(), type=AdminRoles)
            replies = await gw.control.switch_roles(dict(msg.roles))
        except (msgspec.DecodeError, RoleSwitchError) as exc:
            return _api_error(ApiError(400, str(exc)))
        return _json({"switched": [{"name": r.name, "role": r.role.value, "drained_s": r.drained_s}
                                   for r in replies]})

    @app.post("/admin/sites/links")
    async def site_links(request: Request) -> Response:
        """Many sites: a link's capacity now ({"link_id": "a->us", "capacity_gbps": 10}; `serve.sites`)."""
        sites = gw.control.sites
        if sites is None:
            return _api_error(ApiError(400, "this gateway has no [topology]: no site links"))
        try:
            msg = msgspec.json.decode(await request.body(), type=AdminSiteLink)
            sites.set_link_capacity(msg.link_id, msg.capacity_gbps)
        except (msgspec.DecodeError, PrfaasError) as exc:
            return _api_error(ApiError(400, str(exc)))
        return _json(sites.summary())

    @app.get("/admin/requests")
    async def requests(since: int = 0) -> Response:
        """Finished requests (newest 10,000): route, reason, TTFT, prefill and transfer details."""
        return _json(gw.request_log.since(since))

    @app.post("/admin/rebalance")
    async def rebalance() -> Response:
        try:
            plan = await gw.control.rebalance_once(time.monotonic())
        except RoleSwitchError as exc:
            return _api_error(ApiError(409, str(exc)))
        return _json(msgspec.to_builtins(plan))


def _add_cancel_routes(app: FastAPI, gw: Gateway) -> None:
    @app.post("/admin/requests/{request_id}/abort")
    async def abort(request_id: int) -> Response:
        """Cancel a running request everywhere (its client gets 499 / an error event); 404 if it is not running."""
        if not gw.aborts.abort(request_id):
            return _api_error(ApiError(404, f"request {request_id} is not running"))
        return _json({"aborted": request_id})

    @app.get("/admin/running")
    async def running() -> Response:
        """Requests running now (a leak check: 0 once every client is answered or gone)."""
        return _json({"running": gw.aborts.request_ids()})
