"""The control HTTP server every node process runs (ours, `serve.node`; a vLLM adapter, `serve.vllm_node`):
the same endpoints, the same signatures (`serve.control_auth`: every endpoint but /health signed both ways).

    runner, port = await start_control(auth, host, port, control_url, routes)
    return reply(PrefillReply(...))          # a signed-back JSON message
    return error("bad_request", "...", 400)  # an ErrorReply
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from prfaas.serve.control_auth import ControlAuth, audience_of
from prfaas.serve.messages import ErrorReply, Message, encode


def reply(message: Message, status: int = 200) -> web.Response:
    return web.Response(body=encode(message), status=status, content_type="application/json")


def error(kind: str, message: str, status: int) -> web.Response:
    return reply(ErrorReply(kind=kind, message=message), status)


async def start_control(auth: ControlAuth, host: str, port: int, control_url: Callable[[], str],
                        routes: Sequence[web.RouteDef]) -> tuple[web.AppRunner, int]:
    """Serve `routes` behind the control-plane signature check; returns the runner and the bound port."""
    signed = auth.server_middleware(lambda: audience_of(control_url()), exempt=("/health",))
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[signed])
    auth.sign_replies(app)
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])  # the bound port (config port 0: an ephemeral one)
