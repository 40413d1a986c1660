"""`prfaas demo`: a mixed workload through `prfaas up`, with a report of live numbers beside the simulator's
and the planner's predictions for the same configuration.

    prfaas demo                         # starts the embedded default deployment, drives it, stops it
    prfaas demo --url http://127.0.0.1:8000   # against a deployment that is already up
    prfaas demo --requests 60 --rate-rps 2 --median-tokens 1200
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("demo", help="Drive a mixed workload through a running deployment.")(demo_cmd)


def demo_cmd(
    url: Annotated[str | None, typer.Option(help="A running gateway (default: start the embedded one).")] = None,
    config: Annotated[Path | None, typer.Option(help="Deployment to start when --url is not given.")] = None,
    requests: Annotated[int, typer.Option(help="Requests to send.")] = 30,
    rate_rps: Annotated[float, typer.Option(help="Poisson arrival rate.")] = 1.0,
    median_tokens: Annotated[int, typer.Option(help="Median prompt length (log-normal).")] = 800,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 16,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 0,
    predict: Annotated[bool, typer.Option(help="Run the simulator and planner on the live profile.")] = True,
    admin_token_file: Annotated[Path | None, typer.Option(
        help="With --url: the gateway's admin token (`prfaas up` prints where it is).")] = None,
) -> None:
    from prfaas.core.errors import ConfigError
    from prfaas.serve.demo import DemoWorkload, format_report, run_demo

    if requests < 1 or rate_rps <= 0 or median_tokens < 1 or max_tokens < 1:
        raise ConfigError("--requests, --rate-rps, --median-tokens and --max-tokens must be positive")
    workload = DemoWorkload(num_requests=requests, rate_rps=rate_rps, median_tokens=median_tokens,
                            output_tokens=max_tokens, seed=seed)
    if url is not None:
        headers = {}
        if admin_token_file is not None:
            headers = {"authorization": f"Bearer {admin_token_file.read_text(encoding='utf-8').strip()}"}
        typer.echo(format_report(asyncio.run(run_demo(url.rstrip("/"), workload, predict, headers))))
        return
    from prfaas.commands.up import resolve_up_config
    from prfaas.serve.launcher import Launcher

    cfg = resolve_up_config(config, 0, None)
    with tempfile.TemporaryDirectory() as tmp, Launcher(cfg, Path(tmp)) as deployment:
        typer.echo(f"starting the deployment (logs in {tmp}) ...", err=True)
        deployment.wait_ready(300)
        typer.echo(f"driving {requests} requests through {deployment.url} ...", err=True)
        typer.echo(format_report(asyncio.run(run_demo(deployment.url, workload, predict,
                                                      deployment.admin_headers()))))
