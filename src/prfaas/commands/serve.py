"""`prfaas serve gateway|prefill|pd --config FILE [--name NODE]`: one process of a deployment.

The same config file runs on every host: each process reads its own section (the gateway its `[gateway]`,
a node its `[[nodes]]` entry by `--name`; `prefill` and `pd` check the node's cluster).
Every process reads the deployment secret from the same `[transport] shared_secret_file` / `shared_secret_env`
(give each host the file or the variable); the gateway also reads its admin token and API keys. See
docs/security.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind

PROCESSES = ("gateway", "prefill", "pd")


def register(app: typer.Typer) -> None:
    app.command("serve", help="Start one process of a deployment.")(serve_cmd)


def serve_cmd(
    process: Annotated[str, typer.Argument(help="gateway | prefill | pd")],
    config: Annotated[Path, typer.Option(help="Deployment TOML (or a resolved config.json).")],
    name: Annotated[str | None, typer.Option(help="Node name in the config (prefill / pd).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Write the resolved config here (config.json).")] = None,
) -> None:
    from prfaas.serve.config import load_config
    from prfaas.serve.main import serve_gateway, serve_node

    if process not in PROCESSES:
        raise ConfigError(f"process must be one of {', '.join(PROCESSES)}; got {process!r}")
    cfg = load_config(config)
    if cfg.gateway.port == 0:
        raise ConfigError("gateway.port must be set (not 0) when processes are started one by one")
    if run_dir is not None:
        from prfaas.serve.config import write_resolved

        write_resolved(cfg, run_dir)
    if process == "gateway":
        serve_gateway(cfg)
        return
    wanted = ClusterKind.PRFAAS if process == "prefill" else ClusterKind.PD
    candidates = [n.name for n in cfg.nodes if n.cluster is wanted]
    if name is None:
        if len(candidates) != 1:
            raise ConfigError(f"give --name: the config has {len(candidates)} {wanted.value} nodes")
        name = candidates[0]
    if name not in candidates:
        raise ConfigError(f"node {name!r} is not a {wanted.value} node; known: {', '.join(candidates)}")
    serve_node(cfg, name)
