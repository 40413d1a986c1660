from __future__ import annotations

import pytest
from simkit import LinearPrefill, requests, small_deployment

from prfaas.core.lifecycle import ClusterKind, RequestState
from prfaas.policy.bandwidth_aware import BandwidthAwareConfig
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.registry import make_router
from prfaas.policy.routers.bandwidth_aware import BandwidthAwareRouter
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.run import simulate
from prfaas.sim.simulator import Simulator
from prfaas.workload.arrivals import PoissonArrivals
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.request import WorkloadRequest

THRESHOLD = PolicyConfig(threshold_tokens=4000)


def test_lone_offloaded_request_has_analytic_ttft_and_finish() -> None:
    dep = small_deployment(latency_s=0.002, step_s=0.01)
    run = simulate(dep, "prfaas", requests([8000], output_tokens=20), policy_config=THRESHOLD)
    (rec,) = run.records
    fast = LinearPrefill(b=5e-5)
    t_prefill = fast.t_prefill_s(8000)
    assert rec.prefill_cluster == ClusterKind.PRFAAS.value and rec.route == "long_offload"
    assert rec.prefill_s == pytest.approx(t_prefill)
    assert rec.transfer_bytes == pytest.approx(fast.s_kv_bytes(8000))
    # 10 Gbps is faster than the release rate: the state leaves as it is produced, plus one-way latency
    assert rec.ttft_s == pytest.approx(t_prefill + 0.002)
    assert rec.finish_s == pytest.approx(t_prefill + 0.002 + 20 * 0.01)
    assert rec.tpot_s == pytest.approx(0.01)
    assert run.summary.egress_bytes == pytest.approx(fast.s_kv_bytes(8000), rel=1e-6)


def test_threshold_routes_short_local_and_long_remote() -> None:
    run = simulate(small_deployment(), "prfaas", requests([1000, 9000, 3999, 4001, 20000]), policy_config=THRESHOLD)
    offloaded = [r.input_tokens for r in run.records if r.is_offloaded]
    assert offloaded == [9000, 4001, 20000]
    assert all(r.state is RequestState.FINISHED_OK for r in run.records)
    local = [r for r in run.records if not r.is_offloaded]
    assert all(r.prefill_instance.startswith("pd-") for r in local)


def test_homogeneous_never_uses_the_link() -> None:
    dep = small_deployment(n_prfaas=0, n_p=2, n_d=2)
    run = simulate(dep, "homogeneous", requests([1000, 50000, 9000]))
    assert run.summary.egress_bytes == 0.0
    assert run.summary.offload_fraction == 0.0
    assert run.summary.num_finished == 3


def test_a_slow_link_queues_offloaded_transfers() -> None:
    reqs = requests([30000] * 6, gap_s=0.05)
    fast = simulate(small_deployment(capacity_gbps=100.0), "prfaas", reqs, policy_config=THRESHOLD)
    slow = simulate(small_deployment(capacity_gbps=0.5), "prfaas", reqs, policy_config=THRESHOLD)
    fast_ttft = max(r.ttft_s or 0.0 for r in fast.records)
    slow_ttft = max(r.ttft_s or 0.0 for r in slow.records)
    # six 301 MB states over 0.5 Gbps need >= 28.9 s of link time in total
    assert slow_ttft >= 6 * 301e6 * 8 / 0.5e9 - 1.0
    assert slow_ttft > 5 * fast_ttft
    assert max(r.transfer_s or 0.0 for r in slow.records) > 1.0


def test_every_request_is_observed_once_and_nothing_leaks() -> None:
    dep = small_deployment()
    wl = synthetic_requests(truncated_lognormal(8.5, 1.0, 128, 40000), 30, PoissonArrivals(4.0), duration_s=60,
                            seed=3)
    index = GlobalKvIndex()
    router = make_router("prfaas", THRESHOLD, kv_index=index)
    sim = Simulator(dep, router, wl, kv_index=index)
    records = sim.run()
    assert len(records) == len(wl)
    assert [r.request_id for r in records] == sorted(r.request_id for r in wl)
    assert router.pending_request_ids == ()
    assert not sim.in_flight
    assert all(n.is_idle for n in sim.nodes.values())
    assert sim.egress.num_in_flight == 0


def _records(seed: int):  # type: ignore[no-untyped-def]
    wl = synthetic_requests(truncated_lognormal(8.5, 1.0, 128, 40000), 30, PoissonArrivals(5.0), duration_s=60,
                            seed=seed)
    return simulate(small_deployment(), "prfaas-bandwidth-aware", wl, policy_config=THRESHOLD).records


def test_same_seed_gives_identical_records() -> None:
    first, second = _records(7), _records(7)
    assert first == second
    assert first != _records(8)


def test_prfaas_node_failure_reroutes_and_loses_nothing() -> None:
    wl = synthetic_requests(truncated_lognormal(9.0, 1.0, 128, 40000), 30, PoissonArrivals(4.0), duration_s=120,
                            seed=5)
    script = [ScriptedEvent(30.0, ScriptKind.NODE_FAIL, instance_id="prfaas-0"),
              ScriptedEvent(80.0, ScriptKind.NODE_RECOVER, instance_id="prfaas-0")]
    run = simulate(small_deployment(), "prfaas", wl, policy_config=THRESHOLD, script=script)
    assert len(run.records) == len(wl)
    assert all(r.state is RequestState.FINISHED_OK for r in run.records)
    retried = [r for r in run.records if r.attempts > 1]
    assert retried, "the failure hit no request; the scenario does not test rerouting"
    assert all(r.arrival_s <= 30.0 for r in retried)
    down = [r for r in run.records if 30.0 <= r.arrival_s < 80.0]
    assert all(r.prefill_instance != "prfaas-0" for r in down)
    assert any(r.prefill_instance == "prfaas-0" for r in run.records if r.arrival_s >= 90.0)


def test_decode_node_failure_reprefills_its_requests() -> None:
    wl = synthetic_requests(truncated_lognormal(8.0, 1.0, 128, 20000), 200, PoissonArrivals(4.0), duration_s=40,
                            seed=1)
    script = [ScriptedEvent(20.0, ScriptKind.NODE_FAIL, instance_id="pd-3")]
    run = simulate(small_deployment(), "prfaas", wl, policy_config=THRESHOLD, script=script,
                   options=SimOptions())
    assert all(r.state is RequestState.FINISHED_OK for r in run.records)
    assert any(r.attempts > 1 for r in run.records)
    assert all(r.decode_instance != "pd-3" for r in run.records if r.arrival_s > 20.0)


def test_same_trace_gives_identical_records(mooncake_trace) -> None:  # type: ignore[no-untyped-def]
    from prfaas.workload.traces import load_trace

    trace = load_trace(mooncake_trace, limit=1500)
    cfg = PolicyConfig(threshold_tokens=8000)
    runs = [simulate(small_deployment(capacity_gbps=5.0), "prfaas-cache-aware", trace, policy_config=cfg)
            for _ in range(2)]
    assert runs[0].records == runs[1].records
    assert sum(r.cached_tokens > 0 for r in runs[0].records) > 100  # the trace's prefixes were reused


def test_failure_while_state_is_streaming_aborts_the_transfer_and_retries() -> None:
    reqs = requests([30000] * 4, gap_s=0.01)
    script = [ScriptedEvent(2.0, ScriptKind.NODE_FAIL, instance_id="prfaas-0")]
    index = GlobalKvIndex()
    router = make_router("prfaas", THRESHOLD, kv_index=index)
    sim = Simulator(small_deployment(capacity_gbps=0.5), router, reqs, kv_index=index, script=script)
    records = sim.run()
    assert all(r.state is RequestState.FINISHED_OK for r in records)
    retried = [r for r in records if r.attempts > 1]
    assert len(retried) == 2  # one streaming its state (prefill done at 1.6 s), one prefilling
    assert sim.egress.transfers_failed >= 1
    assert router.pending_request_ids == ()
    assert all(r.prefill_instance != "prfaas-0" for r in retried)


class _BandwidthAwareWithoutTicks(BandwidthAwareRouter):
    """The same controller, updated only when a request arrives (what ticks are for)."""

    @property
    def tick_interval_s(self) -> float | None:
        return None


@pytest.mark.parametrize(("router_cls", "late_route"), [(BandwidthAwareRouter, "long_offload"),
                                                         (_BandwidthAwareWithoutTicks, "link_congested_local")])
def test_router_ticks_relax_the_threshold_during_a_quiet_spell(router_cls: type[BandwidthAwareRouter],
                                                                late_route: str) -> None:
    burst = [WorkloadRequest(i, i * 0.6, 30_000, 10) for i in range(12)]  # saturates the 0.5 Gbps link
    late = WorkloadRequest(100, 120.0, 4_500, 10)  # above t = 4000, below the raised t'
    router = router_cls(threshold_tokens=THRESHOLD.threshold_tokens or 0)
    records = Simulator(small_deployment(capacity_gbps=0.5), router, [*burst, late]).run()
    assert {r.route for r in records if r.request_id < 100} == {"long_offload"}
    assert records[-1].request_id == 100 and records[-1].route == late_route


def test_an_integer_tick_interval_from_a_policy_table_runs() -> None:
    router = BandwidthAwareRouter(threshold_tokens=4000, bandwidth=BandwidthAwareConfig(control_interval_s=1))
    records = Simulator(small_deployment(), router, requests([30_000, 500], gap_s=3.0)).run()
    assert [r.route for r in records] == ["long_offload", "short_local"]
    assert router.controller.state.last_update_s is not None and router.controller.state.last_update_s > 3.0
