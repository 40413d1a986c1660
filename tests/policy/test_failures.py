"""Failure policy: every failure kind maps to an enum action; the retry budget ends in FAIL_REQUEST."""

from __future__ import annotations

import pytest
from policy_helpers import failed_outcome, make_view, ok_outcome, req

from prfaas.policy.config import PolicyConfig
from prfaas.policy.failures import FailurePolicyConfig, decide_failure
from prfaas.policy.registry import make_router
from prfaas.policy.types import FailureAction, FailureKind, Outcome, RoutePlan

A = FailureAction


def _plans() -> tuple[RoutePlan, RoutePlan]:
    router = make_router("prfaas", PolicyConfig(threshold_tokens=1000))
    view = make_view()
    offloaded, local = router.route(req(1, 5000), view, 0.0), router.route(req(2, 500), view, 0.0)
    assert offloaded.is_offloaded and not local.is_offloaded
    return offloaded, local


@pytest.mark.parametrize(
    ("failure", "attempt", "offloaded_action", "local_action"),
    [(FailureKind.TRANSFER_FAILED, 0, A.RETRY_OTHER_CONNECTION, A.RETRY_OTHER_CONNECTION),
     (FailureKind.TRANSFER_TIMEOUT, 0, A.RETRY_OTHER_CONNECTION, A.RETRY_OTHER_CONNECTION),
     (FailureKind.TRANSFER_FAILED, 1, A.RECOMPUTE_LOCALLY, A.REPREFILL_ELSEWHERE),
     (FailureKind.LINK_DOWN, 0, A.RECOMPUTE_LOCALLY, A.REPREFILL_ELSEWHERE),
     (FailureKind.PREFILL_NODE_LOST, 0, A.RECOMPUTE_LOCALLY, A.REPREFILL_ELSEWHERE),
     (FailureKind.DECODE_NODE_LOST, 0, A.REPREFILL_ELSEWHERE, A.REPREFILL_ELSEWHERE),
     (FailureKind.OUT_OF_MEMORY, 1, A.REPREFILL_ELSEWHERE, A.REPREFILL_ELSEWHERE),
     (FailureKind.TRANSFER_FAILED, 2, A.FAIL_REQUEST, A.FAIL_REQUEST),
     (FailureKind.DECODE_NODE_LOST, 2, A.FAIL_REQUEST, A.FAIL_REQUEST)],
)
def test_failure_actions(failure: FailureKind, attempt: int, offloaded_action: FailureAction,
                         local_action: FailureAction) -> None:
    offloaded, local = _plans()
    assert decide_failure(failed_outcome(offloaded, failure, attempt)) is offloaded_action
    assert decide_failure(failed_outcome(local, failure, attempt)) is local_action


def test_every_failure_kind_has_an_action() -> None:
    offloaded, _ = _plans()
    for kind in FailureKind:
        assert isinstance(decide_failure(failed_outcome(offloaded, kind)), FailureAction)


def test_retry_budget_is_configurable() -> None:
    offloaded, _ = _plans()
    cfg = FailurePolicyConfig(max_transfer_retries=0, max_attempts=1)
    assert decide_failure(failed_outcome(offloaded, FailureKind.TRANSFER_FAILED), cfg) is A.FAIL_REQUEST
    cfg = FailurePolicyConfig(max_transfer_retries=0, max_attempts=5)
    assert decide_failure(failed_outcome(offloaded, FailureKind.TRANSFER_FAILED), cfg) is A.RECOMPUTE_LOCALLY
    cfg = FailurePolicyConfig(max_transfer_retries=3, max_attempts=5)
    third_try = failed_outcome(offloaded, FailureKind.TRANSFER_FAILED, 2)
    assert decide_failure(third_try, cfg) is A.RETRY_OTHER_CONNECTION
    with pytest.raises(ValueError):
        FailurePolicyConfig(max_attempts=0)


def test_success_and_contradictory_outcomes_are_rejected() -> None:
    offloaded, _ = _plans()
    with pytest.raises(ValueError, match="did not fail"):
        decide_failure(ok_outcome(offloaded))
    with pytest.raises(ValueError, match="contradicts"):
        Outcome(request_id=1, route=offloaded, ok=True, failure=FailureKind.LINK_DOWN)
    with pytest.raises(ValueError, match="contradicts"):
        Outcome(request_id=1, route=offloaded, ok=False)
