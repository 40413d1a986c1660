"""Who may call what on the gateway (FastAPI / ASGI glue).

    auth = GatewayAuth(cfg.gateway, credentials, control_auth)
    app.add_middleware(BearerAuthMiddleware, auth=auth)     # /admin/*, /v1/* (with API keys), /metrics (optional)
    nonce, body = await auth.verify_internal(request)       # /internal/*: the nodes' signed requests

| path          | credential                                   | without it                                   |
|---------------|----------------------------------------------|----------------------------------------------|
| /admin/*      | `Authorization: Bearer <admin token>`        | 401; 403 when no admin token is configured   |
| /v1/*         | `Authorization: Bearer <API key>` if keys set | 401 (open when no key is configured)        |
| /metrics      | the admin token if `metrics_need_admin_token` | 401 (open by default: it changes no state)  |
| /internal/*   | control-plane signature (`serve.signing`)    | 401                                          |
| /health, docs | none                                         |                                              |
| /console      | none (static page; its data is /admin/console/*) |                                          |

Each refusal is an OpenAI-style error body, counted in `prfaas_auth_refused_total{surface, reason}` and logged
once per cause (`control_auth.RefusalRecorder`). Tokens are compared as SHA-256 digests in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request

from prfaas.serve.config import GatewaySection
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder, audience_of
from prfaas.serve.deploy_secrets import GatewayCredentials, token_digest
from prfaas.serve.openai_api import ApiError
from prfaas.serve.signing import RefusalReason

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refusal(ApiError):
    def __init__(self, status: int, surface: str, reason: RefusalReason, message: str, code: str) -> None:
        super().__init__(status, message, code=code)
        self.surface = surface
        self.reason = reason


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _matches(token: str, digests: tuple[bytes, ...]) -> bool:
    given = token_digest(token)
    found = False
    for digest in digests:  # every digest compared: the time does not say which key matched
        found |= hmac.compare_digest(given, digest)
    return found


class GatewayAuth:
    def __init__(self, section: GatewaySection, credentials: GatewayCredentials, control: ControlAuth) -> None:
        self.credentials = credentials
        self.control = control
        self.metrics_need_admin_token = section.metrics_need_admin_token
        self.internal_verifier = control.verifier(audience_of(f"http://{section.host}:{section.port}"))

    def check(self, path: str, authorization: str | None) -> Refusal | None:
        """The refusal for a request to `path` (decoded, as routing sees it), or None to let it through."""
        if path.startswith("/admin") or (path == "/metrics" and self.metrics_need_admin_token):
            surface = "admin" if path.startswith("/admin") else "metrics"
            admin = self.credentials.admin_token_sha256
            if admin is None:
                return Refusal(403, surface, RefusalReason.ADMIN_DISABLED, "the admin API is disabled: configure "
                               "[gateway] admin_token_file or admin_token_env", "admin_disabled")
            return self._bearer(surface, authorization, (admin,), "admin token", "invalid_admin_token")
        if path.startswith("/v1") and self.credentials.api_key_sha256s:
            return self._bearer("api", authorization, self.credentials.api_key_sha256s, "API key", "invalid_api_key")
        return None

    def _bearer(self, surface: str, authorization: str | None, digests: tuple[bytes, ...], what: str,
                code: str) -> Refusal | None:
        token = bearer_token(authorization)
        if token is None:
            return Refusal(401, surface, RefusalReason.MISSING,
                           f"You didn't provide an {what}: send 'Authorization: Bearer <{what}>'", code)
        if not _matches(token, digests):
            return Refusal(401, surface, RefusalReason.BAD_TOKEN, f"Incorrect {what} provided", code)
        return None

    def refuse(self, refusal: Refusal, peer: str | None) -> None:
        self.control.recorder.record(refusal.surface, refusal.reason, refusal.message, peer)

    async def verify_internal(self, request: Request) -> tuple[str | None, bytes]:
        """(nonce, body) of an authentic node request to /internal/*; nonce None: refused, counted and logged
        (the body of a request whose headers are refused is not read)."""
        peer = request.client.host if request.client else None
        if not self.control.precheck(self.internal_verifier, "internal", request.headers, peer):
            return None, b""
        body = await request.body()
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if request.url.query:
            path = f"{path}?{request.url.query}"
        return self.control.verify(self.internal_verifier, "internal", method=request.method, path=path,
                                   headers=request.headers, body=body, peer=peer), body


def make_gateway_auth(section: GatewaySection, shared_secret: bytes, credentials: GatewayCredentials,
                      count: Callable[[str, str], None]) -> GatewayAuth:
    """The gateway's whole auth state; `count(surface, reason)` feeds `prfaas_auth_refused_total`."""
    return GatewayAuth(section, credentials, ControlAuth(shared_secret, RefusalRecorder(count)))


def internal_refusal() -> ApiError:
    return ApiError(401, "control request refused: missing, stale, replayed or wrongly signed", code="unauthorized")


class BearerAuthMiddleware:
    """Pure ASGI: checks headers only (the body is left to the route), before any route runs."""

    def __init__(self, app: ASGIApp, auth: GatewayAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.auth.check(scope.get("path", ""), headers.get("authorization"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        self.auth.refuse(refusal, client[0] if client else None)
        response_headers = [(b"content-type", b"application/json")]
        if refusal.status == 401:
            response_headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": refusal.body()})
