"""Registry of multi-site selectors (which PrfaaS cluster takes an offload), used by simulator and gateway alike.

    make_site_selector(name, topology, prefill_time_s, state_bytes, config=None) -> SiteSelector
    list_site_selectors() -> names

- `prfaas-sites`: `policy.sites.SiteSelector` (estimates from link telemetry, queues and prefix locality;
  per-link bandwidth loops; failover before local; weighted fair share).
- `home-only`: the per-region baseline: only the region's home cluster (lowest-latency link); when it is down,
  refused or its loop sheds the request, prefill locally. What "a PrfaaS cluster per region" does.

An unknown name raises `UnknownNameError` listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from prfaas.core.errors import UnknownNameError
from prfaas.core.topology import SiteTopology
from prfaas.policy.sites import SitePrefillTimeFn, SiteSelectConfig, SiteSelector, StateBytesFn


class HomeOnlySelector(SiteSelector):
    """Only the home cluster, else local (module docstring)."""

    def __init__(self, topology: SiteTopology, prefill_time_s: SitePrefillTimeFn, state_bytes: StateBytesFn,
                 config: SiteSelectConfig | None = None) -> None:
        super().__init__(topology, prefill_time_s, state_bytes, config)
        homes = {(home, pd) for pd, home in self._home.items() if home is not None}
        self.topology = SiteTopology(prfaas=topology.prfaas, pd=topology.pd,
                                     links=[lk for lk in topology.links if (lk.prfaas, lk.pd) in homes])


SiteSelectorFactory = Callable[[SiteTopology, SitePrefillTimeFn, StateBytesFn, SiteSelectConfig | None], SiteSelector]

SITE_SELECTORS: Mapping[str, SiteSelectorFactory] = MappingProxyType({
    "prfaas-sites": SiteSelector,
    "home-only": HomeOnlySelector,
})


def list_site_selectors() -> tuple[str, ...]:
    return tuple(SITE_SELECTORS)


def make_site_selector(name: str, topology: SiteTopology, prefill_time_s: SitePrefillTimeFn,
                       state_bytes: StateBytesFn, config: SiteSelectConfig | None = None) -> SiteSelector:
    try:
        factory = SITE_SELECTORS[name]
    except KeyError:
        raise UnknownNameError("site selector", name, list(SITE_SELECTORS)) from None
    return factory(topology, prefill_time_s, state_bytes, config)


__all__ = ["HomeOnlySelector", "list_site_selectors", "make_site_selector"]
