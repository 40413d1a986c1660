"""Which of the paper's two prefix-routing regimes applies (arXiv 2604.15039, prefix-aware routing; the paper leaves the
rule open).

    SCARCE     each cluster's cache judged on its own: l = l_total - l_pd; no cache crosses clusters
    ABUNDANT   l = l_total - max(l_prfaas, l_pd); a cross-cluster cache transfer when the longer prefix
               lives in the cluster that will not compute

Our rule for AUTO (all numbers are `CacheAwareConfig` fields): bandwidth is ABUNDANT while the egress
link is up, its utilisation is known, and it stays below `abundant_exit_util` with a retransmit rate
below `abundant_max_retransmit`; it becomes ABUNDANT only once utilisation falls to
`abundant_enter_util` or below. The band between the two marks keeps the current regime
(hysteresis). The starting regime is SCARCE, the safe one; an unknown utilisation keeps the current
regime, a link that is down or missing forces SCARCE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from prfaas.core.link import LinkSnapshot


class CacheRegime(enum.Enum):
    AUTO = "auto"  # decided from the egress link (the rule above)
    SCARCE = "scarce"
    ABUNDANT = "abundant"


@dataclass(frozen=True, slots=True)
class CacheAwareConfig:
    """Knobs of `prfaas-cache-aware`."""

    regime: CacheRegime = CacheRegime.AUTO
    """Fixed regime, or AUTO to follow the egress link."""
    abundant_enter_util: float = 0.30
    """Egress utilisation at or below which bandwidth becomes abundant."""
    abundant_exit_util: float = 0.50
    """Egress utilisation above which bandwidth stops being abundant."""
    abundant_max_retransmit: float = 0.001
    """Retransmit rate above which bandwidth is never abundant."""
    min_transfer_blocks: int = 1
    """A cross-cluster cache transfer must add at least this many blocks to the destination's prefix."""
    max_transfer_blocks: int | None = None
    """Cap on the blocks one transfer moves (None = no cap); longer prefixes are moved only up to it."""
    pull_max_pd_util: float = 0.5
    """A transfer that moves a prefill from PrfaaS to PD-P (the SCARCE plan would run it on PrfaaS) is
    planned only while the PD-P utilisation measured over `pd_util_window_s` is at most this (>= 1 never
    blocks): such a pull saves the new tokens' state bytes but adds PD-P work that delays later short
    requests, which no per-request estimate sees."""
    pd_util_window_s: float = 60.0
    """Window of observed PD-P prefill seconds (from outcomes) behind that utilisation."""
    min_transfer_benefit: float = 1.0
    """A transfer must save at least this many seconds of prefill per second it spends on the link
    (prefill time saved at the destination / (bytes / free link bandwidth)); 0 disables the check."""

    def __post_init__(self) -> None:
        if not isinstance(self.regime, CacheRegime):  # a name from a config file
            known = ", ".join(r.value for r in CacheRegime)
            try:
                object.__setattr__(self, "regime", CacheRegime(self.regime))
            except ValueError:
                raise ValueError(f"unknown cache regime {self.regime!r}; known: {known}") from None
        if not 0.0 <= self.abundant_enter_util < self.abundant_exit_util:
            raise ValueError("need 0 <= abundant_enter_util < abundant_exit_util")
        if self.abundant_max_retransmit < 0 or self.min_transfer_blocks < 1:
            raise ValueError("need abundant_max_retransmit >= 0 and min_transfer_blocks >= 1")
        if self.min_transfer_benefit < 0 or self.pull_max_pd_util < 0 or self.pd_util_window_s <= 0:
            raise ValueError("need min_transfer_benefit >= 0, pull_max_pd_util >= 0 and pd_util_window_s > 0")
        if self.max_transfer_blocks is not None and self.max_transfer_blocks < self.min_transfer_blocks:
            raise ValueError("max_transfer_blocks must be >= min_transfer_blocks")


class RegimeDetector:
    """Holds the current regime between requests; `update` applies the hysteresis rule."""

    def __init__(self, config: CacheAwareConfig) -> None:
        self.config = config
        fixed = config.regime
        self._regime: CacheRegime = fixed if fixed is not CacheRegime.AUTO else CacheRegime.SCARCE

    @property
    def regime(self) -> CacheRegime:
        return self._regime

    def update(self, link: LinkSnapshot | None) -> CacheRegime:
        if self.config.regime is not CacheRegime.AUTO:
            return self._regime
        self._regime = self._next(link)
        return self._regime

    def _next(self, link: LinkSnapshot | None) -> CacheRegime:
        c = self.config
        if link is None or not link.is_up or link.retransmit_rate > c.abundant_max_retransmit:
            return CacheRegime.SCARCE
        util = link.utilisation
        if util is None:
            return self._regime
        if util > c.abundant_exit_util:
            return CacheRegime.SCARCE
        if util <= c.abundant_enter_util:
            return CacheRegime.ABUNDANT
        return self._regime
