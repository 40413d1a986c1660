"""Counters of the connector's worker half (thread-safe), published on its telemetry endpoint."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass(slots=True)
class _Counts:
    transfers_sent: int = 0
    bytes_sent: int = 0
    sends_done: int = 0
    send_seconds_total: float = 0.0
    send_failures: int = 0
    transfers_received: int = 0
    bytes_received: int = 0
    receive_failures: int = 0
    loads_done: int = 0
    positions_loaded: int = 0  # prompt positions written into vLLM's cache from transfers (not recomputed)
    load_failures: int = 0
    unclaimed_transfers: int = 0


class ConnectorStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = _Counts()

    def _add(self, **delta: float) -> None:
        with self._lock:
            for key, value in delta.items():
                setattr(self._c, key, getattr(self._c, key) + value)

    def sent(self, nbytes: int) -> None:
        self._add(transfers_sent=1, bytes_sent=nbytes)

    def send_done(self, seconds: float) -> None:
        self._add(sends_done=1, send_seconds_total=seconds)

    def send_failed(self) -> None:
        self._add(send_failures=1)

    def received(self, nbytes: int) -> None:
        self._add(transfers_received=1, bytes_received=nbytes)

    def receive_failed(self) -> None:
        self._add(receive_failures=1)

    def loaded(self, positions: int) -> None:
        self._add(loads_done=1, positions_loaded=positions)

    def load_failed(self) -> None:
        self._add(load_failures=1)

    def unclaimed(self) -> None:
        self._add(unclaimed_transfers=1)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return asdict(self._c)
