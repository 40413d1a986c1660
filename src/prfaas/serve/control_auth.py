"""aiohttp glue for the control-plane signatures of `serve.signing` (gateway and nodes, both directions).

    auth = ControlAuth(shared_secret, recorder)
    session = aiohttp.ClientSession(middlewares=(auth.client_middleware(),))   # signs every request it sends,
                                                                               # refuses replies not signed back
    app = web.Application(middlewares=[auth.server_middleware(lambda: audience_of(url), exempt=("/health",))])
    auth.sign_replies(app)                                                     # signs every answer it gives

The audience of a request is the "host:port" of the URL it is sent to (`audience_of`): the node's registered
control URL, the gateway's configured address. A refused request is answered 401 with an `ErrorReply`; a
reply that is not signed back raises `UnauthenticatedReply` (an `aiohttp.ClientError`, so callers treat it
like an unreachable peer). `RefusalRecorder` counts each refusal and logs the first of each cause.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping

import aiohttp
from aiohttp import web
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from prfaas.serve.messages import ErrorReply, encode
from prfaas.serve.signing import (
    DEFAULT_WINDOW_S,
    HEADER_NONCE,
    HEADER_REPLY_SIGNATURE,
    NONCE_BYTES,
    RefusalReason,
    RequestVerifier,
    SignatureRefused,
    derive_control_key,
    is_reply_authentic,
    reply_signature,
    sign_request,
)

_log = logging.getLogger(__name__)
_VERIFIED_NONCE = web.RequestKey("prfaas_verified_nonce", str)


class UnauthenticatedReply(aiohttp.ClientError):
    """A peer answered without proving the deployment key (or refused our signature)."""


def audience_of(url: str | URL) -> str:
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


class RefusalRecorder:
    """Counts refusals (`count(surface, reason)`, e.g. a Prometheus counter) and logs the first one of each
    (surface, reason) at WARNING, later ones at DEBUG. Messages never hold a credential."""

    def __init__(self, count: Callable[[str, str], None] | None = None) -> None:
        self._count = count
        self._logged: set[tuple[str, RefusalReason]] = set()

    def record(self, surface: str, reason: RefusalReason, message: str, peer: str | None = None) -> None:
        if self._count is not None:
            self._count(surface, reason.value)
        first = (surface, reason) not in self._logged
        self._logged.add((surface, reason))
        _log.log(logging.WARNING if first else logging.DEBUG, "refused %s request from %s: %s (%s)%s", surface,
                 peer or "?", message, reason.value, "; further ones of this cause are logged at debug" if first
                 else "")


def _unauthorized(message: str) -> web.Response:
    return web.Response(body=encode(ErrorReply(kind="unauthorized", message=message)), status=401,
                        content_type="application/json", headers={"www-authenticate": "prfaas-hmac"})


class ControlAuth:
    """One process's control-plane key: signs what it sends, verifies what it receives."""

    def __init__(self, shared_secret: bytes, recorder: RefusalRecorder, *, window_s: float = DEFAULT_WINDOW_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = derive_control_key(shared_secret)
        self.recorder = recorder
        self.window_s = window_s
        self.clock = clock  # wall clock: signer and receiver may be different hosts (NTP keeps them within the window)

    def sign(self, url: str | URL, method: str, body: bytes) -> dict[str, str]:
        parsed = URL(url)
        return sign_request(self.key, audience=audience_of(parsed), method=method, path=parsed.raw_path_qs,
                            body=body, now_s=self.clock(), nonce=os.urandom(NONCE_BYTES))

    def verifier(self, audience: str) -> RequestVerifier:
        return RequestVerifier(self.key, audience, window_s=self.window_s)

    def precheck(self, verifier: RequestVerifier, surface: str, headers: Mapping[str, str],
                 peer: str | None) -> bool:
        """False (recorded) when the headers alone are refused: the body need not be read."""
        try:
            verifier.precheck(headers, self.clock())
        except SignatureRefused as exc:
            self.recorder.record(surface, exc.reason, str(exc), peer)
            return False
        return True

    def verify(self, verifier: RequestVerifier, surface: str, *, method: str, path: str,
               headers: Mapping[str, str], body: bytes, peer: str | None) -> str | None:
        """The request's nonce if authentic and fresh; None (recorded) if refused."""
        try:
            return verifier.verify(method=method, path=path, headers=headers, body=body, now_s=self.clock()).nonce
        except SignatureRefused as exc:
            self.recorder.record(surface, exc.reason, str(exc), peer)
            return None

    def reply_header(self, nonce: str, status: int) -> dict[str, str]:
        return {HEADER_REPLY_SIGNATURE: reply_signature(self.key, nonce=nonce, status=status)}

    # --- client side -----------------------------------------------------------------------------
    def client_middleware(self, surface: str = "reply") -> ClientMiddlewareType:
        async def middleware(req: aiohttp.ClientRequest, handler: ClientHandlerType) -> aiohttp.ClientResponse:
            body = req.body if isinstance(req.body, bytes) else await req.body.as_bytes()
            headers = self.sign(req.url, req.method, body)
            req.headers.update(headers)
            resp = await handler(req)
            header = resp.headers.get(HEADER_REPLY_SIGNATURE)
            if is_reply_authentic(self.key, nonce=headers[HEADER_NONCE], status=resp.status, header=header):
                return resp
            detail = f"{req.url.host}:{req.url.port} answered {resp.status} without the deployment's signature"
            if resp.status == 401:
                detail = f"{req.url.host}:{req.url.port} refused our signature: {(await resp.read())[:200]!r}"
            resp.release()
            reason = RefusalReason.MISSING if header is None else RefusalReason.BAD_SIGNATURE
            self.recorder.record(surface, reason, detail, f"{req.url.host}:{req.url.port}")
            raise UnauthenticatedReply(detail)

        return middleware

    # --- server side (aiohttp) -------------------------------------------------------------------
    def server_middleware(self, audience: Callable[[], str], surface: str = "control",
                          exempt: Iterable[str] = ()) -> Middleware:
        """`audience()`: this server's "host:port" (known once it is bound, hence a function)."""
        verifiers: dict[str, RequestVerifier] = {}
        open_paths = frozenset(exempt)

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in open_paths:
                return await handler(request)
            name = audience()
            verifier = verifiers.get(name) or verifiers.setdefault(name, self.verifier(name))
            nonce = None
            if self.precheck(verifier, surface, request.headers, request.remote):  # unsigned: body left unread
                nonce = self.verify(verifier, surface, method=request.method, path=request.raw_path,
                                    headers=request.headers, body=await request.read(), peer=request.remote)
            if nonce is None:
                return _unauthorized("control request refused: missing, stale, replayed or wrongly signed")
            request[_VERIFIED_NONCE] = nonce
            return await handler(request)

        return middleware

    def sign_replies(self, app: web.Application) -> None:
        """Every answer to a verified request carries the reply signature (streamed ones too: headers first)."""

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            nonce = request.get(_VERIFIED_NONCE)
            if nonce is not None:
                response.headers.update(self.reply_header(nonce, response.status))

        app.on_response_prepare.append(on_prepare)
