"""The console's HTTP surface on the gateway (docs/console.md).

    GET  /console                    the page (static HTML; holds no data, so it needs no credential)
    GET  /console/static/<file>      its plain JS modules and CSS, shipped in the package (no build step)
    GET  /admin/console/stream       the live feed: Server-Sent Events (`console_hub`), admin token required
    GET  /admin/console/snapshot     the same state as one JSON document (scripts, tests)
    POST /admin/console/whatif       run the what-if panel now (at most once per 5 s; 429 otherwise)

Auth: everything with data lives under /admin/, behind the admin token like the rest of the admin API
(`gateway_auth.BearerAuthMiddleware`). The page asks the operator for the token once, keeps it in the tab's
`sessionStorage` (gone when the tab closes, never in a URL, a cookie or the server's logs) and reads the feed with
`fetch()` and an `Authorization: Bearer` header, parsing the SSE stream itself (the browser's EventSource cannot
send headers). The page is served with a strict Content-Security-Policy (scripts from this origin only).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse

from prfaas.serve.console_hub import ConsoleHub

STATIC_PACKAGE = "prfaas.serve"
STATIC_DIR = "console_static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def static_files() -> dict[str, bytes]:
    """The console's assets, read once from the installed package: name -> bytes."""
    root = resources.files(STATIC_PACKAGE).joinpath(STATIC_DIR)
    out = {}
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = entry.read_bytes()
    return out


def _content_type(name: str) -> str:
    return _TYPES["." + name.rsplit(".", 1)[-1]]


def add_console_routes(app: FastAPI, hub: ConsoleHub) -> None:
    files = static_files()

    def page(name: str) -> Response:
        body = files.get(name)
        if body is None:
            return Response(b'{"error": {"message": "no such console file"}}', status_code=404,
                            media_type="application/json")
        return Response(body, media_type=_content_type(name), headers=_PAGE_HEADERS)

    @app.get("/console", include_in_schema=False)
    async def console() -> Response:
        return page("index.html")

    @app.get("/console/static/{name}", include_in_schema=False)
    async def console_static(name: str) -> Response:
        return page(name)  # only the files read at start-up: no path is ever opened from a request

    @app.get("/admin/console/stream", include_in_schema=False)
    async def console_stream() -> Response:
        sub = hub.subscribe()
        if sub is None:
            return Response(b'{"error": {"message": "too many consoles connected", "type": "server_error"}}',
                            status_code=503, media_type="application/json")
        return StreamingResponse(hub.stream(sub), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    @app.get("/admin/console/snapshot", include_in_schema=False)
    async def console_snapshot() -> Response:
        payload: dict[str, Any] = {"boot_id": hub.boot_id, "tick_s": hub.tick_s,
                                   "snapshot": hub.state.snapshot(), "whatif": hub.whatif,
                                   "subscribers": len(hub.subscribers), "dropped_total": hub.dropped_total}
        return Response(msgspec.json.encode(payload), media_type="application/json")

    @app.post("/admin/console/whatif", include_in_schema=False)
    async def console_whatif() -> Response:
        if not hub.request_whatif():
            return Response(b'{"error": {"message": "a what-if run is in progress or ran less than 5 s ago", '
                            b'"type": "rate_limit_error"}}', status_code=429, media_type="application/json")
        return Response(b'{"started": true}', status_code=202, media_type="application/json")
