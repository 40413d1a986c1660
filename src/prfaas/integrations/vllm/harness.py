"""Start and talk to local vLLM servers running the prfaas connector: for tests, benchmarks and `prfaas up
--engine vllm` on one host (no vllm import; stdlib HTTP).

    with VllmServers(venv, run_root, [spec_p, spec_d]) as servers:
        servers.wait_ready(timeout_s=600)
        body = servers.complete(spec_p.port, {"prompt": [...], "max_tokens": 1, ...})
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prfaas.integrations.vllm.launch import VllmServerSpec, server_command


class ServerFailed(RuntimeError):
    pass


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 600.0) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ServerFailed(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from None


def http_text(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return resp.read().decode()


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


ERROR_MARKERS = ("Error", "Exception", "error:", "Killed", "Traceback")
MAX_ERROR_LINES = 20


def failure_report(log_lines: Sequence[str], tail_lines: int = 30) -> str:
    """The distinct lines of a server log that name an error (first `MAX_ERROR_LINES`), then its last lines."""
    errors: list[str] = []
    for line in log_lines:
        text = line.strip()
        if any(marker in text for marker in ERROR_MARKERS) and text not in errors:
            errors.append(text)
            if len(errors) == MAX_ERROR_LINES:
                break
    head = ["error lines:", *errors, "log tail:"] if errors else []
    return "\n".join([*head, *log_lines[-tail_lines:]])


class VllmServers:
    def __init__(self, venv: Path, run_root: Path, specs: Sequence[VllmServerSpec],
                 inside: Callable[[VllmServerSpec], contextlib.AbstractContextManager[Any]] | None = None) -> None:
        """`inside(spec)`: a context in which the spec's host is reachable (e.g. its network namespace)."""
        self.inside = inside or (lambda _spec: contextlib.nullcontext())
        self.venv = venv
        self.run_root = run_root
        self.specs = list(specs)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}

    def __enter__(self) -> VllmServers:
        self.run_root.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self.start(spec)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, spec: VllmServerSpec) -> None:
        argv, env = server_command(spec, self.venv, self.run_root)
        log_path = self.run_root / f"vllm-{spec.node_name}.log"
        self.logs[spec.port] = log_path
        with open(log_path, "ab") as log:
            self.procs[spec.port] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                     start_new_session=True)

    def url(self, port: int) -> str:
        host = next((s.host for s in self.specs if s.port == port), "127.0.0.1")
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    def _spec(self, port: int) -> VllmServerSpec:
        return next(s for s in self.specs if s.port == port)

    def wait_ready(self, timeout_s: float = 900.0) -> float:
        started = time.monotonic()
        pending = {spec.port for spec in self.specs}
        while pending:
            for port in list(pending):
                proc = self.procs[port]
                if proc.poll() is not None:
                    raise ServerFailed(f"vLLM on port {port} exited ({proc.returncode}): {self.failure(port)}")
                try:
                    with self.inside(self._spec(port)):
                        urllib.request.urlopen(f"{self.url(port)}/health", timeout=2)
                    pending.discard(port)
                except (urllib.error.URLError, OSError):
                    pass
            if pending and time.monotonic() - started > timeout_s:
                raise ServerFailed(f"vLLM servers {sorted(pending)} not ready in {timeout_s:.0f} s")
            if pending:
                time.sleep(1.0)
        return time.monotonic() - started

    def tail(self, port: int, lines: int = 30) -> str:
        return "\n".join(self._log_lines(port)[-lines:])

    def failure(self, port: int, lines: int = 30) -> str:
        """Why a server exited: the log's error lines (the root cause is often far above the tail: an engine core
        process logs it before the API server's own traceback), then its tail."""
        return failure_report(self._log_lines(port), lines)

    def _log_lines(self, port: int) -> list[str]:
        path = self.logs.get(port)
        if path is None or not path.exists():
            return []
        return path.read_text(errors="replace").splitlines()

    def complete(self, port: int, body: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
        body = {"model": self.model_of(port), "temperature": 0, "return_token_ids": True, **body}
        return http_json(f"{self.url(port)}/v1/completions", body, timeout_s)

    def model_of(self, port: int) -> str:
        return next(s.model for s in self.specs if s.port == port)

    def metrics(self, port: int) -> str:
        return http_text(f"{self.url(port)}/metrics")

    def telemetry(self, spec: VllmServerSpec) -> dict[str, Any]:
        return http_json(f"http://127.0.0.1:{spec.telemetry_port}/prfaas/telemetry", timeout_s=10)

    def kill(self, port: int) -> None:
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def first_token_then_decode(servers: VllmServers, prefill_port: int, decode_port: int, decode_kv_port: int,
                            prompt: list[int], max_tokens: int, transfer_id: str, skip_tokens: int = 0,
                            wait_s: float = 60.0) -> tuple[list[int], dict[str, Any], dict[str, Any]]:
    """One P/D request by hand (what the gateway's vLLM nodes do): token 0 from the prefill instance, which
    streams the prompt's state to the decode instance; the rest from the decode instance."""
    from prfaas.integrations.vllm.params import RecvParams, SendParams, to_params

    send = SendParams(transfer_id=transfer_id, peer_host="127.0.0.1", peer_port=decode_kv_port,
                      skip_tokens=skip_tokens)
    pre = servers.complete(prefill_port, {"prompt": prompt, "max_tokens": 1, "kv_transfer_params": to_params(send)})
    first = list(pre["choices"][0]["token_ids"])
    recv = RecvParams(transfer_id=transfer_id, num_tokens=len(prompt), skip_tokens=skip_tokens, wait_s=wait_s)
    dec = servers.complete(decode_port, {"prompt": prompt + first, "max_tokens": max_tokens - 1,
                                         "kv_transfer_params": to_params(recv)})
    return first + list(dec["choices"][0]["token_ids"]), pre, dec
