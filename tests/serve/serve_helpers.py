"""Small helpers for the serve tests: HTTP calls (stdlib, bounded timeouts) and a started deployment."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prfaas.serve.config import load_config
from prfaas.serve.launcher import Launcher


def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
         timeout_s: float = 60.0) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
        return dict(json.loads(resp.read()))


def metrics(url: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (samples only)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"^(\S+)\s+(\S+)$", line)
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


def complete(url: str, prompt: str | list[int], max_tokens: int = 8, route: str | None = None,
             **extra: Any) -> dict[str, Any]:
    headers = {"x-prfaas-route": route} if route else {}
    status, body = post(f"{url}/v1/completions", {"model": "default", "prompt": prompt, "max_tokens": max_tokens,
                                                  "temperature": 0, **extra}, headers)
    assert status == 200, body
    return body


TINY_TOML = """
[model]
num_layers = 4
hidden_size = 128
max_batch_size = 32

[gateway]
port = 0
allow_debug_hooks = true
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
route_wait_s = 30.0

[policy]
threshold_tokens = 256
rebalance = false
"""


def tiny_config_file(directory: Path, extra: str = "") -> Path:
    path = directory / "deploy.toml"
    path.write_text(TINY_TOML + extra, encoding="utf-8")
    return path


@contextlib.contextmanager
def ready_deployment(root: Path, toml_text: str, **launcher_kwargs: Any) -> Iterator[Launcher]:
    """The deployment `toml_text` describes (written to root/deploy.toml), started as processes and ready
    (gateway healthy, every node registered); every process stopped on exit."""
    path = root / "deploy.toml"
    path.write_text(toml_text, encoding="utf-8")
    with Launcher(load_config(path), root / "run", **launcher_kwargs) as launcher:
        launcher.wait_ready(timeout_s=120)
        yield launcher
