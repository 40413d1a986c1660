"""The emulated engine: exact S_kv bytes of the emulated model, profile timing, checked bytes before decode."""

from __future__ import annotations

import pytest

from prfaas.core.layers import LayerKind, total_state_bytes
from prfaas.core.lifecycle import ClusterKind
from prfaas.perf.emulated import EmulationScale, affine_state_fit, emulated_layers
from prfaas.planner.paper import paper_profile
from prfaas.serve.backend import ENGINE_ERROR, make_backend
from prfaas.serve.config import EmulatedSection, EngineKind, ModelSection
from prfaas.serve.emulated_backend import EmulatedBackend, EmulatedState, emulated_models
from prfaas.serve.messages import SamplingMsg

SCALE = EmulationScale(time_scale=2.0, state_scale=256.0)
SECTION = EmulatedSection(time_scale=SCALE.time_scale, state_scale=SCALE.state_scale)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def backend(cluster: ClusterKind = ClusterKind.PRFAAS, fake: FakeClock | None = None,
            steps_per_event: int = 1) -> EmulatedBackend:
    model = emulated_models(SECTION)[cluster]
    if fake is None:
        return EmulatedBackend(model, SECTION.t_decode_s, steps_per_event=steps_per_event)
    return EmulatedBackend(model, SECTION.t_decode_s, steps_per_event=steps_per_event, clock=fake.clock,
                           sleep=fake.sleep)


def sampling(max_tokens: int) -> SamplingMsg:
    return SamplingMsg(max_tokens=max_tokens, temperature=1.0, top_p=1.0, seed=None, stop_strings=())


def test_make_backend_selects_the_emulated_engine_per_cluster() -> None:
    model = ModelSection(engine=EngineKind.EMULATED, emulated=SECTION)
    prfaas, pd = make_backend(model, ClusterKind.PRFAAS), make_backend(model, ClusterKind.PD)
    assert isinstance(prfaas, EmulatedBackend) and isinstance(pd, EmulatedBackend)
    # the H20 derived for PD nodes is slower than the H200 of Table 5 at every length
    for length in (1024, 19_400, 131_072):
        assert pd.prefill_model.t_prefill_s(length) > prfaas.prefill_model.t_prefill_s(length)


@pytest.mark.parametrize("num_tokens", [1, 128, 1000, 19_400, 44_000, 131_072])
def test_ships_exactly_s_kv_of_the_emulated_model(num_tokens: int) -> None:
    b = backend()
    layout = b.expected_layout(num_tokens)
    exact = total_state_bytes(b.layers, num_tokens)
    assert layout.total_bytes == exact == b.prefill_model.s_kv_bytes(num_tokens)
    # ... which is the catalog-spec model fitted to Table 5, divided by k_b
    table = paper_profile()
    a, slope = affine_state_fit([(p.num_tokens, p.s_kv_bytes) for p in table.profile.prefill])
    assert exact == round(a / SCALE.state_scale) + num_tokens * round(slope / SCALE.state_scale)
    # and within 2% of Table 5's own S_kv (piecewise linear through the measured points), scaled
    if num_tokens >= 1024:
        assert exact == pytest.approx(table.s_kv_bytes(num_tokens) / SCALE.state_scale, rel=0.02)
    # per-layer: MLA layers grow with the prompt, KDA layers are fixed; the 3:1 layout holds
    kinds = [s.kind for s in b.layers]
    assert kinds.count(LayerKind.LINEAR) == 3 * kinds.count(LayerKind.MLA)
    for spec in layout.tensors:
        if spec.layer_kind is LayerKind.MLA:
            assert spec.shape[0] == num_tokens


def test_prefill_hands_every_layer_over_with_its_bytes_in_order() -> None:
    fake = FakeClock()
    b = backend(fake=fake)
    got: list[tuple[int, int, float]] = []
    out = b.prefill("r1", list(range(3, 2003)), sampling(4),
                    lambda layer, views: got.append((layer, sum(v.nbytes for v in views), fake.now)))
    layout = b.expected_layout(2000)
    assert [g[0] for g in got] == list(layout.layer_indices)
    assert sum(g[1] for g in got) == layout.total_bytes
    times = [g[2] for g in got]
    assert times == sorted(times)
    assert fake.now - 100.0 == pytest.approx(b.prefill_model.t_prefill_s(2000))
    assert isinstance(out.state, EmulatedState) and out.state.nbytes == layout.total_bytes


def test_prefill_time_follows_the_profile_times_k() -> None:
    durations = {}
    for cluster in (ClusterKind.PRFAAS, ClusterKind.PD):
        for length in (1024, 32_768):
            fake = FakeClock()
            backend(cluster, fake).prefill("r", [5] * length, sampling(2), None)
            durations[cluster, length] = fake.now - 100.0
    h200 = paper_profile()
    for length in (1024, 32_768):
        assert durations[ClusterKind.PRFAAS, length] == pytest.approx(h200.t_prefill_s(length) * SCALE.time_scale)
        assert durations[ClusterKind.PD, length] > durations[ClusterKind.PRFAAS, length]
    # ratios of the profile are kept: 32K costs more than 1K by Table 5's ratio
    ratio = durations[ClusterKind.PRFAAS, 32_768] / durations[ClusterKind.PRFAAS, 1024]
    assert ratio == pytest.approx(h200.t_prefill_s(32_768) / h200.t_prefill_s(1024))


def _received(b: EmulatedBackend, request_id: str, num_tokens: int) -> EmulatedState:
    """What a decode node holds after the transport filled its buffers from a prefill."""
    producer = backend()
    out = producer.prefill(request_id, [7] * num_tokens, sampling(2), None)
    state, views = b.allocate(b.expected_layout(num_tokens))
    for view, src in zip(views, out.state.buffers, strict=True):
        view[:] = src
    assert isinstance(state, EmulatedState)
    return state


def test_decode_checks_the_bytes_then_steps_at_the_profile_rate() -> None:
    fake = FakeClock()
    b = backend(ClusterKind.PD, fake)
    assert b.decode_add("a", _received(b, "a", 300), 10, sampling(4)) is None
    assert b.decode_add("b", _received(b, "b", 50), 20, sampling(3)) is None
    tokens: dict[str, list[int]] = {"a": [], "b": []}
    finished = {}
    steps = 0
    while b.num_running:
        for e in b.decode_step():
            if e.token_id is not None:
                tokens[e.request_id].append(e.token_id)
            if e.finish_reason:
                finished[e.request_id] = e.finish_reason
        steps += 1
    assert tokens == {"a": [11, 12, 13], "b": [21, 22]}  # the first token came from the prefill
    assert finished == {"a": "length", "b": "length"}
    # one step of the whole batch takes T_decode x k_t, whatever the batch size
    assert fake.sleeps == pytest.approx([SECTION.t_decode_s * SCALE.time_scale] * steps)


def test_steps_per_event_sleeps_several_steps_and_emits_their_tokens() -> None:
    fake = FakeClock()
    b = backend(ClusterKind.PD, fake, steps_per_event=4)
    b.decode_add("a", _received(b, "a", 10), 0, sampling(7))
    events = b.decode_step()
    assert [e.token_id for e in events] == [1, 2, 3, 4]
    assert fake.sleeps == pytest.approx([4 * SECTION.t_decode_s * SCALE.time_scale])
    events = b.decode_step()
    assert [e.token_id for e in events] == [5, 6] and events[-1].finish_reason == "length"


@pytest.mark.parametrize("damage", ["flip", "other_request", "short"])
def test_corrupt_state_is_an_error_and_never_output(damage: str) -> None:
    b = backend(ClusterKind.PD, FakeClock())
    state = _received(b, "x" if damage == "other_request" else "r", 500)
    if damage == "flip":
        state.buffers[3][17] ^= 0x01
    elif damage == "short":
        state.buffers[-1] = state.buffers[-1][:-1]
    assert b.decode_add("r", state, 1, sampling(5)) == ENGINE_ERROR
    assert b.num_running == 0 and b.decode_step() == [] and b.state_errors == 1


def test_geometry_spreads_bytes_exactly_over_the_layers() -> None:
    layers = emulated_layers(1000.0, 35.0, num_layers=8, linear_per_full=3)
    assert [s.kind for s in layers].count(LayerKind.MLA) == 2
    assert total_state_bytes(layers, 0) == 1000 and total_state_bytes(layers, 10) == 1350
