"""What an offloaded request with a cached prefix ships, and what its prefill costs, in the simulator.

Default (as `prfaas serve`): the decode side holds no prefix, so the whole prompt's state crosses the link
whatever the prefill node had cached. `SimOptions.decode_holds_prefix` (the paper's PD-cluster pool):
only what the PD cluster lacks crosses, S_kv(l) - (S_kv(l_pd) - S_kv(0)).
"""

from __future__ import annotations

import pytest
from simkit import LinearPrefill, small_deployment

from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.sim.deployment import SimOptions
from prfaas.sim.run import simulate
from prfaas.workload.request import BLOCK_TOKENS, WorkloadRequest, num_blocks_for

THRESHOLD = PolicyConfig(threshold_tokens=1000)
PROMPT = 8 * BLOCK_TOKENS + 100  # 4,196 tokens
CACHED_BLOCKS = 4


class IncrementalPrefill(LinearPrefill):
    """T(n | c) = a + b * n + b2 * n * c: cached tokens are context, not free."""

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        return self.a + self.b * num_tokens + 1e-8 * num_tokens * num_cached_tokens


def _prompt() -> WorkloadRequest:
    return WorkloadRequest(0, 0.0, PROMPT, 5, tuple(range(100, 100 + num_blocks_for(PROMPT))))


def _index(holders: tuple[str, ...]) -> GlobalKvIndex:
    dep = small_deployment(n_prfaas=1, n_p=1, n_d=1)
    index = GlobalKvIndex()
    for node in dep.nodes:
        index.add_node(node.instance_id, node.cluster, 1000)
    for instance_id in holders:
        index.insert(instance_id, _prompt().block_hashes[:CACHED_BLOCKS])
    return index


def _run(holders: tuple[str, ...], *, decode_holds_prefix: bool) -> tuple[float, float, int]:
    dep = small_deployment(n_prfaas=1, n_p=1, n_d=1)
    model = IncrementalPrefill(b=5e-5, name="fast")
    nodes = tuple(n if n.cluster is not ClusterKind.PRFAAS else type(n)(n.instance_id, n.cluster, n.role, model,
                                                                         n.decode_cost, n.max_batch, n.cache_blocks)
                  for n in dep.nodes)
    dep = type(dep)(nodes, dep.egress)
    run = simulate(dep, "prfaas", [_prompt()], policy_config=THRESHOLD, kv_index=_index(holders),
                   options=SimOptions(decode_holds_prefix=decode_holds_prefix))
    (rec,) = run.records
    assert rec.prefill_cluster == ClusterKind.PRFAAS.value
    assert rec.prefill_s is not None
    return rec.transfer_bytes, rec.prefill_s, rec.cached_tokens


def test_prefix_cached_on_the_prefill_side_only_ships_the_whole_state_and_prefills_incrementally() -> None:
    model = IncrementalPrefill(b=5e-5)
    cached = CACHED_BLOCKS * BLOCK_TOKENS
    for decode_holds in (False, True):  # the PD cluster holds nothing here, so the option changes nothing
        shipped, prefill_s, cached_tokens = _run(("prfaas-0",), decode_holds_prefix=decode_holds)
        assert cached_tokens == cached
        assert shipped == pytest.approx(model.s_kv_bytes(PROMPT))
        assert prefill_s == pytest.approx(model.t_prefill_s(PROMPT - cached, cached))


def test_prefix_held_by_the_pd_cluster_ships_only_the_increment_when_the_decode_side_reaches_it() -> None:
    model = IncrementalPrefill(b=5e-5)
    cached = CACHED_BLOCKS * BLOCK_TOKENS
    # routing compares the uncached length against the PD cluster: 4,196 - 2,048 > 1,000 -> PrfaaS
    shipped, _, _ = _run(("prfaas-0", "pd-0"), decode_holds_prefix=True)
    assert shipped == pytest.approx(model.s_kv_bytes(PROMPT) - model.s_kv_bytes(cached) + model.s_kv_bytes(0))
    shipped_default, _, _ = _run(("prfaas-0", "pd-0"), decode_holds_prefix=False)
    assert shipped_default == pytest.approx(model.s_kv_bytes(PROMPT))
