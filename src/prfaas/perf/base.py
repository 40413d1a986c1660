"""Cost-model interfaces shared by the planner, the simulator and the live policy.

A `PrefillCostModel` answers, for one instance (e.g. 8 GPUs), how long a prefill of `num_tokens`
new tokens on top of `num_cached_tokens` cached ones takes and how many bytes of state the
request then holds (S_kv). A `DecodeCostModel` answers how long one decode step takes for a
batch at a given mean context. Implementations: measured profiles (`perf.profile`) and the
calibrated roofline (`perf.roofline`). All methods are side-effect free.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class PrefillCostModel(Protocol):
    """Prefill time and state size for one instance."""

    @property
    def name(self) -> str: ...

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        """Seconds to prefill `num_tokens` new tokens after `num_cached_tokens` cached ones (> 0)."""
        ...

    def s_kv_bytes(self, num_tokens: float) -> float:
        """Bytes of transferable state after a prompt of `num_tokens` tokens (S_kv(l))."""
        ...


@runtime_checkable
class DecodeCostModel(Protocol):
    """Decode step time for one instance."""

    @property
    def name(self) -> str: ...

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        """Seconds for one decode step advancing `batch_size` requests at mean context `context_tokens`."""
        ...
