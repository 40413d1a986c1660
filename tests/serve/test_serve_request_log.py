"""The gateway's request log: ids continue across restarts, torn writes are repaired, the file stays bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.serve.request_log import RequestLog, RequestLogError


def _fill(log: RequestLog, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        request_id = log.next_id()
        log.append({"id": request_id, "route": "prfaas", "ttft_s": 0.5})
        ids.append(request_id)
    return ids


def test_memory_only_log_numbers_from_one() -> None:
    log = RequestLog(None, keep=3)
    assert _fill(log, 5) == [1, 2, 3, 4, 5]
    assert [r["id"] for r in log.since(0)] == [3, 4, 5] and [r["id"] for r in log.since(4)] == [5]


def test_a_restarted_gateway_reloads_the_log_and_never_reuses_an_id(tmp_path: Path) -> None:
    path = tmp_path / "run" / "requests.jsonl"
    first = RequestLog(path, id_block=10)
    _fill(first, 4)
    in_flight = first.next_id()  # handed to a request still running when the gateway is killed: never logged
    first.close()
    second = RequestLog(path, id_block=10)  # the restarted gateway
    assert [r["id"] for r in second.since(0)] == [1, 2, 3, 4]
    assert second.since(2)[0] == {"id": 3, "route": "prfaas", "ttft_s": 0.5}
    assert _fill(second, 1) == [11]  # after the reserved block 1..10, so not `in_flight` (5) again
    assert in_flight == 5
    second.close()
    third = RequestLog(path, id_block=10)
    assert [r["id"] for r in third.since(4)] == [11] and third.next_id() == 21


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, id_block=100)
    _fill(log, 2)
    log.close()
    with path.open("ab") as f:
        f.write(b'{"id": 3, "rou')  # killed mid-write
    again = RequestLog(path, id_block=100)
    assert [r["id"] for r in again.since(0)] == [1, 2]
    assert _fill(again, 1) == [101]
    again.close()
    assert [r["id"] for r in RequestLog(path).since(0)] == [1, 2, 101]  # the new record did not join the torn one


def test_unreadable_lines_are_errors_that_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(RequestLogError, match=r"requests.jsonl:2: not a JSON request record"):
        RequestLog(path)
    path.write_text('{"id": "one"}\n')
    with pytest.raises(RequestLogError, match=r":1: a request record needs an integer 'id'"):
        RequestLog(path)


def test_the_file_is_compacted_to_what_memory_keeps(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, keep=5, id_block=100)
    _fill(log, 30)
    log.close()
    assert len(path.read_text().splitlines()) <= 2 * 5 + 2
    reloaded = RequestLog(path, keep=5, id_block=100)
    assert [r["id"] for r in reloaded.since(0)] == [26, 27, 28, 29, 30]
    assert reloaded.next_id() == 101  # the reservation survived the compactions
