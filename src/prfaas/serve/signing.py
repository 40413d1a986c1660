"""Control-plane request signing between the gateway and the nodes (pure functions, no I/O, no clock).

Every control call (gateway -> node: /prefill /decode /role /abort; node -> gateway: /internal/register,
/internal/heartbeat) carries three headers, and every answer one:

    x-prfaas-timestamp   integer seconds since the epoch, the signer's clock
    x-prfaas-nonce       32 hex digits, fresh per request
    x-prfaas-signature   hex HMAC-SHA256(control_key, REQUEST_LABEL, audience, method, path, timestamp, nonce,
                                         SHA-256(body))
    x-prfaas-reply-signature   (on the answer) hex HMAC-SHA256(control_key, REPLY_LABEL, nonce, status)

    control_key = HMAC-SHA256(shared_secret, "prfaas-control/v1/key")

The KV transport proves the same shared secret with HMACs labelled "prfaas-kv/v1/..." over fresh nonces
(`transport.auth`); the control plane signs with a key derived under its own label, so no MAC of one can
stand for the other. Fields are length-prefixed, so no two field lists encode alike.

`audience` names the receiver as the signer addresses it: "host:port" of the URL it calls (the node's
registered control URL, or the gateway's configured address). A request signed for one node does not verify
at another. A receiver accepts a timestamp within +-`window_s` of its clock and each nonce once within that
window (`NonceCache`, bounded, checked only after the signature verified, so unsigned junk cannot fill it).
The reply signature binds the answer's status to the request's nonce: whoever answers knows the key (the
body of a streamed answer rides the same connection; against an on-path attacker that is TLS's job).

All nodes and the gateway share one key: it authenticates membership of the deployment, not which member.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

CONTROL_KEY_LABEL = b"prfaas-control/v1/key"
REQUEST_LABEL = b"prfaas-control/v1/request"
REPLY_LABEL = b"prfaas-control/v1/reply"
HEADER_TIMESTAMP = "x-prfaas-timestamp"
HEADER_NONCE = "x-prfaas-nonce"
HEADER_SIGNATURE = "x-prfaas-signature"
HEADER_REPLY_SIGNATURE = "x-prfaas-reply-signature"
NONCE_BYTES = 16
DEFAULT_WINDOW_S = 30.0
DEFAULT_MAX_NONCES = 65536
_SIGNATURE_HEX_CHARS = 64


class RefusalReason(enum.Enum):
    """Why a credential was refused (the `reason` label of `prfaas_auth_refused_total`)."""

    MISSING = "missing"  # no credentials at all
    MALFORMED = "malformed"  # headers present but not parseable
    STALE = "stale"  # timestamp outside the window
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"  # a nonce seen before within the window
    REPLAY_CACHE_FULL = "replay_cache_full"  # fail closed rather than forget a nonce inside its window
    BAD_TOKEN = "bad_token"  # a bearer token that is not the admin token / an API key
    ADMIN_DISABLED = "admin_disabled"  # no admin token configured: /admin/* is closed


class SignatureRefused(Exception):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def derive_control_key(shared_secret: bytes) -> bytes:
    return hmac.new(shared_secret, CONTROL_KEY_LABEL, hashlib.sha256).digest()


def _fields(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def request_signature(key: bytes, *, audience: str, method: str, path: str, timestamp: str, nonce: str,
                      body: bytes) -> str:
    message = _fields(REQUEST_LABEL, audience.encode(), method.upper().encode(), path.encode(), timestamp.encode(),
                      nonce.encode(), hashlib.sha256(body).digest())
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def reply_signature(key: bytes, *, nonce: str, status: int) -> str:
    return hmac.new(key, _fields(REPLY_LABEL, nonce.encode(), str(status).encode()), hashlib.sha256).hexdigest()


def sign_request(key: bytes, *, audience: str, method: str, path: str, body: bytes, now_s: float,
                 nonce: bytes) -> dict[str, str]:
    """The three request headers (`nonce`: NONCE_BYTES fresh random bytes from the caller)."""
    timestamp, nonce_hex = str(int(now_s)), nonce.hex()
    signature = request_signature(key, audience=audience, method=method, path=path, timestamp=timestamp,
                                  nonce=nonce_hex, body=body)
    return {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce_hex, HEADER_SIGNATURE: signature}


def is_reply_authentic(key: bytes, *, nonce: str, status: int, header: str | None) -> bool:
    if header is None:
        return False
    return hmac.compare_digest(reply_signature(key, nonce=nonce, status=status), header)


class NonceCache:
    """Nonces seen within the window (bounded): `admit` is False for a nonce already seen."""

    def __init__(self, window_s: float, max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        self.window_s = window_s
        self.max_nonces = max_nonces
        self._expiry_s: OrderedDict[str, float] = OrderedDict()  # insertion order ~ expiry order

    def __len__(self) -> int:
        return len(self._expiry_s)

    def _expire(self, now_s: float) -> None:
        while self._expiry_s:
            nonce, expiry_s = next(iter(self._expiry_s.items()))
            if expiry_s >= now_s:
                return
            del self._expiry_s[nonce]

    def admit(self, nonce: str, timestamp_s: float, now_s: float) -> None:
        self._expire(now_s)
        if nonce in self._expiry_s:
            raise SignatureRefused(RefusalReason.REPLAYED, "this request was seen before (replay)")
        if len(self._expiry_s) >= self.max_nonces:
            raise SignatureRefused(RefusalReason.REPLAY_CACHE_FULL, "too many signed requests in the window")
        # NOTE(signing): kept until the timestamp leaves the window on either side of the clock
        self._expiry_s[nonce] = max(timestamp_s, now_s) + self.window_s


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    timestamp_s: int
    nonce: str
    signature: str


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    raw = [headers.get(h) for h in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)]
    if all(v is None for v in raw):
        raise SignatureRefused(RefusalReason.MISSING, "unsigned control request")
    timestamp, nonce, signature = raw
    if timestamp is None or nonce is None or signature is None:
        raise SignatureRefused(RefusalReason.MALFORMED, "incomplete signature headers")
    if not timestamp.isdigit() or len(nonce) != 2 * NONCE_BYTES or len(signature) != _SIGNATURE_HEX_CHARS:
        raise SignatureRefused(RefusalReason.MALFORMED, "malformed signature headers")
    return SignedHeaders(int(timestamp), nonce, signature)


class RequestVerifier:
    """The receiving side: one per receiver (its own audience), holding its nonce cache."""

    def __init__(self, key: bytes, audience: str, *, window_s: float = DEFAULT_WINDOW_S,
                 max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        self.key = key
        self.audience = audience
        self.window_s = window_s
        self.nonces = NonceCache(window_s, max_nonces)

    def precheck(self, headers: Mapping[str, str], now_s: float) -> SignedHeaders:
        """What can be refused before the body is read: missing, malformed or stale headers."""
        signed = parse_headers(headers)
        if abs(signed.timestamp_s - now_s) > self.window_s:
            raise SignatureRefused(RefusalReason.STALE, f"timestamp outside +-{self.window_s:g}s of this clock")
        return signed

    def verify(self, *, method: str, path: str, headers: Mapping[str, str], body: bytes,
               now_s: float) -> SignedHeaders:
        """The parsed headers of an authentic, fresh, first-seen request; SignatureRefused otherwise."""
        signed = self.precheck(headers, now_s)
        expected = request_signature(self.key, audience=self.audience, method=method, path=path,
                                     timestamp=str(signed.timestamp_s), nonce=signed.nonce, body=body)
        if not hmac.compare_digest(expected, signed.signature.lower()):
            raise SignatureRefused(RefusalReason.BAD_SIGNATURE, "bad control-plane signature")
        self.nonces.admit(signed.nonce, signed.timestamp_s, now_s)
        return signed
