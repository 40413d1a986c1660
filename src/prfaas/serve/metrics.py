"""Prometheus metrics of the gateway (one `CollectorRegistry` per gateway, label children cached).

Per request: TTFT and inter-token latency histograms by route (`prfaas`, `local`, `colocated`), requests by
route reason, requests by route, outcomes (ok / failed attempts), bytes moved by the KV transport, requests
refused for their credentials (`prfaas_auth_refused_total{surface, reason}`); admission control
(`serve.admission`): requests admitted, refused by reason (in_flight, nodes_full, no_capacity, queue_deadline) and
shed by a node's queue deadline, and the requests in flight.
Refreshed on each scrape from the node registry: link bytes / goodput / utilisation / RTT, queue depths and
running batch per node, node counts per role, the router's threshold.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from prfaas.core.lifecycle import Role
from prfaas.policy.types import RouteReason
from prfaas.serve.cancel import cancelled_counter
from prfaas.serve.cluster import NodeRegistry

_TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROUTES = ("prfaas", "local", "colocated")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ttft = Histogram("prfaas_ttft_seconds", "Time to first token", ["route"], buckets=_TTFT_BUCKETS_S, registry=r)
        itl = Histogram("prfaas_itl_seconds", "Inter-token latency", ["route"], buckets=_ITL_BUCKETS_S, registry=r)
        by_reason = Counter("prfaas_requests_by_reason", "Routed requests by route reason", ["reason"], registry=r)
        by_route = Counter("prfaas_requests_by_route", "Finished requests by route", ["route"], registry=r)
        self.ttft = {route: ttft.labels(route) for route in ROUTES}
        self.itl = {route: itl.labels(route) for route in ROUTES}
        self.by_reason = {reason: by_reason.labels(reason.value) for reason in RouteReason}
        self.by_route = {route: by_route.labels(route) for route in ROUTES}
        self.failed_attempts = Counter("prfaas_failed_attempts", "Prefill/transfer/decode attempts that failed",
                                       ["kind"], registry=r)
        self.errors = Counter("prfaas_request_errors", "Requests answered with an error", ["status"], registry=r)
        self.transfer_bytes = Counter("prfaas_transfer_bytes", "KV bytes moved between nodes", ["route"],
                                      registry=r)
        self.link_bytes = Gauge("prfaas_link_bytes", "Payload bytes delivered on a link", ["link"], registry=r)
        self.link_goodput = Gauge("prfaas_link_goodput_gbps", "Link goodput (sliding window)", ["link"], registry=r)
        self.link_util = Gauge("prfaas_link_utilisation", "Link goodput / capacity", ["link"], registry=r)
        self.link_rtt = Gauge("prfaas_link_rtt_ms", "Link smoothed RTT", ["link"], registry=r)
        self.queue = Gauge("prfaas_node_queue_requests", "Queued requests per node", ["node"], registry=r)
        self.running = Gauge("prfaas_node_running_batch", "Running decode batch per node", ["node"], registry=r)
        self.node_up = Gauge("prfaas_node_up", "1 if the node is in routing", ["node"], registry=r)
        self.roles = Gauge("prfaas_role_count", "Up nodes per role", ["role"], registry=r)
        self.threshold = Gauge("prfaas_threshold_tokens", "Offload threshold in force", registry=r)
        self.role_switches = Counter("prfaas_role_switches", "Completed role switches", registry=r)
        self.auth_refused = Counter("prfaas_auth_refused", "Requests refused for missing or bad credentials, by "
                                    "surface (admin, api, metrics, internal, node_reply) and reason",
                                    ["surface", "reason"], registry=r)
        self.cancelled = cancelled_counter(r)
        self.cache_resyncs = Counter("prfaas_cache_resyncs", "Node cache reports that did not follow the last "
                                     "applied one (the node is asked for a full report)", registry=r)

        self.admission_admitted = Counter("prfaas_admission_admitted", "Requests admitted by admission control",
                                          registry=r)
        self.admission_refused = Counter("prfaas_admission_refused", "Requests refused (429/503) by admission "
                                         "control, by reason", ["reason"], registry=r)
        self.admission_shed = Counter("prfaas_admission_shed", "Admitted requests a node dropped from its queue "
                                      "(start deadline passed)", registry=r)
        self.in_flight = Gauge("prfaas_requests_in_flight", "Requests admitted and not finished", registry=r)

    def refresh(self, nodes: NodeRegistry, now_s: float, threshold_tokens: int | None) -> None:
        view = nodes.view(now_s)
        for link_id, snap in view.links.items():
            self.link_bytes.labels(link_id).set(snap.bytes_total)
            self.link_goodput.labels(link_id).set(snap.goodput_gbps)
            if snap.utilisation is not None:
                self.link_util.labels(link_id).set(snap.utilisation)
            if snap.rtt_ms is not None:
                self.link_rtt.labels(link_id).set(snap.rtt_ms)
        for inst in view.instances:
            self.queue.labels(inst.instance_id).set(inst.queued_requests)
            self.running.labels(inst.instance_id).set(inst.running_batch)
            self.node_up.labels(inst.instance_id).set(1 if inst.is_up else 0)
        counts = nodes.role_counts()
        for role in Role:
            self.roles.labels(role.value).set(counts[role])
        if threshold_tokens is not None:
            self.threshold.set(threshold_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
