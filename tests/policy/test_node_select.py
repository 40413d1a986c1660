"""Node choice inside a cluster: affinity first, load when it outweighs the hit; decode by occupancy."""

from __future__ import annotations

import random

import pytest
from policy_helpers import inst

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.node_select import NodeSelectConfig, select_decode_node, select_prefill_node
from prfaas.policy.types import ClusterView, InstanceView, load_key

P = Role.PD_PREFILL
CFG = NodeSelectConfig()


def test_equal_load_prefers_cache_affinity() -> None:
    nodes = [inst("a", P, queued_tokens=1000), inst("b", P, queued_tokens=1000)]
    choice = select_prefill_node(nodes, {"b": 4}, input_tokens=8192, config=CFG)
    assert choice is not None
    assert (choice.instance_id, choice.cached_blocks, choice.cached_tokens) == ("b", 4, 2048)


def test_equal_affinity_prefers_lower_load() -> None:
    nodes = [inst("a", P, queued_tokens=5000), inst("b", P, queued_tokens=100)]
    choice = select_prefill_node(nodes, {"a": 2, "b": 2}, input_tokens=8192, config=CFG)
    assert choice is not None and choice.instance_id == "b"


def test_load_outweighs_a_small_hit() -> None:
    # a holds 1024 cached tokens but has 20K queued; b is idle
    nodes = [inst("a", P, queued_tokens=20_000), inst("b", P)]
    choice = select_prefill_node(nodes, {"a": 2}, input_tokens=8192, config=CFG)
    assert choice is not None and choice.instance_id == "b"
    # ...but a big hit beats a moderate queue
    nodes = [inst("a", P, queued_tokens=3000), inst("b", P)]
    choice = select_prefill_node(nodes, {"a": 12}, input_tokens=8192, config=CFG)
    assert choice is not None and choice.instance_id == "a"


def test_zero_weight_ignores_affinity_and_ties_break_by_requests_then_id() -> None:
    cfg = NodeSelectConfig(cache_token_weight=0.0)
    nodes = [inst("a", P, queued_tokens=100), inst("b", P, queued_tokens=0)]
    choice = select_prefill_node(nodes, {"a": 10}, input_tokens=8192, config=cfg)
    assert choice is not None and choice.instance_id == "b"
    nodes = [inst("c", P, queued_requests=2), inst("b", P, queued_requests=1),
             inst("a", P, queued_requests=1)]
    choice = select_prefill_node(nodes, {}, input_tokens=100, config=CFG)
    assert choice is not None and choice.instance_id == "a"
    assert select_prefill_node([], {}, 100, CFG) is None


def test_decode_choice_by_occupancy_memory_and_id() -> None:
    D = Role.PD_DECODE
    nodes = [inst("d0", D, running_batch=10, max_batch=20), inst("d1", D, running_batch=5, max_batch=20)]
    assert select_decode_node(nodes) == "d1"
    # d1 cannot hold the state: skip it while another node can
    nodes = [inst("d0", D, running_batch=10, free_kv_bytes=10**9),
             inst("d1", D, running_batch=5, free_kv_bytes=10**6)]
    assert select_decode_node(nodes, state_bytes=10**8) == "d0"
    # nobody fits: fall back to the least occupied
    assert select_decode_node(nodes, state_bytes=10**12) == "d1"
    # equal occupancy: more free memory, then id
    nodes = [inst("d1", D, free_kv_bytes=5), inst("d0", D, free_kv_bytes=5), inst("d2", D, free_kv_bytes=9)]
    assert select_decode_node(nodes) == "d2"
    assert select_decode_node([]) is None


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        NodeSelectConfig(cache_token_weight=-1)


# --- ranked candidates (ClusterView.ranked + ranked=True): same choice as the full scan ---------------


def _random_group(rng: random.Random, role: Role, n: int) -> list[InstanceView]:
    return [inst(f"n{i:03d}", role, queued_tokens=rng.choice([0, 0, 512, 4096, 9000]),
                 queued_requests=rng.randint(0, 3), running_batch=rng.randint(0, 20),
                 free_kv_bytes=rng.choice([None, 10**6, 10**9])) for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_ranked_selection_equals_the_full_scan(seed: int) -> None:
    rng = random.Random(seed)
    prefill = _random_group(rng, P, rng.randint(1, 40))
    view = ClusterView(instances=tuple(prefill + _random_group(rng, Role.PD_DECODE, rng.randint(1, 40))))
    ranked = view.ranked(ClusterKind.PD, P)
    assert list(ranked) == sorted(prefill, key=load_key)
    hits = {n.instance_id: rng.randint(0, 30) for n in rng.sample(prefill, k=min(3, len(prefill)))}
    default = rng.choice([0, 0, 8])
    full_map = {n.instance_id: hits.get(n.instance_id, default) for n in prefill}
    for tokens in (1, 3000, 20_000):
        full = select_prefill_node(prefill, full_map, tokens, CFG)
        fast = select_prefill_node(ranked, hits, tokens, CFG, ranked=True, default_blocks=default)
        assert fast == full
    decode = view.up_instances(ClusterKind.PD, Role.PD_DECODE)
    for state in (None, 5 * 10**5, 5 * 10**8, 5 * 10**9):
        assert select_decode_node(view.ranked(ClusterKind.PD, Role.PD_DECODE), state, ranked=True) == \
            select_decode_node(decode, state)
