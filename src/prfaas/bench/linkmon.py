"""Sample the cross-site link while a run is going: KV goodput from the gateway, wire bytes from the qdisc.

    monitor = LinkMonitor(url, t0, cap_gbps=lambda: sites.cap_mbit / 1000, wire_bytes=sites.tx_bytes)
    task = asyncio.create_task(monitor.run(session, stop_event))
    monitor.samples                              # [LinkSample], one per interval

Goodput is the delta of the egress link's `bytes_total` (summed over PrfaaS senders, from `GET /admin/cluster`)
over the interval; a counter that went backwards (a PrfaaS node restarted) counts from zero. With sites the
qdisc's "Sent" counter gives the bytes that really crossed the emulated link (headers and retransmissions
included). The capacity is the cap in force at the sample (the callable), else what the gateway reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from prfaas.bench.records import LinkSample
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID

GBIT = 1e9


def _delta(now: int, before: int | None) -> int:
    if before is None:
        return 0
    return now - before if now >= before else now


class LinkMonitor:
    def __init__(self, url: str, t0: float, *, interval_s: float = 0.5,
                 cap_gbps: Callable[[], float | None] | None = None,
                 wire_bytes: Callable[[], int] | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.headers = dict(headers or {})  # the admin token: /admin/cluster needs it
        self.t0 = t0
        self.interval_s = interval_s
        self.cap_gbps = cap_gbps
        self.wire_bytes = wire_bytes
        self.samples: list[LinkSample] = []
        self._last: tuple[float, int | None, int | None] | None = None

    async def _cluster(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with session.get(f"{self.url}/admin/cluster", timeout=aiohttp.ClientTimeout(total=2.0),
                                   headers=self.headers) as resp:
                return dict(await resp.json()) if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None  # gateway restarting: the sample is skipped, not invented

    def observe(self, now_s: float, link: dict[str, Any] | None, wire: int | None) -> LinkSample | None:
        """Turn one reading into a sample (None for the first reading, which only sets the baseline)."""
        payload = int(link["bytes_total"]) if link else None
        last, self._last = self._last, (now_s, payload, wire)
        if last is None or now_s <= last[0]:
            return None
        dt = now_s - last[0]
        goodput = _delta(payload, last[1]) * 8 / dt / GBIT if payload is not None else 0.0
        wire_gbps = _delta(wire, last[2]) * 8 / dt / GBIT if wire is not None and last[2] is not None else None
        cap = self.cap_gbps() if self.cap_gbps is not None else (link or {}).get("capacity_gbps")
        sample = LinkSample(time_s=now_s - self.t0, goodput_gbps=goodput, capacity_gbps=cap, wire_gbps=wire_gbps)
        self.samples.append(sample)
        return sample

    async def wait_for_sample_after(self, since_s: float, *, timeout_s: float) -> bool:
        """Until a sample read at or after monotonic `since_s` exists (a side task that just changed the link
        must see its change sampled before the run stops); False after `timeout_s` (an anti-hang bound)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1].time_s + self.t0 >= since_s:
                return True
            await asyncio.sleep(self.interval_s / 5)
        return False

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cluster = await self._cluster(session)
            link = (cluster or {}).get("links", {}).get(PRFAAS_EGRESS_LINK_ID)
            wire = await asyncio.to_thread(self.wire_bytes) if self.wire_bytes is not None else None
            self.observe(time.monotonic(), link, wire)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
