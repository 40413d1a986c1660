"""How hard a PD region is pushing now, against its share of the traffic: the offered-load ratio.

    meter = RegionLoadMeter(expected_rps=2.0)          # the region's traffic_rps in the topology
    meter.observe(now_s)                                # on each of the region's arrivals
    ratio = meter.ratio(now_s)                          # arrivals over the last window / what its share expects

A PrfaaS node sees only its own queue and its last starts, so on its own it cannot tell a region that is
bursting across every site from one that merely used this node more before: its preemption rule
(`policy.fair_queue.FairQueue.preempts`) can then let the burst pause the quiet region. The region gateway (and
the simulator, for each region) knows the region's arrivals; it stamps this ratio on the prefills it offloads and
the node's fair queue compares the ratios of the running and the queued region (`FairQueue.set_load`): a region
offering `BURST_RATIO` times more than the running one, relative to their shares, never pauses it, and a region
offering that much less pauses it at the next safe point. Only ratios are compared, so a common scale (an
emulation's time scale, an overall load factor) cancels. Pure and deterministic.
"""

from __future__ import annotations

from collections import deque

LOAD_WINDOW_S = 10.0  # arrivals counted over this window (a 5x burst of a few seconds shows within it)
MIN_ARRIVALS = 16  # ... or over the last this many, where the window holds fewer (a slow region: ~25% noise)
BURST_RATIO = 3.0  # ratios this far apart tell a burst from a calm region (16+ Poisson arrivals: within ~±50%)
NEUTRAL_RATIO = 1.0  # what a region without a meter or an expected rate reports


class RegionLoadMeter:
    """Arrivals of one region over a sliding window, against its expected rate."""

    __slots__ = ("_arrivals", "_first_s", "_seen", "expected_rps", "window_s")

    def __init__(self, expected_rps: float, window_s: float = LOAD_WINDOW_S) -> None:
        if not expected_rps > 0 or not window_s > 0:
            raise ValueError(f"need expected_rps > 0 and window_s > 0, got {expected_rps}, {window_s}")
        self.expected_rps = expected_rps
        self.window_s = window_s
        self._arrivals: deque[float] = deque()
        self._first_s: float | None = None
        self._seen = 0

    def observe(self, now_s: float) -> None:
        if self._first_s is None:
            self._first_s = now_s
        self._seen += 1
        self._arrivals.append(now_s)
        self._trim(now_s)

    def ratio(self, now_s: float) -> float:
        """The arrival rate over the expected one: arrivals over the window, or over the last `MIN_ARRIVALS` where
        the window holds fewer (they span longer). `NEUTRAL_RATIO` until `MIN_ARRIVALS` arrivals were seen: a
        handful of arrivals cannot tell a burst from chance (three in a second against one is not a 3x burst)."""
        if self._seen < MIN_ARRIVALS:
            return NEUTRAL_RATIO
        self._trim(now_s)
        arrivals = self._arrivals
        assert self._first_s is not None  # seen at least one
        span_s = max(min(self.window_s, now_s - self._first_s), now_s - arrivals[0], 1e-9)
        return len(arrivals) / (span_s * self.expected_rps)

    def _trim(self, now_s: float) -> None:
        """Drop arrivals older than the window, keeping at least the last `MIN_ARRIVALS`."""
        arrivals, since = self._arrivals, now_s - self.window_s
        while len(arrivals) > MIN_ARRIVALS and arrivals[0] <= since:
            arrivals.popleft()


def burst_order(queued_load: float, running_load: float) -> bool | None:
    """The preemption verdict of the load ratios alone: False when the queued region pushes `BURST_RATIO` times
    harder than the running one (a burst never pauses a calm region), True when `BURST_RATIO` times less (a
    calm region cuts into a burst), None when neither (equal ratios, both 0 included: the fair queue's own rule
    decides)."""
    if queued_load > BURST_RATIO * running_load:
        return False
    if running_load > BURST_RATIO * queued_load:
        return True
    return None
