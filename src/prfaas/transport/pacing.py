r"""Token-bucket rate cap for one peer link (pure: time is an argument).

`reserve(nbytes, now_s)` takes `nbytes` tokens at once and returns how long the caller must wait
before putting them on the wire. Tokens may go negative (debt), so concurrent senders that reserve
in turn are spaced correctly without a second pass:

    tokens ^  burst ---+   refill at rate_bytes_per_s, capped at burst
           |           |\   /|
           |           | \ / |  reserve(n): tokens -= n; wait = max(0, -tokens) / rate
           0 ----------+--V--+------> time
"""

from __future__ import annotations


class TokenBucket:
    """A byte-rate limiter; not thread-safe by itself (the owner serialises calls)."""

    def __init__(self, rate_bytes_per_s: float, burst_bytes: int, now_s: float) -> None:
        if rate_bytes_per_s <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be > 0")
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes
        self._tokens = float(burst_bytes)
        self._last_s = now_s

    def reserve(self, nbytes: int, now_s: float) -> float:
        """Take `nbytes` tokens; return the seconds to wait before sending them (0 if none)."""
        elapsed = max(0.0, now_s - self._last_s)
        self._tokens = min(float(self.burst_bytes), self._tokens + elapsed * self.rate_bytes_per_s)
        self._last_s = max(self._last_s, now_s)
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_bytes_per_s
