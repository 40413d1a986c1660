"""`RequestDriver`: one request's live path through the system (DESIGN.md "The request's path").

    async for delta in driver.generate(job):     # TokenDelta(token_ids, finish_reason), first one = token 0
        ...

Per attempt: build `RequestInfo` (with the prompt's 512-token hash chain) and the `ClusterView`, call the
live router (`policy`, the same objects the simulator runs), ask the prefill node to prefill and stream the
state to the decode node (or keep it, colocated), report the `Outcome` to the router, then stream tokens from
the decode node. A failure becomes a `FailureKind`; `policy.failures.decide_failure` says what to do:
recompute locally (PrfaaS node or transfer lost), re-prefill elsewhere (decode node lost: the prompt plus the
tokens already sent is prefilled again and decoding continues), or fail with a typed error. What a node refuses
as input (400) or fails on with an engine error (500) is deterministic: answered at once, never retried; only a
lost node or a failed transfer is. A request waits for a route (bounded) while roles are switching or nodes are
registering.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
import msgspec

from prfaas.core.blocks import block_hash_chain
from prfaas.core.lifecycle import ClusterKind
from prfaas.policy.failures import decide_failure
from prfaas.policy.region_load import NEUTRAL_RATIO
from prfaas.policy.routers.base import RouterBase
from prfaas.policy.types import (
    BLOCK_TOKENS,
    FailureAction,
    FailureKind,
    NoRouteError,
    Outcome,
    RequestInfo,
    RoutePlan,
)
from prfaas.serve.admission import SHED_KIND, AdmissionControl
from prfaas.serve.backend import ENGINE_ERROR
from prfaas.serve.cancel import CancelReason, LiveAttemptRef, abort_attempt, abort_in_background
from prfaas.serve.cluster import NodeRecord
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import (
    AbortRequest,
    DecodeRequest,
    DecodeTarget,
    ErrorReply,
    PrefillReply,
    PrefillRequest,
    ProtocolVersionError,
    SamplingMsg,
    TokenChunk,
    decode,
    encode,
)
from prfaas.serve.prefill_order import region_load_meter

_log = logging.getLogger(__name__)


class ForcedRoute(enum.Enum):
    """Values of the `x-prfaas-route` header."""

    PRFAAS = "prfaas"
    LOCAL = "local"
    COLOCATED = "colocated"


class RequestFailed(Exception):
    """The request cannot be served; `status` is the HTTP status for the client (4xx: its fault)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _AttemptFailed(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Shed(Exception):
    """The prefill node dropped the attempt from its queue (start deadline passed): refused, never retried."""


class _Rejected(Exception):
    """The node refused the request's input (a client error, 400): deterministic, never retried."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class GenerationJob:
    request_id: int
    prompt_tokens: tuple[int, ...]
    sampling: SamplingMsg
    forced: ForcedRoute | None = None
    debug_stall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """What the prefill of one attempt did (carried on the attempt's first delta)."""

    reason: str
    prefill_node: str
    decode_node: str
    uncached_tokens: int
    prefill_s: float
    queue_s: float
    transfer_bytes: int
    transfer_s: float | None
    attempt: int
    site_reason: str | None = None  # many sites: why the selector chose this PrfaaS site (or none)


@dataclass(frozen=True, slots=True)
class TokenDelta:
    token_ids: tuple[int, ...]
    finish_reason: str | None = None
    route: str = "local"
    info: AttemptInfo | None = None


def block_hashes(tokens: Sequence[int], block_tokens: int = BLOCK_TOKENS) -> tuple[int, ...]:
    """The prompt's prefix-block hash chain (`core.blocks`; the last block may be partial)."""
    return block_hash_chain(tokens, block_tokens)


def route_label(plan: RoutePlan, forced: ForcedRoute | None) -> str:
    if forced is ForcedRoute.COLOCATED:
        return "colocated"
    return "prfaas" if plan.is_offloaded else "local"


def attempt_prefix(region: str | None) -> str:
    """What makes this gateway's attempt ids its own: its region and a random token of this process. Nodes key
    prefills, transfers, decodes and aborts by attempt id, and a PrfaaS node serves several region gateways, each
    counting its requests from the same start (and a restarted gateway counts again): without it one region's
    "1016-0" was answered as another's (the node's duplicate-attempt rule), its state went to the other region's
    decode node, and the first region's decode waited out `state_wait_s`."""
    return f"{region or 'gw'}.{secrets.token_hex(4)}."


class RequestDriver:
    def __init__(self, control: ControlPlane, session: aiohttp.ClientSession,
                 admission: AdmissionControl | None = None) -> None:
        self.control = control
        self.session = session
        self.cfg = control.cfg
        self.admission = admission
        self.region_load = region_load_meter(self.cfg)  # a region gateway's offered load (PrefillRequest.region_load)
        self.attempt_prefix = attempt_prefix(self.cfg.gateway.region)

    async def generate(self, job: GenerationJob) -> AsyncIterator[TokenDelta]:
        """The request's deltas. Cancelled (its client went away, its deadline passed, an abort), it sends `/abort`
        for the live attempt to the nodes involved (`serve.cancel`) before the cancellation goes on."""
        live = LiveAttemptRef()
        deltas = self._generate(job, live)
        try:
            async for delta in deltas:
                yield delta
        except (asyncio.CancelledError, GeneratorExit):
            abort_in_background(self.session, live)
            raise
        finally:
            await deltas.aclose()

    async def _generate(self, job: GenerationJob, live: LiveAttemptRef) -> AsyncGenerator[TokenDelta, None]:
        generated: list[int] = []
        forced = job.forced
        attempt = 0
        admitted_s = time.monotonic()
        if self.region_load is not None:
            self.region_load.observe(admitted_s)
        while True:
            router = self.control.router
            plan = await self._route(router, job, len(job.prompt_tokens) + len(generated), forced)
            label = route_label(plan, forced)
            if attempt == 0:  # the long-term loop's window counts arrivals as routed (as the simulator does), not
                # prefills as they finish: under queueing those lag by the queue and favour the faster stage
                self.control.window.record(plan.uncached_tokens, plan.is_offloaded)
            if self.admission is not None:
                self.admission.routed(job.request_id)
            prefill_node, decode_node = self._nodes(plan, forced)
            rid = f"{self.attempt_prefix}{job.request_id}-{attempt}"
            remaining = msgspec.structs.replace(job.sampling, max_tokens=job.sampling.max_tokens - len(generated))
            prompt = [*job.prompt_tokens, *generated]
            stall_s = job.debug_stall_s if attempt == 0 else 0.0
            live.set(rid, (prefill_node, decode_node))
            budget_s = self._start_budget_s(time.monotonic() - admitted_s if attempt == 0 else 0.0)
            try:
                reply = await self._prefill(rid, prompt, remaining, plan, prefill_node, decode_node, stall_s,
                                            budget_s)
            except _Shed as exc:
                self._observe_rejected(router, plan, attempt)
                assert self.admission is not None
                raise self.admission.shed_error(str(exc)) from None
            except _AttemptFailed as exc:
                forced = self._after_failure(router, plan, exc, attempt, forced)
                attempt += 1
                continue
            except _Rejected as exc:
                self._observe_rejected(router, plan, attempt)
                raise RequestFailed(exc.status, str(exc)) from None
            self._observe_ok(router, plan, reply, attempt, label, job)
            generated.append(reply.first_token)
            finished = remaining.max_tokens <= 1 or reply.finish_reason is not None
            info = AttemptInfo(plan.reason.value, prefill_node.name, decode_node.name, plan.uncached_tokens,
                               reply.prefill_s, reply.queue_s, reply.transfer_bytes, reply.transfer_s, attempt,
                               self.control.sites.reason_of(job.request_id) if self.control.sites else None)
            end = (reply.finish_reason or "length") if finished else None
            yield TokenDelta((reply.first_token,), end, label, info)
            if finished:
                await self._drop_state(decode_node, rid)
                live.clear()
                return
            try:
                async for chunk in self._decode(rid, reply, remaining, decode_node, prompt):
                    generated.extend(chunk.token_ids)
                    yield TokenDelta(tuple(chunk.token_ids), chunk.finish_reason, label)
                    if chunk.finish_reason is not None:
                        live.clear()
                        return
                raise _AttemptFailed(FailureKind.DECODE_NODE_LOST, "decode stream ended without a finish")
            except _AttemptFailed as exc:
                failed = Outcome(request_id=job.request_id, route=plan, ok=False, failure=exc.kind, attempt=attempt)
                self.control.metrics.failed_attempts.labels(exc.kind.value).inc()
                # the decode may still run on a node that is alive: abort it before any retry; a node that does
                # not acknowledge is known dead
                acked = await abort_attempt(self.session, rid, (decode_node,))
                live.clear()
                if decide_failure(failed, self.control.policy.failure) is FailureAction.FAIL_REQUEST:
                    raise RequestFailed(503, f"request failed after {attempt + 1} attempts: {exc}") from None
                if exc.kind is FailureKind.DECODE_NODE_LOST and not acked:
                    self.control.nodes.mark_down(decode_node.name)
                forced = None if forced is ForcedRoute.COLOCATED else forced
                attempt += 1

    # --- routing ---------------------------------------------------------------------------------
    async def _route(self, router: RouterBase, job: GenerationJob, num_tokens: int,
                     forced: ForcedRoute | None) -> RoutePlan:
        cluster = None
        if forced is ForcedRoute.PRFAAS:
            cluster = ClusterKind.PRFAAS
        elif forced is not None:
            cluster = ClusterKind.PD
        deadline = time.monotonic() + self.cfg.gateway.route_wait_s
        prompt = job.prompt_tokens
        hashes = block_hashes(prompt, self.control.policy.node_select.block_tokens)
        while True:
            now = time.monotonic()
            info = RequestInfo(request_id=job.request_id, arrival_s=now, input_tokens=num_tokens,
                               output_tokens=job.sampling.max_tokens, block_hashes=hashes, forced_cluster=cluster)
            try:
                return self._route_once(router, info, now)
            except NoRouteError as exc:
                nodes = self.control.nodes
                waiting = nodes.any_switch_pending or not nodes.up() or self.control.is_starting
                if not waiting or now >= deadline:
                    raise RequestFailed(503, str(exc)) from None
            await asyncio.sleep(0.05)

    def _route_once(self, router: RouterBase, info: RequestInfo, now_s: float) -> RoutePlan:
        """Route on the view without full prefill nodes (admission control); if the policy finds no route there
        (e.g. a short prompt whose only PD-P node is full), on the whole view: the start deadline bounds the wait."""
        view = self.control.nodes.view(now_s)
        if self.control.sites is not None:  # many PrfaaS sites: the router sees the chosen site's nodes only
            view = self.control.sites.narrow(info, view, router.threshold_tokens, now_s)
        if self.admission is None:
            return router.route(info, view, now_s)
        open_view = self.admission.routing_view(view)
        if open_view is view:
            return router.route(info, view, now_s)
        try:
            return router.route(info, open_view, now_s)
        except NoRouteError:
            return router.route(info, view, now_s)

    def _start_budget_s(self, waited_s: float) -> float | None:
        return None if self.admission is None else self.admission.start_budget_s(waited_s)

    def _nodes(self, plan: RoutePlan, forced: ForcedRoute | None) -> tuple[NodeRecord, NodeRecord]:
        decode_node = self.control.nodes.get(plan.decode_instance_id)
        prefill_node = decode_node if forced is ForcedRoute.COLOCATED else self.control.nodes.get(
            plan.prefill_instance_id)
        assert prefill_node is not None and decode_node is not None
        return prefill_node, decode_node

    # --- prefill ---------------------------------------------------------------------------------
    async def _prefill(self, rid: str, prompt: list[int], sampling: SamplingMsg, plan: RoutePlan,
                       prefill_node: NodeRecord, decode_node: NodeRecord, stall_s: float,
                       start_within_s: float | None = None) -> PrefillReply:
        held = 0  # a vLLM decode node loads only what its prefix cache lacks: the prefill may skip what it holds
        if decode_node is not prefill_node and decode_node.info.engine == "vllm" and \
                self.control.kv_index.has_node(decode_node.name):
            index = self.control.kv_index
            held = index.node_prefix_blocks(decode_node.name, block_hashes(prompt, index.block_tokens)) * \
                index.block_tokens
        target = DecodeTarget(name=decode_node.name, kv_host=decode_node.info.kv_host, kv_port=decode_node.info.kv_port,
                              cached_tokens=min(held, len(prompt)))
        msg = PrefillRequest(request_id=rid, token_ids=prompt, sampling=sampling, decode_target=target,
                             route=plan.reason.value, debug_stall_s=stall_s, start_within_s=start_within_s,
                             region=self.cfg.gateway.region,
                             region_load=NEUTRAL_RATIO if self.region_load is None
                             else self.region_load.ratio(time.monotonic()))
        prefill_node.gateway_prefills += 1
        prefill_node.gateway_prefill_tokens += plan.uncached_tokens
        inbound = decode_node is not prefill_node
        if inbound:
            decode_node.gateway_decodes_inbound += 1
        try:
            async with self.session.post(f"{prefill_node.info.control_url}/prefill", data=encode(msg),
                                         timeout=self._timeout()) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                await self._abort_before_retry(rid, prefill_node, decode_node)
            else:
                self.control.nodes.mark_down(prefill_node.name)
            raise _AttemptFailed(FailureKind.PREFILL_NODE_LOST, f"prefill node {prefill_node.name}: {exc!r}") from None
        finally:
            prefill_node.gateway_prefills -= 1
            prefill_node.gateway_prefill_tokens -= plan.uncached_tokens
            if inbound:
                decode_node.gateway_decodes_inbound -= 1
        if resp.status == 200:
            return decode(body, PrefillReply)
        error = _error_reply(body)
        if resp.status == 503 and _error_kind(body) == SHED_KIND:
            raise _Shed(f"prefill node {prefill_node.name}: {error}")
        if resp.status == 400:
            raise _Rejected(error)
        if resp.status == 500:  # the engine raised on this input: the same input would fail again anywhere
            raise _Rejected(f"prefill on {prefill_node.name} failed: {error}", 500)
        raise _AttemptFailed(FailureKind.TRANSFER_FAILED, f"prefill on {prefill_node.name}: {error}")

    async def _abort_before_retry(self, rid: str, prefill_node: NodeRecord, decode_node: NodeRecord) -> None:
        """A timed-out attempt may still run: abort it (the node answers once its prefill stopped) so that a retry
        never runs next to it; a node that does not acknowledge is taken out of routing (known dead)."""
        self.control.metrics.cancelled.labels(CancelReason.ATTEMPT_TIMEOUT.value).inc()
        if not await abort_attempt(self.session, rid, (prefill_node, decode_node)):
            self.control.nodes.mark_down(prefill_node.name)

    def _stream_timeout(self) -> aiohttp.ClientTimeout:
        """A decode stream may last longer than one node call: `request_timeout_s` bounds its silences instead."""
        return aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=self.cfg.gateway.request_timeout_s)

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.cfg.gateway.request_timeout_s, sock_connect=5.0)

    def _observe_ok(self, router: RouterBase, plan: RoutePlan, reply: PrefillReply, attempt: int, label: str,
                    job: GenerationJob) -> None:
        now = time.monotonic()
        outcome = Outcome(request_id=job.request_id, route=plan, ok=True, prefill_queue_s=reply.queue_s,
                          prefill_s=reply.prefill_s, transfer_bytes=reply.transfer_bytes,
                          transfer_s=reply.transfer_s, attempt=attempt)
        router.observe(outcome, now)
        metrics = self.control.metrics
        metrics.by_reason[plan.reason].inc()
        if reply.transfer_bytes:
            metrics.transfer_bytes.labels(label).inc(reply.transfer_bytes)
        if self.control.sites is not None and plan.is_offloaded:
            self.control.sites.note_offloaded(plan.prefill_instance_id)
        full_blocks = len(job.prompt_tokens) // self.control.kv_index.block_tokens
        prefill_id = plan.decode_instance_id if label == "colocated" else plan.prefill_instance_id
        if full_blocks and self.control.kv_index.has_node(prefill_id):
            hashes = block_hashes(job.prompt_tokens, self.control.kv_index.block_tokens)[:full_blocks]
            self.control.kv_index.insert(prefill_id, hashes)

    def _observe_rejected(self, router: RouterBase, plan: RoutePlan, attempt: int) -> None:
        # NOTE(serve): a node rejecting the input (or failing on it) has no FailureKind of its own; the router only
        # needs the pending plan cleared, so it is reported as a failed prefill (the request then fails, 400 or 500).
        outcome = Outcome(request_id=plan.request_id, route=plan, ok=False, failure=FailureKind.PREFILL_NODE_LOST,
                          attempt=attempt)
        router.observe(outcome, time.monotonic())

    def _after_failure(self, router: RouterBase, plan: RoutePlan, exc: _AttemptFailed, attempt: int,
                       forced: ForcedRoute | None) -> ForcedRoute | None:
        outcome = Outcome(request_id=plan.request_id, route=plan, ok=False, failure=exc.kind, attempt=attempt)
        router.observe(outcome, time.monotonic())
        self.control.metrics.failed_attempts.labels(exc.kind.value).inc()
        _log.info("request %d attempt %d failed (%s): %s", plan.request_id, attempt, exc.kind.value, exc)
        action = decide_failure(outcome, self.control.policy.failure)
        if action is FailureAction.FAIL_REQUEST:
            raise RequestFailed(503, f"request failed after {attempt + 1} attempts: {exc}")
        if action is FailureAction.RECOMPUTE_LOCALLY:
            sites = self.control.sites  # many sites: a lost PrfaaS site's offloads fail over before local prefill
            if sites is not None and exc.kind is FailureKind.PREFILL_NODE_LOST and \
                    sites.on_prefill_lost(plan.prefill_instance_id):
                return forced
            return ForcedRoute.LOCAL
        if action is FailureAction.REPREFILL_ELSEWHERE and forced is ForcedRoute.PRFAAS:
            return ForcedRoute.LOCAL
        return forced

    # --- decode ----------------------------------------------------------------------------------
    async def _decode(self, rid: str, reply: PrefillReply, sampling: SamplingMsg, node: NodeRecord,
                      prompt: list[int]) -> AsyncIterator[TokenChunk]:
        # a vLLM adapter node decodes from prompt + first token (`serve.vllm_node`); our engine needs no prompt
        prompt_ids = prompt if node.info.engine == "vllm" else None
        msg = DecodeRequest(request_id=rid, first_token=reply.first_token, num_prompt_tokens=reply.num_prompt_tokens,
                            sampling=sampling, prompt_token_ids=prompt_ids, skip_tokens=reply.skip_tokens)
        node.gateway_decodes += 1
        try:
            async with self.session.post(f"{node.info.control_url}/decode", data=encode(msg),
                                         timeout=self._stream_timeout()) as resp:
                if resp.status != 200:
                    error = _error_reply(await resp.read())
                    kind = FailureKind.TRANSFER_FAILED if resp.status == 409 else FailureKind.DECODE_NODE_LOST
                    raise _AttemptFailed(kind, f"decode on {node.name}: {error}")
                async for line in resp.content:
                    if not line.strip():
                        continue
                    chunk = decode(line, TokenChunk)
                    if chunk.error is not None:  # deterministic: answered, never retried
                        if chunk.finish_reason == ENGINE_ERROR:
                            raise RequestFailed(500, f"decode on {node.name} failed: {chunk.error}")
                        raise RequestFailed(400, f"decode rejected the request: {chunk.error}")
                    yield chunk
        except (aiohttp.ClientError, OSError, TimeoutError, ProtocolVersionError) as exc:
            raise _AttemptFailed(FailureKind.DECODE_NODE_LOST, f"decode node {node.name}: {exc!r}") from None
        finally:
            node.gateway_decodes -= 1

    async def _drop_state(self, node: NodeRecord, rid: str) -> None:
        try:
            async with self.session.post(f"{node.info.control_url}/abort", data=encode(AbortRequest(request_id=rid)),
                                         timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass  # NOTE(serve): the node's inbox sweeps unclaimed states after its TTL anyway


def _error_kind(body: bytes) -> str | None:
    try:
        return decode(body, ErrorReply).kind
    except ProtocolVersionError:
        return None


def _error_reply(body: bytes) -> str:
    try:
        return decode(body, ErrorReply).message
    except ProtocolVersionError:
        return body[:200].decode("utf-8", "replace")
