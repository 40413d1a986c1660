"""Profiling: plain numbers from the engine, and `prfaas profile` writing a file the planner loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from engine_helpers import TinyModels

from prfaas.cli import main
from prfaas.commands.profile import _check_and_save
from prfaas.core.errors import ConfigError
from prfaas.core.layers import total_state_bytes
from prfaas.engine.profiling import profile_engine, profile_lengths
from prfaas.perf.measured import MeasuredProfile, Measurement, PrefillPoint, ProfilePrefillModel, load_profile_json


def test_profile_lengths_double_up_to_the_maximum() -> None:
    assert profile_lengths(1000) == [128, 256, 512, 1000]
    assert profile_lengths(512) == [128, 256, 512]
    assert profile_lengths(50) == [50]


def test_profile_engine_measures_every_point(tiny_models: TinyModels) -> None:
    loaded = tiny_models["gemma3"]
    profile = profile_engine(loaded, max_tokens=300, repeats=1, batch_sizes=(1, 4), decode_steps=2)
    assert [p.num_tokens for p in profile.prefill] == [128, 256, 300]
    for point in profile.prefill:
        assert point.t_prefill_s > 0
        assert point.s_kv_bytes == total_state_bytes(loaded.layer_specs(), point.num_tokens)
    assert {(d.batch_size, d.context_tokens) for d in profile.decode} == {(1, 300), (4, 300)}
    assert all(d.t_step_s > 0 for d in profile.decode)


def test_profile_command_writes_a_loadable_profile(tiny_paths: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    with pytest.raises(SystemExit) as exit_info:
        # --force: two shared cores may time 256 tokens faster than 128; the refusal is tested below
        main(["profile", "--model", str(tiny_paths["qwen3.5"]), "--max-tokens", "256", "--out", str(out),
              "--repeats", "3", "--batch-sizes", "1,2", "--decode-steps", "2", "--threads", "1", "--force"])
    assert exit_info.value.code in (0, None)
    profile = load_profile_json(out)
    assert [p.num_tokens for p in profile.prefill] == [128, 256]
    assert {d.batch_size for d in profile.decode} == {1, 2}
    assert ProfilePrefillModel(profile).s_kv_bytes(256) == profile.prefill[-1].s_kv_bytes
    assert profile.device == "cpu" and profile.n_gpu == 0  # a CPU run has no accelerator
    m = profile.measurement
    assert m is not None and m.device == "cpu" and m.torch_threads == 1 and m.repeats == 3
    assert m.cpu_model and m.num_cpus >= 1 and min(m.load_avg_before) >= 0 and m.prfaas_version
    assert all(p.spread is not None and p.spread >= 0 for p in profile.prefill)
    assert all(d.spread is not None and d.spread >= 0 for d in profile.decode)


def _fabricated(times: list[float]) -> MeasuredProfile:
    m = Measurement(device="cpu", torch_threads=2, cpu_model="Test CPU", load_avg_before=(5.0, 4.0, 3.0),
                    load_avg_after=(6.0, 4.0, 3.0), num_cpus=2, repeats=5, decode_steps=8, prfaas_version="0.1.0",
                    measured_at_utc="2026-12-02T05:00:00Z")
    points = tuple(PrefillPoint(n, t, 100.0 * n, 0.05) for n, t in zip((128, 512, 2048), times, strict=True))
    return MeasuredProfile("engine-x", "x", "cpu", 0, points, measurement=m)


def test_a_nonsense_profile_is_refused_with_one_line_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    with pytest.raises(ConfigError) as err:
        _check_and_save(_fabricated([5.27, 4.5, 3.92]), out, max_spread=0.5, force=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("profile not written: prefill is not monotone in length")
    assert "--force" in message
    assert not out.exists()
    kept = load_profile_json(tmp_path / "p.json.rejected.json")
    assert kept.prefill[0].t_prefill_s == 5.27
    assert kept.measurement is not None and any("busy" in w for w in kept.measurement.warnings)


def test_force_writes_a_nonsense_profile_with_its_warnings(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    _check_and_save(_fabricated([5.27, 4.5, 3.92]), out, max_spread=0.5, force=True)
    profile = load_profile_json(out)
    assert profile.measurement is not None
    assert any("not monotone" in w for w in profile.measurement.warnings)
    assert "warning: prefill is not monotone" in capsys.readouterr().err


def test_a_clean_profile_is_written_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    clean = _fabricated([0.01, 0.03, 0.12])
    clean = dataclasses.replace(clean, measurement=dataclasses.replace(
        clean.measurement, load_avg_before=(0.2, 0.2, 0.2), load_avg_after=(0.3, 0.2, 0.2)))  # type: ignore[arg-type]
    _check_and_save(clean, out, max_spread=0.5, force=False)
    profile = load_profile_json(out)
    assert profile.measurement is not None and profile.measurement.warnings == ()


def test_profile_command_rejects_unknown_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--model", "no-such-model", "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
