"""`prfaas up --engine vllm`: the embedded default deployment on vLLM, on this host.

Three unmodified vLLM servers (from the vLLM venv, `prfaas vllm install`) serve a tiny random-weight Qwen3-Next
(Gated DeltaNet hybrid) checkpoint built at first start (no download) with the prfaas KV connector in `kv_both`
role and KV-cache events on; the gateway and one adapter node per server run as for our engine (docs/vllm.md).
The checkpoint carries the default tokenizer, so text prompts work; it lives in
$XDG_DATA_HOME/prfaas/vllm-models/ (~/.local/share/...), built once.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec

from prfaas.integrations.vllm import venv as vllm_venv
from prfaas.integrations.vllm.harness import VllmServers
from prfaas.integrations.vllm.launch import VllmServerSpec
from prfaas.serve.config import DeployConfig, ModelSection, default_config, default_nodes
from prfaas.transport.ports import free_ports

DEFAULT_FAMILY = "qwen3-next"
DEFAULT_CHECKPOINT = "qwen3-next-tiny-v1"


def models_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "prfaas" / "vllm-models"


def default_checkpoint(venv: Path, log: Callable[[str], None] = print) -> Path:
    """The default vLLM checkpoint (built once): tiny Qwen3-Next with the shipped 2,048-token tokenizer."""
    from prfaas.engine.tokenizer import BOS_ID, DEFAULT_VOCAB_SIZE, EOS_ID, PAD_ID, load_default_tokenizer

    folder = models_dir() / DEFAULT_CHECKPOINT
    if (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder
    log(f"building the default vLLM checkpoint in {folder} (once)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".partial")
    env = {"PYTHONPATH": str(vllm_venv.package_path_dir(folder.parent)), "PATH": os.environ.get("PATH", "/usr/bin"),
           "HOME": str(Path.home())}
    subprocess.run([str(vllm_venv.venv_python(venv)), "-m", "prfaas.integrations.vllm.checkpoints", DEFAULT_FAMILY,
                    str(tmp), "--vocab-size", str(DEFAULT_VOCAB_SIZE), "--special-ids", str(PAD_ID), str(BOS_ID),
                    str(EOS_ID)], env=env, check=True, capture_output=True, timeout=900)
    load_default_tokenizer().save_pretrained(str(tmp))
    tmp.rename(folder)
    return folder


def start_default(run_dir: Path, gateway_port: int | None, log: Callable[[str], None] = print,
                  ) -> tuple[DeployConfig, VllmServers]:
    """Start the vLLM servers of the default deployment and return its config (vLLM nodes) and the servers."""
    venv = vllm_venv.require()
    checkpoint = default_checkpoint(venv, log)
    secrets_dir = run_dir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets_dir / "vllm-kv.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    nodes = default_nodes()
    ports = free_ports("127.0.0.1", 4 * len(nodes))
    specs = [VllmServerSpec(model=str(checkpoint), port=ports[4 * i], kv_port=ports[4 * i + 1],
                            telemetry_port=ports[4 * i + 2], kv_events_port=ports[4 * i + 3], secret_file=secret,
                            node_name=node.name, max_model_len=4096, kv_cache_gib=1.0)
             for i, node in enumerate(nodes)]
    servers = VllmServers(vllm_venv.vllm_venv(), run_dir / "vllm", specs)
    servers.__enter__()
    log(f"starting {len(specs)} vLLM servers (logs in {run_dir / 'vllm'}; a few minutes on a small CPU)")
    try:
        waited_s = servers.wait_ready(timeout_s=1800)
    except BaseException:
        servers.stop_all()
        raise
    log(f"vLLM servers ready in {waited_s:.0f} s")
    vllm_nodes = [msgspec.structs.replace(
        node, engine="vllm", vllm_url=f"http://127.0.0.1:{spec.port}", kv_port=spec.kv_port, kv_host="127.0.0.1",
        telemetry_url=f"http://127.0.0.1:{spec.telemetry_port}",
        kv_events_endpoint=f"tcp://127.0.0.1:{spec.kv_events_port}") for node, spec in zip(nodes, specs, strict=True)]
    model = ModelSection(name=str(checkpoint), served_name="default")
    cfg = default_config(model=model, nodes=vllm_nodes)
    if gateway_port is not None:
        cfg = msgspec.structs.replace(cfg, gateway=msgspec.structs.replace(cfg.gateway, port=gateway_port))
    return cfg, servers
