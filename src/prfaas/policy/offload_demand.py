"""Offered egress demand per candidate threshold, from the uncached lengths the router saw recently.

The bandwidth-aware loop sizes its threshold raise with the paper's egress ceiling (arXiv 2604.15039 §3.4.1, Eq. 3: the
PrfaaS cluster can only serve what `B_out / S_kv(l_long)` allows): it keeps the uncached lengths of
the requests routed in the last `window_s` seconds and, given a byte budget, finds the smallest
threshold whose offloaded byte rate fits it:

    D(x) = sum over recent requests with l > x of S_kv(s), divided by the window span   [bytes/s]
    (l: the uncached length the threshold is compared with; s >= l: the tokens whose state ships, the whole
    prompt unless the decode side holds its prefix)
    fit(budget) = the smallest x >= t with D(x) <= budget   (capped at max_threshold_tokens)

Offloading the longest requests first is the paper's rule (prefill time grows faster than S_kv with
l), so x is one of the observed lengths: the k longest requests whose bytes fit the budget offload,
every shorter one stays local. S_kv is the router's `state_bytes` (the single definition in
`core.layers`, exposed by the perf cost model). Pure: times are arguments, no clock is read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

StateBytesFn = Callable[[float], float]


class OffloadDemand:
    """Sliding window of (arrival time, uncached tokens, shipped tokens) of routed requests: the threshold is
    compared with the uncached length, the bytes are S_kv of what ships (the whole prompt's state unless the decode
    side holds the prefix: the same cost model as the planner and the simulator)."""

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("demand window_s must be positive")
        self.window_s = window_s
        self._samples: deque[tuple[float, int, int]] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def record(self, now_s: float, uncached_tokens: int, shipped_tokens: int | None = None) -> None:
        """`shipped_tokens`: the tokens whose state an offload would send (default: the uncached ones)."""
        shipped = uncached_tokens if shipped_tokens is None else max(shipped_tokens, uncached_tokens)
        self._samples.append((now_s, uncached_tokens, shipped))
        self._expire(now_s)

    def span_s(self, now_s: float) -> float:
        """Seconds the window covers now: `window_s` once full, else since the oldest sample."""
        self._expire(now_s)
        if not self._samples:
            return 0.0
        return min(self.window_s, max(now_s - self._samples[0][0], 0.0))

    def byte_rate(self, threshold_tokens: int, state_bytes: StateBytesFn, now_s: float) -> float | None:
        """D(threshold): offloaded bytes per second the recent requests would send; None = no data."""
        span = self.span_s(now_s)
        if span <= 0:
            return None
        return sum(state_bytes(shipped) for _, n, shipped in self._samples if n > threshold_tokens) / span

    def fit_threshold(self, budget_bytes_per_s: float, base_tokens: int, max_tokens: int,
                      state_bytes: StateBytesFn, now_s: float) -> int | None:
        """Smallest threshold in [base_tokens, max_tokens] whose D fits the budget; None = no data."""
        span = self.span_s(now_s)
        if span <= 0:
            return None
        budget_bytes = max(budget_bytes_per_s, 0.0) * span
        longest_first = sorted(((n, shipped) for _, n, shipped in self._samples if n > base_tokens), reverse=True)
        sent = 0.0
        for length, shipped in longest_first:
            sent += state_bytes(shipped)
            if sent > budget_bytes:
                return min(length, max_tokens)  # this one and every shorter one stay local
        return base_tokens

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        samples = self._samples
        while samples and samples[0][0] < horizon:
            samples.popleft()
