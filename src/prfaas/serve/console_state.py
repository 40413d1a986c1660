"""What the operator's console shows, computed from the gateway's own state (no asyncio; `console_hub` drives it).

    state = ConsoleState(history_points=600, requests_kept=500)
    state.add_request(record)                  # every finished request (the gateway's request log record)
    frame = state.sample(gw, now_s, unix_s)    # one tick: nodes, links, router, counters (dict, JSON-ready)
    state.snapshot()                           # everything a newly connected console needs (bounded)

Memory is bounded: time series and threshold events are ring buffers (`deque(maxlen=...)`), the request table
keeps the newest `requests_kept` records, counters are per route / reason.

The threshold in force is the router's effective one (`prfaas-bandwidth-aware` scales its base t by the short-term
loop). Each change is recorded with its reason: a policy swap or a base threshold set through `POST /admin/policy`,
the long-term loop's re-optimisation (the rebalancer's plan and its reason), or the bandwidth-aware loop raising,
backing off or relaxing t' (with the link and queue signals that caused it).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from prfaas.core.lifecycle import Role
from prfaas.policy.bandwidth_aware import BandwidthAwareConfig, BandwidthSignals, PdPressure, read_signals
from prfaas.policy.types import ClusterView, RebalancePlan
from prfaas.serve.control import ControlPlane
from prfaas.serve.metrics import ROUTES, GatewayMetrics

HISTORY_POINTS = 600  # 5 minutes at the default 0.5 s tick
REQUESTS_KEPT = 500
EVENTS_KEPT = 200
RECENT_FOR_FRACTION = 200  # the offload fraction is over the newest this many finished requests

# the request record's fields the console table and detail panel use (the log keeps more)
REQUEST_FIELDS = ("id", "route", "reason", "prompt_tokens", "uncached_tokens", "completion_tokens", "ttft_s",
                  "latency_s", "prefill_s", "queue_s", "transfer_s", "transfer_bytes", "prefill_node",
                  "decode_node", "attempt", "finished_at_s")


class GatewayLike(Protocol):
    control: ControlPlane
    metrics: GatewayMetrics


def request_row(record: dict[str, Any]) -> dict[str, Any]:
    """The console's copy of a request record, with the decode time derived (latency - TTFT)."""
    row = {k: record.get(k) for k in REQUEST_FIELDS}
    ttft, latency = record.get("ttft_s"), record.get("latency_s")
    row["decode_s"] = latency - ttft if isinstance(ttft, float) and isinstance(latency, float) else None
    return row


def effective_threshold(control: ControlPlane) -> int | None:
    router = control.router
    fn = getattr(router, "effective_threshold", None)
    return int(fn()) if callable(fn) else router.threshold_tokens


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


class ThresholdTracker:
    """Notices each change of (policy, base t, effective t') and says why it happened."""

    def __init__(self) -> None:
        self.policy: str | None = None
        self.base: int | None = None
        self.effective: int | None = None
        self.plan: RebalancePlan | None = None

    def observe(self, control: ControlPlane, view: ClusterView) -> tuple[str, str] | None:
        """(kind, reason) when the threshold in force or the policy changed since the last call, else None."""
        policy, base, effective = control.policy_name, control.threshold_tokens(), effective_threshold(control)
        plan = control.last_plan
        first = self.policy is None
        old_policy, old_base, old_effective, old_plan = self.policy, self.base, self.effective, self.plan
        self.policy, self.base, self.effective, self.plan = policy, base, effective, plan
        if first:
            return "initial", f"policy {policy}, threshold {effective} tokens (at gateway start or reconnect)"
        if policy != old_policy:
            return "policy", f"policy set to {policy} (POST /admin/policy); threshold {old_effective} -> {effective}"
        if base != old_base:
            if plan is not None and plan is not old_plan and plan.new_threshold_tokens == base:
                return "rebalance", (f"long-term loop re-optimised t with the planner ({plan.reason.value}): "
                                     f"{old_base} -> {base}")
            return "admin", f"base threshold set to {base} by the operator (POST /admin/policy); was {old_base}"
        if effective != old_effective:
            return "short_term", self._short_term_reason(control, view, old_effective, effective)
        return None

    @staticmethod
    def _short_term_reason(control: ControlPlane, view: ClusterView, old: int | None, new: int | None) -> str:
        controller = getattr(control.router, "controller", None)
        s = read_signals(view)
        signals = (f"link utilisation {_fmt(s.utilisation, '.0%')}, goodput {_fmt(s.goodput_gbps, '.3g')} of "
                   f"{_fmt(s.capacity_gbps, '.3g')} Gbps, RTT {_fmt(s.rtt_ms, '.2f', ' ms')}, retransmits "
                   f"{s.retransmit_rate:.2%}, PrfaaS queue {s.queue_per_instance:.1f}/node, PD-P queue "
                   f"{s.pd_queue_tokens_per_instance:.0f} tokens/node")
        arrow = f"{old} -> {new}"
        if controller is None:
            return f"threshold {arrow}; {signals}"
        state = controller.state
        if old is not None and new is not None and new > old:
            what = ("egress link hot" if state.cause.value == "link" else "PrfaaS queue hot")
            budget = (f"; sized to fit {controller.config.target_link_util:.0%} of {state.available_gbps:.3g} Gbps"
                      if state.cause.value == "link" and state.available_gbps else "")
            hot = ", ".join(hot_signals(controller.config, s, state.rtt_baseline_ms)) or "no longer hot at this sample"
            return f"bandwidth-aware loop raised t' ({what}: {hot}{budget}): {arrow}; {signals}"
        if state.pd_pressure is PdPressure.BACKOFF:
            return f"bandwidth-aware loop backed off t' (PD-P queue over its back-off mark): {arrow}; {signals}"
        return f"bandwidth-aware loop relaxed t' (link and queue cool): {arrow}; {signals}"


def hot_signals(c: BandwidthAwareConfig, s: BandwidthSignals, rtt_baseline_ms: float | None) -> list[str]:
    """Which of the short-term loop's signals are at or over their high mark now (in words)."""
    out = []
    if s.utilisation is not None and s.utilisation >= c.util_high:
        out.append(f"utilisation {s.utilisation:.0%} >= {c.util_high:.0%}")
    if s.rtt_ms is not None and rtt_baseline_ms and s.rtt_ms / rtt_baseline_ms >= c.rtt_inflation_high:
        out.append(f"RTT {s.rtt_ms:.2f} ms = {s.rtt_ms / rtt_baseline_ms:.1f}x its {rtt_baseline_ms:.2f} ms baseline "
                   f">= {c.rtt_inflation_high:g}x")
    if s.retransmit_rate >= c.retransmit_high:
        out.append(f"retransmits {s.retransmit_rate:.2%} >= {c.retransmit_high:.2%}")
    if s.queue_per_instance >= c.queue_high_per_instance:
        out.append(f"PrfaaS queue {s.queue_per_instance:.1f}/node >= {c.queue_high_per_instance:g}")
    return out


class ConsoleState:
    def __init__(self, history_points: int = HISTORY_POINTS, requests_kept: int = REQUESTS_KEPT,
                 events_kept: int = EVENTS_KEPT) -> None:
        self.link_series: dict[str, deque[list[float | None]]] = {}
        self.history_points = history_points
        self.threshold_series: deque[list[float | None]] = deque(maxlen=history_points)
        self.events: deque[dict[str, Any]] = deque(maxlen=events_kept)
        self.requests: deque[dict[str, Any]] = deque(maxlen=requests_kept)
        self.recent_routes: deque[str] = deque(maxlen=RECENT_FOR_FRACTION)
        self.by_route: dict[str, int] = dict.fromkeys(ROUTES, 0)
        self.by_reason: dict[str, int] = {}
        self.tracker = ThresholdTracker()
        self.pending_requests: list[dict[str, Any]] = []  # finished since the last tick
        self.pending_events: list[dict[str, Any]] = []
        self.last_frame: dict[str, Any] | None = None

    # --- inputs --------------------------------------------------------------------------------------
    def load_requests(self, records: Iterable[dict[str, Any]]) -> None:
        """Seed the table and counters from the request log (a restarted gateway reloads its file)."""
        for record in records:
            self._count(request_row(record))

    def add_request(self, record: dict[str, Any]) -> None:
        row = request_row(record)
        self._count(row)
        self.pending_requests.append(row)
        if len(self.pending_requests) > self.requests.maxlen:  # type: ignore[operator]
            del self.pending_requests[: len(self.pending_requests) - self.requests.maxlen]  # type: ignore[operator]

    def _count(self, row: dict[str, Any]) -> None:
        self.requests.append(row)
        route = str(row.get("route") or "local")
        self.by_route[route] = self.by_route.get(route, 0) + 1
        reason = str(row.get("reason") or "unknown")
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.recent_routes.append(route)

    # --- one tick ------------------------------------------------------------------------------------
    def sample(self, gw: GatewayLike, now_s: float, unix_s: float) -> dict[str, Any]:
        control = gw.control
        view = control.nodes.view(now_s)
        change = self.tracker.observe(control, view)
        if change is not None:
            event = {"t": unix_s, "kind": change[0], "reason": change[1], "policy": control.policy_name,
                     "base_tokens": control.threshold_tokens(), "threshold_tokens": effective_threshold(control)}
            self.events.append(event)
            self.pending_events.append(event)
        threshold = [unix_s, _num(control.threshold_tokens()), _num(effective_threshold(control))]
        self.threshold_series.append(threshold)
        links = {}
        for link_id, snap in view.links.items():
            row = msgspec.to_builtins(snap)
            row["utilisation"] = snap.utilisation
            links[link_id] = row
            series = self.link_series.setdefault(link_id, deque(maxlen=self.history_points))
            series.append([unix_s, snap.goodput_gbps, snap.capacity_gbps, snap.rtt_ms, snap.transfers_in_flight,
                           snap.retransmits_total])
        frame = {
            "t": unix_s,
            "nodes": self._nodes(control, view, now_s),
            "links": links,
            "router": self._router(control, threshold),
            "counts": {"by_route": dict(self.by_route), "by_reason": dict(self.by_reason),
                       "offload_fraction": self.offload_fraction(), "in_log": len(self.requests)},
            "latency": histograms(gw.metrics),
            "requests": self.pending_requests,
            "events": self.pending_events,
        }
        self.pending_requests, self.pending_events = [], []
        self.last_frame = frame
        return frame

    def offload_fraction(self) -> float | None:
        if not self.recent_routes:
            return None
        return sum(1 for r in self.recent_routes if r == "prfaas") / len(self.recent_routes)

    @staticmethod
    def _nodes(control: ControlPlane, view: ClusterView, now_s: float) -> list[dict[str, Any]]:
        cache = control.kv_index_summary()
        out = []
        for inst in sorted(view.instances, key=lambda i: i.instance_id):
            record = control.nodes.get(inst.instance_id)
            seen = now_s - record.last_seen_s if record is not None else None
            out.append({
                "name": inst.instance_id, "cluster": inst.cluster.value, "role": inst.role.value,
                "pending_role": inst.pending_role.value if inst.pending_role is not None else None,
                "converting": inst.pending_role is not None or inst.role is Role.DRAINING,
                "is_up": inst.is_up, "queued_requests": inst.queued_requests, "queued_tokens": inst.queued_tokens,
                "running_batch": inst.running_batch, "max_batch": inst.max_batch,
                "free_kv_bytes": inst.free_kv_bytes, "cache_blocks": cache.get(inst.instance_id, {}).get("blocks", 0),
                "heartbeat_age_s": seen,
                "utilisation": control.nodes.utilisation(inst.instance_id, now_s - 5.0, now_s) if record else 0.0,
            })
        return out

    @staticmethod
    def _router(control: ControlPlane, threshold: list[float | None]) -> dict[str, Any]:
        router: dict[str, Any] = {"policy": control.policy_name, "base_tokens": threshold[1],
                                  "threshold_tokens": threshold[2], "controller": None,
                                  "last_rebalance": msgspec.to_builtins(control.last_plan)}
        controller = getattr(control.router, "controller", None)
        if controller is not None:
            state = controller.state
            router["controller"] = {"mode": state.mode.value, "cause": state.cause.value,
                                    "scale": state.threshold_scale, "pd_pressure": state.pd_pressure.value,
                                    "hot_streak": state.hot_streak, "cool_streak": state.cool_streak}
        return router

    def snapshot(self) -> dict[str, Any]:
        """All a newly connected console needs: series, events, the request table, the last frame."""
        return {
            "threshold_series": list(self.threshold_series),
            "link_series": {k: list(v) for k, v in self.link_series.items()},
            "events": list(self.events),
            "requests": list(self.requests),
            "frame": self.last_frame,
        }


def _num(value: int | None) -> float | None:
    return None if value is None else float(value)


def histograms(metrics: GatewayMetrics) -> dict[str, dict[str, Any]]:
    """TTFT and ITL histograms per route from the gateway's Prometheus histograms (cumulative since start):
    {"ttft": {"prfaas": {"le": [...], "counts": [...], "count": n, "sum": s}}, "itl": {...}}."""
    out: dict[str, dict[str, Any]] = {"ttft": {}, "itl": {}}
    names = {"prfaas_ttft_seconds": "ttft", "prfaas_itl_seconds": "itl"}
    for family in metrics.registry.collect():
        key = names.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            route = sample.labels.get("route")
            if route is None:
                continue
            entry = out[key].setdefault(route, {"le": [], "counts": [], "count": 0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                entry["le"].append(None if math.isinf(le) else le)
                entry["counts"].append(int(sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = float(sample.value)
    return out
