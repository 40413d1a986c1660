"""Ports for servers started later: free now, and outside the range the OS draws outgoing connections from.

    kv_port, control_port = free_ports("127.0.0.1", 2)

A port taken from the OS (bind to port 0) comes from the ephemeral range, the same range every outgoing connection
on the host takes its local port from. Chosen, released and bound seconds or minutes later (a vLLM server binds its
KV and telemetry ports only once its engine has loaded), such a port can meanwhile be the local end of somebody's
connection, and the late bind fails. Ports drawn below (or above) that range are never handed out by the OS, so
only a process that fixes the same port can take it; the draw is random, so two runs on one host rarely meet.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)  # Linux's default
LOWEST_DRAWN_PORT = 10000  # below: well-known and registered services
MIN_POOL_PORTS = 2000  # a smaller pool outside the ephemeral range: let the OS choose instead
MAX_ATTEMPTS_PER_PORT = 50


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The host's ephemeral port range (inclusive); Linux's default where it cannot be read."""
    try:
        low, high = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def drawn_pool(ephemeral: tuple[int, int]) -> range:
    """The ports outside `ephemeral` to draw from: the larger side of it, from `LOWEST_DRAWN_PORT` up."""
    low, high = ephemeral
    below = range(LOWEST_DRAWN_PORT, max(LOWEST_DRAWN_PORT, low))
    above = range(max(high + 1, LOWEST_DRAWN_PORT), 65536)
    return below if len(below) >= len(above) else above


def free_ports(host: str = "127.0.0.1", count: int = 1, *, ephemeral: tuple[int, int] | None = None,
               rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports free on `host` now, outside its ephemeral range where the range leaves room (else from
    the OS). Every candidate is bound (no SO_REUSEADDR) and held until all are chosen, so the ports are distinct
    and none is in use at the moment of return."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pool = drawn_pool(ephemeral or ephemeral_range())
    draw = rng or random.SystemRandom()
    held: list[socket.socket] = []
    try:
        if len(pool) >= max(MIN_POOL_PORTS, 4 * count):
            for _ in range(count * MAX_ATTEMPTS_PER_PORT):
                if len(held) == count:
                    break
                _try_bind(held, host, draw.choice(pool))
        while len(held) < count:  # the pool is small or crowded: the OS's choice
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port as `free_ports` draws them (a small race remains until the caller's process binds it)."""
    return free_ports(host, 1)[0]


def _try_bind(held: list[socket.socket], host: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:  # in use (or held already by this draw)
        sock.close()
        return
    held.append(sock)
