"""Admission control's decisions on a real control plane (no processes): bounds, reasons, routing view, deadline."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future

import pytest

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.admission import AdmissionControl, OverloadError, QueueDeadlinePassed, RefusalReason, await_start
from prfaas.serve.config import AdmissionSection, default_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import Heartbeat, NodeRegister
from prfaas.serve.metrics import GatewayMetrics

BOUNDS = AdmissionSection(max_in_flight=3, node_max_queued_requests=2, node_max_queued_tokens=1000,
                          queue_deadline_s=5.0, retry_after_s=2)


def _control() -> ControlPlane:
    control = ControlPlane(default_config(), GatewayMetrics())
    for name, cluster, role in (("prfaas-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pd-0", ClusterKind.PD, Role.PD_PREFILL), ("pd-1", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url="http://127.0.0.1:9",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=4096))
    return control


def _queue(control: ControlPlane, name: str, requests: int, tokens: int) -> None:
    record = control.nodes.get(name)
    assert record is not None
    control.nodes.heartbeat(Heartbeat(name=name, role=record.role, queued_requests=requests, queued_tokens=tokens),
                            time.monotonic())


def test_in_flight_bound_then_release() -> None:
    admission = AdmissionControl(BOUNDS, _control())
    tickets = [admission.admit(i, 10) for i in range(3)]
    for i in range(3):
        admission.routed(i)
    with pytest.raises(OverloadError) as info:
        admission.admit(9, 10)
    assert (info.value.status, info.value.reason, info.value.headers) == (429, RefusalReason.IN_FLIGHT,
                                                                          {"retry-after": "2"})
    tickets[0].release()
    tickets[0].release()  # idempotent
    assert admission.in_flight == 2
    admission.admit(10, 10)


def test_full_nodes_refuse_and_unrouted_requests_count() -> None:
    control = _control()
    admission = AdmissionControl(AdmissionSection(max_in_flight=100, node_max_queued_requests=2,
                                                  node_max_queued_tokens=1000), control)
    _queue(control, "prfaas-0", 2, 100)  # full by requests
    _queue(control, "pd-0", 0, 0)
    admission.admit(1, 10)
    admission.admit(2, 10)  # pd-0's room (2 requests) is taken by the two admitted, not yet sent
    with pytest.raises(OverloadError) as info:
        admission.admit(3, 10)
    assert (info.value.status, info.value.reason, info.value.code) == (429, RefusalReason.NODES_FULL,
                                                                       "rate_limit_exceeded")
    assert control.metrics.admission_refused.labels("nodes_full")._value.get() == 1


def test_no_decode_node_is_503() -> None:
    control = _control()
    control.nodes.mark_down("pd-1")
    with pytest.raises(OverloadError) as info:
        AdmissionControl(BOUNDS, control).admit(1, 10)
    assert (info.value.status, info.value.reason, info.value.code) == (503, RefusalReason.NO_CAPACITY,
                                                                       "server_overloaded")


def test_routing_view_hides_full_nodes_but_never_all() -> None:
    control = _control()
    admission = AdmissionControl(BOUNDS, control)
    _queue(control, "pd-0", 0, 5000)
    view = admission.routing_view(control.nodes.view(time.monotonic()))
    assert {i.instance_id: i.is_up for i in view.instances} == {"prfaas-0": True, "pd-0": False, "pd-1": True}
    _queue(control, "prfaas-0", 5, 0)
    whole = control.nodes.view(time.monotonic())
    assert admission.routing_view(whole) is whole


def test_start_budget_and_node_side_deadline() -> None:
    admission = AdmissionControl(BOUNDS, _control())
    assert admission.start_budget_s(1.5) == 3.5 and admission.start_budget_s(9.0) == 0.0

    async def run() -> None:
        queued: Future[int] = Future()
        with pytest.raises(QueueDeadlinePassed):
            await await_start(queued, 0.05)
        assert queued.cancelled()  # dropped: a worker skips it
        started: Future[int] = Future()
        assert started.set_running_or_notify_cancel()
        asyncio.get_running_loop().call_later(0.1, started.set_result, 7)
        assert await await_start(started, 0.01) == 7  # started in time: runs to its end

    asyncio.run(run())
