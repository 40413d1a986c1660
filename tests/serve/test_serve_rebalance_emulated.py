"""The gateway's long-term loop on an emulated deployment: decode utilisation as the simulator counts it (slot
occupancy), and the planner re-optimising t from the emulated engine's own cost models (no profile needed)."""

from __future__ import annotations

import msgspec
import pytest

from prfaas.bench.paper_config import PaperScale, deploy_config, paper_configurations, sim_scenario
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import default_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import Heartbeat, NodeRegister
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.replan import emulated_scenario, live_reoptimiser


def _control() -> ControlPlane:
    control = ControlPlane(default_config(), GatewayMetrics())
    for name, cluster, role in (("prfaas-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pd-0", ClusterKind.PD, Role.PD_PREFILL), ("pd-1", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url="http://127.0.0.1:9",
                                      kv_host="127.0.0.1", kv_port=9, max_batch=4, pid=1, max_context_tokens=99))
    return control


def test_decode_utilisation_is_slot_occupancy_not_busy_time() -> None:
    """A decode node stepping a batch of 1 of 4 slots is busy all the time; the window must say 25%."""
    control = _control()
    for t in (0.0, 1.0, 2.0, 3.0):
        control.nodes.heartbeat(Heartbeat(name="pd-1", role=Role.PD_DECODE, running_batch=1, busy_s_total=t), t)
        control.nodes.heartbeat(Heartbeat(name="pd-0", role=Role.PD_PREFILL, busy_s_total=t / 2), t)
    control.window.start_s = 0.0
    window = control.window_stats(3.0)
    assert window.pd_decode_util == pytest.approx(0.25)
    assert window.pd_prefill_util == pytest.approx(0.5)  # prefill stays the busy fraction
    assert control.nodes.decode_occupancy("pd-1", 10.0, 20.0) == 0.0  # no heartbeat in the window


def test_emulated_deployment_gets_a_planner_reoptimiser_without_a_profile() -> None:
    c = next(c for c in paper_configurations() if c.name == "prfaas-pd")
    scale = PaperScale()
    cfg = deploy_config(c, scale)
    assert cfg.policy.profile is None
    scenario = emulated_scenario(cfg)
    sim = sim_scenario(c, scale)
    assert scenario.n_prfaas == c.n_prfaas and scenario.n_pd == c.n_p + c.n_d
    assert scenario.egress_gbps == pytest.approx(scale.link_gbps)
    for n in (1_000, 50_000):  # the same (scaled) cost models the nodes and the simulator run
        assert scenario.pd_prefill is not None and sim.pd_prefill is not None
        assert scenario.pd_prefill.t_prefill_s(n) == pytest.approx(sim.pd_prefill.t_prefill_s(n))
        assert scenario.prfaas_prefill is not None and sim.prfaas_prefill is not None
        assert scenario.prfaas_prefill.t_prefill_s(n) == pytest.approx(sim.prfaas_prefill.t_prefill_s(n))
    reoptimise = live_reoptimiser(cfg)
    assert reoptimise is not None
    # more PD-P nodes take more prefill locally: the best threshold does not fall
    assert reoptimise(c.n_p + 2, c.n_d - 2, None) >= reoptimise(c.n_p, c.n_d, None) > 0
    # the model engine without a profile still has none
    plain = msgspec.structs.replace(cfg, model=msgspec.structs.replace(cfg.model, engine=default_config().model.engine))
    assert live_reoptimiser(plain) is None
