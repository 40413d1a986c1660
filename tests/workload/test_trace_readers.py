"""Trace readers: the real Mooncake trace against CATALOG.md §6, the Azure format fixture, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.core.errors import ConfigError
from prfaas.workload.empirical import lengths_from_trace, output_lengths_from_trace
from prfaas.workload.request import WorkloadRequest
from prfaas.workload.stats import summarize_requests
from prfaas.workload.traces import load_trace, read_azure_csv, read_mooncake_jsonl

# --- Mooncake conversation trace (CATALOG.md §6) ---------------------------------------------------


def test_mooncake_trace_matches_catalog_statistics(mooncake_requests: list[WorkloadRequest]) -> None:
    s = summarize_requests(mooncake_requests)
    assert s.num_requests == 12_031
    assert round(s.mean_input_tokens) == 12_035
    assert round(s.mean_output_tokens) == 343
    assert s.median_input_tokens == 6_909
    assert s.p99_input_tokens == 85_401
    assert s.max_input_tokens == 126_195
    assert s.median_output_tokens == 350
    assert round(100 * s.repeated_block_ref_fraction, 1) == 36.6
    assert 3_500 < s.duration_s < 3_600  # "about one hour"


def test_mooncake_requests_are_well_formed(mooncake_requests: list[WorkloadRequest]) -> None:
    arrivals = [r.arrival_s for r in mooncake_requests]
    assert arrivals == sorted(arrivals)
    assert sorted(r.request_id for r in mooncake_requests) == list(range(len(mooncake_requests)))
    first = mooncake_requests[0]
    assert (first.arrival_s, first.input_tokens, first.output_tokens) == (0.0, 6758, 500)
    assert first.block_hashes == tuple(range(14))
    assert all(len(r.block_hashes) == -(-r.input_tokens // 512) for r in mooncake_requests)


def test_trace_length_distributions(mooncake_requests: list[WorkloadRequest]) -> None:
    inputs = lengths_from_trace(mooncake_requests)
    outputs = output_lengths_from_trace(mooncake_requests)
    assert inputs.mean() == pytest.approx(sum(r.input_tokens for r in mooncake_requests) / 12_031)
    assert inputs.quantile(0.5) == 6_909
    assert inputs.max_tokens == 126_195
    assert outputs.mean() == pytest.approx(sum(r.output_tokens for r in mooncake_requests) / 12_031)
    assert outputs.quantile(0.5) == 350


def test_limit_keeps_first_rows(mooncake_path: Path) -> None:
    head = read_mooncake_jsonl(mooncake_path, limit=100)
    assert len(head) == 100
    assert [r.request_id for r in head] == list(range(100))
    with pytest.raises(ConfigError, match="limit"):
        read_mooncake_jsonl(mooncake_path, limit=0)


def test_empty_lengths_from_trace_is_an_error() -> None:
    with pytest.raises(ConfigError):
        lengths_from_trace([])


# --- Mooncake JSONL: small files ----------------------------------------------------------------------

GOOD = {"timestamp": 1500, "input_length": 1000, "output_length": 7, "hash_ids": [4, 5]}


def _write_jsonl(tmp_path: Path, lines: list[str], name: str = "t.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_blank_lines_are_skipped_and_timestamps_sorted(tmp_path: Path) -> None:
    later = dict(GOOD, timestamp=3000)
    p = _write_jsonl(tmp_path, [json.dumps(later), "", "   ", json.dumps(GOOD)])
    reqs = read_mooncake_jsonl(p)
    assert [(r.request_id, r.arrival_s) for r in reqs] == [(1, 1.5), (0, 3.0)]
    assert reqs[0].block_hashes == (4, 5)


def _bad(**change: object) -> str:
    obj = dict(GOOD)
    for key, value in change.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


_DROP = object()


@pytest.mark.parametrize(
    ("bad_line", "needle"),
    [
        ('{"timestamp": 0, "input_length": 10,', "invalid JSON"),
        ("[1, 2, 3]", "JSON object"),
        (_bad(output_length=_DROP), "missing field(s) output_length"),
        (_bad(hash_ids=_DROP, timestamp=_DROP), "timestamp, hash_ids"),
        (_bad(input_length=-5), "input_length must be >= 1"),
        (_bad(input_length=0), "input_length must be >= 1"),
        (_bad(output_length=-1), "output_length must be >= 0"),
        (_bad(output_length=2.5), "output_length must be an integer"),
        (_bad(input_length=True), "input_length must be an integer"),
        (_bad(timestamp=-1), "timestamp must be a finite number >= 0"),
        (_bad(timestamp="soon"), "timestamp"),
        ('{"timestamp": NaN, "input_length": 10, "output_length": 1, "hash_ids": []}', "timestamp"),
        (_bad(hash_ids="0,1"), "hash_ids must be a list"),
        (_bad(hash_ids=[1, "x"]), "hash_ids[1] must be an integer"),
        (_bad(hash_ids=[1, 2, 3]), "3 hash_ids for input_length 1000"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, needle: str) -> None:
    p = _write_jsonl(tmp_path, [json.dumps(GOOD), "", json.dumps(GOOD), bad_line, json.dumps(GOOD)])
    with pytest.raises(ConfigError) as info:
        read_mooncake_jsonl(p)
    assert info.value.line == 4
    assert info.value.path == str(p)
    message = str(info.value)
    assert message.startswith(f"{p}:4: ")
    assert needle in message
    assert "\n" not in message


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_trace_is_an_error(tmp_path: Path, content: str) -> None:
    p = tmp_path / "empty.jsonl"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="no requests"):
        read_mooncake_jsonl(p)
    with pytest.raises(ConfigError, match="no requests"):
        load_trace(p.rename(tmp_path / "empty.trace"))


def test_missing_or_binary_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_trace(tmp_path / "nope.jsonl")
    p = tmp_path / "bin.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        read_mooncake_jsonl(p)
    assert info.value.line == 2


def test_load_trace_picks_format_by_extension_then_content(tmp_path: Path, azure_fixture_path: Path) -> None:
    jsonl = _write_jsonl(tmp_path, [json.dumps(GOOD)], name="trace.data")
    assert load_trace(jsonl)[0].block_hashes == (4, 5)
    csv_copy = tmp_path / "azure.data"
    csv_copy.write_text(azure_fixture_path.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(load_trace(csv_copy)) == 6
    assert len(load_trace(azure_fixture_path)) == 6
    assert len(load_trace(_write_jsonl(tmp_path, [json.dumps(GOOD)]))) == 1


# --- Azure CSV ----------------------------------------------------------------------------------------


def test_azure_format_fixture(azure_fixture_path: Path) -> None:
    reqs = read_azure_csv(azure_fixture_path)
    assert [r.request_id for r in reqs] == [0, 5, 1, 2, 3, 4]  # row 5 (0-based) arrives second
    assert reqs[0].arrival_s == 0.0
    by_id = {r.request_id: r for r in reqs}
    assert by_id[5].arrival_s == pytest.approx(48.5 - 46.68059)
    assert by_id[4].arrival_s == pytest.approx(61.0503 - 46.68059)
    assert (by_id[4].input_tokens, by_id[4].output_tokens) == (1024, 0)
    assert all(r.block_hashes == () for r in reqs)
    assert len(read_azure_csv(azure_fixture_path, limit=2)) == 2


def test_azure_numeric_timestamps_and_column_order(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("GeneratedTokens,Extra,ContextTokens,TIMESTAMP\n5,x,100,10.5\n6,y,200,12.0\n",
                 encoding="utf-8")
    reqs = read_azure_csv(p)
    assert [(r.arrival_s, r.input_tokens, r.output_tokens) for r in reqs] == [(0.0, 100, 5), (1.5, 200, 6)]


@pytest.mark.parametrize(
    ("bad_row", "needle"),
    [
        ("2023-11-16 18:15:47,abc,3", "ContextTokens must be an integer"),
        ("2023-11-16 18:15:47,0,3", "ContextTokens must be >= 1"),
        ("2023-11-16 18:15:47,10,-3", "GeneratedTokens must be >= 0"),
        ("yesterday,10,3", "TIMESTAMP 'yesterday'"),
        ("inf,10,3", "TIMESTAMP must be finite"),
        ("2023-11-16 18:15:47,10", "expected at least 3 columns"),
    ],
)
def test_azure_malformed_row_names_line(tmp_path: Path, bad_row: str, needle: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(f"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,3\n{bad_row}\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_azure_csv(p)
    assert (info.value.path, info.value.line) == (str(p), 3)
    assert needle in str(info.value)


def test_azure_header_and_empty(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("TIMESTAMP,Context,GeneratedTokens\n2023-11-16 18:15:46,10,3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lacks column") as info:
        read_azure_csv(p)
    assert info.value.line == 1
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no requests"):
        read_azure_csv(p)


def test_azure_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46,10,3\r\n")
    reqs = read_azure_csv(p)
    assert [(r.input_tokens, r.output_tokens) for r in reqs] == [(10, 3)]
