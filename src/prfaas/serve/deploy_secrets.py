"""The deployment's secrets: read at process start from where the config says, written only to 0600 files.

    secret = load_shared_secret(cfg.transport, os.environ)     # bytes; ConfigError (one line) if absent or short
    auth = load_gateway_credentials(cfg.gateway, os.environ)   # admin token (or None) and API keys
    cfg, run = prepare_run_secrets(cfg, run_dir, api_keys)     # `prfaas up` / Launcher: fresh secrets per run

The config holds only *references* (`shared_secret_file`, `shared_secret_env`, `admin_token_file`, ...), so the
resolved config.json of a run carries no secret. An inline `[transport] shared_secret` (loopback only, see
`serve.config.validate_secret_sources`) is moved into the run's secret file by the launcher. Files are created
with `os.open(..., 0o600)` (never chmod-ed after), in a 0700 directory; a secret file other users can read is
used, with a warning. Nothing here logs a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.core.errors import ConfigError
from prfaas.serve.config import MIN_SECRET_CHARS, DeployConfig, GatewaySection, NodeSection, TransportSection

_log = logging.getLogger(__name__)
TOKEN_BYTES = 32
SECRETS_DIR = "secrets"
TRANSPORT_SECRET_FILE = "transport.secret"
ADMIN_TOKEN_FILE = "admin.token"
API_KEYS_FILE = "api_keys"


def new_token() -> str:
    """A fresh random secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def write_secret_file(path: Path, text: str) -> None:
    """Create `path` holding `text`, mode 0600 from the start (an existing file is replaced, links not followed)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def make_secret_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # NOTE(secrets): a directory left by an earlier run may have other bits
    return path


def _read_file(key: str, path: str) -> str:
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{key}: cannot read {path}: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warning("%s: %s is accessible to other users (mode %o); chmod 600 it", key, path, mode & 0o777)
    return text


def _read_env(key: str, name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if not value:
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return value


def load_vllm_api_key(node: NodeSection, environ: Mapping[str, str]) -> str | None:
    """A vLLM node's `--api-key` (None: its vLLM takes calls without one)."""
    key = f"nodes.{node.name}"
    if node.vllm_api_key_file is not None:
        return _read_file(f"{key}.vllm_api_key_file", node.vllm_api_key_file).strip() or None
    if node.vllm_api_key_env is not None:
        return _read_env(f"{key}.vllm_api_key_env", node.vllm_api_key_env, environ).strip()
    return None


def load_shared_secret(t: TransportSection, environ: Mapping[str, str]) -> bytes:
    """The deployment secret from the one source the config names."""
    if t.shared_secret_file is not None:
        key, value = "transport.shared_secret_file", _read_file("transport.shared_secret_file", t.shared_secret_file)
    elif t.shared_secret_env is not None:
        key, value = "transport.shared_secret_env", _read_env("transport.shared_secret_env", t.shared_secret_env,
                                                              environ)
    elif t.shared_secret is not None:
        key, value = "transport.shared_secret", t.shared_secret
    else:
        raise ConfigError("no deployment secret: set [transport] shared_secret_file (mode 0600) or "
                          "shared_secret_env (`prfaas up` makes one per run)")
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{key}: the secret must have at least {MIN_SECRET_CHARS} characters")
    return value.encode()


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """What the gateway checks bearer tokens against (SHA-256 digests, compared in constant time)."""

    admin_token_sha256: bytes | None
    api_key_sha256s: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"GatewayCredentials(admin={self.admin_token_sha256 is not None}, api_keys={len(self.api_key_sha256s)})"


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_api_keys(text: str) -> list[str]:
    """Keys separated by newlines, commas or spaces; '#' comments out the rest of a line."""
    return [key for line in text.splitlines() for key in re.split(r"[,\s]+", line.split("#", 1)[0]) if key]


def load_gateway_credentials(g: GatewaySection, environ: Mapping[str, str]) -> GatewayCredentials:
    admin: str | None = None
    if g.admin_token_file is not None:
        admin = _read_file("gateway.admin_token_file", g.admin_token_file).strip()
    elif g.admin_token_env is not None:
        admin = _read_env("gateway.admin_token_env", g.admin_token_env, environ).strip()
    if admin is not None and len(admin) < MIN_SECRET_CHARS:
        raise ConfigError(f"gateway.admin_token: the token must have at least {MIN_SECRET_CHARS} characters")
    keys: list[str] = []
    if g.api_keys_file is not None:
        keys = parse_api_keys(_read_file("gateway.api_keys_file", g.api_keys_file))
    elif g.api_keys_env is not None:
        keys = parse_api_keys(_read_env("gateway.api_keys_env", g.api_keys_env, environ))
    if (g.api_keys_file or g.api_keys_env) and not keys:
        raise ConfigError("gateway.api_keys: the source names no key (remove it to leave the API open)")
    return GatewayCredentials(token_digest(admin) if admin else None, tuple(token_digest(k) for k in keys))


@dataclass(frozen=True, slots=True)
class RunSecrets:
    """What a launcher made or found for one run (tests and benchmarks use the admin token)."""

    directory: Path
    admin_token: str | None

    def __repr__(self) -> str:
        return f"RunSecrets(directory={str(self.directory)!r})"

    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}


def prepare_run_secrets(cfg: DeployConfig, run_dir: Path, api_keys: Iterable[str] = (),
                        environ: Mapping[str, str] | None = None) -> tuple[DeployConfig, RunSecrets]:
    """Give the run a deployment secret and an admin token where the config names none (fresh random ones,
    or the inline loopback secret moved out of the config), write `api_keys` if any, all under
    run_dir/secrets/ (0700, files 0600); return the config that references them and what was made."""
    environ = os.environ if environ is None else environ
    directory = make_secret_dir(run_dir.resolve() / SECRETS_DIR)
    transport, gateway = cfg.transport, cfg.gateway
    if transport.shared_secret_file is None and transport.shared_secret_env is None:
        path = directory / TRANSPORT_SECRET_FILE
        write_secret_file(path, transport.shared_secret or new_token())
        transport = msgspec.structs.replace(transport, shared_secret=None, shared_secret_file=str(path))
    if gateway.admin_token_file is None and gateway.admin_token_env is None:
        path = directory / ADMIN_TOKEN_FILE
        write_secret_file(path, new_token())
        gateway = msgspec.structs.replace(gateway, admin_token_file=str(path))
    keys = list(api_keys)
    if keys:
        if gateway.api_keys_file is not None or gateway.api_keys_env is not None:
            raise ConfigError("give API keys on the command line or in [gateway] api_keys_*, not both")
        path = directory / API_KEYS_FILE
        write_secret_file(path, "\n".join(keys))
        gateway = msgspec.structs.replace(gateway, api_keys_file=str(path))
    admin = None
    if gateway.admin_token_file is not None:
        admin = _read_file("gateway.admin_token_file", gateway.admin_token_file).strip()
    elif gateway.admin_token_env is not None:
        admin = environ.get(gateway.admin_token_env, "").strip() or None
    return msgspec.structs.replace(cfg, transport=transport, gateway=gateway), RunSecrets(directory, admin)
