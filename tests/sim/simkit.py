"""Tiny cost models, deployments and workloads for simulator tests (no planner, no catalog)."""

from __future__ import annotations

from collections.abc import Sequence

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.sim.deployment import Deployment, LinkSpec
from prfaas.sim.node import NodeSpec
from prfaas.workload.request import WorkloadRequest


class LinearPrefill:
    """T(l) = a + b * l (cached tokens free); S_kv(l) = s0 + s1 * l bytes."""

    def __init__(self, a: float = 0.1, b: float = 1e-4, s0: float = 1e6, s1: float = 1e4, name: str = "lin") -> None:
        self.a, self.b, self.s0, self.s1, self._name = a, b, s0, s1, name

    @property
    def name(self) -> str:
        return self._name

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        return self.a + self.b * num_tokens

    def s_kv_bytes(self, num_tokens: float) -> float:
        return self.s0 + self.s1 * num_tokens


class FixedStep:
    def __init__(self, t_step_s: float = 0.01) -> None:
        self.step = t_step_s

    @property
    def name(self) -> str:
        return "fixed"

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        return self.step


def small_deployment(n_prfaas: int = 2, n_p: int = 2, n_d: int = 2, *, capacity_gbps: float | None = 10.0,
                     latency_s: float = 0.001, max_batch: int = 4, step_s: float = 0.01,
                     cache_blocks: int = 1000) -> Deployment:
    fast, slow, dec = LinearPrefill(b=5e-5, name="fast"), LinearPrefill(b=1e-4, name="slow"), FixedStep(step_s)
    nodes = [NodeSpec(f"prfaas-{i}", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL, fast, None, 1, cache_blocks)
             for i in range(n_prfaas)]
    roles = [Role.PD_PREFILL] * n_p + [Role.PD_DECODE] * n_d
    nodes += [NodeSpec(f"pd-{i}", ClusterKind.PD, r, slow, dec, max_batch, cache_blocks) for i, r in enumerate(roles)]
    return Deployment(tuple(nodes), LinkSpec(capacity_gbps=capacity_gbps, latency_s=latency_s))


def requests(lengths: Sequence[int], *, gap_s: float = 0.5, output_tokens: int = 10) -> list[WorkloadRequest]:
    return [WorkloadRequest(i, i * gap_s, n, output_tokens) for i, n in enumerate(lengths)]
