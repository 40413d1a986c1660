"""Shared-secret HMAC challenge-response (pure functions, no I/O).

Handshake at connection start, before any other frame is accepted:

    sender (client)                        receiver (server)
    HELLO(client_nonce, name, session) ->
                                       <- CHALLENGE(server_nonce, server_proof)
    [checks server_proof]
    AUTH(client_proof)                 ->
                                          [checks client_proof]
                                       <- AUTH_OK(max_chunk_bytes)

    server_proof = HMAC-SHA256(secret, "prfaas-kv/v1/server" || client_nonce || server_nonce)
    client_proof = HMAC-SHA256(secret, "prfaas-kv/v1/client" || client_nonce || server_nonce)

Both sides prove knowledge of the secret with fresh nonces, so a recorded handshake cannot be
replayed. The proofs are domain-separated, so one cannot be reflected as the other.
"""

from __future__ import annotations

import hashlib
import hmac
import os

NONCE_BYTES = 32
PROOF_BYTES = 32
_SERVER_LABEL = b"prfaas-kv/v1/server"
_CLIENT_LABEL = b"prfaas-kv/v1/client"


def make_nonce() -> bytes:
    """A fresh random nonce."""
    return os.urandom(NONCE_BYTES)


def server_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, _SERVER_LABEL + client_nonce + server_nonce, hashlib.sha256).digest()


def client_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, _CLIENT_LABEL + client_nonce + server_nonce, hashlib.sha256).digest()


def proofs_match(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected, received)
