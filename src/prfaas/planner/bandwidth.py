"""Bandwidth sizing: the egress an N-GPU prefill cluster needs (Eq. 2, arXiv 2604.15039 §3.4.1, and the paper's
cluster-egress examples).

    B_out = (N / P) * E[S_kv] / E[T_prefill]  ~=  (N / P) * Phi_kv(L_avg)

`egress_at_length` uses a per-instance Phi_kv at one representative length (from Table 3's
measurements, a measured profile, or S_kv / T of any cost model). `egress_for_mix` uses the exact
ratio of expectations over a length distribution of the requests actually offloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prfaas.core.units import BITS_PER_BYTE, GBPS_BITS_PER_S
from prfaas.perf.base import PrefillCostModel
from prfaas.planner.model import evaluate_on_support, phi_kv_gbps
from prfaas.workload.distribution import DiscreteLengthDistribution


@dataclass(frozen=True, slots=True)
class EgressEstimate:
    num_gpus: int
    gpus_per_instance: int
    num_instances: float
    phi_kv_gbps_per_instance: float
    egress_gbps: float
    basis: str  # where Phi_kv came from

    @property
    def egress_tbps(self) -> float:
        return self.egress_gbps / 1000.0


def _instances(num_gpus: int, gpus_per_instance: int) -> float:
    if num_gpus <= 0 or gpus_per_instance <= 0:
        raise ValueError("num_gpus and gpus_per_instance must be > 0")
    return num_gpus / gpus_per_instance


def egress_from_phi(num_gpus: int, gpus_per_instance: int, phi_kv_gbps_per_instance: float,
                    basis: str) -> EgressEstimate:
    """Eq. 2 with a known per-instance Phi_kv."""
    if phi_kv_gbps_per_instance < 0:
        raise ValueError("phi_kv must be >= 0")
    n = _instances(num_gpus, gpus_per_instance)
    return EgressEstimate(num_gpus, gpus_per_instance, n, phi_kv_gbps_per_instance,
                          n * phi_kv_gbps_per_instance, basis)


def egress_at_length(num_gpus: int, gpus_per_instance: int, model: PrefillCostModel,
                     length_tokens: float) -> EgressEstimate:
    """Eq. 2's approximation: (N/P) * Phi_kv(L_avg) from a cost model."""
    phi = phi_kv_gbps(model.s_kv_bytes(length_tokens), model.t_prefill_s(length_tokens))
    return egress_from_phi(num_gpus, gpus_per_instance, phi, f"{model.name} at {length_tokens:.0f} tokens")


def egress_for_mix(num_gpus: int, gpus_per_instance: int, model: PrefillCostModel,
                   lengths: DiscreteLengthDistribution) -> EgressEstimate:
    """Eq. 2 exactly: (N/P) * E[S_kv(L)] / E[T_prefill(L)] over the offloaded length mix."""
    times, sizes = evaluate_on_support(model, lengths.lengths)
    phi = float(np.dot(lengths.probs, sizes)) * BITS_PER_BYTE / float(np.dot(lengths.probs, times)) / GBPS_BITS_PER_S
    return egress_from_phi(num_gpus, gpus_per_instance, phi, f"{model.name} over {lengths.name}")


def phi_from_table(rows: list[tuple[int, float]], length_tokens: float) -> float:
    """Phi_kv at any length from measured (length, Phi_kv) rows: exact at a measured length, log-log linear
    between two, and the end segment's slope beyond the table."""
    if not rows:
        raise ValueError("no measured rows")
    if length_tokens <= 0:
        raise ValueError("length must be > 0")
    xs = np.log([float(n) for n, _ in rows])
    ys = np.log([float(v) for _, v in rows])
    x = float(np.log(length_tokens))
    if xs.size == 1:
        return float(np.exp(ys[0]))
    if x <= xs[0]:
        i = 0
    elif x >= xs[-1]:
        i = xs.size - 2
    else:
        i = int(np.searchsorted(xs, x) - 1)
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return float(np.exp(ys[i] + slope * (x - xs[i])))


@dataclass(frozen=True, slots=True)
class EgressExample:
    """One of the paper's cluster-egress examples (arXiv 2604.15039: 512 H200s at L_avg = 32K, 10,000 GPUs)."""

    label: str
    model_name: str
    num_gpus: int
    length_tokens: int
    paper_gbps: float
    paper_bound: str  # "=" the paper gives a value, "<" an upper bound, "~" approximate


PAPER_EGRESS_EXAMPLES: tuple[EgressExample, ...] = (
    EgressExample("512 H200, MiniMax-M2.5, L=32K", "minimax-m2.5", 512, 32768, 3800.0, "="),
    EgressExample("512 H200, Qwen3-235B, L=32K", "qwen3-235b-a22b", 512, 32768, 2100.0, "="),
    EgressExample("512 H200, Ring-2.5-1T, L=32K", "ring-2.5-1t", 512, 32768, 170.0, "~"),
    EgressExample("512 H200, Ring-2.5-1T, only 128K offloaded", "ring-2.5-1t", 512, 131072, 100.0, "<"),
    EgressExample("10,000-GPU datacenter (Ring-2.5-1T at 128K)", "ring-2.5-1t", 10000, 131072, 1800.0, "~"),
)
