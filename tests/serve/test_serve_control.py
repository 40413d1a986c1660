"""The gateway's control plane without processes: policy swaps, rebalance plans, role-switch validation."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from prfaas.core.errors import UnknownNameError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.bandwidth_aware import BandwidthSignals
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.policy.types import ClusterView, RebalancePlan, RebalanceReason, WindowStats
from prfaas.serve.config import default_config
from prfaas.serve.control import ControlPlane, RoleSwitchError
from prfaas.serve.messages import Heartbeat, NodeRegister
from prfaas.serve.metrics import GatewayMetrics


def _control() -> ControlPlane:
    control = ControlPlane(default_config(), GatewayMetrics())
    for name, cluster, role in (("prfaas-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pd-0", ClusterKind.PD, Role.PD_PREFILL), ("pd-1", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url="http://127.0.0.1:9",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=99))
    return control


class _FixedRebalancer:
    def __init__(self, plan: RebalancePlan) -> None:
        self.plan = plan
        self.windows: list[WindowStats] = []

    def step(self, window: WindowStats, view: ClusterView, now_s: float) -> RebalancePlan:
        self.windows.append(window)
        return self.plan


def test_policy_swap_keeps_the_index_and_threshold() -> None:
    control = _control()
    control.set_policy(None, 777)
    assert control.router.threshold_tokens == 777
    control.set_policy("prfaas-bandwidth-aware", None)
    assert control.policy_name == "prfaas-bandwidth-aware" and control.router.threshold_tokens == 777
    assert control.router.kv_index is control.kv_index
    with pytest.raises(UnknownNameError):
        control.set_policy("nope", None)


def test_rebalance_plan_installs_threshold_and_window_counts_arrivals() -> None:
    control = _control()
    control.window.record(300, offloaded=False)
    control.window.record(5000, offloaded=True)
    fake = _FixedRebalancer(RebalancePlan(decided_at_s=1.0, reason=RebalanceReason.THRESHOLD_ONLY,
                                          new_threshold_tokens=4321))
    control.rebalancer = fake  # type: ignore[assignment]
    plan = asyncio.run(control.rebalance_once(control.window.start_s + 5.0))
    assert plan.new_threshold_tokens == 4321 and control.router.threshold_tokens == 4321
    window = fake.windows[0]
    assert window.num_arrivals == 2 and window.num_offloaded == 1
    assert window.uncached_token_samples == (300, 5000)
    assert control.window.num_arrivals == 0  # a fresh window started


def test_utilisation_comes_from_heartbeat_busy_time() -> None:
    control = _control()
    for t, busy in ((0.0, 0.0), (1.0, 0.25), (2.0, 0.5)):
        control.nodes.heartbeat(Heartbeat(name="pd-0", role=Role.PD_PREFILL, busy_s_total=busy), t)
    assert control.nodes.utilisation("pd-0", 0.0, 2.0) == pytest.approx(0.25)


@pytest.mark.parametrize(("changes", "needle"), [
    ({"ghost": Role.PD_DECODE}, "unknown or down"),
    ({"prfaas-0": Role.PD_DECODE}, "cannot take role"),
    ({"pd-0": Role.PRFAAS_PREFILL}, "cannot take role"),
])
def test_invalid_role_switches_are_refused_before_draining(changes: dict[str, Role], needle: str) -> None:
    control = _control()
    with pytest.raises(RoleSwitchError, match=needle):
        asyncio.run(control.switch_roles(changes))
    assert not control.nodes.any_switch_pending


def test_router_ticks_relax_a_raised_threshold_between_requests() -> None:
    control = _control()
    control.set_policy("prfaas-bandwidth-aware", 1000)
    router = control.router
    assert isinstance(router, BandwidthAwareRouter)
    router.controller.config = dataclasses.replace(router.controller.config, control_interval_s=0.02)
    hot = BandwidthSignals(utilisation=0.95, capacity_gbps=1.0, goodput_gbps=0.95)
    for k in range(3):
        router.controller.update(hot, float(k), 1000)
    assert router.effective_threshold() > 1000

    async def main() -> None:
        control.start(None)  # type: ignore[arg-type]  # the tick loop needs no HTTP session
        try:
            for _ in range(200):  # the nodes report no link and no queues: every tick is cool
                await asyncio.sleep(0.02)
                if router.effective_threshold() == 1000:
                    break
        finally:
            await control.close()

    asyncio.run(main())
    assert router.effective_threshold() == 1000


def test_the_deployment_is_starting_until_every_configured_node_registered() -> None:
    control = ControlPlane(default_config(), GatewayMetrics())
    names = [node.name for node in control.cfg.nodes]
    assert control.is_starting and len(names) >= 3
    registered = _control()  # registers prfaas-0, pd-0 and pd-1: the default deployment's nodes
    assert sorted(registered.nodes.nodes) == sorted(names)
    assert not registered.is_starting


def test_a_decode_routed_during_a_prefill_counts_as_queued_on_its_node() -> None:
    """The simulator's decode view counts requests routed to a node whose state has not arrived; so does the
    gateway's (else every routing in a prefill's lifetime sees the node emptier than it is)."""
    control = _control()
    record = control.nodes.get("pd-1")
    assert record is not None

    def queued() -> int:
        view = control.nodes.view(0.0)
        return next(i.queued_requests for i in view.instances if i.instance_id == "pd-1")

    before = queued()
    record.gateway_decodes_inbound += 2
    assert queued() == before + 2
    record.gateway_decodes_inbound -= 2
    assert queued() == before
