"""A `prfaas up`-style deployment encrypts its KV links by default: the launcher made a dev CA in the run dir,
the decode node's KV port speaks only TLS with a client certificate from that CA, and state still crosses
from the PrfaaS node to the decode node (through TLS) for a long prompt."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import complete, get_json, metrics, tiny_config_file

from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import Role
from prfaas.serve.config import TlsMode, load_config
from prfaas.serve.launcher import Launcher
from prfaas.serve.tls_setup import node_tls_files
from prfaas.transport.codec import FrameDecoder, encode
from prfaas.transport.config import TransportLimits
from prfaas.transport.errors import TransportError
from prfaas.transport.frames import Challenge, FrameType, Hello
from prfaas.transport.tls import client_context

pytestmark = [pytest.mark.timeout(300)]


def _decode_kv_address(deployment: Launcher) -> tuple[str, int]:
    node = next(n for n in deployment.cfg.nodes if n.role is Role.PD_DECODE)
    return node.host, node.kv_port


def _hello_and_read(sock: socket.socket) -> bytes:
    sock.sendall(encode(Hello(bytes(16), bytes(16), "test-client")))
    answer = b""
    try:
        while len(answer) < 4096 and (chunk := sock.recv(4096)):
            answer += chunk
            if _challenge_in(answer):
                break
    except (ConnectionResetError, ssl.SSLError):
        pass
    return answer


def _challenge_in(data: bytes) -> bool:
    decoder = FrameDecoder(TransportLimits(), allowed=frozenset({FrameType.CHALLENGE}))
    try:
        return any(isinstance(e, Challenge) for e in decoder.feed(data))
    except TransportError:  # bytes that are not our frames (a TLS alert)
        return False


def test_launcher_made_a_dev_ca_with_owner_only_keys(deployment: Launcher) -> None:
    t = deployment.cfg.transport
    assert t.tls is TlsMode.ON
    resolved = load_config(deployment.run_dir / "config.json").transport
    assert resolved.tls_ca_file == t.tls_ca_file and t.tls_ca_file is not None
    for node in deployment.cfg.nodes:
        files = node_tls_files(t, node.name)
        assert files.ca_file.parent == deployment.run_dir.resolve() / "tls"
        assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert not (deployment.run_dir / "tls" / "ca-key.pem").exists()  # a per-run CA never issues again


def test_decode_kv_port_refuses_plaintext_and_answers_tls_with_a_deployment_cert(deployment: Launcher) -> None:
    host, port = _decode_kv_address(deployment)
    with socket.create_connection((host, port), timeout=30) as plain:
        plain.settimeout(30)
        answer = _hello_and_read(plain)
    assert not _challenge_in(answer) and (answer == b"" or answer[0] == 0x15)  # nothing or a TLS alert

    prefill = next(n for n in deployment.cfg.nodes if n.role is Role.PRFAAS_PREFILL)
    context = client_context(node_tls_files(deployment.cfg.transport, prefill.name))
    with socket.create_connection((host, port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.settimeout(30)
        assert tls.version() == "TLSv1.3"
        assert _challenge_in(_hello_and_read(tls))  # control: the same HELLO through TLS gets the HMAC challenge


def test_long_prompt_state_crosses_to_the_decode_node_over_tls(deployment: Launcher) -> None:
    before = metrics(deployment.url)
    prompt = " ".join(f"tls{i}" for i in range(400))
    body = complete(deployment.url, prompt, 4, route="prfaas")
    assert body["choices"][0]["text"]
    after = metrics(deployment.url)
    key = 'prfaas_transfer_bytes_total{route="prfaas"}'
    assert after.get(key, 0.0) - before.get(key, 0.0) > 0
    assert get_json(f"{deployment.url}/health")["ready"]


def test_tls_on_with_missing_files_fails_before_any_process_starts(tmp_path: Path) -> None:
    extra = ('\n[transport]\ntls_ca_file = "/nonexistent/ca.pem"\n'
             'tls_cert_file = "/nonexistent/{node}.pem"\ntls_key_file = "/nonexistent/{node}-key.pem"\n')
    launcher = Launcher(load_config(tiny_config_file(tmp_path, extra)), tmp_path / "run")
    with pytest.raises(ConfigError, match="tls_ca_file for node 'prfaas-0'") as info:
        launcher.start()
    assert "\n" not in str(info.value)
    assert launcher.procs == {}


def test_tls_files_must_be_set_together_and_tls_off_warns(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from prfaas.serve.tls_setup import PLAINTEXT_WARNING, sender_context

    partial = tiny_config_file(tmp_path, '\n[transport]\ntls_ca_file = "/etc/prfaas/ca.pem"\n')
    with pytest.raises(ConfigError, match=r"transport\.tls_cert_file"):
        load_config(partial)
    with pytest.raises(ConfigError, match=r"transport\.tls"):
        load_config(tiny_config_file(tmp_path, '\n[transport]\ntls = "maybe"\n'))
    off = load_config(tiny_config_file(tmp_path, '\n[transport]\ntls = "off"\n'))
    with caplog.at_level("WARNING"):
        assert sender_context(off.transport, "prfaas-0") is None
    assert PLAINTEXT_WARNING in caplog.text
    unset = load_config(tiny_config_file(tmp_path))
    with pytest.raises(ConfigError, match="prfaas certs dev-ca"):  # `prfaas serve` without files: one line
        sender_context(unset.transport, "prfaas-0")


def test_prfaas_serve_node_without_tls_files_exits_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    # the deployment secret is given (from the environment), so the TLS files are what is missing
    config.write_text('[model]\nname = "stub"\n[transport]\nshared_secret_env = "PRFAAS_TEST_SECRET"\n',
                      encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PRFAAS_TEST_SECRET": "a-secret-of-enough-length"}
    proc = subprocess.run([sys.executable, "-m", "prfaas.cli", "serve", "prefill", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "transport.tls is \"on\" but tls_ca_file" in lines[0], proc.stderr
