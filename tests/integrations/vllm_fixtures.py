"""Shared set-up of the vLLM end-to-end tests: the venv (installed by `prfaas vllm install`; CI sets
PRFAAS_REQUIRE_VLLM=1 so a missing venv fails instead of skipping), tiny checkpoints, server pairs."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from prfaas.integrations.vllm import venv as vllm_venv
from prfaas.integrations.vllm.harness import VllmServers
from prfaas.integrations.vllm.launch import VllmServerSpec
from prfaas.transport.ports import free_ports


def require_venv() -> Path:
    venv = vllm_venv.vllm_venv()
    if not vllm_venv.is_installed(venv):
        if os.environ.get("PRFAAS_REQUIRE_VLLM"):
            pytest.fail(f"PRFAAS_REQUIRE_VLLM is set but vLLM is not installed in {venv}")
        pytest.skip(f"vLLM is not installed in {venv} (prfaas vllm install)")
    return venv


def build_checkpoint(venv: Path, family: str, out: Path) -> Path:
    if (out / "config.json").exists():
        return out
    env = {"PYTHONPATH": str(vllm_venv.package_path_dir(out.parent)), "PATH": os.environ.get("PATH", "/usr/bin"),
           "HOME": str(Path.home())}
    subprocess.run([str(vllm_venv.venv_python(venv)), "-m", "prfaas.integrations.vllm.checkpoints", family,
                    str(out)], env=env, check=True, capture_output=True, timeout=600)
    return out


@dataclass
class Pair:
    servers: VllmServers
    prefill: VllmServerSpec
    decode: VllmServerSpec
    prefix_caching: bool = True

    def telemetry(self, spec: VllmServerSpec) -> dict:
        return self.servers.telemetry(spec)

    def counters(self, spec: VllmServerSpec) -> dict:
        return self.telemetry(spec)["counters"]


def start_pair(venv: Path, root: Path, family: str, **spec_kwargs: object) -> Pair:
    model = build_checkpoint(venv, family, root / f"ckpt-{family}")
    secret = root / "kv.secret"
    if not secret.exists():
        secret.write_text(secrets.token_hex(32))
        secret.chmod(0o600)
    ports = free_ports("127.0.0.1", 6)
    specs = [VllmServerSpec(model=str(model), port=ports[i], kv_port=ports[2 + i], telemetry_port=ports[4 + i],
                            secret_file=secret, node_name=f"{family}-{role}", cpu_threads_bind=str(i),
                            max_model_len=4096, **spec_kwargs)  # type: ignore[arg-type]
             for i, role in enumerate(("p", "d"))]
    servers = VllmServers(venv, root / f"run-{family}", specs)
    servers.__enter__()
    try:
        servers.wait_ready(timeout_s=1200)
    except Exception:
        tails = "\n".join(servers.tail(s.port) for s in specs)
        servers.stop_all()
        raise AssertionError(f"vLLM servers for {family} did not start:\n{tails}") from None
    return Pair(servers, specs[0], specs[1])
