"""Prefix blocks: the one hash chain the gateway's KV-cache index, the engine's prefix cache pool and the
simulator share, so a block hash means the same prefix everywhere.

Block i covers tokens [512*i, 512*(i+1)); hash_i = H(hash_{i-1} || tokens of block i), so two prompts share
hash_i exactly when they share their first (i+1) blocks (as the Mooncake traces' `hash_ids`).
H is BLAKE2b with an 8-byte digest read as an unsigned little-endian int.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

BLOCK_TOKENS = 512


def block_hash_chain(tokens: Sequence[int], block_tokens: int = BLOCK_TOKENS, *,
                     include_partial: bool = True) -> tuple[int, ...]:
    """Hash chain over the prompt's blocks; the last, partial block is included unless `include_partial` is off."""
    if block_tokens < 1:
        raise ValueError("block_tokens must be >= 1")
    end = len(tokens) if include_partial else len(tokens) - len(tokens) % block_tokens
    hashes: list[int] = []
    parent = b""
    for start in range(0, end, block_tokens):
        block = tokens[start:start + block_tokens]
        digest = hashlib.blake2b(parent, digest_size=8)
        digest.update(b"".join(int(t).to_bytes(4, "little", signed=False) for t in block))
        parent = digest.digest()
        hashes.append(int.from_bytes(parent, "little"))
    return tuple(hashes)
