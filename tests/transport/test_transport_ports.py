"""Ports for servers that bind late: distinct, free, and outside the range the OS gives outgoing connections."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from prfaas.integrations.vllm.harness import failure_report
from prfaas.transport.ports import drawn_pool, ephemeral_range, free_ports


def test_ports_are_distinct_free_and_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    ports = free_ports("127.0.0.1", 40)
    assert len(set(ports)) == 40
    assert all(not low <= p <= high for p in ports), ports
    for port in ports:  # each can be bound now (the draw released them all)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


class _Scripted(random.Random):
    """Draws the given ports in order."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(0)
        self._ports = iter(ports)

    def choice(self, seq):  # type: ignore[no-untyped-def,override]
        return next(self._ports)


def test_a_port_in_use_or_drawn_twice_is_skipped() -> None:
    busy_port, a, b = free_ports("127.0.0.1", 3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        ports = free_ports("127.0.0.1", 2, rng=_Scripted([busy_port, a, busy_port, a, b]))
    assert ports == [a, b]


def test_the_pool_is_the_larger_side_of_the_ephemeral_range() -> None:
    assert drawn_pool((32768, 60999)) == range(10000, 32768)
    assert drawn_pool((1024, 20000)) == range(20001, 65536)
    assert len(drawn_pool((1024, 65535))) == 0


def test_a_host_whose_range_leaves_no_room_gets_the_os_choice() -> None:
    ports = free_ports("127.0.0.1", 3, ephemeral=(1024, 65535))
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)


def test_an_unreadable_range_file_falls_back_to_linux_default(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    bad = tmp_path / "range"
    bad.write_text("not numbers\n")
    assert ephemeral_range(bad) == (32768, 60999)
    bad.write_text("40000\t50000\n")
    assert ephemeral_range(bad) == (40000, 50000)


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        free_ports("127.0.0.1", -1)


def test_a_failed_server_report_names_the_root_cause_above_the_tail() -> None:
    log = ["INFO loading", "ERROR EngineCore failed: OSError: [Errno 98] Address already in use",
           *[f"INFO line {i}" for i in range(50)], "RuntimeError: Engine core initialization failed."]
    report = failure_report(log, tail_lines=5).splitlines()
    assert report[0] == "error lines:"
    assert "Address already in use" in report[1]
    assert report[-1] == "RuntimeError: Engine core initialization failed."
    assert "INFO line 10" not in report
    assert failure_report(["INFO a", "INFO b"], tail_lines=1) == "INFO b"
