"""The `kv_transfer_params` contract between the prfaas gateway and the prfaas connector inside vLLM (pure).

A forced or routed P/D request is two OpenAI calls:

1. prefill instance: the prompt, `max_tokens: 1`, `kv_transfer_params: {"prfaas": SendParams}`. While vLLM
   computes the prompt, the connector streams each finished layer (and linear/SSM state) to the decode
   instance's receiver at `peer`, under `transfer_id`. Only positions `>= skip_tokens` cross (the decode side
   already holds the prefix before them). The response's first token is token 0 of the completion.
2. decode instance: prompt + token 0, `kv_transfer_params: {"prfaas": RecvParams}`. The connector loads the
   `num_tokens` prompt positions from the transfer into vLLM's own blocks and state slots; vLLM computes only
   token 0's position and generates from there (never the prompt again). A transfer that fails, is corrupt or
   does not arrive in `wait_s` is reported to vLLM as a failed load: vLLM recomputes the prompt or fails the
   request, per its `kv_load_failure_policy` (never output from bad state).
"""

from __future__ import annotations

from typing import Any

import msgspec

PARAMS_KEY = "prfaas"
PARAMS_VERSION = 1
MAX_TRANSFER_ID_CHARS = 128


class SendParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Prefill side: stream the prompt's state to `peer_host:peer_port`."""

    transfer_id: str
    peer_host: str
    peer_port: int
    skip_tokens: int = 0  # positions [0, skip_tokens) are held by the decode side and not sent
    version: int = PARAMS_VERSION
    kind: str = "send"


class RecvParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Decode side: the prompt's first `num_tokens` positions arrive under `transfer_id`."""

    transfer_id: str
    num_tokens: int
    skip_tokens: int = 0
    wait_s: float = 60.0  # how long the load may wait for the transfer before it counts as failed
    version: int = PARAMS_VERSION
    kind: str = "recv"


class ParamsError(ValueError):
    """`kv_transfer_params["prfaas"]` is malformed: the request is refused, nothing is sent or loaded."""


def _check_common(transfer_id: str, skip_tokens: int, version: int) -> None:
    if version != PARAMS_VERSION:
        raise ParamsError(f"prfaas kv_transfer_params version {version} is not {PARAMS_VERSION}")
    if not transfer_id or len(transfer_id) > MAX_TRANSFER_ID_CHARS or not transfer_id.isprintable():
        raise ParamsError(f"prfaas transfer_id must be 1..{MAX_TRANSFER_ID_CHARS} printable characters")
    if skip_tokens < 0:
        raise ParamsError("prfaas skip_tokens must be >= 0")


def parse(params: dict[str, Any] | None) -> SendParams | RecvParams | None:
    """The prfaas part of a request's `kv_transfer_params`, validated; None when the request has none."""
    if not params or PARAMS_KEY not in params:
        return None
    raw = params[PARAMS_KEY]
    if not isinstance(raw, dict):
        raise ParamsError("kv_transfer_params.prfaas must be an object")
    kind = raw.get("kind")
    cls: type[SendParams] | type[RecvParams]
    if kind == "send":
        cls = SendParams
    elif kind == "recv":
        cls = RecvParams
    else:
        raise ParamsError(f"kv_transfer_params.prfaas.kind must be 'send' or 'recv', got {kind!r}")
    try:
        parsed = msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        raise ParamsError(f"kv_transfer_params.prfaas: {exc}") from None
    _check_common(parsed.transfer_id, parsed.skip_tokens, parsed.version)
    if isinstance(parsed, SendParams) and not 0 < parsed.peer_port < 65536:
        raise ParamsError("prfaas peer_port must be in 1..65535")
    if isinstance(parsed, RecvParams):
        if parsed.num_tokens <= 0 or parsed.skip_tokens > parsed.num_tokens:
            raise ParamsError("prfaas num_tokens must be > 0 and >= skip_tokens")
        if not parsed.wait_s > 0:
            raise ParamsError("prfaas wait_s must be > 0")
    return parsed


def to_params(p: SendParams | RecvParams) -> dict[str, Any]:
    """The `kv_transfer_params` object to put in an OpenAI request body."""
    return {PARAMS_KEY: msgspec.to_builtins(p)}
