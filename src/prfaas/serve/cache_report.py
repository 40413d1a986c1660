"""Prefix-cache reports from a node to the gateway's KV index, carried by heartbeats (no I/O here).

The gateway's `GlobalKvIndex` learns a node's blocks optimistically when the node answers a prefill, but only
the node knows what its prefix cache evicted (its byte budget, transfer holds and LRU decide). Each heartbeat
therefore carries a numbered report:

    seq unchanged, no lists      nothing changed since the last report
    seq + 1, added / removed     the change since the last report (a delta on the gateway's copy)
    seq + 1, is_full, added      every block held now (replaces the gateway's copy of this node)

The gateway applies a delta only on top of the report it applied last (`seq` one higher); anything else
(a gateway restart, a lost heartbeat, a missed report) makes it answer `cache_resync`, and the node sends a
full report next. A full report also goes out every `full_every` reports, which bounds how long an
optimistic insert of a block the node never kept can survive in the index.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_REPORT_EVERY = 30
"""Heartbeats between two full reports (also after a registration, a resync request or a lost heartbeat)."""


@dataclass(frozen=True, slots=True)
class CacheReport:
    seq: int
    is_full: bool = False
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()


NO_REPORT = CacheReport(seq=0)
"""What a node without a prefix cache sends (the gateway ignores cache_seq 0)."""


class CacheReporter:
    """The node's side: what to put in the next heartbeat, and what the gateway acknowledged."""

    def __init__(self, full_every: int = FULL_REPORT_EVERY) -> None:
        if full_every < 1:
            raise ValueError("full_every must be >= 1")
        self.full_every = full_every
        self._seq = 0
        self._reported: frozenset[int] = frozenset()  # what the gateway holds for this node, as far as we know
        self._sent: frozenset[int] | None = None  # the content of the report in flight
        self._need_full = True
        self._since_full = 0

    def report(self, held: frozenset[int] | None) -> CacheReport:
        """The report for the next heartbeat (seq 0: the node has no prefix cache to report)."""
        if held is None:
            return NO_REPORT
        self._sent = held
        if self._need_full or self._since_full + 1 >= self.full_every:
            self._seq += 1
            self._since_full = 0
            return CacheReport(self._seq, is_full=True, added=tuple(sorted(held)))
        self._since_full += 1
        if held == self._reported:
            return CacheReport(self._seq)
        self._seq += 1
        return CacheReport(self._seq, added=tuple(sorted(held - self._reported)),
                           removed=tuple(sorted(self._reported - held)))

    def on_reply(self, *, resync: bool) -> None:
        """The gateway answered the last heartbeat."""
        if resync:
            self._need_full = True
        elif self._sent is not None:
            self._reported, self._need_full = self._sent, False
        self._sent = None

    def on_lost(self) -> None:
        """No answer (or a registration): the gateway's copy is unknown, so the next report is full."""
        self._need_full = True
        self._sent = None
