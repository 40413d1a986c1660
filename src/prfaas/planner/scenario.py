"""A planning scenario: the inputs of the paper's throughput model (arXiv 2604.15039 §3.4.1, notation of its Table 4)
as one frozen value.

The scenario fixes hardware and traffic; the decision variables (threshold t and the PD split
N_p/N_d) are arguments of `planner.model.evaluate`, so one scenario is searched many times.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.prefix import PrefixHits


class Topology(enum.Enum):
    """Which of the paper's three configurations a scenario describes."""

    PRFAAS_PD = "prfaas_pd"  # PrfaaS cluster + local PD cluster, length-threshold routing
    HOMOGENEOUS = "homogeneous"  # one PD cluster prefills and decodes everything
    NAIVE = "naive"  # every prefill on PrfaaS, every PD node decodes, no length routing


@dataclass(frozen=True, slots=True)
class Scenario:
    """Inputs of Eqs. 1-8 for one deployment.

    `lengths` is the distribution of **uncached** input lengths L; `output_tokens` is the mean L_out;
    `bs_max` and `t_decode_s` are the SLO-governed decode batch cap and step time (Eq. 5).
    `egress_gbps` is the PrfaaS cluster's egress B_out (decimal Gbps); None means unconstrained.
    `prefix_hits` (None: no prefix hits) gives the cached prefix behind each uncached length: the
    planner then prices a prefill as `t_prefill_s(uncached, cached)` and ships the whole prompt's state
    (or only the increment when `prefix_hits.decode_holds_prefix`); `lengths` must be its uncached lengths.
    """

    name: str
    topology: Topology
    pd_prefill: PrefillCostModel | None
    pd_decode: DecodeCostModel | None
    prfaas_prefill: PrefillCostModel | None
    n_prfaas: int
    n_pd: int
    egress_gbps: float | None
    lengths: DiscreteLengthDistribution
    output_tokens: float
    bs_max: int
    t_decode_s: float
    gpus_per_instance_prfaas: int = 8
    gpus_per_instance_pd: int = 8
    prfaas_gpu: str = ""
    pd_gpu: str = ""
    prefix_hits: PrefixHits | None = None

    def __post_init__(self) -> None:
        if self.n_prfaas < 0 or self.n_pd < 0:
            raise ValueError("instance counts must be >= 0")
        if self.topology is Topology.PRFAAS_PD:
            if self.n_prfaas < 1 or self.n_pd < 2:
                raise ValueError("PrfaaS-PD needs >= 1 PrfaaS instance and >= 2 PD instances")
            if self.prfaas_prefill is None or self.pd_prefill is None:
                raise ValueError("PrfaaS-PD needs prefill cost models for both clusters")
        if self.topology is Topology.HOMOGENEOUS and (self.n_pd < 2 or self.pd_prefill is None):
            raise ValueError("a homogeneous PD cluster needs >= 2 instances and a prefill cost model")
        if self.topology is Topology.NAIVE and (self.n_prfaas < 1 or self.n_pd < 1 or self.prfaas_prefill is None):
            raise ValueError("the naive configuration needs >= 1 PrfaaS and >= 1 decode instance")
        if self.egress_gbps is not None and self.egress_gbps <= 0:
            raise ValueError("egress_gbps must be > 0 (or None for unconstrained)")
        if self.output_tokens <= 0 or self.bs_max <= 0 or self.t_decode_s <= 0:
            raise ValueError("output_tokens, bs_max and t_decode_s must be > 0")
        if self.gpus_per_instance_prfaas <= 0 or self.gpus_per_instance_pd <= 0:
            raise ValueError("gpus per instance must be > 0")
        if self.prefix_hits is not None:
            support = self.prefix_hits.uncached_lengths().lengths
            if support.shape != self.lengths.lengths.shape or not (support == self.lengths.lengths).all():
                raise ValueError("lengths must be the uncached lengths of prefix_hits")

    def replace(self, **changes: Any) -> Scenario:
        """A copy with `changes`; new `lengths` without new `prefix_hits` drop the hits (lengths observed
        live, e.g. by the rebalancer, carry no cached split: their requests are priced as fresh prompts)."""
        if "lengths" in changes and "prefix_hits" not in changes:
            changes["prefix_hits"] = None
        return dataclasses.replace(self, **changes)

    @property
    def num_gpus(self) -> int:
        return self.n_prfaas * self.gpus_per_instance_prfaas + self.n_pd * self.gpus_per_instance_pd
