"""The gateway's picture of the nodes: registrations, heartbeats, liveness, roles, and `ClusterView` snapshots.

    registry.register(msg, now_s); registry.heartbeat(msg, now_s) -> known?
    registry.expire(now_s) -> names taken out of routing (silent for longer than the heartbeat timeout)
    registry.view(now_s) -> ClusterView           # what the router and the rebalancer read
    registry.begin_switch(name, role) / finish_switch(name, role)   # drain-then-switch bookkeeping

The egress link `prfaas->pd` in the view merges the PrfaaS nodes' sender telemetry. Queue depths combine the
node's last heartbeat with the requests the gateway has sent it since (so a burst is visible before the next
heartbeat). Event-loop only; no locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID, ClusterView, InstanceView
from prfaas.serve.messages import Heartbeat, NodeRegister


@dataclass(slots=True)
class NodeRecord:
    info: NodeRegister
    role: Role
    last_seen_s: float
    is_up: bool = True
    pending_role: Role | None = None
    heartbeat: Heartbeat | None = None
    gateway_prefills: int = 0  # prefills the gateway has sent and not seen answered
    gateway_prefill_tokens: int = 0
    gateway_decodes: int = 0
    # decodes routed here whose prefill (and state transfer) is still running elsewhere: the router counts them
    # as queued, as the simulator does (`sim.node`: "requests routed here whose state has not arrived yet"),
    # else every routing decision in a prefill's lifetime sees the node emptier than it is
    gateway_decodes_inbound: int = 0
    busy_marks: list[tuple[float, float]] = field(default_factory=list)  # (time_s, busy_s_total)
    batch_marks: list[tuple[float, int]] = field(default_factory=list)  # (time_s, running_batch)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def cluster(self) -> ClusterKind:
        return self.info.cluster


class NodeRegistry:
    def __init__(self, heartbeat_timeout_s: float) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.nodes: dict[str, NodeRecord] = {}

    def register(self, msg: NodeRegister, now_s: float) -> None:
        old = self.nodes.get(msg.name)
        record = NodeRecord(info=msg, role=msg.role, last_seen_s=now_s)
        if old is not None and old.info.pid == msg.pid:
            record.gateway_prefills, record.gateway_decodes = old.gateway_prefills, old.gateway_decodes
            record.gateway_prefill_tokens = old.gateway_prefill_tokens
            record.gateway_decodes_inbound = old.gateway_decodes_inbound
        self.nodes[msg.name] = record

    def heartbeat(self, msg: Heartbeat, now_s: float) -> bool:
        record = self.nodes.get(msg.name)
        if record is None:
            return False
        record.heartbeat = msg
        record.last_seen_s = now_s
        record.is_up = True
        if record.pending_role is None:
            record.role = msg.role
        record.busy_marks.append((now_s, msg.busy_s_total))
        record.batch_marks.append((now_s, msg.running_batch))
        for marks in (record.busy_marks, record.batch_marks):
            if len(marks) > 4096:
                del marks[:2048]
        return True

    def expire(self, now_s: float) -> list[str]:
        lost = []
        for record in self.nodes.values():
            if record.is_up and now_s - record.last_seen_s > self.heartbeat_timeout_s:
                record.is_up = False
                lost.append(record.name)
        return lost

    def mark_down(self, name: str) -> None:
        record = self.nodes.get(name)
        if record is not None:
            record.is_up = False

    def get(self, name: str) -> NodeRecord | None:
        return self.nodes.get(name)

    def up(self) -> list[NodeRecord]:
        return [r for r in self.nodes.values() if r.is_up]

    def begin_switch(self, name: str, role: Role) -> None:
        self.nodes[name].pending_role = role

    def finish_switch(self, name: str, role: Role | None) -> None:
        record = self.nodes[name]
        if role is not None:
            record.role = role
        record.pending_role = None

    @property
    def any_switch_pending(self) -> bool:
        return any(r.pending_role is not None for r in self.nodes.values())

    def max_context_tokens(self) -> int | None:
        values = [r.info.max_context_tokens for r in self.nodes.values()]
        return min(values) if values else None

    def role_counts(self) -> dict[Role, int]:
        counts = dict.fromkeys(Role, 0)
        for record in self.up():
            counts[Role.DRAINING if record.pending_role is not None else record.role] += 1
        return counts

    def utilisation(self, name: str, start_s: float, end_s: float) -> float:
        """Busy fraction of a node's model thread over [start_s, end_s] from its heartbeats (0 if unknown)."""
        marks = [m for m in self.nodes[name].busy_marks if start_s <= m[0] <= end_s]
        if len(marks) < 2 or marks[-1][0] <= marks[0][0]:
            return 0.0
        return min(1.0, (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]))

    def decode_occupancy(self, name: str, start_s: float, end_s: float) -> float:
        """Mean running batch / BS_max over the heartbeats in [start_s, end_s] (0 if none): a decode node's
        utilisation as the simulator counts it (slot occupancy), not its busy time (a batch of one keeps a decode
        thread busy all the time)."""
        record = self.nodes[name]
        sizes = [b for t, b in record.batch_marks if start_s <= t <= end_s]
        if not sizes or record.info.max_batch < 1:
            return 0.0
        return min(1.0, sum(sizes) / len(sizes) / record.info.max_batch)

    def view(self, now_s: float) -> ClusterView:
        instances = tuple(_instance(r) for r in self.nodes.values())
        egress = merge_links(PRFAAS_EGRESS_LINK_ID, now_s, _egress_snapshots(self.nodes.values()))
        links = {PRFAAS_EGRESS_LINK_ID: egress} if egress is not None else {}
        return ClusterView(instances=instances, links=MappingProxyType(links), time_s=now_s)


def _instance(r: NodeRecord) -> InstanceView:
    hb = r.heartbeat
    queued = (hb.queued_requests if hb else 0) + r.gateway_prefills + r.gateway_decodes_inbound
    queued_tokens = max(hb.queued_tokens if hb else 0, r.gateway_prefill_tokens)
    running = max(hb.running_batch if hb else 0, r.gateway_decodes)
    role = Role.DRAINING if r.pending_role is not None else r.role
    return InstanceView(instance_id=r.name, cluster=r.cluster, role=role, is_up=r.is_up,
                        queued_requests=queued, queued_tokens=queued_tokens, running_batch=running,
                        max_batch=r.info.max_batch, free_kv_bytes=hb.free_kv_bytes if hb else None,
                        pending_role=r.pending_role)


def _egress_snapshots(records: Iterable[NodeRecord]) -> list[LinkSnapshot]:
    snaps: list[LinkSnapshot] = []
    for r in records:
        if r.cluster is ClusterKind.PRFAAS and r.is_up and r.heartbeat is not None:
            snaps.extend(r.heartbeat.links)
    return snaps


def merge_links(link_id: str, now_s: float, snaps: list[LinkSnapshot]) -> LinkSnapshot | None:
    """One snapshot for several sender->receiver links of the same cluster pair (sums and maxima)."""
    if not snaps:
        return None
    capacity = max((s.capacity_gbps for s in snaps if s.capacity_gbps is not None), default=None)
    rtts = [s.rtt_ms for s in snaps if s.rtt_ms is not None]
    first = snaps[0]
    return replace(
        first, link_id=link_id, time_s=now_s, capacity_gbps=capacity,
        goodput_gbps=sum(s.goodput_gbps for s in snaps), bytes_total=sum(s.bytes_total for s in snaps),
        transfers_total=sum(s.transfers_total for s in snaps),
        transfers_failed=sum(s.transfers_failed for s in snaps),
        transfers_in_flight=sum(s.transfers_in_flight for s in snaps),
        bytes_in_flight=sum(s.bytes_in_flight for s in snaps),
        rtt_ms=max(rtts) if rtts else None, retransmits_total=sum(s.retransmits_total for s in snaps),
        is_up=any(s.is_up for s in snaps),
    )
