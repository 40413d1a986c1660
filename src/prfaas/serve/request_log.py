"""The gateway's log of finished requests (`GET /admin/requests`), optionally kept in a JSONL file.

    log = RequestLog(path)          # path None: memory only
    log.next_id()                   # request ids continue across restarts, never reused
    log.append({"id": 7, ...})      # kept in memory (newest `keep`) and appended to the file

With a file, a restarted gateway reloads the newest `keep` records, so `/admin/requests?since=N` and the route of a
request finished before the restart are not lost. Ids are leased in blocks of `id_block`: a line
`{"reserved_through": N}` is written before id N - id_block + 1 is handed out, and a restarted gateway starts after
the highest reservation, so an id given to a request still in flight when the gateway died is never given again.
A torn last line (a gateway killed mid-write) is dropped; any other unreadable line is an error naming the file
and line. The file holds at most about twice `keep` lines: it is rewritten with the kept records (write, then
rename) when it reaches that.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from prfaas.core.errors import PrfaasError

RECORDS_KEPT = 10_000
ID_BLOCK = 1_000

_log = logging.getLogger(__name__)


class RequestLogError(PrfaasError):
    """The request log file cannot be read."""


class RequestLog:
    def __init__(self, path: Path | None, keep: int = RECORDS_KEPT, id_block: int = ID_BLOCK) -> None:
        if keep < 1 or id_block < 1:
            raise ValueError("keep and id_block must be >= 1")
        self.path = path
        self.keep = keep
        self.id_block = id_block
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._file: BinaryIO | None = None
        self._lines_in_file = 0
        self._last_id = 0
        self._reserved_through = 0
        if path is None:
            self._reserved_through = -1  # memory only: nothing to reserve
            return
        if path.exists():
            rows, reserved, is_clean = _read(path)
            self.records.extend(rows)
            self._last_id = self._reserved_through = max(reserved, max((r["id"] for r in rows), default=0))
            if not is_clean or len(rows) > keep:
                self._rewrite()  # drop a torn last line and what is no longer kept
            else:
                self._lines_in_file = len(rows) + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def next_id(self) -> int:
        self._last_id += 1
        if self._file is not None and self._last_id > self._reserved_through:
            self._reserved_through = self._last_id + self.id_block - 1
            self._write({"reserved_through": self._reserved_through})
        return self._last_id

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._file is not None:
            self._write(record)

    def since(self, request_id: int) -> list[dict[str, Any]]:
        return [r for r in self.records if r["id"] > request_id]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, row: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(msgspec.json.encode(row) + b"\n")
        self._file.flush()
        self._lines_in_file += 1
        if self._lines_in_file >= 2 * self.keep + 2:  # the file keeps about twice what memory keeps
            self._file.close()
            self._rewrite()
            self._file = self._path().open("ab")

    def _path(self) -> Path:
        assert self.path is not None
        return self.path

    def _rewrite(self) -> None:
        """Replace the file with the reservation and the records kept in memory (write a sibling, then rename)."""
        path = self._path()
        tmp = path.with_name(path.name + ".tmp")
        rows = [{"reserved_through": self._reserved_through}, *self.records]
        tmp.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
        os.replace(tmp, path)
        self._lines_in_file = len(rows)


def _read(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """(records, highest id reservation, whether the file was clean: no torn last line)."""
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows: list[dict[str, Any]] = []
    reserved = 0
    is_clean = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            if number - 1 == last:  # the gateway died while writing it
                _log.warning("%s:%d: dropping a torn last line", path, number)
                is_clean = False
                continue
            raise RequestLogError(f"{path}:{number}: not a JSON request record: {exc}") from None
        if isinstance(row, dict) and isinstance(row.get("reserved_through"), int):
            reserved = max(reserved, row["reserved_through"])
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), int):
            raise RequestLogError(f"{path}:{number}: a request record needs an integer 'id'")
        rows.append(row)
    return rows, reserved, is_clean
