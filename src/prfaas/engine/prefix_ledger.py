"""Bookkeeping of the hybrid prefix cache pool (the paper's Fig. 4): pure, no tensors, no torch.

One byte budget is shared by two kinds of holdings:

    prefix blocks    full-attention KV of one 512-token block, keyed by a hash chain over the prompt's tokens;
                     reusable across requests; LRU-evicted (leaves first) when unreferenced. A block may carry a
                     snapshot of the linear/sliding-window state at its end boundary: those states are request-level,
                     so a prefix is resumable only at a block whose snapshot was kept.
    transfer holds   a finished prefill's whole state, held until the transfer to the decode node is acknowledged,
                     then freed. Never evicted.

Lifecycle: `match` (read, touches LRU) -> `lock` during the prefill that reuses the blocks -> `unlock`; `insert_block`
/ `attach_snapshot` after a prefill; `hold_transfer` -> `release_transfer` on ack. Methods that make room return
the hashes they evicted so the tensor storage can drop them. `leaks()` lists anything still locked or held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prfaas.core.blocks import BLOCK_TOKENS, block_hash_chain
from prfaas.engine.errors import DuplicateRequestError, PoolExhaustedError, UnknownRequestError


def block_hashes(tokens: Sequence[int], block_tokens: int = BLOCK_TOKENS) -> list[str]:
    """Hash chain over the complete blocks of `tokens` (`core.blocks`, the chain the gateway's KV index uses),
    as hex strings: hash_i covers tokens[: (i + 1) * block_tokens]."""
    return [format(h, "016x") for h in block_hash_chain(tokens, block_tokens, include_partial=False)]


@dataclass(slots=True)
class _Block:
    block_hash: str
    parent_hash: str | None
    kv_bytes: int
    snapshot_bytes: int = 0
    refcount: int = 0
    last_used: int = 0
    num_children: int = 0

    @property
    def num_bytes(self) -> int:
        return self.kv_bytes + self.snapshot_bytes


class PrefixLedger:
    """Byte budget, LRU order and refcounts of prefix blocks and transfer holds."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        self.capacity_bytes = capacity_bytes
        self._blocks: dict[str, _Block] = {}
        self._transfers: dict[str, int] = {}
        self._clock = 0

    @property
    def used_bytes(self) -> int:
        return sum(b.num_bytes for b in self._blocks.values()) + sum(self._transfers.values())

    @property
    def num_blocks(self) -> int:
        return len(self._blocks)

    @property
    def num_transfers(self) -> int:
        return len(self._transfers)

    def has_block(self, block_hash: str) -> bool:
        return block_hash in self._blocks

    def block_hashes(self) -> frozenset[str]:
        """Every prefix block held now (what the node reports to the gateway's KV index)."""
        return frozenset(self._blocks)

    def has_snapshot(self, block_hash: str) -> bool:
        block = self._blocks.get(block_hash)
        return block is not None and block.snapshot_bytes > 0

    def match(self, hashes: Sequence[str], need_snapshot: bool, max_blocks: int) -> int:
        """Blocks in the longest reusable prefix (at most `max_blocks`); touches the matched blocks' LRU time."""
        present = 0
        while present < min(len(hashes), max_blocks) and hashes[present] in self._blocks:
            present += 1
        usable = present
        if need_snapshot:
            while usable > 0 and not self.has_snapshot(hashes[usable - 1]):
                usable -= 1
        self._clock += 1
        for h in hashes[:usable]:
            self._blocks[h].last_used = self._clock
        return usable

    def lock(self, hashes: Sequence[str]) -> None:
        for h in hashes:
            self._blocks[h].refcount += 1

    def unlock(self, hashes: Sequence[str]) -> None:
        for h in hashes:
            block = self._blocks[h]
            if block.refcount <= 0:
                raise RuntimeError(f"block {h} unlocked more often than locked")
            block.refcount -= 1

    def insert_block(self, block_hash: str, parent_hash: str | None, kv_bytes: int) -> tuple[bool, list[str]]:
        """Add a prefix block if room can be made; (inserted, evicted hashes). Existing blocks are only touched."""
        self._clock += 1
        if block_hash in self._blocks:
            self._blocks[block_hash].last_used = self._clock
            return True, []
        if parent_hash is not None and parent_hash not in self._blocks:
            return False, []
        evicted = self._make_room(kv_bytes, protect=parent_hash)
        if self.used_bytes + kv_bytes > self.capacity_bytes:
            return False, evicted
        self._blocks[block_hash] = _Block(block_hash, parent_hash, kv_bytes, last_used=self._clock)
        if parent_hash is not None:
            self._blocks[parent_hash].num_children += 1
        return True, evicted

    def attach_snapshot(self, block_hash: str, snapshot_bytes: int) -> tuple[bool, list[str]]:
        """Record a linear/sliding snapshot at the end of `block_hash`; (attached, evicted hashes)."""
        block = self._blocks.get(block_hash)
        if block is None:
            return False, []
        if block.snapshot_bytes:
            return True, []
        block.refcount += 1  # protect it while making room
        evicted = self._make_room(snapshot_bytes, protect=None)
        block.refcount -= 1
        if self.used_bytes + snapshot_bytes > self.capacity_bytes:
            return False, evicted
        block.snapshot_bytes = snapshot_bytes
        return True, evicted

    def hold_transfer(self, transfer_id: str, num_bytes: int) -> list[str]:
        """Reserve bytes for a state awaiting its transfer ack; evicts prefix blocks if needed."""
        if transfer_id in self._transfers:
            raise DuplicateRequestError(f"transfer {transfer_id!r} is already held")
        evicted = self._make_room(num_bytes, protect=None)
        if self.used_bytes + num_bytes > self.capacity_bytes:
            raise PoolExhaustedError(
                f"transfer {transfer_id!r} needs {num_bytes} B; {self.capacity_bytes - self.used_bytes} B free "
                f"after evicting every unreferenced prefix block"
            )
        self._transfers[transfer_id] = num_bytes
        return evicted

    def release_transfer(self, transfer_id: str) -> None:
        if self._transfers.pop(transfer_id, None) is None:
            raise UnknownRequestError(f"no transfer {transfer_id!r} is held")

    def leaks(self) -> list[str]:
        """Locked blocks and held transfers (empty once every prefill released and every transfer was acked)."""
        locked = [f"block {b.block_hash} refcount {b.refcount}" for b in self._blocks.values() if b.refcount]
        return locked + [f"transfer {t} ({n} B)" for t, n in self._transfers.items()]

    def _make_room(self, num_bytes: int, protect: str | None) -> list[str]:
        evicted: list[str] = []
        while self.used_bytes + num_bytes > self.capacity_bytes:
            victim = self._lru_leaf(protect)
            if victim is None:
                break
            self._evict(victim)
            evicted.append(victim.block_hash)
        return evicted

    def _lru_leaf(self, protect: str | None) -> _Block | None:
        candidates = [
            b for b in self._blocks.values() if b.refcount == 0 and b.num_children == 0 and b.block_hash != protect
        ]
        return min(candidates, key=lambda b: b.last_used, default=None)

    def _evict(self, block: _Block) -> None:
        del self._blocks[block.block_hash]
        if block.parent_hash is not None and block.parent_hash in self._blocks:
            self._blocks[block.parent_hash].num_children -= 1
