"""Builders of fabricated cluster views, requests and outcomes for the policy tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import (
    BLOCK_TOKENS,
    PRFAAS_EGRESS_LINK_ID,
    ClusterView,
    FailureKind,
    InstanceView,
    Outcome,
    RequestInfo,
    RoutePlan,
)

CLUSTER_OF_ROLE = {
    Role.PRFAAS_PREFILL: ClusterKind.PRFAAS,
    Role.PD_PREFILL: ClusterKind.PD,
    Role.PD_DECODE: ClusterKind.PD,
}


def inst(instance_id: str, role: Role, **kw: Any) -> InstanceView:
    kw.setdefault("max_batch", 20)
    return InstanceView(instance_id=instance_id, cluster=CLUSTER_OF_ROLE[role], role=role, **kw)


def link(util: float | None = 0.1, *, capacity_gbps: float | None = 100.0, rtt_ms: float | None = None,
         retransmit_rate: float = 0.0, is_up: bool = True, time_s: float = 0.0) -> LinkSnapshot:
    goodput = 0.0 if util is None or capacity_gbps is None else util * capacity_gbps
    return LinkSnapshot(
        link_id=PRFAAS_EGRESS_LINK_ID, time_s=time_s, capacity_gbps=capacity_gbps, goodput_gbps=goodput,
        window_s=1.0, bytes_total=0, transfers_total=0, transfers_failed=0, transfers_in_flight=0,
        bytes_in_flight=0, rtt_ms=rtt_ms, retransmit_rate=retransmit_rate, is_up=is_up,
    )


def make_view(
    n_prfaas: int = 2, n_pd_p: int = 2, n_pd_d: int = 2, *, egress: LinkSnapshot | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None, with_link: bool = True,
) -> ClusterView:
    """pf0.. (PrfaaS prefill), pdp0.. (PD-P), pdd0.. (PD-D); `overrides[id]` replaces fields."""
    overrides = overrides or {}
    specs = ([(f"pf{i}", Role.PRFAAS_PREFILL) for i in range(n_prfaas)]
             + [(f"pdp{i}", Role.PD_PREFILL) for i in range(n_pd_p)]
             + [(f"pdd{i}", Role.PD_DECODE) for i in range(n_pd_d)])
    instances = []
    for instance_id, role in specs:
        fields = dict(overrides.get(instance_id, {}))
        fields.setdefault("cluster", CLUSTER_OF_ROLE[role])
        fields.setdefault("max_batch", 20)
        fields.setdefault("role", role)
        instances.append(InstanceView(instance_id=instance_id, **fields))
    links = {PRFAAS_EGRESS_LINK_ID: egress if egress is not None else link()} if with_link else {}
    return ClusterView(instances=tuple(instances), links=links)


def chain(first: int, num_blocks: int) -> tuple[int, ...]:
    """A hash chain of `num_blocks` distinct hashes starting at `first`."""
    return tuple(range(first, first + num_blocks))


def req(request_id: int, input_tokens: int, hashes: tuple[int, ...] = (), **kw: Any) -> RequestInfo:
    return RequestInfo(request_id=request_id, arrival_s=0.0, input_tokens=input_tokens, output_tokens=128,
                       block_hashes=hashes, **kw)


def blocks_for(input_tokens: int) -> int:
    return -(-input_tokens // BLOCK_TOKENS)


def ok_outcome(plan: RoutePlan) -> Outcome:
    return Outcome(request_id=plan.request_id, route=plan, ok=True, prefill_queue_s=0.0, prefill_s=1.0,
                   transfer_bytes=1, transfer_s=0.1)


def failed_outcome(plan: RoutePlan, failure: FailureKind, attempt: int = 0) -> Outcome:
    return Outcome(request_id=plan.request_id, route=plan, ok=False, failure=failure, attempt=attempt)
