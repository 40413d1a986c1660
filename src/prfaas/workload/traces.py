"""Trace readers: Mooncake JSONL and Azure LLM inference CSV into `WorkloadRequest`s.

Contract (both readers):
- `request_id` is the request's 0-based position among the trace's data rows; the returned list is sorted by
  `arrival_s` (stable, so equal timestamps keep file order).
- Every malformed row raises `ConfigError(message, path=, line=)` naming the 1-based physical line; a missing
  or unreadable file raises `ConfigError(path=)`; a trace without requests raises `ConfigError`.
- `limit` keeps the first `limit` data rows of the file (before sorting).

Mooncake JSONL (one object per line; blank lines are skipped):
    timestamp      arrival in ms from the start of the trace (number >= 0) -> arrival_s = timestamp / 1000
    input_length   prompt tokens (int >= 1)
    output_length  generated tokens (int >= 0)
    hash_ids       prefix-block hash chain, one id per 512-token block (list of ints, at most
                   ceil(input_length / 512) of them)

Azure 2023 CSV (header row naming the columns, any order, extra columns ignored):
    TIMESTAMP        a datetime ("2023-11-16 18:15:46.6805900") or a number of seconds; arrival_s is measured
                     from the earliest timestamp of the file
    ContextTokens    prompt tokens (int >= 1)
    GeneratedTokens  generated tokens (int >= 0)
Azure rows carry no prefix information: `block_hashes` is empty.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prfaas.core.errors import ConfigError
from prfaas.workload.empirical import lengths_from_trace, output_lengths_from_trace
from prfaas.workload.request import WorkloadRequest

__all__ = [
    "lengths_from_trace",
    "load_trace",
    "output_lengths_from_trace",
    "read_azure_csv",
    "read_mooncake_jsonl",
]

MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_trace(path: str | Path, *, limit: int | None = None) -> list[WorkloadRequest]:
    """Read a trace, picking the format by extension (.jsonl/.json vs .csv), else by its first character."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_mooncake_jsonl(p, limit=limit)
    if suffix == ".csv":
        return read_azure_csv(p, limit=limit)
    first = _first_non_blank_char(p)
    if first == "{":
        return read_mooncake_jsonl(p, limit=limit)
    if first is None:
        raise ConfigError("trace has no requests", path=str(p))
    return read_azure_csv(p, limit=limit)


# --- Mooncake JSONL -------------------------------------------------------------------------------


def read_mooncake_jsonl(path: str | Path, *, limit: int | None = None) -> list[WorkloadRequest]:
    """Read a Mooncake FAST'25 trace (JSONL with timestamp/input_length/output_length/hash_ids)."""
    p = Path(path)
    _check_limit(limit, p)
    requests: list[WorkloadRequest] = []
    for line_no, text in _numbered_lines(p):
        if limit is not None and len(requests) >= limit:
            break
        if not text.strip():
            continue
        requests.append(_parse_mooncake_line(text, len(requests), str(p), line_no))
    return _finish(requests, p)


def _parse_mooncake_line(text: str, request_id: int, path: str, line_no: int) -> WorkloadRequest:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=line_no) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line_no)
    missing = [f for f in MOONCAKE_FIELDS if f not in obj]
    if missing:
        raise ConfigError(f"missing field(s) {', '.join(missing)}", path=path, line=line_no)
    timestamp_ms = _number(obj["timestamp"], "timestamp", path, line_no)
    input_tokens = _count(obj["input_length"], "input_length", 1, path, line_no)
    output_tokens = _count(obj["output_length"], "output_length", 0, path, line_no)
    hashes = _hash_chain(obj["hash_ids"], input_tokens, path, line_no)
    return WorkloadRequest(request_id, timestamp_ms / 1000.0, input_tokens, output_tokens, hashes)


def _hash_chain(value: Any, input_tokens: int, path: str, line_no: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"hash_ids must be a list of integers, got {type(value).__name__}",
                          path=path, line=line_no)
    for i, h in enumerate(value):
        if not isinstance(h, int) or isinstance(h, bool):
            raise ConfigError(f"hash_ids[{i}] must be an integer, got {h!r}", path=path, line=line_no)
    max_blocks = -(-input_tokens // 512)
    if len(value) > max_blocks:
        raise ConfigError(f"{len(value)} hash_ids for input_length {input_tokens} (at most {max_blocks} "
                          "blocks of 512 tokens)", path=path, line=line_no)
    return tuple(value)


# --- Azure CSV -----------------------------------------------------------------------------------


def read_azure_csv(path: str | Path, *, limit: int | None = None) -> list[WorkloadRequest]:
    """Read an Azure LLM inference trace (CSV with TIMESTAMP, ContextTokens, GeneratedTokens)."""
    p = Path(path)
    _check_limit(limit, p)
    rows: list[tuple[int, float, int, int]] = []  # (line, raw time_s, input, output)
    columns: dict[str, int] | None = None
    for line_no, text in _numbered_lines(p):
        if not text.strip():
            continue
        cells = _csv_cells(text, str(p), line_no)
        if columns is None:
            columns = _azure_header(cells, str(p), line_no)
            continue
        if limit is not None and len(rows) >= limit:
            break
        rows.append(_parse_azure_row(cells, columns, str(p), line_no))
    if not rows:
        raise ConfigError("trace has no requests", path=str(p))
    start_s = min(r[1] for r in rows)
    requests = [WorkloadRequest(i, t - start_s, inp, out) for i, (_ln, t, inp, out) in enumerate(rows)]
    return _finish(requests, p)


def _csv_cells(text: str, path: str, line_no: int) -> list[str]:
    try:
        return [c.strip() for c in next(csv.reader([text]))]
    except (csv.Error, StopIteration) as exc:
        raise ConfigError(f"invalid CSV row: {exc}", path=path, line=line_no) from None


def _azure_header(cells: list[str], path: str, line_no: int) -> dict[str, int]:
    index = {name: i for i, name in enumerate(cells)}
    missing = [c for c in AZURE_COLUMNS if c not in index]
    if missing:
        raise ConfigError(f"header lacks column(s) {', '.join(missing)} "
                          f"(expected {', '.join(AZURE_COLUMNS)})", path=path, line=line_no)
    return {c: index[c] for c in AZURE_COLUMNS}


def _parse_azure_row(cells: list[str], columns: dict[str, int], path: str, line_no: int
                     ) -> tuple[int, float, int, int]:
    if len(cells) <= max(columns.values()):
        raise ConfigError(f"expected at least {max(columns.values()) + 1} columns, got {len(cells)}",
                          path=path, line=line_no)
    time_s = _azure_time_s(cells[columns["TIMESTAMP"]], path, line_no)
    input_tokens = _count(_int_cell(cells[columns["ContextTokens"]], "ContextTokens", path, line_no),
                          "ContextTokens", 1, path, line_no)
    output_tokens = _count(_int_cell(cells[columns["GeneratedTokens"]], "GeneratedTokens", path, line_no),
                           "GeneratedTokens", 0, path, line_no)
    return line_no, time_s, input_tokens, output_tokens


def _azure_time_s(cell: str, path: str, line_no: int) -> float:
    try:
        seconds = float(cell)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ConfigError(f"TIMESTAMP must be finite, got {cell!r}", path=path, line=line_no)
        return seconds
    try:
        stamp = datetime.fromisoformat(cell)
    except ValueError:
        raise ConfigError(f"TIMESTAMP {cell!r} is neither a datetime nor a number of seconds",
                          path=path, line=line_no) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # naive times are read as UTC: no local-time/DST surprises
    return stamp.timestamp()


def _int_cell(cell: str, field: str, path: str, line_no: int) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ConfigError(f"{field} must be an integer, got {cell!r}", path=path, line=line_no) from None


# --- shared --------------------------------------------------------------------------------------


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open("rb") as f:  # bytes, decoded per line, so a bad byte names its own line
            for line_no, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")  # drop a leading BOM
                except UnicodeDecodeError:
                    raise ConfigError("not UTF-8 text", path=str(path), line=line_no) from None
                yield line_no, text
    except FileNotFoundError:
        raise ConfigError("trace file not found", path=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("trace path is a directory", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read trace: {exc.strerror}", path=str(path)) from None


def _first_non_blank_char(path: Path) -> str | None:
    for _line_no, text in _numbered_lines(path):
        stripped = text.strip()
        if stripped:
            return stripped[0]
    return None


def _number(value: Any, field: str, path: str, line_no: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ConfigError(f"{field} must be a finite number >= 0, got {value!r}", path=path, line=line_no)
    return float(value)


def _count(value: Any, field: str, minimum: int, path: str, line_no: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be an integer, got {value!r}", path=path, line=line_no)
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {value}", path=path, line=line_no)
    return value


def _check_limit(limit: int | None, path: Path) -> None:
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}", path=str(path))


def _finish(requests: list[WorkloadRequest], path: Path) -> list[WorkloadRequest]:
    if not requests:
        raise ConfigError("trace has no requests", path=str(path))
    return sorted(requests, key=lambda r: r.arrival_s)
