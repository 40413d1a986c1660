"""Shared plain types: view helpers and validation."""

from __future__ import annotations

import pytest
from policy_helpers import make_view

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID, RequestInfo, WindowStats


def test_view_helpers() -> None:
    view = make_view(n_prfaas=1, n_pd_p=2, n_pd_d=3, overrides={
        "pdp1": {"is_up": False}, "pdd0": {"pending_role": Role.PD_PREFILL},
        "pdd1": {"role": Role.DRAINING, "pending_role": Role.PD_PREFILL}})
    assert [i.instance_id for i in view.by_role(Role.PD_PREFILL)] == ["pdp0", "pdp1"]
    assert [i.instance_id for i in view.up_instances(ClusterKind.PD, Role.PD_DECODE)] == ["pdd2"]
    assert view.count_role(Role.PD_PREFILL) == 3  # pdp0 + two converting toward PD-P; pdp1 is down
    assert view.count_role(Role.PD_PREFILL, include_pending=False) == 1
    assert view.count_role(Role.PD_DECODE, include_pending=False) == 2
    instance = view.instance("pdd1")
    assert instance is not None and instance.is_converting and not instance.can_accept
    assert view.instance("missing") is None
    assert view.egress_link is not None and view.egress_link.link_id == PRFAAS_EGRESS_LINK_ID
    assert make_view(with_link=False).egress_link is None


def test_validation() -> None:
    with pytest.raises(ValueError):
        RequestInfo(request_id=1, arrival_s=0.0, input_tokens=-1, output_tokens=1)
    with pytest.raises(ValueError):
        WindowStats(start_s=10.0, end_s=5.0, prfaas_prefill_util=0, pd_prefill_util=0, pd_decode_util=0)
    w = WindowStats(start_s=0.0, end_s=60.0, prfaas_prefill_util=0, pd_prefill_util=0, pd_decode_util=0,
                    num_arrivals=4, num_offloaded=1)
    assert w.duration_s == 60.0 and w.offload_fraction == 0.25
    empty = WindowStats(start_s=0.0, end_s=1.0, prfaas_prefill_util=0, pd_prefill_util=0, pd_decode_util=0)
    assert empty.offload_fraction is None
