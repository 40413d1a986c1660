"""Control-plane messages between the gateway and the nodes: msgspec Structs with a `type` tag and a version.

Direction and endpoint (all JSON over HTTP on the node's / gateway's control port):

    node -> gateway   POST /internal/register    NodeRegister          -> RegisterReply
    node -> gateway   POST /internal/heartbeat   Heartbeat             -> HeartbeatReply
    gateway -> node   POST /prefill              PrefillRequest        -> PrefillReply | ErrorReply
    gateway -> node   POST /decode               DecodeRequest         -> NDJSON stream of TokenChunk
    gateway -> node   POST /role                 RoleSwitch            -> RoleSwitchReply (after draining)
    gateway -> node   POST /abort                AbortRequest          -> AbortReply

Never bare dicts across processes: `encode(msg)` / `decode(data, Type)` are the only (de)serialisers.
A message with another `version` is rejected with `ProtocolVersionError`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import Struct

from prfaas.core.errors import PrfaasError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot

PROTOCOL_VERSION = 1
T = TypeVar("T")


class ProtocolVersionError(PrfaasError):
    """A peer speaks another control-protocol version, or sent a malformed message."""


class Message(Struct, frozen=True, kw_only=True, tag_field="type"):
    version: int = PROTOCOL_VERSION


class NodeRegister(Message, frozen=True, kw_only=True, tag="register"):
    name: str
    cluster: ClusterKind
    role: Role
    control_url: str
    kv_host: str
    kv_port: int
    max_batch: int
    pid: int
    max_context_tokens: int
    # S_kv(l) of the node's model at a few lengths (tokens, bytes): the gateway's policy sizes link budgets with it
    state_bytes_points: list[tuple[int, int]] = msgspec.field(default_factory=list)
    # "prfaas": our engine; "vllm": an adapter in front of a vLLM instance (`serve.vllm_node`): its /decode needs
    # the prompt's tokens (DecodeRequest.prompt_token_ids), since vLLM decodes from prompt + first token
    engine: str = "prfaas"


class RegisterReply(Message, frozen=True, kw_only=True, tag="register_reply"):
    accepted: bool


class Heartbeat(Message, frozen=True, kw_only=True, tag="heartbeat"):
    name: str
    role: Role
    queued_requests: int = 0  # prefills waiting (prefill roles) + decode admissions waiting
    queued_tokens: int = 0
    running_batch: int = 0
    in_flight: int = 0  # requests the node has accepted and not finished (drain waits for 0)
    free_kv_bytes: int | None = None
    busy_s_total: float = 0.0  # model-thread busy time since start (for utilisation)
    prefill_tokens_total: int = 0
    links: list[LinkSnapshot] = msgspec.field(default_factory=list)
    # prefix-cache report (`serve.cache_report`): cache_seq 0 = the node reports no prefix cache
    cache_seq: int = 0
    cache_full: bool = False  # cache_added is every block held (replaces the gateway's copy)
    cache_added: list[int] = msgspec.field(default_factory=list)  # block hashes (`core.blocks`)
    cache_removed: list[int] = msgspec.field(default_factory=list)


class HeartbeatReply(Message, frozen=True, kw_only=True, tag="heartbeat_reply"):
    known: bool  # False: the gateway forgot the node (restart); the node registers again
    cache_resync: bool = False  # the gateway could not apply the cache report: send a full one next


class SamplingMsg(Struct, frozen=True, kw_only=True):
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_strings: tuple[str, ...] = ()
    ignore_eos: bool = False


class DecodeTarget(Struct, frozen=True, kw_only=True):
    name: str
    kv_host: str
    kv_port: int
    # prompt tokens the gateway's KV-cache index says the decode node holds (vLLM nodes: only the rest need cross)
    cached_tokens: int = 0


class PrefillRequest(Message, frozen=True, kw_only=True, tag="prefill"):
    request_id: str  # unique per attempt
    token_ids: list[int]
    sampling: SamplingMsg
    decode_target: DecodeTarget  # the node that will decode; itself for a colocated request
    route: str  # RouteReason value (for logs)
    debug_stall_s: float = 0.0  # test hook: stall after the first layer is handed to the transport
    # admission control: seconds (from the node's receipt) within which the prefill must start, else it is
    # dropped from the queue and answered with ErrorReply kind "shed" (503); None: no deadline
    start_within_s: float | None = None
    # the PD region of the gateway that sent it (`[topology]` deployments): the node starts its queued prefills in
    # weighted fair order across regions (`serve.worker`); None (one gateway, no topology): FIFO
    region: str | None = None
    # that region's offered-load ratio now (`policy.region_load`): the node's fair queue compares it with the running
    # prefill's region's before pausing one for the other; 1.0 (neutral) without a topology
    region_load: float = 1.0


class PrefillReply(Message, frozen=True, kw_only=True, tag="prefill_reply"):
    request_id: str
    first_token: int
    num_prompt_tokens: int
    num_cached_tokens: int
    queue_s: float
    prefill_s: float
    transfer_bytes: int
    transfer_s: float | None  # None when the state stayed on this node (colocated)
    # the request ended with its first token ("stop": an end-of-sequence token; a vLLM node knows it from vLLM's
    # finish reason, it holds no tokenizer); None: decode goes on (or max_tokens says it ends)
    finish_reason: str | None = None
    skip_tokens: int = 0  # vLLM nodes: prompt positions not sent (the decode node holds them)


class DecodeRequest(Message, frozen=True, kw_only=True, tag="decode"):
    request_id: str  # the id the state arrived (or was kept) under
    first_token: int
    num_prompt_tokens: int
    sampling: SamplingMsg
    state_wait_s: float = 30.0
    prompt_token_ids: list[int] | None = None  # filled only for nodes that registered engine "vllm"
    skip_tokens: int = 0  # vLLM nodes: the prefill sent positions from here on (PrefillReply.skip_tokens)


class TokenChunk(Message, frozen=True, kw_only=True, tag="tokens"):
    """Tokens 1.. of a request (token 0 came with the prefill reply). The last chunk has `finish_reason`."""

    request_id: str
    token_ids: list[int]
    finish_reason: str | None = None
    error: str | None = None


class RoleSwitch(Message, frozen=True, kw_only=True, tag="role_switch"):
    role: Role
    drain_timeout_s: float = 120.0


class RoleSwitchReply(Message, frozen=True, kw_only=True, tag="role_switch_reply"):
    name: str
    role: Role
    drained_s: float


class AbortRequest(Message, frozen=True, kw_only=True, tag="abort"):
    request_id: str


class AbortReply(Message, frozen=True, kw_only=True, tag="abort_reply"):
    found: bool


class ErrorReply(Message, frozen=True, kw_only=True, tag="error"):
    kind: str  # "bad_request" | "engine" | "transfer" | "unavailable" | "shed" (start deadline passed)
    message: str


_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(message: Message) -> bytes:
    return _ENCODER.encode(message)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode and validate one message of `kind`; `ProtocolVersionError` on any mismatch."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        message = decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolVersionError(f"malformed {kind.__name__}: {exc}") from None
    if getattr(message, "version", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ProtocolVersionError(f"{kind.__name__} version {message.version}, expected {PROTOCOL_VERSION}")
    return message


class NodeTables(Message, frozen=True, kw_only=True, tag="node_tables"):
    """GET /tables on a node: every per-request table (a leak check: all back to 0 once nothing is in flight)."""

    name: str
    live_attempts: int
    queued_jobs: int
    waiting_admissions: int
    running_batch: int
    decode_streams: int
    inbox_states: int
    inbox_bytes: int
    waiting_admission_bytes: int
    pending_allocations: int
    receiver_budget_used_bytes: int
    queued_tokens: int
    in_flight: int
    prefills_cancelled_total: int
    decodes_cancelled_total: int
    prefill_preemptions_total: int = 0  # prefills started nested in another region's (serve.worker preemption)
    # (request, attempt, start_s, end_s) of the last prefills run, `time.monotonic` (system-wide on Linux)
    prefill_spans: list[tuple[str, int, float, float | None]] = msgspec.field(default_factory=list)
