"""`prfaas up --engine vllm`, end to end: three real vLLM servers behind the real gateway and adapter nodes. A
forced PrfaaS route streams the state through the prfaas connector and answers token-identically to a colocated
route; the decode instance's vLLM counts the prompt as external tokens; Ctrl-C stops the vLLM servers too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.integrations.vllm_fixtures import require_venv

from prfaas.integrations.vllm.harness import metric_value
from prfaas.transport.ports import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(2400)]


def _post(url: str, body: dict, route: str) -> tuple[dict, dict]:
    req = urllib.request.Request(f"{url}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "x-prfaas-route": route})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read()), dict(resp.headers)


def test_up_engine_vllm_serves_both_routes_identically(tmp_path: Path) -> None:
    require_venv()
    (port,) = free_ports("127.0.0.1", 1)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data") if os.environ.get("PRFAAS_TEST_FRESH_MODELS")
               else os.environ.get("XDG_DATA_HOME", str(Path.home() / ".local" / "share")))
    proc = subprocess.Popen([sys.executable, "-m", "prfaas.cli", "up", "--engine", "vllm", "--port", str(port),
                             "--run-dir", str(tmp_path / "run"), "--ready-timeout-s", "900"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    vllm_urls: list[str] = []
    try:
        deadline = time.monotonic() + 2000
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"prfaas up exited ({proc.poll()}):\n{''.join(output)}")
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        url = f"http://127.0.0.1:{port}"
        prompt = "The scheduler routes long prompts to the PrfaaS cluster. " * 12
        body = {"model": "default", "prompt": prompt, "max_tokens": 12, "temperature": 0}
        offloaded, _ = _post(url, body, "prfaas")
        colocated, _ = _post(url, body, "colocated")
        assert offloaded["choices"][0]["text"] == colocated["choices"][0]["text"]
        assert offloaded["usage"]["completion_tokens"] == colocated["usage"]["completion_tokens"]
        # the PD-D vLLM received the prompt's state by transfer: vLLM counts it as external tokens
        config = json.loads((tmp_path / "run" / "config.json").read_text())
        vllm_urls = [n["vllm_url"] for n in config["nodes"]]
        decode = next(n for n in config["nodes"] if n["role"] == "pd_decode")
        with urllib.request.urlopen(f"{decode['vllm_url']}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert metric_value(metrics, "vllm:prompt_tokens_by_source_total", source="external_kv_transfer") >= \
            offloaded["usage"]["prompt_tokens"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    for vllm_url in vllm_urls:  # Ctrl-C stopped the vLLM servers too
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{vllm_url}/health", timeout=5)
