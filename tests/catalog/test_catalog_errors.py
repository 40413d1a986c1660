"""Bad catalog files and unknown names give one-line typed errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.catalog import load_accelerator, load_accelerators_file, load_model, load_model_file
from prfaas.catalog.paper import load_paper_profile_table, load_phi_kv_table
from prfaas.core.errors import ConfigError, UnknownNameError

BASE = """\
schema = "prfaas.model/1"
name = "tiny-hybrid"
display_name = "Tiny hybrid"

[model]
num_layers = 8
hidden_size = 256
vocab_size = 1000
max_position_tokens = 4096
weight_dtype = "bf16"

[params]
total = 1e8
active = 5e7

[attention.full]
kind = "full_gqa"
num_q_heads = 4
num_kv_heads = 2
head_dim_qk = 64
head_dim_v = 64

[attention.lin]
kind = "linear"
variant = "gdn"
num_heads = 4
head_dim_k = 32
head_dim_v = 32
conv_kernel = 4

[layout]
default = "lin"
[[layout.rule]]
use = "full"
period = 4
phase = 3

[ffn]
dense_intermediate = 512
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.toml"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def _error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_model_file(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert info.value.path is not None and info.value.path.endswith("model.toml")
    assert message.startswith(info.value.path)
    return info.value


def test_base_file_is_valid(tmp_path: Path) -> None:
    arch = load_model_file(_write(tmp_path, BASE))
    assert arch.num_layers == 8
    assert [s.kind.value for s in arch.layers].count("full_gqa") == 2


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = BASE.replace("hidden_size = 256", "hidden_size = = 256")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "hidden_size")
    assert "syntax" in str(err)


def test_unknown_kind_lists_known_kinds(tmp_path: Path) -> None:
    text = BASE.replace('kind = "linear"', 'kind = "mamba9"')
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "mamba9")
    assert "attention.lin.kind" in str(err) and "full_gqa" in str(err) and "mla" in str(err)


def test_unknown_linear_variant(tmp_path: Path) -> None:
    text = BASE.replace('variant = "gdn"', 'variant = "rwkv"')
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "rwkv")
    assert "kda" in str(err)


def test_negative_count_names_its_line(tmp_path: Path) -> None:
    text = BASE.replace("num_kv_heads = 2", "num_kv_heads = -2")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "num_kv_heads")
    assert "attention.full.num_kv_heads" in str(err) and "-2" in str(err)


def test_ill_typed_value(tmp_path: Path) -> None:
    text = BASE.replace("num_layers = 8", 'num_layers = "eight"')
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "num_layers")
    assert "model.num_layers" in str(err) and "int" in str(err)


def test_missing_key_points_at_its_table(tmp_path: Path) -> None:
    text = BASE.replace("vocab_size = 1000\n", "")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "[model]")
    assert "model.vocab_size" in str(err) and "missing" in str(err)


def test_extra_key_is_rejected(tmp_path: Path) -> None:
    text = BASE.replace("head_dim_v = 64\n", "head_dim_v = 64\nhead_dim_w = 3\n")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "head_dim_w")
    assert "attention.full.head_dim_w" in str(err) and "unknown key" in str(err)


def test_layout_rule_unknown_block(tmp_path: Path) -> None:
    text = BASE.replace('use = "full"', 'use = "fulll"')
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "fulll")
    assert "known: full, lin" in str(err)


def test_layout_overlap_is_an_error(tmp_path: Path) -> None:
    text = BASE + '[[layout.rule]]\nuse = "lin"\nindices = [3]\n'
    text = text.replace("\n[ffn]\ndense_intermediate = 512\n", "\n")
    text = text.replace("[params]", "[ffn]\ndense_intermediate = 512\n\n[params]")
    err = _error(tmp_path, text)
    assert "layer 3" in str(err) and "already 'full'" in str(err)
    assert err.line == len(text.splitlines()) - 2  # the second [[layout.rule]] header


def test_index_out_of_range(tmp_path: Path) -> None:
    text = BASE.replace("period = 4\nphase = 3", "indices = [3, 8]")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "indices = [3, 8]")
    assert "out of range" in str(err)


def test_uncovered_layers_without_default(tmp_path: Path) -> None:
    text = BASE.replace('default = "lin"\n', "")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "[layout]")
    assert "no default" in str(err)


def test_two_selectors_in_one_rule(tmp_path: Path) -> None:
    text = BASE.replace("phase = 3", "phase = 3\nindices = [1]")
    err = _error(tmp_path, text)
    assert "exactly one selector" in str(err)


def test_unverified_must_name_a_defined_key(tmp_path: Path) -> None:
    marked = 'display_name = "Tiny hybrid"\nunverified = ["model.depth"]'
    text = BASE.replace('display_name = "Tiny hybrid"', marked)
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "unverified")
    assert "model.depth" in str(err)


def test_unknown_dtype(tmp_path: Path) -> None:
    text = BASE.replace('weight_dtype = "bf16"', 'weight_dtype = "int4"')
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "weight_dtype")


def test_ffn_and_explicit_compute_active_are_exclusive(tmp_path: Path) -> None:
    text = BASE.replace("active = 5e7", "active = 5e7\ncompute_active = 4e7")
    err = _error(tmp_path, text)
    assert err.line == _line_of(text, "[ffn]")


def test_wrong_schema_id(tmp_path: Path) -> None:
    text = BASE.replace("prfaas.model/1", "prfaas.model/9")
    err = _error(tmp_path, text)
    assert err.line == 1


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_file(tmp_path / "absent.toml")


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_model("gpt-5")
    assert "deepseek-v3" in str(info.value) and "qwen3.5-397b-a17b" in str(info.value)


def test_unknown_gpu_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_accelerator("v100")
    assert "h200" in str(info.value) and "l40s" in str(info.value)


ACCEL = """\
schema = "prfaas.accelerators/1"

[x1]
display_name = "X1"
memory_gb = 80
mem_bw_tb_per_s = 2.0
bf16_tflops = 300
nic_gbps = 200
"""


def test_accelerator_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "gpus.toml"
    path.write_text(ACCEL)
    assert load_accelerators_file(path)["x1"].fp8_flops is None
    path.write_text(ACCEL.replace("bf16_tflops = 300", "bf16_tflops = 0"))
    with pytest.raises(ConfigError) as info:
        load_accelerators_file(path)
    assert info.value.line == 7 and "x1.bf16_tflops" in str(info.value)
    path.write_text(ACCEL.replace("nic_gbps = 200\n", ""))
    with pytest.raises(ConfigError, match=r"x1\.nic_gbps: missing"):
        load_accelerators_file(path)


def test_paper_profile_inconsistent_phi_is_rejected(tmp_path: Path) -> None:
    from prfaas.catalog.paper import _data_path

    original = _data_path("internal-1t-table5.toml").read_text()
    text = original.replace("phi_kv_gbps = 3.19", "phi_kv_gbps = 4.19")
    path = tmp_path / "t5.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_paper_profile_table(path)
    assert info.value.line == _line_of(text, "4.19") and "row[2].phi_kv_gbps" in str(info.value)


def test_phi_table_unknown_model_is_rejected(tmp_path: Path) -> None:
    from prfaas.catalog.paper import _data_path

    text = _data_path("phi-kv-table3.toml").read_text().replace("mimo-v2-flash =", "mimo-v3 =")
    path = tmp_path / "t3.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_phi_kv_table(path)
    assert info.value.line == _line_of(text, "mimo-v3") and "known:" in str(info.value)
