"""The cluster simulator: drives the live policy objects (`prfaas.policy`) over simulated nodes and links.

Lifecycle of a request (each step an event on the virtual clock, see `events.EventPriority`):

    arrival -> dispatch: build a `ClusterView`, call `Router.route` (the same object the gateway uses)
            -> [cache transfer over the reverse link, if planned] -> prefill queue (FCFS) on the node
               (multi-site: fair order over regions, and a prefill may be paused by another region's;
               `sim.servers`: the state's release pauses with it, `_on_prefill_pause` / `_on_prefill_resume`)
            -> prefill starts: the node's cached prefix is looked up; an offloaded request opens its
               egress transfer now (layer-wise: bytes released at the prefill rate)
            -> prefill ends: the node caches the prompt's full blocks; the transfer's cap is lifted
               (offload) or the state crosses PD RDMA in bytes / intra_cluster_gbps (local)
            -> state at the decode node = first token: `Router.observe(Outcome)`, join the batch
            -> last decode step: the request's `RequestRecord` is written.

Prefix caches: the `GlobalKvIndex` is the simulated prefill nodes' caches (exact here, and exactly what
the routers see). A prefill node caches the prompt's full blocks when its prefill ends and reuses only
what it holds itself: its prefill takes `t_prefill_s(uncached, cached)`. Decode nodes cache nothing, so an
offloaded request ships the whole prompt's state S_kv(l), whatever the prefill node had cached (as the
live system does). With `SimOptions.decode_holds_prefix` the decode side reaches the PD cluster's pool
(the paper's RDMA pool) and only what the PD cluster lacks crosses: S_kv(l) - (S_kv(l_pd) - S_kv(0)),
l_pd the longest prefix cached on a PD node (the fixed linear state always crosses). The planner prices
hits the same way (`planner.model`, docs/prefix-hit-cost-model.md).

Failures (scripted): a failed node's queued, running and transferring requests get a failed `Outcome`
and are re-dispatched (attempt + 1); nothing is dropped. A request no instance can take (`NoRouteError`)
ends FINISHED_ERROR. Same inputs, same records: no randomness is drawn here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prfaas.core.lifecycle import ClusterKind, RequestState, Role
from prfaas.core.units import gbps_to_bytes_per_s
from prfaas.perf.base import PrefillCostModel
from prfaas.policy.kv_index import GlobalKvIndex, cached_tokens_for
from prfaas.policy.types import (
    BLOCK_TOKENS,
    PRFAAS_EGRESS_LINK_ID,
    ClusterView,
    FailureKind,
    NoRouteError,
    Outcome,
    Rebalancer,
    RoutePlan,
    Router,
)
from prfaas.sim.control import ControlLoop
from prfaas.sim.deployment import REVERSE_LINK_ID, Deployment, ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.events import EventLoop, EventPriority
from prfaas.sim.host_share import host_shares
from prfaas.sim.link import SimLink, Transfer
from prfaas.sim.node import PREFILL_ROLES, SimNode
from prfaas.sim.request import RequestRecord, SimRequest, make_record
from prfaas.sim.servers import DecodeServer, PrefillServer
from prfaas.sim.view import release_view
from prfaas.sim.view_builder import ViewBuilder
from prfaas.workload.request import WorkloadRequest


class Simulator:
    """One simulation run. Build, `run()`, then read `records`, `links`, `control.samples`."""

    def __init__(self, deployment: Deployment, router: Router, requests: Iterable[WorkloadRequest], *,
                 kv_index: GlobalKvIndex | None = None, rebalancer: Rebalancer | None = None,
                 script: Iterable[ScriptedEvent] = (), options: SimOptions | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        """`progress(now_s)` is called at every sample tick (for progress bars); it must not touch the run."""
        self.options = options or SimOptions()
        self.progress = progress
        self.deployment = deployment
        self.loop = EventLoop()
        self.router = router
        self.kv_index = kv_index if kv_index is not None else GlobalKvIndex()
        spec = deployment.egress
        self.links = {
            lid: SimLink(self.loop, lid, spec.effective_gbps, spec.latency_s, spec.window_s, spec.buffer_s)
            for lid in (PRFAAS_EGRESS_LINK_ID, REVERSE_LINK_ID)
        }
        self.nodes: dict[str, SimNode] = {}
        self._hosts = host_shares(self.options.hosts, (n.instance_id for n in deployment.nodes), self.loop)
        for node_spec in deployment.nodes:
            node = SimNode(node_spec)
            self.nodes[node_spec.instance_id] = node
            self._open_servers(node)
            if not self.kv_index.has_node(node.instance_id):
                self.kv_index.add_node(node.instance_id, node.cluster, node_spec.cache_blocks)
        self._views = ViewBuilder(list(self.nodes.values()))
        self.records: list[RequestRecord] = []
        self.in_flight: dict[int, SimRequest] = {}
        self.num_arrived = 0
        self._arrivals: Iterator[WorkloadRequest] = iter(requests)
        self._arrivals_done = False
        self._intra_bytes_per_s = gbps_to_bytes_per_s(deployment.intra_cluster_gbps)
        self.control = ControlLoop(self, rebalancer)
        for event in sorted(script, key=lambda e: e.time_s):
            self.loop.schedule(event.time_s, EventPriority.SCRIPTED, self._on_script, event)

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> list[RequestRecord]:
        self._schedule_next_arrival()
        self.control.start()
        horizon = self.options.horizon_s
        self.loop.run(until_s=horizon)
        if horizon is not None:
            for req in sorted(self.in_flight.values(), key=lambda r: r.request_id):
                self.records.append(make_record(req))
        self.records.sort(key=lambda r: r.request_id)
        return self.records

    @property
    def is_active(self) -> bool:
        """Requests are still arriving or in flight."""
        return not self._arrivals_done or bool(self.in_flight)

    def view(self) -> ClusterView:
        """The snapshot the policy sees now (incrementally maintained, see `sim.view`)."""
        links = {lid: link.snapshot() for lid, link in self.links.items()}
        return self._views.snapshot(links, self.loop.now_s)

    @property
    def egress(self) -> SimLink:
        return self.links[PRFAAS_EGRESS_LINK_ID]

    # --- arrivals and dispatch -------------------------------------------------------------------
    def _schedule_next_arrival(self) -> None:
        wl = next(self._arrivals, None)
        if wl is None:
            self._arrivals_done = True
            return
        self.loop.schedule(wl.arrival_s, EventPriority.ARRIVAL, self._on_arrival, wl)

    def _on_arrival(self, wl: WorkloadRequest) -> None:
        req = SimRequest(wl)
        self.in_flight[req.request_id] = req
        self.num_arrived += 1
        self.control.on_arrival(req)
        self.loop.schedule(self.loop.now_s, EventPriority.DISPATCH, self._on_dispatch, req)
        self._schedule_next_arrival()

    def _on_dispatch(self, req: SimRequest) -> None:
        now = self.loop.now_s
        try:
            plan = self._route(req, now)
        except NoRouteError:
            self._finish(req, RequestState.FINISHED_ERROR)
            return
        req.plan = plan
        req.prefill_id = plan.prefill_instance_id
        req.decode_id = plan.decode_instance_id
        req.cached_tokens = plan.cached_tokens
        req.uncached_tokens = plan.uncached_tokens
        self.control.on_routed(req)
        decode = self.nodes[plan.decode_instance_id]
        decode.inbound_requests += 1
        decode.inbound_tokens += req.wl.input_tokens
        decode.touch()
        ct = plan.cache_transfer
        if ct is not None and ct.source_cluster is not ct.dest_cluster:
            self._start_cache_transfer(req)
        else:
            self._enqueue_prefill(req)

    def _route(self, req: SimRequest, now_s: float) -> RoutePlan:
        """The routing decision (a hook: the multi-site simulator routes per region, `sim.multisite`)."""
        view = self._views.live(self.links, now_s)  # on-demand snapshot (sim.view), sealed if the router keeps it
        try:
            return self.router.route(req.info, view, now_s)
        finally:
            release_view(view)

    def _egress_for(self, req: SimRequest) -> SimLink:
        """The PrfaaS -> PD link an offloaded request's state crosses (a hook, like `_route`)."""
        return self.egress

    def _start_cache_transfer(self, req: SimRequest) -> None:
        assert req.plan is not None and req.plan.cache_transfer is not None
        ct = req.plan.cache_transfer
        cost = self._prefill_cost_model(req.plan.prefill_instance_id)
        size = cost.s_kv_bytes(ct.num_tokens) if ct.bytes_estimate is None else ct.bytes_estimate
        link_id = PRFAAS_EGRESS_LINK_ID if ct.source_cluster is ClusterKind.PRFAAS else REVERSE_LINK_ID
        req.state = RequestState.KV_IN_FLIGHT
        req.flow = self.links[link_id].start(size, self._on_cache_transfer_done, owner=req)

    def _on_cache_transfer_done(self, flow: Transfer) -> None:
        req = flow.owner
        assert isinstance(req, SimRequest) and req.plan is not None and req.plan.cache_transfer is not None
        ct = req.plan.cache_transfer
        req.flow = None
        if self.nodes[ct.dest_instance_id].is_up:
            self.kv_index.insert(ct.dest_instance_id, req.wl.block_hashes[: ct.num_blocks])
        self._enqueue_prefill(req)

    def _enqueue_prefill(self, req: SimRequest) -> None:
        assert req.plan is not None
        node = self.nodes[req.plan.prefill_instance_id]
        if not node.is_up or node.prefill is None:
            self._retry(req, FailureKind.PREFILL_NODE_LOST)
            return
        req.state = RequestState.QUEUED
        node.prefill.enqueue(req)
        node.touch()

    # --- prefill ---------------------------------------------------------------------------------
    def _prefix_lookup(self, req: SimRequest) -> None:
        """At prefill start: what the node really holds decides the work (the plan's figure is a forecast)."""
        hashes = req.wl.block_hashes
        if hashes:
            blocks = self.kv_index.node_prefix_blocks(req.prefill_id, hashes)
            if blocks:
                self.kv_index.touch(req.prefill_id, hashes[:blocks])
            req.cached_tokens = cached_tokens_for(blocks, req.wl.input_tokens)
        else:
            req.cached_tokens = 0
        req.uncached_tokens = req.wl.input_tokens - req.cached_tokens

    def _on_prefill_start(self, req: SimRequest, duration_s: float) -> None:
        req.state = RequestState.PREFILLING
        self.nodes[req.prefill_id].touch()
        assert req.plan is not None
        if req.plan.prefill_cluster is ClusterKind.PRFAAS:
            size = self._offload_bytes(req)
            req.transfer_bytes = size
            release = size / duration_s if duration_s > 0 else None
            req.flow = self._egress_for(req).start(size, self._on_state_delivered_flow, release, owner=req)

    def _on_prefill_pause(self, req: SimRequest) -> None:
        """Another region's prefill preempted this one (`sim.servers`, never in a two-cluster run): no new layer
        is produced, so its state's release stops until it resumes."""
        self.nodes[req.prefill_id].touch()
        flow = req.flow
        if isinstance(flow, Transfer) and flow.release_rate_bytes_per_s is not None:
            self._egress_for(req).set_release(flow, 0.0)

    def _on_prefill_resume(self, req: SimRequest, remaining_s: float) -> None:
        """The paused prefill goes on for `remaining_s`: the rest of its state is released by then."""
        self.nodes[req.prefill_id].touch()
        flow = req.flow
        if isinstance(flow, Transfer) and flow.release_rate_bytes_per_s is not None:
            link = self._egress_for(req)
            if remaining_s > 0:
                link.set_release(flow, (flow.total_bytes - flow.released_bytes) / remaining_s)
            else:
                link.release_all(flow)

    def _offload_bytes(self, req: SimRequest) -> float:
        cost = self._prefill_cost_model(req.prefill_id)
        hashes = req.wl.block_hashes
        if not self.options.decode_holds_prefix or not hashes:
            return cost.s_kv_bytes(req.wl.input_tokens)
        pd_blocks = self._pd_prefix_blocks(req, hashes)
        pd_tokens = cached_tokens_for(pd_blocks, req.wl.input_tokens)
        total = cost.s_kv_bytes(req.wl.input_tokens)
        if pd_tokens > 0:
            total -= cost.s_kv_bytes(pd_tokens) - cost.s_kv_bytes(0)
        return max(total, 0.0)

    def _pd_prefix_blocks(self, req: SimRequest, hashes: Sequence[int]) -> int:
        """Longest prefix of `hashes` cached on the PD side `req` decodes at (hook: the multi-site simulator
        looks in the request's region only)."""
        return self.kv_index.longest_prefix_blocks(ClusterKind.PD, hashes)

    def _cache_prompt(self, instance_id: str, req: SimRequest) -> None:
        """`instance_id` now holds the prompt's full blocks in its prefix cache."""
        full_blocks = req.wl.input_tokens // BLOCK_TOKENS
        if full_blocks and req.wl.block_hashes and self.kv_index.has_node(instance_id):
            self.kv_index.insert(instance_id, req.wl.block_hashes[:full_blocks])

    def _on_prefill_done(self, req: SimRequest) -> None:
        node = self.nodes[req.prefill_id]
        node.touch()
        self._cache_prompt(req.prefill_id, req)
        assert req.plan is not None
        if req.plan.prefill_cluster is ClusterKind.PRFAAS:
            req.state = RequestState.KV_IN_FLIGHT
            if isinstance(req.flow, Transfer):
                self._egress_for(req).release_all(req.flow)
        else:
            req.state = RequestState.KV_IN_FLIGHT
            cost = self._prefill_cost_model(req.prefill_id)
            req.transfer_bytes = cost.s_kv_bytes(req.wl.input_tokens)
            delay = req.transfer_bytes / self._intra_bytes_per_s
            arrive_s = self.loop.now_s + delay
            self.loop.schedule(arrive_s, EventPriority.COMPLETION, self._on_rdma_delivered, (req, req.attempt))
        self._maybe_switch_role(node)

    # --- state at decode, decode -----------------------------------------------------------------
    def _on_state_delivered_flow(self, flow: Transfer) -> None:
        req = flow.owner
        assert isinstance(req, SimRequest)
        if req.flow is not flow:
            return  # aborted attempt
        req.flow = None
        self._on_state_delivered(req)

    def _on_rdma_delivered(self, payload: tuple[SimRequest, int]) -> None:
        req, attempt = payload
        if req.attempt == attempt:  # else that attempt was abandoned and a newer one is under way
            self._on_state_delivered(req)

    def _on_state_delivered(self, req: SimRequest) -> None:
        if req.state is not RequestState.KV_IN_FLIGHT or req.plan is None:
            return  # the attempt was abandoned (node failure)
        decode = self.nodes[req.decode_id]
        decode.inbound_requests -= 1
        decode.inbound_tokens -= req.wl.input_tokens
        decode.touch()
        if not decode.is_up or decode.decode is None:
            self._retry(req, FailureKind.DECODE_NODE_LOST, inbound_released=True)
            return
        now = self.loop.now_s
        req.first_token_s = now
        req.state = RequestState.DECODE_QUEUED
        self.router.observe(self._outcome(req, ok=True), now)
        self.control.on_first_token(req)
        decode.decode.admit(req)

    def _on_decode_join(self, req: SimRequest) -> None:
        req.state = RequestState.DECODING
        self.nodes[req.decode_id].touch()

    def _on_decode_done(self, req: SimRequest) -> None:
        node = self.nodes[req.decode_id]
        node.touch()
        self._finish(req, RequestState.FINISHED_OK)
        self._maybe_switch_role(node)

    def _finish(self, req: SimRequest, state: RequestState) -> None:
        req.state = state
        req.finish_s = self.loop.now_s
        self.in_flight.pop(req.request_id, None)
        self.records.append(make_record(req))
        self.control.on_finished(req)

    def _outcome(self, req: SimRequest, *, ok: bool, failure: FailureKind | None = None) -> Outcome:
        assert req.plan is not None
        queue = None if req.prefill_start_s is None else req.prefill_start_s - req.prefill_enqueue_s
        prefill = None if req.prefill_end_s is None or req.prefill_start_s is None else (
            req.prefill_end_s - req.prefill_start_s)
        transfer = None if req.prefill_end_s is None or not ok else self.loop.now_s - req.prefill_end_s
        return Outcome(request_id=req.request_id, route=req.plan, ok=ok, prefill_queue_s=queue,
                       prefill_s=prefill, transfer_bytes=int(req.transfer_bytes), transfer_s=transfer,
                       failure=failure, attempt=req.attempt)

    # --- failures and retries --------------------------------------------------------------------
    def _retry(self, req: SimRequest, failure: FailureKind, *, inbound_released: bool = False,
               observed: bool = False) -> None:
        """Abandon the current attempt (report it) and dispatch the request again now."""
        if req.plan is not None and not inbound_released:
            decode = self.nodes[req.decode_id]
            decode.inbound_requests -= 1
            decode.inbound_tokens -= req.wl.input_tokens
            decode.touch()
        if req.plan is not None and not observed:
            self.router.observe(self._outcome(req, ok=False, failure=failure), self.loop.now_s)
        if isinstance(req.flow, Transfer):
            for link in self.links.values():
                link.abort(req.flow)
        req.reset_for_retry()
        self.loop.schedule(self.loop.now_s, EventPriority.DISPATCH, self._on_dispatch, req)

    def _on_script(self, event: ScriptedEvent) -> None:
        if event.kind is ScriptKind.LINK_CAPACITY:
            assert event.link_id is not None and event.capacity_gbps is not None
            self.links[event.link_id].set_capacity(event.capacity_gbps)
        elif event.kind is ScriptKind.NODE_FAIL:
            assert event.instance_id is not None
            self.fail_node(event.instance_id)
        else:
            assert event.instance_id is not None
            self.recover_node(event.instance_id)

    def fail_node(self, instance_id: str) -> None:
        node = self.nodes[instance_id]
        if not node.is_up:
            return
        node.is_up = False
        lost: list[tuple[SimRequest, bool]] = []
        if node.prefill is not None:
            lost += [(r, False) for r in node.prefill.fail()]
        if node.decode is not None:
            lost += [(r, True) for r in node.decode.fail()]
        for req in self.in_flight.values():  # state still streaming out of (or into) the dead prefill node
            streaming = req.state is RequestState.KV_IN_FLIGHT and req.flow is not None
            if streaming and req.prefill_id == instance_id:
                lost.append((req, False))
        node.prefill = None
        node.decode = None
        node.touch()
        self.kv_index.remove_node(instance_id)  # its prefix cache is gone
        kind = FailureKind.DECODE_NODE_LOST if node.role is Role.PD_DECODE else FailureKind.PREFILL_NODE_LOST
        for req, was_decoding in sorted(lost, key=lambda x: x[0].request_id):
            self._retry(req, kind, inbound_released=was_decoding, observed=was_decoding)

    def recover_node(self, instance_id: str) -> None:
        node = self.nodes[instance_id]
        if node.is_up:
            return
        node.is_up = True
        node.role = node.spec.role if node.pending_role is None else node.pending_role
        node.pending_role = None
        self._open_servers(node)
        node.touch()
        self.kv_index.add_node(instance_id, node.cluster, node.spec.cache_blocks)

    # --- roles -----------------------------------------------------------------------------------
    def _open_servers(self, node: SimNode) -> None:
        spec = node.spec
        node.prefill = None
        node.decode = None
        if node.role in PREFILL_ROLES:
            assert spec.prefill_cost is not None
            node.prefill = PrefillServer(self.loop, spec.prefill_cost, self._prefix_lookup,
                                         self._on_prefill_start, self._on_prefill_done,
                                         self._hosts.get(spec.instance_id))
            node.prefill.on_pause = self._on_prefill_pause
            node.prefill.on_resume = self._on_prefill_resume
        elif node.role is Role.PD_DECODE:
            assert spec.decode_cost is not None
            node.decode = DecodeServer(self.loop, spec.decode_cost, spec.max_batch, self._on_decode_join,
                                       self._on_decode_done, self._hosts.get(spec.instance_id))

    def _prefill_cost_model(self, instance_id: str) -> PrefillCostModel:
        cost = self.nodes[instance_id].spec.prefill_cost
        assert cost is not None
        return cost

    def _maybe_switch_role(self, node: SimNode) -> None:
        if node.pending_role is None or not node.is_up or not node.is_idle:
            return
        if self.loop.now_s < node.ready_at_s:
            self.loop.schedule(node.ready_at_s, EventPriority.COMPLETION, self._maybe_switch_role, node)
            return
        self.control.on_role_switch(node, node.role, node.pending_role)
        node.role = node.pending_role
        node.pending_role = None
        self._open_servers(node)
        node.touch()

    def begin_role_change(self, instance_id: str, to_role: Role, ready_at_s: float) -> None:
        node = self.nodes[instance_id]
        if not node.is_up or node.cluster is not ClusterKind.PD or node.role is to_role:
            return
        node.pending_role = to_role
        node.ready_at_s = ready_at_s
        node.touch()
        self._maybe_switch_role(node)
