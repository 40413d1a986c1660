"""Accelerators (CATALOG.md §5) and the paper's measured tables (PAPER.md Tables 3 and 5)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prfaas.catalog import (
    ComputePrecision,
    list_accelerators,
    load_accelerator,
    load_model,
    load_paper_profile_table,
    load_phi_kv_table,
)
from prfaas.cli import build_app
from prfaas.core.errors import ConfigError, UnknownNameError
from prfaas.core.units import MIB_BYTES
from prfaas.perf.arch import phi_kv_gbps, s_kv_bytes


def test_required_accelerators_are_present() -> None:
    for name in ("h200", "h20", "h100", "h800", "b200", "gb200", "a100", "l40s"):
        assert name in list_accelerators()


def test_h200_and_h20_dense_numbers() -> None:
    h200, h20 = load_accelerator("H200"), load_accelerator("h20")
    assert h200.bf16_flops == 989e12 and h200.fp8_flops == 1979e12
    assert h200.memory_bytes == 141e9 and h200.mem_bw_bytes_per_s == 4.8e12
    assert h20.memory_bytes == 96e9  # the 96 GB variant is the default (CATALOG.md §5.1)
    assert h20.bf16_flops == 148e12
    assert round(h200.ridge_flops_per_byte) == 206
    assert round(h20.ridge_flops_per_byte) == 37


def test_prices_and_missing_formats() -> None:
    assert load_accelerator("h200").price_usd == 32_000
    assert load_accelerator("h20").price_usd == 14_000
    assert load_accelerator("gb200").price_usd is None
    a100 = load_accelerator("a100")
    assert a100.fp8_flops is None
    with pytest.raises(ConfigError, match="no fp8"):
        a100.peak_flops(ComputePrecision.FP8)
    assert load_accelerator("b200").peak_flops(ComputePrecision.FP4) == 9000e12


def test_table5_rows_and_metadata() -> None:
    table = load_paper_profile_table()
    assert table.gpu_name == "h200" and table.gpus_per_instance == 8
    assert [r.length_tokens for r in table.rows] == [1024, 8192, 32768, 131072]
    row_32k = table.rows[2]
    assert (row_32k.s_kv_mib, row_32k.t_prefill_s, row_32k.phi_kv_gbps) == (701.3, 1.84, 3.19)
    # Eq. 1 with binary MiB and decimal Gbps reproduces the printed 3.19 (PAPER.md §0).
    assert phi_kv_gbps(row_32k.s_kv_bytes, row_32k.t_prefill_s) == pytest.approx(3.197, abs=0.001)
    assert row_32k.s_kv_bytes == 701.3 * MIB_BYTES


def test_table3_lookup_and_models() -> None:
    table = load_phi_kv_table()
    assert table.lengths_tokens == (1024, 8192, 32768, 131072)
    assert len(table.model_names) == 6
    assert table.phi_kv_gbps("minimax-m2.5", 32768) == 59.93
    assert table.phi_kv_gbps("MiMo-V2-Flash", 32768) == 4.66
    with pytest.raises(UnknownNameError):
        table.for_model("llama-3-70b")
    for name in table.model_names:
        load_model(name)  # every key is a catalog model


# CATALOG.md §4: S_kv (BF16 KV + fixed fp32 state) / Φ_kv gives these single-request prefill times.
IMPLIED_T_S = {
    "kimi-linear-48b-a3b": (0.35, 0.38, 0.64, 1.80),
    "mimo-v2-flash": (0.48, 0.60, 1.34, 5.17),
    "qwen3.5-397b-a17b": (0.43, 0.57, 1.16, 4.52),
    "ring-2.5-1t": (0.34, 0.69, 2.07, 9.88),
    "minimax-m2.5": (0.42, 0.51, 1.11, 5.57),
    "qwen3-235b-a22b": (0.38, 0.56, 1.51, 9.39),
}


@pytest.mark.parametrize("name", sorted(IMPLIED_T_S))
def test_state_sizes_reproduce_catalog_implied_prefill_times(name: str) -> None:
    arch, table = load_model(name), load_phi_kv_table()
    for row, expected in zip(table.for_model(name), IMPLIED_T_S[name], strict=True):
        t_s = s_kv_bytes(arch, row.length_tokens) * 8 / (row.phi_kv_gbps * 1e9)
        assert t_s == pytest.approx(expected, abs=0.006)


def test_cli_models_json_and_table() -> None:
    runner = CliRunner()
    result = runner.invoke(build_app(["catalog"]), ["catalog", "models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["qwen3.5-397b-a17b"]["kv_kib_per_token"] == 30.0
    assert rows["qwen3.5-397b-a17b"]["full"] == 15 and rows["qwen3.5-397b-a17b"]["linear"] == 45
    assert rows["mimo-v2-flash"]["swa"] == 39
    assert rows["ring-2.5-1t"]["unverified"]
    table = runner.invoke(build_app(["catalog"]), ["catalog", "models"])
    assert table.exit_code == 0
    assert "S_kv@32K GiB" in table.output and "minimax-m2.5" in table.output


def test_cli_gpus_json() -> None:
    result = CliRunner().invoke(build_app(["catalog"]), ["catalog", "gpus", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["h200"]["bf16_tflops"] == 989.0
    assert rows["a100"]["fp8_tflops"] is None
