"""Chunk checksums and the whole-transfer digest.

A chunk checksum is a 64-bit integer over the chunk's payload bytes (xxh3_64, or crc32 widened).
The whole-transfer digest is BLAKE2b-128 over the ordered list `(seq, chunk checksum)` of every
chunk: sender and receiver compute it independently (the sender from what it sent, the receiver
from what it verified), so a lost, duplicated or misplaced chunk changes it even though chunks
arrive out of order over several connections. Both hash functions release the GIL on large inputs.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable

import xxhash

from prfaas.transport.config import ChecksumKind

TRANSFER_DIGEST_BYTES = 16
_SEQ_SUM = struct.Struct("<IQ")


def chunk_checksum(kind: ChecksumKind, data: memoryview) -> int:
    """Checksum of one chunk's payload as an unsigned 64-bit integer."""
    if kind is ChecksumKind.XXH3_64:
        return int(xxhash.xxh3_64_intdigest(data))
    if kind is ChecksumKind.CRC32:
        return zlib.crc32(data)
    raise ValueError(f"unknown checksum kind {kind!r}")


class RunningChecksum:
    """The same checksum as `chunk_checksum`, fed piece by piece (e.g. as bytes arrive, cache-hot)."""

    def __init__(self, kind: ChecksumKind) -> None:
        self.kind = kind
        self._xxh = xxhash.xxh3_64() if kind is ChecksumKind.XXH3_64 else None
        self._crc = 0

    def update(self, data: memoryview) -> None:
        if self._xxh is not None:
            self._xxh.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def value(self) -> int:
        return int(self._xxh.intdigest()) if self._xxh is not None else self._crc


def transfer_digest(checksums: Iterable[int]) -> bytes:
    """Digest over the ordered chunk checksums (index = chunk seq)."""
    h = hashlib.blake2b(digest_size=TRANSFER_DIGEST_BYTES)
    for seq, value in enumerate(checksums):
        h.update(_SEQ_SUM.pack(seq, value))
    return h.digest()
