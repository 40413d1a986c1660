"""What a live region gateway's site selector sees of the PrfaaS sites, for predictions of live runs.

    views = GatewaySiteViews(heartbeat_s=0.5, site_of=cluster_of_node, prefill_time_s=site_time_s)
    views.sent(now_s, rid, region, instance, tokens)     # the region's gateway sent an offloaded prefill
    views.answered(now_s, rid)                            # ... and got its reply (the state has been sent)
    total_s, own_s, queued = views.site_parts(now_s, region, site, up_instances)
    inst = views.instance_view(now_s, region, inst)      # a PrfaaS node as that gateway's router sees it

The simulator's own site view (`MultiSiteSimulator.sites_view`) is exact: every region's queued seconds and the
running prefills' residuals at this instant. A live gateway (`serve.sites.SiteRouting.sites_view`) knows less:
per PrfaaS node, the prompt tokens of the prefills the node holds as of its last heartbeat (`queued_tokens`, sent
every `heartbeat_interval_s` of wall time, so up to that stale) and the tokens of its *own* prefills in flight to
that node (sent, reply not back: exact); it takes the larger of the two and converts it to seconds with the
site's prefill time of that many tokens, T(tokens), one call per node (not a sum of residuals). Queued requests
likewise: the larger of the heartbeat's count and its own. A prediction of a live run that gives the selector the
exact view picks other sites than the live gateways did whenever the state changed within the last heartbeat, and
every later queue and preemption differs from there; so `bench sites` predictions run the simulator with this
view instead (`MultiSiteSimulator(gateway_heartbeat_s=...)`). The region's router sees the PrfaaS nodes of the
chosen site the same way when it picks one (`serve.cluster`'s node view: queued tokens = the larger of the
heartbeat's and its own in flight, queued requests = the heartbeat's queued ones plus its own in flight).

A node's heartbeat reports the prompt tokens of every prefill it holds (received, reply not sent) and the number
of those not started; the simulator counts a prefill held from its routing to its state's delivery and takes
all but one of them as not started (the one running).

Heartbeats: every node's at multiples of `heartbeat_s` from the simulation's start (live nodes each have their
own phase; the staleness is the same in distribution). Between two changes the state is constant, so the state at
a heartbeat is the one before the first change after it: no periodic event is needed. Pure and deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from prfaas.policy.types import InstanceView


class GatewaySiteViews:
    """The region gateways' view of the PrfaaS nodes' prefill work (module docstring)."""

    def __init__(self, heartbeat_s: float, site_of: Mapping[str, str],
                 prefill_time_s: Callable[[str, float, float], float]) -> None:
        if not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0, got {heartbeat_s}")
        self.heartbeat_s = heartbeat_s
        self.site_of = site_of
        self.prefill_time_s = prefill_time_s
        self._inflight: dict[int, tuple[str, str, int]] = {}  # request id -> (region, instance, prompt tokens)
        self._at_node: dict[str, tuple[int, int]] = {}  # instance -> (tokens, prefills) it holds now
        self._beat: dict[str, tuple[int, int]] = {}  # instance -> (tokens, prefills not started) at its last heartbeat
        self._next_beat_s = 0.0

    def _catch_up(self, now_s: float) -> None:
        """A heartbeat passed since the last change: the nodes' state now is the state it reported."""
        if now_s >= self._next_beat_s:
            self._beat = {instance: (tokens, count - 1) for instance, (tokens, count) in self._at_node.items()}
            self._next_beat_s = (math.floor(now_s / self.heartbeat_s) + 1) * self.heartbeat_s

    def sent(self, now_s: float, request_id: int, region: str, instance: str, tokens: int) -> None:
        """Region `region`'s gateway sent request `request_id`'s prefill of `tokens` prompt tokens to `instance`."""
        self._catch_up(now_s)
        self.answered(now_s, request_id)  # a retried request's earlier attempt is over
        self._inflight[request_id] = (region, instance, tokens)
        held, count = self._at_node.get(instance, (0, 0))
        self._at_node[instance] = (held + tokens, count + 1)

    def answered(self, now_s: float, request_id: int) -> None:
        """The prefill's reply came back (its state has been sent), or the attempt was abandoned."""
        entry = self._inflight.pop(request_id, None)
        if entry is None:
            return
        self._catch_up(now_s)
        _, instance, tokens = entry
        held, count = self._at_node[instance]
        if count <= 1:
            del self._at_node[instance]
        else:
            self._at_node[instance] = (held - tokens, count - 1)

    def _own(self, region: str, site: str, only: str | None = None) -> dict[str, tuple[int, int]]:
        """Region `region`'s prefills in flight to `site`'s nodes (`only`: to that node alone): instance ->
        (tokens, prefills)."""
        own: dict[str, tuple[int, int]] = {}
        for reg, instance, tokens in self._inflight.values():
            if reg == region and (instance == only if only is not None else self.site_of.get(instance) == site):
                held, count = own.get(instance, (0, 0))
                own[instance] = (held + tokens, count + 1)
        return own

    def instance_view(self, now_s: float, region: str, inst: InstanceView) -> InstanceView:
        """PrfaaS node `inst` as region `region`'s gateway sees it: its queue from the node's last heartbeat and
        the region's own prefills in flight to it (`serve.cluster`: tokens the larger, requests summed)."""
        self._catch_up(now_s)
        site = self.site_of.get(inst.instance_id, "")
        beat_tokens, beat_queued = self._beat.get(inst.instance_id, (0, 0))
        own_tokens, own_count = self._own(region, site, inst.instance_id).get(inst.instance_id, (0, 0))
        return dataclasses.replace(inst, queued_tokens=max(beat_tokens, own_tokens),
                                   queued_requests=beat_queued + own_count, busy_until_s=None)

    def site_parts(self, now_s: float, region: str, site: str, up_instances: list[str]) -> tuple[float, float, int]:
        """Region `region`'s view of `site`: (queued work s, its own queued work s, queued prefills), over the
        site's up PrfaaS instances (`serve.sites.SiteRouting.sites_view`'s formula)."""
        self._catch_up(now_s)
        own = self._own(region, site)
        total_s = own_s = 0.0
        queued = 0
        for instance in up_instances:
            beat_tokens, beat_count = self._beat.get(instance, (0, 0))
            own_tokens, own_count = own.get(instance, (0, 0))
            tokens = max(beat_tokens, own_tokens)
            total_s += self.prefill_time_s(site, float(tokens), 0.0) if tokens > 0 else 0.0
            own_s += self.prefill_time_s(site, float(own_tokens), 0.0) if own_tokens > 0 else 0.0
            queued += max(beat_count, own_count)
        return total_s, own_s, queued
