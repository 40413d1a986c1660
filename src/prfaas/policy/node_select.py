"""Pick the node inside a cluster: prefill by cache affinity and load, decode by load and free memory.

Prefill scoring (lower is better), for candidate node n and a prompt of L tokens of which the node
holds a cached prefix of c_n tokens:

    cost(n) = queued_tokens(n) + L - cache_token_weight * c_n

With the default weight 1 that is the prefill tokens the node must get through before this request
is done (its queue plus the uncached part); in general a cached token is worth `cache_token_weight`
tokens of queue. With the default 1.0 a node with a 10K-token hit
beats an idle node only while its queue is under 10K tokens: affinity first, until load outweighs it.
Ties go to fewer queued requests, then the smaller instance id (deterministic).

Decode scoring: nodes whose free KV memory is known to be too small for the request's state are
skipped (unless all are too small); then the lowest occupancy (running + queued) / max_batch, then
the most free KV bytes, then the smallest id.

Only instances that can accept work (`InstanceView.can_accept`) are passed in by the routers.

Cost at scale: the routers pass the candidates already sorted by `policy.types.load_key`
(`ClusterView.ranked`, which a driver can keep as an index) with `ranked=True`. Then a node without a
prefix hit can only win if it is the first such node in that order (its score is its load key shifted
by a constant), so a decision evaluates the nodes with a hit plus one; decode takes the first node
in order that fits. Same choice as the full scan, O(hits + 1) instead of O(nodes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prfaas.policy.kv_index import cached_tokens_for
from prfaas.policy.types import BLOCK_TOKENS, InstanceView


@dataclass(frozen=True, slots=True)
class NodeSelectConfig:
    """Scoring knobs for node choice within a cluster."""

    cache_token_weight: float = 1.0
    """Queued prefill tokens one cached prefix token is worth (0 = ignore affinity, pure load)."""
    block_tokens: int = BLOCK_TOKENS
    """Tokens per prefix block, to turn block hits into tokens."""

    def __post_init__(self) -> None:
        if self.cache_token_weight < 0:
            raise ValueError("cache_token_weight must be >= 0")
        if self.block_tokens <= 0:
            raise ValueError("block_tokens must be positive")


@dataclass(frozen=True, slots=True)
class NodeChoice:
    """The chosen prefill node and the prefix it already holds."""

    instance_id: str
    cached_blocks: int
    cached_tokens: int


def prefill_cost(
    inst: InstanceView, input_tokens: int, cached_tokens: int, config: NodeSelectConfig
) -> float:
    """The documented prefill score of one node (lower is better)."""
    return inst.queued_tokens + input_tokens - config.cache_token_weight * cached_tokens


def select_prefill_node(
    candidates: Sequence[InstanceView],
    cached_blocks_by_node: Mapping[str, int],
    input_tokens: int,
    config: NodeSelectConfig,
    *,
    ranked: bool = False,
    default_blocks: int = 0,
) -> NodeChoice | None:
    """Best prefill node among `candidates`; None when there are none.

    A node absent from `cached_blocks_by_node` holds `default_blocks`. `ranked=True` promises
    `candidates` are sorted by `load_key`: every node in the map is scored, and of the absent ones
    (which all hold the same prefix) only the first (see the module docstring).
    """
    hits = set(cached_blocks_by_node) if ranked else set()
    hits_left = len(hits)
    took_unhit = False
    best: tuple[float, int, str] | None = None
    best_choice: NodeChoice | None = None
    for inst in candidates:
        if ranked:
            if inst.instance_id in hits:
                hits_left -= 1
            elif took_unhit:
                if hits_left <= 0:
                    break
                continue
            else:
                took_unhit = True
        blocks = cached_blocks_by_node.get(inst.instance_id, default_blocks)
        cached = cached_tokens_for(blocks, input_tokens, config.block_tokens)
        key = (prefill_cost(inst, input_tokens, cached, config), inst.queued_requests, inst.instance_id)
        if best is None or key < best:
            best = key
            best_choice = NodeChoice(inst.instance_id, blocks, cached)
        if ranked and took_unhit and hits_left <= 0:
            break
    return best_choice


def decode_occupancy(inst: InstanceView) -> float:
    """(running + queued) / max_batch; above 1 means requests wait for a batch slot."""
    return (inst.running_batch + inst.queued_requests) / max(inst.max_batch, 1)


def select_decode_node(candidates: Sequence[InstanceView], state_bytes: float | None = None, *,
                       ranked: bool = False) -> str | None:
    """Best decode node among `candidates` for a request whose state is `state_bytes` (None = unknown).

    `ranked=True` promises `candidates` are sorted by `load_key`: the first that fits wins.
    """
    if not candidates:
        return None
    if ranked:
        for inst in candidates:
            if _fits(inst, state_bytes):
                return inst.instance_id
        return candidates[0].instance_id
    fitting = [i for i in candidates if _fits(i, state_bytes)]
    pool = fitting or list(candidates)
    best = min(pool, key=lambda i: (decode_occupancy(i), -(i.free_kv_bytes or 0), i.instance_id))
    return best.instance_id


def _fits(inst: InstanceView, state_bytes: float | None) -> bool:
    if state_bytes is None or inst.free_kv_bytes is None:
        return True
    return inst.free_kv_bytes >= state_bytes
