"""Admission control: the gateway refuses what it cannot serve soon, at once, instead of queueing it.

    admission = AdmissionControl(cfg.admission, control, metrics)
    ticket = admission.admit(request_id, prompt_tokens)   # OverloadError (429 / 503 + Retry-After) beyond a bound
    try: ... finally: ticket.release()      # idempotent
    admission.routed(request_id)            # its first prefill is sent (counted in the node's queue now)
    view = admission.routing_view(view)     # prefill nodes at their queue bound leave the router's choice

Bounds (`[admission]`, `serve.config.AdmissionSection`): requests in flight gateway-wide, and per prefill node
the requests and prompt tokens queued (its last heartbeat plus what the gateway sent since, `serve.cluster`),
with the requests admitted and not yet sent to a node counted against the room left on all of them.
A request is refused with 429 (`rate_limit_exceeded`) when the gateway or every prefill node is full, and with
503 (`server_overloaded`) when no node can serve at all (no prefill or decode node up, once the deployment has
started). An admitted request carries a start budget (`queue_deadline_s`) to its prefill node; the node drops it
from its queue when the budget runs out (`await_start`) and answers a typed "shed" reply, which the driver turns
into a 503 for the client, never retried (docs/admission.md).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from prfaas.core.lifecycle import Role
from prfaas.policy.types import ClusterView, InstanceView
from prfaas.serve.config import AdmissionSection
from prfaas.serve.openai_api import ApiError

if TYPE_CHECKING:
    from prfaas.serve.control import ControlPlane

T = TypeVar("T")
PREFILL_ROLES = (Role.PRFAAS_PREFILL, Role.PD_PREFILL)
SHED_KIND = "shed"
"""`ErrorReply.kind` of a prefill the node dropped from its queue (start deadline passed)."""


class RefusalReason(enum.Enum):
    """Why a request was refused (label of `prfaas_admission_refused`)."""

    IN_FLIGHT = "in_flight"  # the gateway-wide bound
    NODES_FULL = "nodes_full"  # every prefill node at its queue bound
    NO_CAPACITY = "no_capacity"  # no prefill or no decode node up
    QUEUE_DEADLINE = "queue_deadline"  # admitted, but its prefill could not start in time (shed by the node)


class OverloadError(ApiError):
    """429 or 503 with `Retry-After`, in OpenAI's error shape."""

    def __init__(self, status: int, message: str, reason: RefusalReason, retry_after_s: int) -> None:
        code = "rate_limit_exceeded" if status == 429 else "server_overloaded"
        kind = "rate_limit_error" if status == 429 else "server_error"
        super().__init__(status, message, kind=kind, code=code)
        self.reason = reason
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class QueueDeadlinePassed(Exception):
    """Node side: the prefill did not start within its budget and was dropped from the queue."""


class AdmissionTicket:
    """One admitted request's share of the in-flight bound; `release` is idempotent."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class AdmissionControl:
    """Gateway side (event loop only, no locks)."""

    def __init__(self, section: AdmissionSection, control: ControlPlane) -> None:
        self.section = section
        self.control = control
        self.in_flight = 0
        self._unrouted: dict[int, int] = {}  # admitted, prefill not sent yet: request id -> prompt tokens

    def admit(self, request_id: int, prompt_tokens: int) -> AdmissionTicket:
        """A ticket for a new request, or `OverloadError` (counted by reason) when a bound is reached."""
        metrics = self.control.metrics
        try:
            self._check(prompt_tokens)
        except OverloadError as exc:
            metrics.admission_refused.labels(exc.reason.value).inc()
            raise
        metrics.admission_admitted.inc()
        self.in_flight += 1
        self._unrouted[request_id] = prompt_tokens
        metrics.in_flight.set(self.in_flight)
        return AdmissionTicket(lambda: self._release(request_id))

    def routed(self, request_id: int) -> None:
        """The request's first prefill is on its way: the node's queue (as the gateway counts it) holds it now."""
        self._unrouted.pop(request_id, None)

    def _release(self, request_id: int) -> None:
        self.in_flight -= 1
        self._unrouted.pop(request_id, None)
        self.control.metrics.in_flight.set(self.in_flight)

    def _check(self, prompt_tokens: int) -> None:
        s = self.section
        if self.in_flight >= s.max_in_flight:
            raise OverloadError(429, f"the gateway has {self.in_flight} requests in flight (its bound is "
                                     f"{s.max_in_flight}); retry after {s.retry_after_s} s",
                                RefusalReason.IN_FLIGHT, s.retry_after_s)
        control = self.control
        if control.is_starting or control.nodes.any_switch_pending:
            return  # the driver waits (bounded) for a route meanwhile
        view = control.nodes.view(time.monotonic())
        prefill = [i for i in view.instances if i.role in PREFILL_ROLES and i.can_accept]
        decode = [i for i in view.instances if i.role is Role.PD_DECODE and i.can_accept]
        if not prefill or not decode:
            missing = "prefill" if not prefill else "decode"
            raise OverloadError(503, f"no {missing} node is up; retry after {s.retry_after_s} s",
                                RefusalReason.NO_CAPACITY, s.retry_after_s)
        if self._no_room(prefill, prompt_tokens):
            raise OverloadError(429, f"every prefill node is at its queue bound ({s.node_max_queued_requests} "
                                     f"requests or {s.node_max_queued_tokens} tokens); retry after "
                                     f"{s.retry_after_s} s", RefusalReason.NODES_FULL, s.retry_after_s)

    def _no_room(self, prefill: list[InstanceView], prompt_tokens: int) -> bool:
        """Every prefill node at its bound, counting the requests admitted and not yet sent to one (a burst is
        admitted before any of it reaches a node's queue) and this one's tokens."""
        s = self.section
        room_requests = sum(max(0, s.node_max_queued_requests - i.queued_requests) for i in prefill)
        room_tokens = sum(max(0, s.node_max_queued_tokens - i.queued_tokens) for i in prefill)
        unrouted_tokens = sum(self._unrouted.values())
        return (len(self._unrouted) >= room_requests
                or (unrouted_tokens > 0 and unrouted_tokens + prompt_tokens > room_tokens)
                or room_tokens <= 0)

    def is_full(self, inst: InstanceView) -> bool:
        s = self.section
        return inst.queued_requests >= s.node_max_queued_requests or inst.queued_tokens >= s.node_max_queued_tokens

    def routing_view(self, view: ClusterView) -> ClusterView:
        """The view with full prefill nodes out of routing (unless that leaves no prefill node at all: a request
        admitted a moment ago then still gets a route, and its start deadline bounds its wait)."""
        full = {i.instance_id for i in view.instances if i.role in PREFILL_ROLES and i.can_accept and self.is_full(i)}
        if not full:
            return view
        open_prefill = [i for i in view.instances
                        if i.role in PREFILL_ROLES and i.can_accept and i.instance_id not in full]
        if not open_prefill:
            return view
        instances = tuple(replace(i, is_up=False) if i.instance_id in full else i for i in view.instances)
        return replace(view, instances=instances)

    def start_budget_s(self, waited_s: float) -> float:
        """What is left of the queue deadline for a prefill sent `waited_s` after admission (never below 0)."""
        return max(0.0, self.section.queue_deadline_s - waited_s)

    def shed_error(self, message: str) -> OverloadError:
        self.control.metrics.admission_shed.inc()
        self.control.metrics.admission_refused.labels(RefusalReason.QUEUE_DEADLINE.value).inc()
        return OverloadError(503, f"the request could not start within the queue deadline "
                                  f"({self.section.queue_deadline_s} s) and was shed: {message}",
                             RefusalReason.QUEUE_DEADLINE, self.section.retry_after_s)


async def await_start(future: Future[T], budget_s: float | None) -> T:
    """Node side: the result of a model-thread job, or `QueueDeadlinePassed` when it has not started within
    `budget_s` (it is then cancelled: the worker skips it, it never runs). A job that started in time runs to
    its end. `budget_s` None: no deadline."""
    wrapped = asyncio.wrap_future(future)
    if budget_s is None:
        return await wrapped
    try:
        return await asyncio.wait_for(asyncio.shield(wrapped), budget_s)
    except TimeoutError:
        if future.cancel():  # still queued (a started job cannot be cancelled)
            raise QueueDeadlinePassed(f"not started within {budget_s:.3f} s") from None
        return await wrapped
