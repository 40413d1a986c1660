"""Profiling: plain numbers from the engine, and `prfaas profile` writing a file the planner loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import TinyModels

from prfaas.cli import main
from prfaas.core.layers import total_state_bytes
from prfaas.engine.profiling import profile_engine, profile_lengths
from prfaas.perf.measured import ProfilePrefillModel, load_profile_json


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
        main(["profile", "--model", str(tiny_paths["qwen3.5"]), "--max-tokens", "256", "--out", str(out),
              "--repeats", "1", "--batch-sizes", "1,2", "--decode-steps", "2", "--threads", "1"])
    assert exit_info.value.code in (0, None)
    profile = load_profile_json(out)
    assert [p.num_tokens for p in profile.prefill] == [128, 256]
    assert {d.batch_size for d in profile.decode} == {1, 2}
    assert ProfilePrefillModel(profile).s_kv_bytes(256) == profile.prefill[-1].s_kv_bytes


def test_profile_command_rejects_unknown_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--model", "no-such-model", "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
