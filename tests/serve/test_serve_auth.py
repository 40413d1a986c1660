"""Authentication through the real gateway and nodes (issue 10, items 11-12).

One stub-model deployment (no torch in the nodes) with an API key serves the module; `prfaas up` and the
config checks run as the user runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from serve_helpers import get_json, metrics, post, ready_deployment

from prfaas.serve.control_auth import ControlAuth, RefusalRecorder, UnauthenticatedReply
from prfaas.serve.deploy_secrets import load_shared_secret
from prfaas.serve.launcher import Launcher
from prfaas.serve.messages import AbortReply, Heartbeat, decode, encode
from prfaas.transport.ports import free_port

pytestmark = pytest.mark.network

API_KEY = "sk-prfaas-test-key-0123456789"
STUB_TOML = """
[model]
name = "stub"

[gateway]
port = 0
heartbeat_interval_s = 0.2

[policy]
rebalance = false
"""
# the rogue registration, completed with the fields a NodeRegister needs
ROGUE_REGISTER = {"type": "register", "version": 1, "name": "evil-d", "cluster": "pd", "role": "pd_decode",
                  "control_url": "http://127.0.0.1:9", "kv_host": "127.0.0.1", "kv_port": 9, "max_batch": 32,
                  "pid": 1, "max_context_tokens": 16384}
OLD_PUBLIC_SECRET = b"prfaas-localhost-demo-secret"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("auth"), STUB_TOML, api_keys=(API_KEY,)) as launcher:
        yield launcher


def _refused(url: str, surface: str, reason: str) -> float:
    return metrics(url).get(f'prfaas_auth_refused_total{{reason="{reason}",surface="{surface}"}}', 0.0)


def _node_names(dep: Launcher) -> set[str]:
    cluster = get_json(f"{dep.url}/admin/cluster", dep.admin_headers())
    return {i["instance_id"] for i in cluster["instances"]} | set(get_json(f"{dep.url}/health")["nodes"])


def _signed_post(secret: bytes, url: str, body: bytes) -> tuple[dict[str, str], tuple[int, dict[str, Any]]]:
    headers = ControlAuth(secret, RefusalRecorder()).sign(url, "POST", body)
    return headers, post(url, body, headers)


def test_rogue_register_is_refused_and_never_shown(keyed: Launcher) -> None:
    url = f"{keyed.url}/internal/register"
    body = json.dumps(ROGUE_REGISTER).encode()
    before = _refused(keyed.url, "internal", "missing")
    code, reply = post(url, body)
    assert code == 401 and "refused" in reply["error"]["message"]
    for wrong in (OLD_PUBLIC_SECRET, b"w" * 32):  # the old public default, any other secret
        _, (code, _) = _signed_post(wrong, url, body)
        assert code == 401
    assert "evil-d" not in _node_names(keyed)
    assert _refused(keyed.url, "internal", "missing") == before + 1
    assert _refused(keyed.url, "internal", "bad_signature") >= 2


def test_a_replayed_signed_message_is_refused(keyed: Launcher) -> None:
    secret = load_shared_secret(keyed.cfg.transport, {})
    url = f"{keyed.url}/internal/heartbeat"
    body = encode(Heartbeat(name="ghost", role=keyed.cfg.nodes[0].role))
    headers, (code, reply) = _signed_post(secret, url, body)
    assert code == 200 and reply["known"] is False  # authentic: answered (an unknown node is told so)
    before = _refused(keyed.url, "internal", "replayed")
    code, _ = post(url, body, headers)
    assert code == 401
    assert _refused(keyed.url, "internal", "replayed") == before + 1


def test_nodes_refuse_unsigned_control_calls(keyed: Launcher) -> None:
    for node in keyed.cfg.nodes:
        base = f"http://{node.host}:{node.port}"
        for path in ("/prefill", "/decode", "/role", "/abort"):
            code, reply = post(f"{base}{path}", b'{"type":"abort","version":1,"request_id":"x"}')
            assert code == 401 and reply["kind"] == "unauthorized", (node.name, path, reply)
        _, (code, _) = _signed_post(OLD_PUBLIC_SECRET, f"{base}/abort", b'{"type":"abort","request_id":"x"}')
        assert code == 401
        assert get_json(f"{base}/health")["name"] == node.name  # read-only, open
    assert complete_ok(keyed)  # the gateway's own signed calls still go through


def test_a_signed_call_is_answered_and_signed_back(keyed: Launcher) -> None:
    secret = load_shared_secret(keyed.cfg.transport, {})
    node = keyed.cfg.nodes[-1]

    async def abort() -> AbortReply:
        auth = ControlAuth(secret, RefusalRecorder())
        async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session, \
                session.post(f"http://{node.host}:{node.port}/abort", data=b'{"type":"abort","request_id":"x"}') \
                as resp:
            return decode(await resp.read(), AbortReply)

    assert asyncio.run(abort()).found is False


def test_a_reply_without_the_deployment_signature_is_refused() -> None:
    """A process that took over a node's port cannot answer the gateway: its replies are not signed."""

    async def run() -> str:
        async def impostor(_request: web.Request) -> web.Response:
            return web.json_response({"first_token": 1})

        app = web.Application()
        app.add_routes([web.post("/prefill", impostor)])
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        auth = ControlAuth(b"k" * 32, RefusalRecorder())
        try:
            async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session:
                await session.post(f"http://127.0.0.1:{port}/prefill", data=b"{}")
        except UnauthenticatedReply as exc:
            return str(exc)
        finally:
            await runner.cleanup()
        return "accepted"

    assert "without the deployment's signature" in asyncio.run(run())


def test_admin_needs_the_token(keyed: Launcher) -> None:
    url = f"{keyed.url}/admin/cluster"
    before = _refused(keyed.url, "admin", "missing")
    for headers, reason in (({}, "missing"), ({"authorization": "Bearer not-the-token-0123456789"}, "bad_token")):
        with pytest.raises(urllib.error.HTTPError) as info:
            get_json(url, headers)
        assert info.value.code == 401
        assert json.loads(info.value.read())["error"]["code"] == "invalid_admin_token", reason
    code, _ = post(f"{keyed.url}/admin/policy", {"threshold_tokens": 1}, {"authorization": f"Bearer {API_KEY}"})
    assert code == 401  # an API key is not the admin token
    assert get_json(url, keyed.admin_headers())["threshold_tokens"] != 1
    assert _refused(keyed.url, "admin", "missing") == before + 1
    with urllib.request.urlopen(f"{keyed.url}/metrics", timeout=10) as resp:
        assert resp.status == 200  # read-only, open by default


def test_api_key_with_the_openai_client(keyed: Launcher) -> None:
    good = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=API_KEY, timeout=60, max_retries=0)
    assert good.completions.create(model="default", prompt="hi", max_tokens=3).usage.completion_tokens == 3
    before = _refused(keyed.url, "api", "bad_token")
    bad = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sk-wrong", timeout=60, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.completions.create(model="default", prompt="hi", max_tokens=3)
    assert info.value.status_code == 401 and "Incorrect API key" in str(info.value)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert _refused(keyed.url, "api", "bad_token") == before + 2
    assert get_json(f"{keyed.url}/health")["ready"] is True  # read-only, open


def complete_ok(dep: Launcher) -> bool:
    code, body = post(f"{dep.url}/v1/completions", {"model": "default", "prompt": [5, 6, 7], "max_tokens": 2},
                      {"authorization": f"Bearer {API_KEY}"})
    return code == 200 and body["usage"]["completion_tokens"] == 2


# --- prfaas up and the config, as the user runs them ----------------------------------------------

def test_prfaas_up_keeps_its_secrets_from_other_users(tmp_path: Path) -> None:
    config = tmp_path / "stub.toml"
    config.write_text(STUB_TOML.replace("port = 0", f"port = {free_port()}"), encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "prfaas.cli", "up", "--config", str(config), "--run-dir",
                             str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(12)]
        token_line = next((ln for ln in lines if "admin token" in ln), "")
        assert "mode 0600" in token_line, lines
        token = token_line.rsplit(" ", 1)[1].strip()
        url = lines[0].split(" at ")[1].strip().removesuffix("/v1")
        assert get_json(f"{url}/admin/cluster", {"authorization": f"Bearer {token}"})["instances"]
        open_api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=60, max_retries=0)
        assert open_api.models.list().data[0].id == "default"  # no API key configured: the API is open
        secrets = [p.read_text(encoding="utf-8").strip() for p in (run_dir / "secrets").iterdir()]
        assert token in secrets and len(secrets) == 2
        for path in [run_dir, *run_dir.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.is_file() and mode & stat.S_IROTH:
                text = path.read_text(encoding="utf-8", errors="replace")
                assert not any(s in text for s in secrets), f"{path} ({oct(mode)}) holds a secret"
            if path.parent.name == "secrets" or path.name == "secrets":
                assert mode & 0o077 == 0, f"{path}: {oct(mode)}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_beyond_loopback_without_a_secret_fails_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "exposed.toml"
    config.write_text("[gateway]\nhost = '0.0.0.0'\nport = 8123\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "prfaas.cli", "serve", "gateway", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    message = proc.stderr.strip()
    assert "\n" not in message and "shared_secret_file" in message and "0.0.0.0" in message, proc.stderr
