"""`prfaas up` as a user runs it: prints the URL and examples, serves, and stops every process on Ctrl-C.

Uses the stub model (no torch in the nodes) so the whole start-serve-stop cycle stays short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_helpers import complete, get_json

from prfaas.transport.ports import free_port

pytestmark = pytest.mark.network

STUB_TOML = """
[model]
name = "stub"

[gateway]
heartbeat_interval_s = 0.2
"""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_prints_url_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "stub.toml"
    config.write_text(STUB_TOML, encoding="utf-8")
    port = free_port()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prfaas.cli", "up", "--config", str(config), "--port", str(port),
         "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the deployment is ready
        assert f"http://127.0.0.1:{port}/v1" in first, first + (proc.stderr.read() if proc.poll() else "")
        url = f"http://127.0.0.1:{port}"
        assert get_json(f"{url}/v1/models")["data"][0]["id"] == "default"
        body = complete(url, [5, 6, 7], 4, "local")
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        resolved = json.loads((run_dir / "config.json").read_text())
        node_ports = [n["port"] for n in resolved["nodes"]]
        assert all(_port_open(p) for p in node_ports)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        time.sleep(0.2)
        assert not any(_port_open(p) for p in [port, *node_ports])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_rejects_a_node_of_the_wrong_cluster(tmp_path: Path) -> None:
    config = tmp_path / "stub.toml"
    config.write_text(STUB_TOML, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "prfaas.cli", "serve", "prefill", "--config", str(config),
                           "--name", "pd-0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a prfaas node" in proc.stderr


def test_serve_starts_each_process_from_one_config(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "deploy.toml"
    config.write_text(STUB_TOML.replace("[gateway]", f"[gateway]\nport = {port}"), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PRFAAS_TEST_SECRET": "one-secret-for-every-process"}
    certs = subprocess.run([sys.executable, "-m", "prfaas.cli", "certs", "dev-ca", "--config", str(config),
                            "--out", str(tmp_path / "tls")], capture_output=True, text=True, env=env, timeout=120)
    assert certs.returncode == 0, certs.stderr
    with config.open("a", encoding="utf-8") as out:  # the [transport] TLS lines it prints: mutual TLS on the KV links
        out.write("\n" + certs.stdout[certs.stdout.index("[transport]"):].rstrip("\n") + "\n")
        out.write("shared_secret_env = 'PRFAAS_TEST_SECRET'\n")  # one deployment secret, from the environment
    commands = [["gateway"], ["prefill"], ["pd", "--name", "pd-0"], ["pd", "--name", "pd-1"]]
    procs = [subprocess.Popen([sys.executable, "-m", "prfaas.cli", "serve", *args, "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for args in commands]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get_json(f"{url}/health")["ready"] and len(get_json(f"{url}/health")["nodes"]) == 3:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        long_prompt = list(range(3, 600))
        assert complete(url, long_prompt, 3, "prfaas")["usage"]["completion_tokens"] == 3
        assert complete(url, [7, 8, 9], 3)["usage"]["completion_tokens"] == 3
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
