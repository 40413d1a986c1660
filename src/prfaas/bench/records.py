"""What one benchmark run records: a row per request, link samples over time, and how they are stored.

    RequestRecord   one request as the client saw it (status, TTFT/TPOT from the SSE stream, route)
    LinkSample      one sample of the cross-site link (goodput from counters, capacity, utilisation)
    write_jsonl / read_records / read_link_samples
    with_log_rows   each record beside its request's row of the gateway log (`/admin/requests`)
    node_side_s     a log row's queue + prefill + transfer seconds (the TTFT spent at the prefill node and link)

Status contract (the fault-injection invariant is `LOST == 0`):
- COMPLETED: the stream ended with a finish reason and `[DONE]`;
- FAILED:    the client got an explicit error: an HTTP error status with an error body, an SSE error event,
             or a broken connection (reset / refused / truncated chunked body, which aiohttp reports);
- LOST:      accepted, but neither completed nor failed: the stream went silent past the client deadline
             or ended cleanly without a finish reason. A correct system never produces one.
Requests the generator never sent (time budget exhausted) are not recorded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec


class RequestStatus(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"


class FailureKind(enum.Enum):
    """Why a FAILED request failed, as the client saw it."""

    HTTP_STATUS = "http_status"  # a non-200 answer with an error body
    STREAM_ERROR = "stream_error"  # an SSE error event inside a 200 stream
    CONNECTION = "connection"  # refused, reset or truncated connection


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One request of a run. Times are seconds since the run started (`send_s`) or durations."""

    index: int  # position in the workload
    send_s: float
    prompt_tokens: int
    max_tokens: int
    status: RequestStatus
    ttft_s: float | None = None
    latency_s: float | None = None
    completion_tokens: int = 0
    tpot_s: float | None = None  # (last token - first token) / (completion_tokens - 1)
    gateway_id: int | None = None
    route: str | None = None  # prfaas | local | colocated, from the gateway's request log
    reason: str | None = None
    transfer_bytes: int = 0
    http_status: int | None = None
    failure: FailureKind | None = None
    error: str | None = None
    text: str | None = None  # kept only when the run asks for it (corruption checks)


class LinkSample(msgspec.Struct, frozen=True, kw_only=True):
    """The cross-site link at `time_s` (seconds since the run started), averaged since the previous sample."""

    time_s: float
    goodput_gbps: float  # KV payload the PrfaaS senders delivered (gateway's link counters)
    capacity_gbps: float | None  # the cap in force (the emulated tc cap when sites are used)
    wire_gbps: float | None = None  # bytes the qdisc sent on the cross-site veth (sites only)

    @property
    def utilisation(self) -> float | None:
        if not self.capacity_gbps:
            return None
        return (self.wire_gbps if self.wire_gbps is not None else self.goodput_gbps) / self.capacity_gbps


_T = TypeVar("_T", bound=msgspec.Struct)
_ENCODER = msgspec.json.Encoder()


def write_jsonl(path: Path, rows: Iterable[msgspec.Struct]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for row in rows:
            fh.write(_ENCODER.encode(row) + b"\n")
    return path


def _read(path: Path, kind: type[_T]) -> list[_T]:
    decoder = msgspec.json.Decoder(kind)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_records(path: Path) -> list[RequestRecord]:
    return _read(path, RequestRecord)


def read_link_samples(path: Path) -> list[LinkSample]:
    return _read(path, LinkSample)


def count_by_status(records: Sequence[RequestRecord]) -> dict[RequestStatus, int]:
    counts = dict.fromkeys(RequestStatus, 0)
    for record in records:
        counts[record.status] += 1
    return counts


def with_log_rows(records: Iterable[RequestRecord], log: Iterable[Mapping[str, Any]],
                  ) -> list[tuple[RequestRecord, Mapping[str, Any] | None]]:
    """Each record with its request's gateway log row (matched by `gateway_id`), None where the log has none."""
    by_id = {int(row["id"]): row for row in log if "id" in row}
    return [(rec, by_id.get(rec.gateway_id) if rec.gateway_id is not None else None) for rec in records]


def node_side_s(row: Mapping[str, Any]) -> float | None:
    """Queue + prefill + state transfer seconds of a gateway log row: the part of the request's TTFT spent at its
    prefill node and on the link; None when the row has no prefill time."""
    if row.get("prefill_s") is None:
        return None
    return float(row.get("queue_s") or 0.0) + float(row["prefill_s"]) + float(row.get("transfer_s") or 0.0)
