"""What to do when a routed request fails (DESIGN.md "Failure is a policy, not an accident").

`decide_failure(outcome, config)` maps a failed `Outcome` to a `FailureAction`; the driver executes it.
The rule, in order:

    attempt + 1 >= max_attempts                         -> FAIL_REQUEST (every request ends answered)
    TRANSFER_FAILED / TRANSFER_TIMEOUT, retries left    -> RETRY_OTHER_CONNECTION
                                  (attempt < max_transfer_retries; the prefill result is still held)
    TRANSFER_*, LINK_DOWN, PREFILL_NODE_LOST
        on an offloaded request                         -> RECOMPUTE_LOCALLY (re-prefill on PD-P)
        on a local request                              -> REPREFILL_ELSEWHERE
    DECODE_NODE_LOST, OUT_OF_MEMORY                     -> REPREFILL_ELSEWHERE (new decode node)

Pure and side-effect free.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.policy.types import FailureAction, FailureKind, Outcome

_TRANSFER_FAILURES = frozenset({FailureKind.TRANSFER_FAILED, FailureKind.TRANSFER_TIMEOUT})
_PREFILL_SIDE_FAILURES = _TRANSFER_FAILURES | {FailureKind.LINK_DOWN, FailureKind.PREFILL_NODE_LOST}


@dataclass(frozen=True, slots=True)
class FailurePolicyConfig:
    """Retry budget of the failure policy."""

    max_transfer_retries: int = 1
    """Retries of a broken KV stream on another connection before re-prefilling."""
    max_attempts: int = 3
    """Total tries of one request (first try included) before it fails with an error response."""

    def __post_init__(self) -> None:
        if self.max_transfer_retries < 0 or self.max_attempts < 1:
            raise ValueError("need max_transfer_retries >= 0 and max_attempts >= 1")


def decide_failure(outcome: Outcome, config: FailurePolicyConfig | None = None) -> FailureAction:
    """The action for a failed outcome; raises ValueError for a successful one."""
    cfg = config or FailurePolicyConfig()
    failure = outcome.failure
    if failure is None:
        raise ValueError(f"request {outcome.request_id} did not fail")
    if outcome.attempt + 1 >= cfg.max_attempts:
        return FailureAction.FAIL_REQUEST
    if failure in _TRANSFER_FAILURES and outcome.attempt < cfg.max_transfer_retries:
        return FailureAction.RETRY_OTHER_CONNECTION
    if failure in _PREFILL_SIDE_FAILURES and outcome.route.is_offloaded:
        return FailureAction.RECOMPUTE_LOCALLY
    return FailureAction.REPREFILL_ELSEWHERE
