"""The simulator's mutable per-request state and the immutable record it leaves behind.

`SimRequest` is owned by the simulator while the request is in flight (one object, mutated as the
request moves: routed, queued, prefilled, transferred, decoded). When the request ends it becomes a
frozen `RequestRecord`, the per-request output (records.jsonl).

Time definitions (all virtual seconds):
    prefill_queue_s  prefill start - arrival at the prefill queue (the last attempt's)
    prefill_s        prefill end - prefill start
    transfer_s       state at the decode node - prefill end (residual transfer after layer-wise overlap)
    ttft_s           state at the decode node - arrival: the first token (produced by the prefill) is
                     emitted together with the state
    tpot_s           (finish - first token) / output_tokens: decode-queue wait plus decode steps per token
    decode_queue_s   wait for a decode batch slot (BS_max reached)
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.core.lifecycle import ClusterKind, RequestState
from prfaas.policy.types import RequestInfo, RoutePlan
from prfaas.workload.request import WorkloadRequest


class SimRequest:
    """Mutable in-flight state of one request (simulator-internal)."""

    __slots__ = (
        "arrival_s",
        "attempt",
        "cached_tokens",
        "decode_enqueue_s",
        "decode_id",
        "decode_start_s",
        "finish_s",
        "first_token_s",
        "flow",
        "info",
        "join_step",
        "plan",
        "prefill_end_s",
        "prefill_enqueue_s",
        "prefill_id",
        "prefill_start_s",
        "state",
        "transfer_bytes",
        "uncached_tokens",
        "wl",
    )

    def __init__(self, wl: WorkloadRequest) -> None:
        self.wl = wl
        self.info = RequestInfo(request_id=wl.request_id, arrival_s=wl.arrival_s,
                                input_tokens=wl.input_tokens, output_tokens=wl.output_tokens,
                                block_hashes=wl.block_hashes)
        self.arrival_s = wl.arrival_s
        self.state = RequestState.QUEUED
        self.attempt = 0
        self.plan: RoutePlan | None = None
        self.prefill_id = ""
        self.decode_id = ""
        self.cached_tokens = 0
        self.uncached_tokens = wl.input_tokens
        self.prefill_enqueue_s = 0.0
        self.prefill_start_s: float | None = None
        self.prefill_end_s: float | None = None
        self.transfer_bytes = 0.0
        self.flow: object = None
        self.first_token_s: float | None = None
        self.decode_enqueue_s: float | None = None
        self.decode_start_s: float | None = None
        self.finish_s: float | None = None
        self.join_step = 0.0

    @property
    def request_id(self) -> int:
        return self.wl.request_id

    def reset_for_retry(self) -> None:
        """Forget the failed attempt's progress; keep arrival and count the attempt."""
        self.attempt += 1
        self.state = RequestState.QUEUED
        self.plan = None
        self.prefill_start_s = None
        self.prefill_end_s = None
        self.transfer_bytes = 0.0
        self.flow = None
        self.first_token_s = None
        self.decode_enqueue_s = None
        self.decode_start_s = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished (or rejected) request. Times are absolute virtual seconds; durations end in `_s`."""

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    uncached_tokens: int
    state: RequestState
    route: str  # RouteReason value, "" if never routed
    prefill_cluster: str  # ClusterKind value, "" if never routed
    prefill_instance: str
    decode_instance: str
    attempts: int
    prefill_queue_s: float | None
    prefill_s: float | None
    transfer_bytes: int
    transfer_s: float | None
    ttft_s: float | None
    tpot_s: float | None
    decode_queue_s: float | None
    finish_s: float | None

    @property
    def is_ok(self) -> bool:
        return self.state is RequestState.FINISHED_OK

    @property
    def batch_tpot_s(self) -> float | None:
        """Seconds per output token while in the decode batch (no slot wait): the SLO-governed step time."""
        if self.finish_s is None or self.ttft_s is None or self.decode_queue_s is None:
            return None
        in_batch_s = self.finish_s - self.arrival_s - self.ttft_s - self.decode_queue_s
        return in_batch_s / max(self.output_tokens, 1)

    @property
    def is_offloaded(self) -> bool:
        return self.prefill_cluster == ClusterKind.PRFAAS.value


def make_record(req: SimRequest) -> RequestRecord:
    plan = req.plan
    wl = req.wl
    output_tokens = wl.output_tokens
    first_token_s = req.first_token_s
    finish_s = req.finish_s
    prefill_start_s = req.prefill_start_s
    prefill_end_s = req.prefill_end_s
    arrival_s = req.arrival_s
    decode_start_s = req.decode_start_s
    decode_enqueue_s = req.decode_enqueue_s
    # each duration is None when either end is None (the request never got there)
    tpot = None if finish_s is None or first_token_s is None else (finish_s - first_token_s) / max(output_tokens, 1)
    return RequestRecord(
        request_id=wl.request_id, arrival_s=arrival_s, input_tokens=wl.input_tokens,
        output_tokens=output_tokens, cached_tokens=req.cached_tokens,
        uncached_tokens=req.uncached_tokens,
        state=req.state, route=plan.reason._value_ if plan else "",
        prefill_cluster=plan.prefill_cluster._value_ if plan else "", prefill_instance=req.prefill_id,
        decode_instance=req.decode_id, attempts=req.attempt + 1,
        prefill_queue_s=None if prefill_start_s is None else prefill_start_s - req.prefill_enqueue_s,
        prefill_s=None if prefill_end_s is None or prefill_start_s is None else prefill_end_s - prefill_start_s,
        transfer_bytes=int(req.transfer_bytes),
        transfer_s=None if first_token_s is None or prefill_end_s is None else first_token_s - prefill_end_s,
        ttft_s=None if first_token_s is None else first_token_s - arrival_s,
        tpot_s=tpot,
        decode_queue_s=(None if decode_start_s is None or decode_enqueue_s is None
                        else decode_start_s - decode_enqueue_s),
        finish_s=finish_s,
    )
