"""The vLLM connector's modules import `transport` and `core` only (DESIGN.md: never `serve` or `policy`), and the
request contract (`params`) is pure: the gateway imports it without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

CONNECTOR_SIDE = ["prfaas.integrations.vllm.scheduler_side", "prfaas.integrations.vllm.worker_side",
                  "prfaas.integrations.vllm.telemetry_http", "prfaas.integrations.vllm.settings"]


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", CONNECTOR_SIDE)
def test_connector_side_never_imports_serve_or_policy(module: str) -> None:
    loaded = _loaded_after(module)
    bad = sorted(m for m in loaded if m.startswith(("prfaas.serve", "prfaas.policy", "prfaas.sim", "prfaas.engine")))
    assert not bad, f"{module} pulls in {bad}"
    if module.endswith("worker_side"):
        assert "prfaas.transport" in loaded


def test_params_are_pure() -> None:
    loaded = _loaded_after("prfaas.integrations.vllm.params")
    assert "torch" not in loaded and "vllm" not in loaded


def test_params_round_trip_and_refusals() -> None:
    from prfaas.integrations.vllm.params import ParamsError, RecvParams, SendParams, parse, to_params

    send = SendParams(transfer_id="r1-0", peer_host="10.0.0.2", peer_port=7801, skip_tokens=512)
    assert parse(to_params(send)) == send
    recv = RecvParams(transfer_id="r1-0", num_tokens=900, skip_tokens=512, wait_s=5.0)
    assert parse(to_params(recv)) == recv
    assert parse(None) is None and parse({"do_remote_decode": True}) is None
    for bad, match in [({"prfaas": {"kind": "pull"}}, "kind"),
                       ({"prfaas": {**to_params(send)["prfaas"], "peer_port": 0}}, "peer_port"),
                       ({"prfaas": {**to_params(recv)["prfaas"], "skip_tokens": 901}}, "num_tokens"),
                       ({"prfaas": {**to_params(recv)["prfaas"], "transfer_id": ""}}, "transfer_id"),
                       ({"prfaas": {**to_params(recv)["prfaas"], "extra": 1}}, "extra"),
                       ({"prfaas": {**to_params(recv)["prfaas"], "version": 9}}, "version")]:
        with pytest.raises(ParamsError, match=match):
            parse(bad)


def test_settings_refuse_public_defaults(tmp_path, monkeypatch) -> None:
    from prfaas.integrations.vllm.settings import ConnectorSettings, SettingsError

    monkeypatch.delenv("PRFAAS_KV_SECRET", raising=False)
    with pytest.raises(SettingsError, match="no KV secret"):
        ConnectorSettings.from_extra({})
    with pytest.raises(SettingsError, match="inline secret is refused"):
        ConnectorSettings.from_extra({"secret": "x" * 32, "kv_host": "0.0.0.0"})
    with pytest.raises(SettingsError, match="unknown"):
        ConnectorSettings.from_extra({"secret": "x" * 32, "kv_prot": 1})
    secret = tmp_path / "kv.secret"
    secret.write_text("s" * 40)
    settings = ConnectorSettings.from_extra({"secret_file": str(secret), "kv_host": "0.0.0.0", "kv_port": 7801})
    assert settings.shared_secret == b"s" * 40 and settings.telemetry_host == "127.0.0.1"
