"""Pieces of the serve package without processes: messages, OpenAI validation, text streaming, the node
registry's view, block hashes, and the model thread over the stub backend."""

from __future__ import annotations

import threading

import pytest

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID
from prfaas.serve.backend import DecodeEvent, StubBackend
from prfaas.serve.cluster import NodeRegistry
from prfaas.serve.driver import block_hashes
from prfaas.serve.messages import (
    DecodeTarget,
    Heartbeat,
    NodeRegister,
    PrefillRequest,
    ProtocolVersionError,
    SamplingMsg,
    decode,
    encode,
)
from prfaas.serve.openai_api import ApiError, decode_chat, decode_completion
from prfaas.serve.text import TextStream
from prfaas.serve.worker import ModelWorker


def _register(name: str, cluster: ClusterKind, role: Role) -> NodeRegister:
    return NodeRegister(name=name, cluster=cluster, role=role, control_url="http://x", kv_host="h", kv_port=1,
                        max_batch=8, pid=1, max_context_tokens=100)


def test_messages_round_trip_and_reject_other_versions() -> None:
    msg = PrefillRequest(request_id="1-0", token_ids=[1, 2], sampling=SamplingMsg(max_tokens=3),
                         decode_target=DecodeTarget(name="pd-1", kv_host="h", kv_port=2), route="forced")
    assert decode(encode(msg), PrefillRequest) == msg
    with pytest.raises(ProtocolVersionError):
        decode(encode(PrefillRequest(request_id="1", token_ids=[], sampling=SamplingMsg(max_tokens=1),
                                     decode_target=msg.decode_target, route="x", version=99)), PrefillRequest)
    with pytest.raises(ProtocolVersionError):
        decode(b'{"type": "heartbeat", "name": 3}', Heartbeat)


def test_openai_validation_names_the_param() -> None:
    assert decode_completion(b'{"model": "m", "prompt": [1, 2], "unknown_field": 1}').prompt == [1, 2]
    cases = {b'{"model": "m"}': "prompt", b'{"model": "m", "prompt": "x", "top_p": 0}': "top_p",
             b'{"model": "m", "prompt": "x", "n": 2}': "n", b'{"model": "m", "prompt": [1, "a"]}': "prompt",
             b'{"model": "m", "prompt": "x", "stop": [""]}': "stop[0]"}
    for body, param in cases.items():
        with pytest.raises(ApiError) as info:
            decode_completion(body)
        assert info.value.param == param and info.value.status == 400
    with pytest.raises(ApiError) as info:
        decode_chat(b'{"model": "m", "messages": [], "max_completion_tokens": 2}')
    assert info.value.param == "messages"


class _CharTokenizer:
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def test_text_stream_holds_back_possible_stop_strings() -> None:
    stream = TextStream(_CharTokenizer(), stop=["END"])
    assert stream.push([ord("a"), ord("b"), ord("E")]) == "a"
    assert stream.push([ord("N")]) == "b"
    assert stream.push([ord("D"), ord("z")]) == ""
    assert stream.stopped and stream.text == "ab"
    plain = TextStream(_CharTokenizer())
    assert plain.push([ord("x")]) == "x" and plain.finish() == ""


def test_registry_view_expiry_and_egress_link() -> None:
    reg = NodeRegistry(heartbeat_timeout_s=1.0)
    reg.register(_register("p", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL), 0.0)
    reg.register(_register("d", ClusterKind.PD, Role.PD_DECODE), 0.0)
    snap = LinkSnapshot(link_id="h:1", time_s=0.5, capacity_gbps=10.0, goodput_gbps=2.5, window_s=5.0,
                        bytes_total=1000, transfers_total=2, transfers_failed=0, transfers_in_flight=1,
                        bytes_in_flight=10, rtt_ms=0.3)
    assert reg.heartbeat(Heartbeat(name="p", role=Role.PRFAAS_PREFILL, queued_requests=2, links=[snap]), 0.5)
    assert not reg.heartbeat(Heartbeat(name="ghost", role=Role.PD_DECODE), 0.5)
    view = reg.view(0.6)
    assert view.instance("p") is not None and view.instance("p").queued_requests == 2  # type: ignore[union-attr]
    link = view.links[PRFAAS_EGRESS_LINK_ID]
    assert link.bytes_total == 1000 and link.utilisation == pytest.approx(0.25)
    assert reg.expire(1.2) == ["d"]  # p was heard at 0.5
    reg.begin_switch("p", Role.PD_DECODE)
    assert reg.view(1.3).instance("p").role is Role.DRAINING  # type: ignore[union-attr]


def test_block_hashes_chain_and_prefix_property() -> None:
    a = block_hashes(list(range(1100)), 512)
    b = block_hashes(list(range(1024)) + [7] * 76, 512)
    assert len(a) == 3 and a[:2] == b[:2] and a[2] != b[2]
    assert block_hashes([1, 2, 3], 512) != block_hashes([1, 2, 4], 512)


def test_model_worker_batches_stub_decodes_and_runs_jobs() -> None:
    events: list[DecodeEvent] = []
    done = threading.Event()

    def on_events(batch: list[DecodeEvent]) -> None:
        events.extend(batch)
        if sum(e.finish_reason is not None for e in events) == 3:
            done.set()

    backend = StubBackend()
    worker = ModelWorker(backend, max_batch=2, on_events=on_events)
    worker.start()
    try:
        out = worker.submit(lambda: backend.prefill("r", [1, 2, 3], SamplingMsg(max_tokens=4), None)).result(5)
        for i in range(3):
            worker.admit(f"r{i}", out.state, out.first_token, SamplingMsg(max_tokens=4))
        assert done.wait(5)
    finally:
        worker.stop()
    for i in range(3):
        mine = [e for e in events if e.request_id == f"r{i}"]
        assert [e.token_id for e in mine] == [(out.first_token + k) % 2048 for k in (1, 2, 3)]
        assert mine[-1].finish_reason == "length"
    assert backend.num_running == 0
