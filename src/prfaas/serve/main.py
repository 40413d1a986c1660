"""Process entry points: `python -m prfaas.serve.main gateway|node --config FILE [--name NODE]`.

`serve_gateway(cfg)` runs the FastAPI gateway under uvicorn; `serve_node(cfg, name)` loads the model, then
runs the node's control server, KV receiver and model thread until SIGTERM / SIGINT; a node with
`engine = "vllm"` runs the adapter in front of its vLLM instance instead (`serve.vllm_node`, nothing loaded here;
the vLLM server itself is started separately). Both log to stderr.
Started by a launcher (`prfaas up`, tests, benchmarks), a process first ties its life to the launcher's
(`serve.lifeline.watch_launcher`): when the launcher dies it shuts down as on SIGTERM.
Both read the deployment's secrets here, at start, from where the config points (`serve.deploy_secrets`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from prfaas.serve.config import DeployConfig, load_config
from prfaas.serve.lifeline import watch_launcher


def _logging(name: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def serve_gateway(cfg: DeployConfig) -> None:
    import uvicorn

    from prfaas.serve.deploy_secrets import load_gateway_credentials, load_shared_secret
    from prfaas.serve.gateway import build_gateway

    _logging("gateway")
    app = build_gateway(cfg, shared_secret=load_shared_secret(cfg.transport, os.environ),
                        credentials=load_gateway_credentials(cfg.gateway, os.environ))
    config = uvicorn.Config(app, host=cfg.gateway.host, port=cfg.gateway.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    handle_exit = server.handle_exit

    def exiting(signum: int, frame: Any) -> None:
        app.state.gateway.console.stop_streams()  # the consoles' endless streams must not hold the shutdown up
        handle_exit(signum, frame)

    server.handle_exit = exiting  # type: ignore[method-assign,assignment]
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found: record it
    # here, say the gateway stopped, and only then end the process by that signal as uvicorn would have.
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if not server.started:  # before uvicorn handles signals itself: stop now, as the default action would
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.run()
    logging.getLogger(__name__).info("gateway stopped")
    for signum in received[:1]:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def serve_node(cfg: DeployConfig, name: str) -> None:
    if cfg.node(name).engine == "vllm":  # an adapter in front of a vLLM instance: no model loads here
        _serve_vllm_node(cfg, name)
        return
    from prfaas.serve.backend import make_backend
    from prfaas.serve.deploy_secrets import load_shared_secret
    from prfaas.serve.memory import tune_allocator
    from prfaas.serve.node import NodeServer

    _logging(name)
    cfg.node(name)  # fail early on an unknown name
    secret = load_shared_secret(cfg.transport, os.environ)  # before the model loads: a missing secret fails fast
    tune_allocator()  # request buffers go back to the OS when freed (`serve.memory`)
    backend = make_backend(cfg.model, cfg.node(name).cluster)

    async def run() -> None:
        node = NodeServer(cfg, name, backend, secret)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.stop)
        await node.start()
        logging.getLogger(__name__).info("node %s serving on %s", name, node.control_url)
        await node.wait_closed()
        logging.getLogger(__name__).info("node %s stopped", name)

    asyncio.run(run())


def _serve_vllm_node(cfg: DeployConfig, name: str) -> None:
    from prfaas.serve.deploy_secrets import load_shared_secret
    from prfaas.serve.vllm_node import serve_vllm_node

    _logging(name)
    secret = load_shared_secret(cfg.transport, os.environ)
    asyncio.run(serve_vllm_node(cfg, name, secret))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prfaas.serve.main")
    parser.add_argument("process", choices=("gateway", "node"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--region", default=None, help="gateway: the PD region it serves ([[gateways]])")
    args = parser.parse_args(argv)
    _logging(args.name or args.process)
    watch_launcher()
    cfg = load_config(args.config)
    if args.process == "gateway":
        if args.region is not None:
            from prfaas.serve.sites import region_config

            cfg = region_config(cfg, args.region)
        serve_gateway(cfg)
    else:
        if args.name is None:
            parser.error("node needs --name")
        serve_node(cfg, args.name)


if __name__ == "__main__":
    main()
