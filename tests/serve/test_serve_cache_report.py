"""Prefix-cache reports: the node's reporter, the gateway applying them to its KV index, and the stub's cache."""

from __future__ import annotations

from prfaas.core.blocks import block_hash_chain
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.backend import StubBackend
from prfaas.serve.cache_report import CacheReport, CacheReporter
from prfaas.serve.config import default_config
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import Heartbeat, NodeRegister, SamplingMsg
from prfaas.serve.metrics import GatewayMetrics

NODE = "pd-0"


def _control() -> ControlPlane:
    control = ControlPlane(default_config(), GatewayMetrics())
    control.register(NodeRegister(name=NODE, cluster=ClusterKind.PD, role=Role.PD_PREFILL,
                                  control_url="http://127.0.0.1:9", kv_host="127.0.0.1", kv_port=9, max_batch=4,
                                  pid=1, max_context_tokens=99))
    return control


def _round_trip(control: ControlPlane, reporter: CacheReporter, held: frozenset[int] | None) -> Heartbeat:
    """One heartbeat: the node builds its report, the gateway applies it, the node reads the reply."""
    report = reporter.report(held)
    msg = Heartbeat(name=NODE, role=Role.PD_PREFILL, cache_seq=report.seq, cache_full=report.is_full,
                    cache_added=list(report.added), cache_removed=list(report.removed))
    reporter.on_reply(resync=control.apply_cache_report(msg))
    return msg


def _held(control: ControlPlane) -> set[int]:
    return {h for h in range(100) if control.kv_index.contains(NODE, h)}


def test_reporter_sends_full_then_deltas_then_nothing() -> None:
    reporter = CacheReporter(full_every=100)
    first = reporter.report(frozenset({1, 2, 3}))
    assert first.is_full and first.added == (1, 2, 3)
    reporter.on_reply(resync=False)
    delta = reporter.report(frozenset({2, 3, 4}))
    assert not delta.is_full and delta.seq == first.seq + 1
    assert delta.added == (4,) and delta.removed == (1,)
    reporter.on_reply(resync=False)
    same = reporter.report(frozenset({2, 3, 4}))
    assert same.seq == delta.seq and same.added == same.removed == ()
    assert reporter.report(None) == CacheReport(seq=0)  # no prefix cache: nothing to report (the gateway ignores 0)


def test_resync_lost_heartbeats_and_periodic_full_reports() -> None:
    reporter = CacheReporter(full_every=3)
    reporter.report(frozenset({1}))
    reporter.on_reply(resync=False)
    reporter.report(frozenset({1, 2}))
    reporter.on_reply(resync=True)  # the gateway could not apply it
    again = reporter.report(frozenset({1, 2}))
    assert again.is_full and again.added == (1, 2)
    reporter.on_lost()  # no answer: whether it was applied is unknown
    after_loss = reporter.report(frozenset({2}))
    assert after_loss.is_full
    reporter.on_reply(resync=False)
    kinds = []
    for _ in range(6):
        report = reporter.report(frozenset({2}))
        kinds.append(report.is_full)
        reporter.on_reply(resync=False)
    assert kinds == [False, False, True, False, False, True]  # a full report every third heartbeat


def test_gateway_index_follows_the_node_cache_through_evictions() -> None:
    control, reporter = _control(), CacheReporter(full_every=1000)
    control.kv_index.insert(NODE, [7, 8])  # optimistic inserts after prefills the node may not have kept
    _round_trip(control, reporter, frozenset({1, 2, 3}))
    assert _held(control) == {1, 2, 3}  # the first (full) report replaces the gateway's guess
    _round_trip(control, reporter, frozenset({2, 3, 4, 5}))
    assert _held(control) == {2, 3, 4, 5}  # the node evicted 1 and stored 4, 5
    _round_trip(control, reporter, frozenset({2, 3, 4, 5}))
    assert control.kv_index_summary()[NODE] == {"blocks": 4, "report_seq": 2}
    assert control.metrics.cache_resyncs._value.get() == 0  # type: ignore[attr-defined]


def test_out_of_order_report_asks_for_a_full_one_and_registration_starts_over() -> None:
    control, reporter = _control(), CacheReporter(full_every=1000)
    _round_trip(control, reporter, frozenset({1, 2}))
    gap = Heartbeat(name=NODE, role=Role.PD_PREFILL, cache_seq=5, cache_added=[9])  # seq 2-4 never arrived
    assert control.apply_cache_report(gap) is True
    assert _held(control) == {1, 2}  # a delta on an unknown base is never applied
    assert control.metrics.cache_resyncs._value.get() == 1  # type: ignore[attr-defined]
    control.register(NodeRegister(name=NODE, cluster=ClusterKind.PD, role=Role.PD_PREFILL,
                                  control_url="http://127.0.0.1:9", kv_host="127.0.0.1", kv_port=9, max_batch=4,
                                  pid=2, max_context_tokens=99))
    reporter.on_lost()  # what the node does when it registers
    _round_trip(control, reporter, frozenset({3}))
    assert _held(control) == {3}
    unknown = Heartbeat(name="nobody", role=Role.PD_PREFILL, cache_seq=1, cache_full=True, cache_added=[1])
    assert control.apply_cache_report(unknown) is False  # a node the index does not know is ignored


def test_stub_backend_cache_is_an_lru_of_prompt_blocks() -> None:
    stub = StubBackend(prefix_cache_bytes=3 * 512)  # three 512-token blocks
    assert StubBackend().cached_blocks() is None
    sampling = SamplingMsg(max_tokens=1)
    first, second = list(range(1100)), list(range(5000, 6030))
    stub.prefill("a", first, sampling, None)
    assert stub.cached_blocks() == frozenset(block_hash_chain(first, include_partial=False))  # 2 full blocks
    stub.prefill("b", second, sampling, None)
    held = stub.cached_blocks()
    assert held is not None and len(held) == 3
    assert set(block_hash_chain(second, include_partial=False)) <= held  # the newest prompt's blocks stay
    assert block_hash_chain(first, include_partial=False)[0] in held  # LRU drops the older prompt's tail first
