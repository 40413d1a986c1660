"""The connector's settings, from vLLM's ``kv_connector_extra_config`` (validated once, clear errors)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.transport.config import MIN_SECRET_BYTES

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
SECRET_ENV = "PRFAAS_KV_SECRET"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    node_name: str
    kv_host: str  # where this instance receives state (decode side)
    kv_port: int
    telemetry_host: str
    telemetry_port: int  # 0: no telemetry endpoint
    shared_secret: bytes
    connections_per_peer: int
    chunk_bytes: int
    pace_gbps: float | None
    staged_ttl_s: float

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> ConnectorSettings:
        known = {"node_name", "kv_host", "kv_port", "telemetry_host", "telemetry_port", "secret_file", "secret_env",
                 "secret", "connections_per_peer", "chunk_bytes", "pace_gbps", "staged_ttl_s"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise SettingsError(f"prfaas connector: unknown kv_connector_extra_config keys {unknown}; "
                                f"known {sorted(known)}")
        kv_host = str(extra.get("kv_host", "127.0.0.1"))
        secret = _secret(extra, kv_host)
        settings = cls(
            node_name=str(extra.get("node_name", f"vllm-{os.getpid()}")),
            kv_host=kv_host,
            kv_port=_int(extra, "kv_port", 0, 0, 65535),
            telemetry_host=str(extra.get("telemetry_host", "127.0.0.1")),
            telemetry_port=_int(extra, "telemetry_port", 0, 0, 65535),
            shared_secret=secret,
            connections_per_peer=_int(extra, "connections_per_peer", 4, 1, 64),
            chunk_bytes=_int(extra, "chunk_bytes", 1 << 20, 1024, 64 << 20),
            pace_gbps=float(extra["pace_gbps"]) if extra.get("pace_gbps") else None,
            staged_ttl_s=float(extra.get("staged_ttl_s", 300.0)),
        )
        if settings.pace_gbps is not None and settings.pace_gbps <= 0:
            raise SettingsError("prfaas connector: pace_gbps must be > 0")
        return settings


def _int(extra: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = extra.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise SettingsError(f"prfaas connector: {key} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _secret(extra: dict[str, Any], kv_host: str) -> bytes:
    """The KV links' shared secret: a file or an environment variable; inline only when receiving on loopback."""
    if extra.get("secret_file"):
        path = Path(str(extra["secret_file"]))
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise SettingsError(f"prfaas connector: cannot read secret_file {path}: {exc.strerror}") from None
    elif os.environ.get(str(extra.get("secret_env", SECRET_ENV))):
        data = os.environ[str(extra.get("secret_env", SECRET_ENV))].encode()
    elif extra.get("secret"):
        if kv_host not in _LOOPBACK:
            raise SettingsError("prfaas connector: an inline secret is refused when kv_host is not loopback; "
                                "use secret_file or secret_env")
        data = str(extra["secret"]).encode()
    else:
        raise SettingsError(f"prfaas connector: no KV secret: set secret_file, or the {SECRET_ENV} environment "
                            "variable (there is no default secret)")
    if len(data) < MIN_SECRET_BYTES:
        raise SettingsError(f"prfaas connector: the KV secret must be at least {MIN_SECRET_BYTES} bytes")
    return data
