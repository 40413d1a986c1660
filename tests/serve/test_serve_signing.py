"""Control-plane signatures (`serve.signing`, pure) and the deployment's secret sources (`serve.deploy_secrets`)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import msgspec
import pytest

from prfaas.core.errors import ConfigError
from prfaas.serve.config import default_config, load_config
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.deploy_secrets import (
    GatewayCredentials,
    load_gateway_credentials,
    load_shared_secret,
    parse_api_keys,
    prepare_run_secrets,
    token_digest,
    write_secret_file,
)
from prfaas.serve.gateway_auth import GatewayAuth
from prfaas.serve.signing import (
    DEFAULT_WINDOW_S,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NonceCache,
    RefusalReason,
    RequestVerifier,
    SignatureRefused,
    derive_control_key,
    is_reply_authentic,
    reply_signature,
    sign_request,
)
from prfaas.transport.auth import client_proof, server_proof

SECRET = b"s" * 32
KEY = derive_control_key(SECRET)
NOW_S = 1_800_000_000.0
BODY = b'{"type":"register"}'


def _signed(nonce: bytes = b"n" * 16, *, audience: str = "127.0.0.1:8000", body: bytes = BODY,
            now_s: float = NOW_S, key: bytes = KEY) -> dict[str, str]:
    return sign_request(key, audience=audience, method="POST", path="/internal/register", body=body, now_s=now_s,
                        nonce=nonce)


def _verify(verifier: RequestVerifier, headers: dict[str, str], body: bytes = BODY, now_s: float = NOW_S,
            path: str = "/internal/register") -> RefusalReason | None:
    try:
        verifier.verify(method="POST", path=path, headers=headers, body=body, now_s=now_s)
    except SignatureRefused as exc:
        return exc.reason
    return None


def test_a_signed_request_verifies_once_and_every_change_is_refused() -> None:
    verifier = RequestVerifier(KEY, "127.0.0.1:8000")
    headers = _signed()
    assert _verify(verifier, headers) is None
    assert _verify(verifier, headers) is RefusalReason.REPLAYED
    assert _verify(verifier, _signed(b"a" * 16), body=BODY + b" ") is RefusalReason.BAD_SIGNATURE
    assert _verify(verifier, _signed(b"b" * 16), path="/internal/heartbeat") is RefusalReason.BAD_SIGNATURE
    assert _verify(verifier, _signed(b"c" * 16, audience="127.0.0.1:9001")) is RefusalReason.BAD_SIGNATURE
    assert _verify(verifier, _signed(b"d" * 16, key=derive_control_key(b"x" * 32))) is RefusalReason.BAD_SIGNATURE
    late = NOW_S + DEFAULT_WINDOW_S + 2
    assert _verify(verifier, _signed(b"e" * 16), now_s=late) is RefusalReason.STALE
    assert _verify(verifier, _signed(b"f" * 16, now_s=late)) is RefusalReason.STALE
    assert _verify(verifier, {}) is RefusalReason.MISSING
    assert _verify(verifier, {HEADER_TIMESTAMP: "12"}) is RefusalReason.MALFORMED
    assert _verify(verifier, {**_signed(b"g" * 16), HEADER_TIMESTAMP: "-5"}) is RefusalReason.MALFORMED
    assert _verify(verifier, {**_signed(b"h" * 16), HEADER_SIGNATURE: "00" * 32}) is RefusalReason.BAD_SIGNATURE
    assert _verify(verifier, _signed(b"i" * 16, now_s=NOW_S - 5)) is None  # inside the window: fine


def test_a_refused_signature_does_not_use_up_the_nonce() -> None:
    verifier = RequestVerifier(KEY, "127.0.0.1:8000")
    forged = {**_signed(), HEADER_SIGNATURE: "ab" * 32}
    assert _verify(verifier, forged) is RefusalReason.BAD_SIGNATURE
    assert _verify(verifier, _signed()) is None  # the genuine request with that nonce still gets through


def test_nonce_cache_is_bounded_and_forgets_only_outside_the_window() -> None:
    cache = NonceCache(window_s=30.0, max_nonces=3)
    for i in range(3):
        cache.admit(f"n{i}", NOW_S, NOW_S)
    with pytest.raises(SignatureRefused) as info:
        cache.admit("n3", NOW_S, NOW_S + 1)
    assert info.value.reason is RefusalReason.REPLAY_CACHE_FULL  # fails closed inside the window
    cache.admit("n3", NOW_S + 31, NOW_S + 31)  # the first three expired
    assert len(cache) == 1


def test_control_key_is_domain_separated_from_the_kv_handshake() -> None:
    nonces = (b"a" * 32, b"b" * 32)
    assert KEY != SECRET
    assert KEY not in (server_proof(SECRET, *nonces), client_proof(SECRET, *nonces))
    assert hmac.new(SECRET, b"prfaas-control/v1/key", hashlib.sha256).digest() == KEY


def test_reply_signature_binds_nonce_and_status() -> None:
    header = reply_signature(KEY, nonce="ab" * 16, status=200)
    assert is_reply_authentic(KEY, nonce="ab" * 16, status=200, header=header)
    assert not is_reply_authentic(KEY, nonce="ab" * 16, status=500, header=header)
    assert not is_reply_authentic(KEY, nonce="cd" * 16, status=200, header=header)
    assert not is_reply_authentic(KEY, nonce="ab" * 16, status=200, header=None)


# --- secret sources -------------------------------------------------------------------------------

def test_secret_files_are_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "s"
        path.write_text("old", encoding="utf-8")
        os.chmod(path, 0o644)
        write_secret_file(path, "x" * 40)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").strip() == "x" * 40


def test_shared_secret_sources(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret_file(path, "f" * 20)
    toml = tmp_path / "d.toml"
    toml.write_text(f"[transport]\nshared_secret_file = '{path}'\n", encoding="utf-8")
    assert load_shared_secret(load_config(toml).transport, {}) == b"f" * 20
    toml.write_text("[transport]\nshared_secret_env = 'PRFAAS_T'\n", encoding="utf-8")
    cfg = load_config(toml)
    assert load_shared_secret(cfg.transport, {"PRFAAS_T": "e" * 16}) == b"e" * 16
    with pytest.raises(ConfigError, match="environment variable PRFAAS_T is not set"):
        load_shared_secret(cfg.transport, {})
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_shared_secret(cfg.transport, {"PRFAAS_T": "short"})
    with pytest.raises(ConfigError, match="no deployment secret"):
        load_shared_secret(default_config().transport, {})


def test_api_keys_and_admin_token_sources(tmp_path: Path) -> None:
    assert parse_api_keys("sk-1\n# comment\nsk-2, sk-3  # trailing\n\n") == ["sk-1", "sk-2", "sk-3"]
    keys = tmp_path / "keys"
    write_secret_file(keys, "sk-one\nsk-two")
    toml = tmp_path / "d.toml"
    toml.write_text(f"[gateway]\napi_keys_file = '{keys}'\nadmin_token_env = 'TOK'\n", encoding="utf-8")
    creds = load_gateway_credentials(load_config(toml).gateway, {"TOK": "t" * 32})
    assert len(creds.api_key_sha256s) == 2 and creds.admin_token_sha256 is not None
    assert "sk-one" not in repr(creds) and "t" * 32 not in repr(creds)
    none = load_gateway_credentials(default_config().gateway, {})
    assert none.admin_token_sha256 is None and none.api_key_sha256s == ()


def test_run_secrets_move_an_inline_secret_out_of_the_config(tmp_path: Path) -> None:
    toml = tmp_path / "d.toml"
    toml.write_text("[transport]\nshared_secret = 'inline-loopback-secret'\n", encoding="utf-8")
    cfg, run = prepare_run_secrets(load_config(toml), tmp_path / "run", ["sk-a"])
    assert cfg.transport.shared_secret is None and cfg.transport.shared_secret_file is not None
    assert load_shared_secret(cfg.transport, {}) == b"inline-loopback-secret"
    assert cfg.gateway.api_keys_file is not None and cfg.gateway.admin_token_file is not None
    assert run.admin_token is not None and run.admin_headers() == {"authorization": f"Bearer {run.admin_token}"}
    assert stat.S_IMODE(run.directory.stat().st_mode) == 0o700
    for path in run.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(("extra", "needle"), [
    ("", "transport: gateway on 0.0.0.0 listens beyond loopback: set [transport] shared_secret_file"),
    ("[transport]\nshared_secret = 'a-long-inline-secret'\n", "an inline secret is for loopback only"),
    ("[transport]\nshared_secret_env = 'A'\nshared_secret_file = '/x'\n", "not several"),
])
def test_a_deployment_beyond_loopback_needs_an_explicit_secret(tmp_path: Path, extra: str, needle: str) -> None:
    toml = tmp_path / "d.toml"
    toml.write_text("[gateway]\nhost = '0.0.0.0'\n" + extra, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_secret_from_the_environment_is_enough_beyond_loopback(tmp_path: Path) -> None:
    toml = tmp_path / "d.toml"
    toml.write_text("[gateway]\nhost = '10.0.0.1'\n[transport]\nshared_secret_env = 'PRFAAS_SECRET'\n",
                    encoding="utf-8")
    assert load_config(toml).gateway.host == "10.0.0.1"


# --- which gateway path needs which bearer token (`serve.gateway_auth`) ----------------------------

def _gateway_auth(admin: str | None, keys: tuple[str, ...], metrics_need_admin_token: bool) -> GatewayAuth:
    section = msgspec.structs.replace(default_config().gateway, metrics_need_admin_token=metrics_need_admin_token)
    creds = GatewayCredentials(token_digest(admin) if admin else None, tuple(token_digest(k) for k in keys))
    return GatewayAuth(section, creds, ControlAuth(SECRET, RefusalRecorder()))


@pytest.mark.parametrize(("admin", "keys", "protect", "path", "authorization", "expected"), [
    ("a" * 20, (), False, "/admin/cluster", None, (401, RefusalReason.MISSING)),
    ("a" * 20, (), False, "/admin/cluster", "Bearer " + "b" * 20, (401, RefusalReason.BAD_TOKEN)),
    ("a" * 20, (), False, "/admin/cluster", "Basic " + "a" * 20, (401, RefusalReason.MISSING)),
    ("a" * 20, (), False, "/admin/cluster", "bearer " + "a" * 20, None),
    (None, (), False, "/admin/policy", "Bearer " + "a" * 20, (403, RefusalReason.ADMIN_DISABLED)),
    ("a" * 20, (), False, "/v1/completions", None, None),  # no keys: open
    ("a" * 20, ("k1", "k2"), False, "/v1/completions", "Bearer k2", None),
    ("a" * 20, ("k1",), False, "/v1/models", "Bearer " + "a" * 20, (401, RefusalReason.BAD_TOKEN)),
    ("a" * 20, ("k1",), False, "/metrics", None, None),
    ("a" * 20, ("k1",), True, "/metrics", None, (401, RefusalReason.MISSING)),
    ("a" * 20, ("k1",), True, "/metrics", "Bearer " + "a" * 20, None),
    ("a" * 20, ("k1",), True, "/health", None, None),
    ("a" * 20, ("k1",), True, "/internal/register", None, None),  # signatures, checked in the route
])
def test_gateway_paths_and_their_tokens(admin: str | None, keys: tuple[str, ...], protect: bool, path: str,
                                        authorization: str | None,
                                        expected: tuple[int, RefusalReason] | None) -> None:
    refusal = _gateway_auth(admin, keys, protect).check(path, authorization)
    assert (None if refusal is None else (refusal.status, refusal.reason)) == expected
