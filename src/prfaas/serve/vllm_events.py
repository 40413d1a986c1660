"""What a vLLM instance holds in its prefix cache, from its KV-cache events, as OUR 512-token block hashes.

    tracker = PrefixTracker(max_blocks=200_000)
    tracker.apply_batch(payload)             # one msgpack KVEventBatch from vLLM's ZMQ publisher
    tracker.held()                           # frozenset of `core.blocks` hashes (the node's cache report)
    sub = KvEventSubscriber(endpoint, vllm_host, tracker); sub.start() ... sub.close()

vLLM (`--kv-events-config '{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": ..., "topic": "kv"}'`)
publishes multipart messages (topic, 8-byte big-endian sequence, payload); the payload is a msgpack `KVEventBatch`
`[ts, [event, ...], dp_rank?]` whose events are `BlockStored` (block_hashes, parent_block_hash, token_ids,
block_size, ...), `BlockRemoved` (block_hashes, ...) and `AllBlocksCleared`, each a map with a "type" tag (older
vLLMs: an array whose first item is the tag). vLLM's block hashes are opaque (its own hash function and seed):
the tracker keeps, per vLLM block, its parent and our hash chain's state at that block (the digest of the last
whole 512-token block before it, and the tokens since), so a stored block that completes one of our 512-token
blocks yields that block's `core.blocks` hash, the hash the gateway's KV index and router use.

A block whose parent is unknown (events missed, or the subscriber started after vLLM) is ignored: its prefix
cannot be rebuilt. A removed block takes its descendants with it (a prefix match stops at the first missing
block). Hybrid models emit one event per KV-cache group; blocks are keyed by vLLM's hash, so the groups' copies
are one entry. The map is bounded (`max_blocks`): past it, the oldest blocks are forgotten (under-reporting a
cache is safe: the router only loses a hit). No asyncio here; the subscriber is a thread with a pyzmq socket.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from prfaas.core.blocks import BLOCK_TOKENS

_log = logging.getLogger(__name__)
_DECODER = msgspec.msgpack.Decoder()
_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size")


@dataclass(slots=True)
class _Block:
    parent: Any  # vLLM's hash of the parent block (None: a root)
    digest: bytes  # our chain's digest after the last whole 512-token block at or before this block's end
    tail: tuple[int, ...]  # tokens since that boundary (< block_tokens)
    completes: tuple[int, ...]  # our block hashes that end inside this block
    children: set[Any]


def _hash_block(parent_digest: bytes, tokens: tuple[int, ...]) -> bytes:
    digest = hashlib.blake2b(parent_digest, digest_size=8)
    digest.update(b"".join(int(t).to_bytes(4, "little", signed=False) for t in tokens))
    return digest.digest()


def _event_fields(event: Any) -> tuple[str, dict[str, Any]]:
    """(tag, fields) of one event, in its map form or its array form."""
    if isinstance(event, dict):
        return str(event.get("type", "")), event
    if isinstance(event, (list, tuple)) and event:
        tag = str(event[0])
        if tag == "BlockStored":
            return tag, dict(zip(_STORED_FIELDS, event[1:], strict=False))
        if tag == "BlockRemoved":
            return tag, {"block_hashes": event[1] if len(event) > 1 else []}
        return tag, {}
    return "", {}


def _key(block_hash: Any) -> Any:
    return bytes(block_hash) if isinstance(block_hash, (bytearray, memoryview)) else block_hash


class PrefixTracker:
    def __init__(self, max_blocks: int = 200_000, block_tokens: int = BLOCK_TOKENS) -> None:
        if max_blocks < 1:
            raise ValueError("max_blocks must be >= 1")
        self.max_blocks = max_blocks
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[Any, _Block] = OrderedDict()
        self._held: dict[int, int] = {}  # our hash -> how many vLLM blocks complete it
        self._lock = threading.Lock()
        self.events_total = 0
        self.orphans_total = 0  # stored blocks whose parent was unknown (ignored)

    def __len__(self) -> int:
        return len(self._blocks)

    def held(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._held)

    def apply_batch(self, payload: bytes) -> None:
        """One `KVEventBatch` payload; a malformed one is logged and dropped."""
        try:
            batch = _DECODER.decode(payload)
            events = batch[1] if isinstance(batch, (list, tuple)) else batch.get("events", [])
        except (msgspec.DecodeError, IndexError, AttributeError, TypeError) as exc:
            _log.warning("malformed KV event batch dropped: %s", exc)
            return
        with self._lock:
            for event in events:
                self._apply(event)

    def _apply(self, event: Any) -> None:
        tag, f = _event_fields(event)
        self.events_total += 1
        if tag == "BlockStored":
            self._stored(list(f.get("block_hashes") or []), f.get("parent_block_hash"),
                         list(f.get("token_ids") or []), int(f.get("block_size") or 0))
        elif tag == "BlockRemoved":
            for block_hash in f.get("block_hashes") or []:
                self._remove(_key(block_hash))
        elif tag == "AllBlocksCleared":
            self._blocks.clear()
            self._held.clear()

    def _stored(self, hashes: list[Any], parent: Any, tokens: list[int], block_size: int) -> None:
        if block_size <= 0 or len(tokens) < block_size * len(hashes):
            return
        parent = _key(parent) if parent is not None else None
        tail: tuple[int, ...]
        for i, raw in enumerate(hashes):
            key = _key(raw)
            block_tokens = tuple(tokens[i * block_size:(i + 1) * block_size])
            if key in self._blocks:  # another KV-cache group's copy, or a re-store
                self._blocks.move_to_end(key)
                parent = key
                continue
            if parent is None:
                digest, tail = b"", ()
            elif parent in self._blocks:
                up = self._blocks[parent]
                digest, tail = up.digest, up.tail
            else:
                self.orphans_total += 1
                return  # the rest of this run hangs off an unknown block too
            tail = tail + block_tokens
            completes: list[int] = []
            while len(tail) >= self.block_tokens:
                digest = _hash_block(digest, tail[:self.block_tokens])
                completes.append(int.from_bytes(digest, "little"))
                tail = tail[self.block_tokens:]
            self._blocks[key] = _Block(parent, digest, tail, tuple(completes), set())
            if parent is not None:
                self._blocks[parent].children.add(key)
            for h in completes:
                self._held[h] = self._held.get(h, 0) + 1
            parent = key
        while len(self._blocks) > self.max_blocks:
            self._remove(next(iter(self._blocks)))

    def _remove(self, key: Any) -> None:
        stack = [key]
        while stack:
            current = stack.pop()
            block = self._blocks.pop(current, None)
            if block is None:
                continue
            if block.parent is not None and block.parent in self._blocks:
                self._blocks[block.parent].children.discard(current)
            for h in block.completes:
                left = self._held.get(h, 0) - 1
                if left > 0:
                    self._held[h] = left
                else:
                    self._held.pop(h, None)
            stack.extend(block.children)


def subscriber_address(endpoint: str, vllm_host: str) -> tuple[str, bool]:
    """(address, bind?) for our SUB socket, mirroring vLLM's publisher: vLLM binds an endpoint with a wildcard
    (tcp://*:P; we connect to the vLLM host's port P) and connects to any other (tcp://H:P; we bind it)."""
    if "*" in endpoint:
        port = endpoint.rpartition(":")[2]
        host = f"[{vllm_host}]" if ":" in vllm_host else vllm_host
        return f"tcp://{host}:{port}", False
    return endpoint, True


class KvEventSubscriber:
    """A thread that feeds every KV-event batch of one vLLM instance into a `PrefixTracker`."""

    def __init__(self, endpoint: str, vllm_host: str, tracker: PrefixTracker, topic: str = "") -> None:
        import zmq

        self.tracker = tracker
        self.address, self.binds = subscriber_address(endpoint, vllm_host)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.setsockopt(zmq.LINGER, 0)
        if self.binds:
            self._sock.bind(self.address)
        else:
            self._sock.connect(self.address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vllm-kv-events", daemon=True)
        self.batches_total = 0
        self.last_seq: int | None = None
        self.gaps_total = 0  # sequence numbers skipped (batches lost: the report under-counts until evictions)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not dict(poller.poll(100)):
                continue
            frames = self._sock.recv_multipart()
            if len(frames) != 3:
                continue
            _topic, seq_bytes, payload = frames
            seq = int.from_bytes(seq_bytes, "big")
            if self.last_seq is not None and seq > self.last_seq + 1:
                self.gaps_total += seq - self.last_seq - 1
            self.last_seq = seq
            self.tracker.apply_batch(payload)
            self.batches_total += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._sock.close(0)
        self._ctx.term()
