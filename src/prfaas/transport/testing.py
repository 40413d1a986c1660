"""Test hooks: a link shim that EMULATES a lossy, distant link on the sender side.

This kernel has no `netem` (STACK.md §8.1), so one-way delay, corruption and connection drops are
injected by the sender itself when `SenderConfig.shim` is set. Production configs leave it None.

- one-way delay: a chunk is held until `ready_at + one_way_delay_s` before it goes on the wire
  (chunks of one layer are held together, so delay does not serialise with bandwidth);
- corruption: selected chunk transmissions carry a copy of the payload with one byte flipped (the
  source tensor is never modified); the receiver's checksum must catch it;
- cut: after a given number of payload bytes on connection k, the sender shuts that connection
  down in the middle of a chunk (a truncated chunk), once per connection index.

`netns_pair()` builds the two-namespace, `tc tbf` rate-limited setup of STACK.md §8.2 for tests and
benchmarks (root only), with unique names, and always deletes it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkShim:
    """What to inject (a plan); `start()` makes the mutable runtime for one peer link."""

    one_way_delay_s: float = 0.0
    corrupt_seqs: frozenset[int] = frozenset()  # chunk seqs to corrupt on their first transmissions
    corrupt_attempts: int = 1  # how many transmissions of each listed seq are corrupted
    corrupt_probability: float = 0.0  # additionally, any transmission with this probability
    cut_after_bytes: tuple[tuple[int, int], ...] = ()  # (connection index, payload bytes sent)
    seed: int = 0

    def start(self) -> ShimRuntime:
        return ShimRuntime(self)


class ShimRuntime:
    """Thread-safe state of a shim on one link."""

    def __init__(self, plan: LinkShim) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._rng = random.Random(plan.seed)
        self._attempts: dict[tuple[bytes, int], int] = {}
        self._cuts = dict(plan.cut_after_bytes)
        self.num_corrupted = 0
        self.num_cuts = 0

    def hold_until_s(self, ready_at_s: float) -> float:
        return ready_at_s + self.plan.one_way_delay_s

    def payload_for(self, transfer_id: bytes, seq: int, payload: memoryview) -> memoryview:
        """The bytes to put on the wire for this transmission (a corrupted copy, or the original)."""
        with self._lock:
            attempt = self._attempts.get((transfer_id, seq), 0)
            self._attempts[(transfer_id, seq)] = attempt + 1
            listed = seq in self.plan.corrupt_seqs and attempt < self.plan.corrupt_attempts
            unlucky = self.plan.corrupt_probability > 0 and self._rng.random() < self.plan.corrupt_probability
            if not (listed or unlucky) or payload.nbytes == 0:
                return payload
            self.num_corrupted += 1
            index = self._rng.randrange(payload.nbytes)
        copy = bytearray(payload)
        copy[index] ^= 0xFF
        return memoryview(copy)

    def cut_point(self, conn_index: int, sent_on_conn: int, payload_bytes: int) -> int | None:
        """If this connection must be cut inside this payload, how many of its bytes go out first."""
        with self._lock:
            limit = self._cuts.get(conn_index)
            if limit is None or sent_on_conn + payload_bytes <= limit:
                return None
            del self._cuts[conn_index]
            self.num_cuts += 1
            return max(0, min(payload_bytes - 1, limit - sent_on_conn))


@dataclass(frozen=True, slots=True)
class NetnsPair:
    """Two network namespaces joined by a veth pair; `a` reaches `b` at `addr_b`."""

    ns_a: str
    ns_b: str
    dev_a: str
    addr_a: str
    addr_b: str

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def netns_supported() -> bool:
    """Root and the `ip`/`tc` tools are present (namespaces may still fail; callers catch that)."""
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("ip") is not None \
        and shutil.which("tc") is not None


def _ip(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=20)


@contextlib.contextmanager
def netns_pair(rate_mbit: float | None = None, burst_kb: int = 256) -> Iterator[NetnsPair]:
    """EMULATION: create two namespaces (unique names), optionally rate-limit a -> b with `tc tbf`
    (STACK.md §8.2), and always delete both on exit. Raises OSError/CalledProcessError if it cannot."""
    tag = f"{os.getpid() % 100000:05d}{random.randrange(16**3):03x}"
    ns_a, ns_b = f"prfaas_kv_{tag}_a", f"prfaas_kv_{tag}_b"
    dev_a, dev_b = f"kv{tag}a", f"kv{tag}b"
    octet = random.randrange(1, 250)
    addr_a, addr_b = f"10.213.{octet}.1", f"10.213.{octet}.2"
    try:
        _ip("ip", "netns", "add", ns_a)
        _ip("ip", "netns", "add", ns_b)
        _ip("ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        _ip("ip", "link", "set", dev_a, "netns", ns_a)
        _ip("ip", "link", "set", dev_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            _ip("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("ip", "-n", ns, "link", "set", dev, "up")
            _ip("ip", "-n", ns, "link", "set", "lo", "up")
        if rate_mbit is not None:
            _ip("tc", "-n", ns_a, "qdisc", "add", "dev", dev_a, "root", "tbf", "rate", f"{rate_mbit}mbit",
                "burst", f"{burst_kb}kb", "latency", "20ms")
        yield NetnsPair(ns_a, ns_b, dev_a, addr_a, addr_b)
    finally:
        for ns in (ns_a, ns_b):  # deleting a namespace removes its end of the veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)
