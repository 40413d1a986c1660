"""Hybrid prefix cache pool (tensor storage) and the prefill path that uses it.

`PrefixCachePool` stores what `PrefixLedger` accounts for:

    block hash -> full-attention K/V of that 512-token block, per full layer   ([1, kh, 512, kd], owned copies)
    block hash -> snapshot of every linear / sliding-window part at the block's end boundary
    request id -> the whole prompt state, held until its transfer is acknowledged

`CachingPrefiller.prefill` looks up the longest reusable prefix, assembles its state (concatenated KV blocks +
the boundary snapshot), computes only the uncached tail, keeps a new snapshot at the tail's last block boundary,
stores the new full blocks, and holds the result as a transfer until `ack_transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prfaas.engine.geometry import PartKind
from prfaas.engine.models import LoadedModel
from prfaas.engine.prefill import LayerDoneCallback, PrefillEngine, validate_tokens
from prfaas.engine.prefix_ledger import BLOCK_TOKENS, PrefixLedger, block_hashes
from prfaas.engine.sampling import GREEDY, SamplingParams
from prfaas.engine.state import FullAttentionKV, HybridState, LayerPart

KVBlock = dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer index -> (keys, values) [1, kh, block, kd]


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """A locked, reusable prefix: its block hashes and token count (0 blocks = miss)."""

    hashes: tuple[str, ...]
    num_tokens: int


@dataclass(frozen=True, slots=True)
class CachedPrefillResult:
    first_token: int
    state: HybridState
    num_cached_tokens: int
    num_computed_tokens: int


class PrefixCachePool:
    """Prefix blocks, boundary snapshots and transfer holds for one model, within one byte budget."""

    def __init__(self, loaded: LoadedModel, capacity_bytes: int, block_tokens: int = BLOCK_TOKENS) -> None:
        self.loaded = loaded
        self.block_tokens = block_tokens
        self.ledger = PrefixLedger(capacity_bytes)
        self._blocks: dict[str, KVBlock] = {}
        self._snapshots: dict[str, HybridState] = {}
        self._transfers: dict[str, HybridState] = {}
        kinds = {g.part_kind for g in loaded.geometries}
        self.needs_snapshot = bool(kinds & {PartKind.LINEAR, PartKind.SLIDING_KV})
        self.held_blocks: frozenset[str] = frozenset()
        """The block hashes held after the last store or eviction: an immutable set republished by the thread that
        owns the pool, so another thread (the node's heartbeat) may read it without a lock."""
        self._blocks_changed = False

    @property
    def num_blocks(self) -> int:
        return len(self._blocks)

    def lookup(self, tokens: Sequence[int]) -> PrefixHit:
        """Lock the longest reusable prefix of `tokens` that leaves at least one token to compute."""
        hashes = block_hashes(tokens, self.block_tokens)
        max_blocks = (len(tokens) - 1) // self.block_tokens
        num_blocks = self.ledger.match(hashes, self.needs_snapshot, max_blocks)
        hit = tuple(hashes[:num_blocks])
        self.ledger.lock(hit)
        return PrefixHit(hit, num_blocks * self.block_tokens)

    def release(self, hit: PrefixHit) -> None:
        self.ledger.unlock(hit.hashes)

    def assemble(self, hit: PrefixHit) -> HybridState | None:
        """The prefix's state: full-attention KV concatenated from blocks, linear/sliding parts from the snapshot."""
        if not hit.hashes:
            return None
        snapshot = self._snapshots.get(hit.hashes[-1])  # None only for full-attention-only models
        parts: dict[int, LayerPart] = {p.layer_index: p for p in snapshot.parts} if snapshot is not None else {}
        blocks = [self._blocks[h] for h in hit.hashes]
        for g in self.loaded.geometries:
            if g.part_kind is PartKind.FULL_KV:
                keys = torch.cat([b[g.layer_index][0] for b in blocks], dim=2)
                values = torch.cat([b[g.layer_index][1] for b in blocks], dim=2)
                parts[g.layer_index] = FullAttentionKV(g.layer_index, g.layer_kind, keys, values)
        return HybridState(tuple(parts[i] for i in sorted(parts)), hit.num_tokens)

    def store(self, tokens: Sequence[int], state: HybridState, snapshot: HybridState | None) -> None:
        """Keep the complete blocks of `state` (copies) and `snapshot` at its boundary, as the budget allows."""
        hashes = block_hashes(tokens[: state.num_tokens], self.block_tokens)
        full = [p for p in state.parts if isinstance(p, FullAttentionKV)]
        for index, block_hash in enumerate(hashes):
            if self.ledger.has_block(block_hash):
                self.ledger.insert_block(block_hash, hashes[index - 1] if index else None, 0)  # touch
                continue
            block = self._slice_block(full, index)
            nbytes = sum(k.nbytes + v.nbytes for k, v in block.values())
            inserted, evicted = self.ledger.insert_block(block_hash, hashes[index - 1] if index else None, nbytes)
            self._drop(evicted)
            if not inserted:
                break
            self._blocks[block_hash] = block
            self._blocks_changed = True
        if snapshot is not None and snapshot.num_tokens % self.block_tokens == 0 and snapshot.num_tokens:
            self._store_snapshot(hashes[snapshot.num_tokens // self.block_tokens - 1], snapshot)
        self._publish()

    def hold_transfer(self, request_id: str, state: HybridState) -> None:
        self._drop(self.ledger.hold_transfer(request_id, state.nbytes))
        self._transfers[request_id] = state
        self._publish()

    def ack_transfer(self, request_id: str) -> None:
        """The decode node has the state: free the transfer blocks."""
        self.ledger.release_transfer(request_id)
        del self._transfers[request_id]

    def leaks(self) -> list[str]:
        return self.ledger.leaks()

    def _store_snapshot(self, block_hash: str, snapshot: HybridState) -> None:
        if not self.ledger.has_block(block_hash):
            return
        attached, evicted = self.ledger.attach_snapshot(block_hash, snapshot.nbytes)
        self._drop(evicted)
        if attached and block_hash not in self._snapshots:
            self._snapshots[block_hash] = snapshot

    def _slice_block(self, full: list[FullAttentionKV], index: int) -> KVBlock:
        lo, hi = index * self.block_tokens, (index + 1) * self.block_tokens
        return {p.layer_index: (p.keys[:, :, lo:hi].clone(), p.values[:, :, lo:hi].clone()) for p in full}

    def _drop(self, evicted: list[str]) -> None:
        for block_hash in evicted:
            self._blocks.pop(block_hash, None)
            self._snapshots.pop(block_hash, None)
        self._blocks_changed |= bool(evicted)

    def _publish(self) -> None:
        """Republish `held_blocks` once per store or hold, and only if a block came or went."""
        if self._blocks_changed:
            self.held_blocks = self.ledger.block_hashes()
            self._blocks_changed = False


class CachingPrefiller:
    """Prefill through the prefix cache pool: reuse a cached prefix, compute the tail, hold the result."""

    def __init__(self, engine: PrefillEngine, pool: PrefixCachePool) -> None:
        self.engine = engine
        self.pool = pool

    def prefill(
        self,
        request_id: str,
        tokens: Sequence[int],
        on_layer_done: LayerDoneCallback | None = None,
        sampling: SamplingParams = GREEDY,
    ) -> CachedPrefillResult:
        """Prefill `tokens`; the state stays held in the pool until `pool.ack_transfer(request_id)`."""
        validate_tokens(tokens, self.engine.loaded)
        hit = self.pool.lookup(tokens)
        try:
            prefix = self.pool.assemble(hit)
            boundary = (len(tokens) // self.pool.block_tokens) * self.pool.block_tokens
            snapshot_at = boundary if self.pool.needs_snapshot and boundary > hit.num_tokens else None
            result = self.engine.prefill_with_snapshot(tokens, prefix, snapshot_at, on_layer_done, sampling)
        finally:
            self.pool.release(hit)
        self.pool.store(tokens, result.state, result.snapshot)
        self.pool.hold_transfer(request_id, result.state)
        return CachedPrefillResult(result.first_token, result.state, hit.num_tokens, result.num_computed_tokens)
