"""The connector's worker half (runs in vLLM's worker process, beside the model).

Prefill side: on the step that completes a prompt, each attention layer's positions are copied out of vLLM's
paged cache as soon as the layer finishes (`save_kv_layer`) and handed to `prfaas.transport`, which streams them
on its own threads while later layers compute; linear/SSM layers (which vLLM does not report) are read from their
state pages once a later attention layer shows their forward is done, the rest after the forward
(`wait_for_save`). Copies, so vLLM may free the blocks as soon as the request finishes.

Decode side: a `KvReceiver` stages verified transfers in host memory; a load task (from the scheduler half)
copies its transfer into the request's blocks and state page when it has arrived, checked against what this
instance expects. Anything else (a transfer that failed its checksums or auth, did not arrive in time, or does not
fit) is reported to vLLM as a failed receive: vLLM recomputes the prompt or fails the request, never decodes
from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from prfaas.core.state_layout import StateLayout
from prfaas.integrations.vllm.layers import STATE, CacheLayer, wire_layout
from prfaas.integrations.vllm.meta import LoadTask, SendTask, StepMeta
from prfaas.integrations.vllm.paged import (
    AttentionGeometry,
    StatePage,
    attention_geometry,
    gather_positions,
    read_state,
    scatter_positions,
    write_state,
)
from prfaas.integrations.vllm.settings import ConnectorSettings
from prfaas.integrations.vllm.stats import ConnectorStats
from prfaas.transport import KvReceiver, KvSender, PacingConfig, PeerAddress, ReceiverConfig, SenderConfig

log = logging.getLogger("vllm.prfaas")  # under vLLM's logger: its handlers and level


def _bytes_view(tensor: torch.Tensor) -> memoryview:
    host = tensor if tensor.device.type == "cpu" else tensor.to("cpu")
    array: Any = host.contiguous().view(torch.uint8).numpy()
    return memoryview(array).cast("B")


@dataclass(slots=True)
class _Outgoing:
    task: SendTask
    transfer: Any
    layout: StateLayout
    sent: set[int] = field(default_factory=set)
    keep: list[torch.Tensor] = field(default_factory=list)  # the copies the transport reads until it is done
    started_s: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Pending:
    task: LoadTask
    deadline_s: float


class WorkerSide:
    def __init__(self, settings: ConnectorSettings, layers: Sequence[CacheLayer], *, receives: bool) -> None:
        self.settings = settings
        self.layers = tuple(layers)
        self.by_name = {layer.name: layer for layer in self.layers}
        self.receives = receives
        self.stats = ConnectorStats()
        self._caches: dict[str, torch.Tensor] = {}
        self._geometry: dict[str, AttentionGeometry] = {}
        self._pages: dict[str, StatePage] = {}
        self._sender: KvSender | None = None
        self._receiver: KvReceiver | None = None
        self._lock = threading.Lock()
        self._allocated: dict[int, list[torch.Tensor]] = {}
        self._staged: dict[str, tuple[StateLayout, list[torch.Tensor], float]] = {}
        self._failed: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, _Pending] = {}
        self._step_sends: list[_Outgoing] = []
        self._inflight: list[_Outgoing] = []

    # --- set-up --------------------------------------------------------------------------------
    def register(self, kv_caches: dict[str, Any], layouts: dict[str, tuple[Any, Any]] | None = None) -> None:
        """`layouts`: per attention layer, the (key, value) position permutations of vLLM's CPU kernels (`paged`)."""
        for layer in self.layers:
            cache = kv_caches.get(layer.name)
            if cache is None:
                raise ValueError(f"prfaas connector: vLLM registered no cache for layer {layer.name}")
            if isinstance(cache, (list, tuple)):  # some backends register per-state views: use the first's storage
                cache = cache[0]
            self._caches[layer.name] = cache
            log.info("prfaas connector: layer %s (%s, group %d) cache %s stride %s %s", layer.name, layer.kind,
                     layer.group_id, tuple(cache.shape), tuple(cache.stride()), cache.dtype)
            if layer.kind == STATE:
                self._pages[layer.name] = StatePage(layer.state_bytes, layer.page_bytes)
            else:
                self._geometry[layer.name] = attention_geometry(cache, layer.block_size, layer.kv_heads,
                                                                layer.head_dim,
                                                                *(layouts or {}).get(layer.name, (None, None)))
        if self.receives:
            self._start_receiver()

    def _start_receiver(self) -> None:
        config = ReceiverConfig(shared_secret=self.settings.shared_secret, host=self.settings.kv_host,
                                port=self.settings.kv_port)
        self._receiver = KvReceiver(config, self._allocate, self._on_complete, self._on_failed)
        host, port = self._receiver.start()
        log.info("prfaas connector %s receives KV state on %s:%d", self.settings.node_name, host, port)

    def _sender_once(self) -> KvSender:
        if self._sender is None:
            rate = None if self.settings.pace_gbps is None else self.settings.pace_gbps * 1e9 / 8
            self._sender = KvSender(SenderConfig(
                shared_secret=self.settings.shared_secret, node_name=self.settings.node_name,
                connections_per_peer=self.settings.connections_per_peer, chunk_bytes=self.settings.chunk_bytes,
                pacing=PacingConfig(rate_bytes_per_s=rate)))
        return self._sender

    # --- receiving (transport threads) -----------------------------------------------------------
    def _allocate(self, layout: StateLayout) -> list[memoryview]:
        tensors = [torch.empty(spec.nbytes, dtype=torch.uint8) for spec in layout.tensors]
        with self._lock:
            self._allocated[id(layout)] = tensors
        arrays: list[Any] = [t.numpy() for t in tensors]
        return [memoryview(a) for a in arrays]

    def _on_complete(self, transfer_id: str, layout: StateLayout, _buffers: list[memoryview]) -> None:
        with self._lock:
            tensors = self._allocated.pop(id(layout), None)
            if tensors is not None:
                self._staged[transfer_id] = (layout, tensors, time.monotonic())
        self.stats.received(layout.total_bytes)

    def _on_failed(self, transfer_id: str, exc: Exception) -> None:
        with self._lock:
            self._failed[transfer_id] = (str(exc), time.monotonic())
        self.stats.receive_failed()
        log.warning("prfaas connector: transfer %s failed: %s", transfer_id, exc)

    # --- per step (worker thread) ----------------------------------------------------------------
    def bind(self, meta: StepMeta) -> None:
        now = time.monotonic()
        for load in meta.loads:
            self._pending[load.req_id] = _Pending(load, now + load.wait_s)
        self._step_sends = []
        for send in meta.sends:
            try:  # a send that cannot start must not stop the forward: the decode side recomputes
                self._step_sends.append(self._begin(send))
            except Exception as exc:
                self.stats.send_failed()
                log.warning("prfaas connector: cannot start transfer %s: %s", send.transfer_id, exc)

    def _begin(self, task: SendTask) -> _Outgoing:
        log.debug("prfaas send %s: positions [%d, %d) blocks %s", task.transfer_id, task.start, task.num_tokens,
                  task.block_ids)
        layout = wire_layout(self.layers, task.start, task.num_tokens)
        transfer = self._sender_once().begin(PeerAddress(task.peer_host, task.peer_port), task.transfer_id, layout)
        return _Outgoing(task, transfer, layout)

    def save_layer(self, layer_name: str) -> None:
        layer = self.by_name.get(layer_name)
        if layer is None or not self._step_sends:
            return
        for out in self._step_sends:
            self._send_through(out, layer.index)

    def _send_through(self, out: _Outgoing, last_index: int) -> None:
        """Send every layer up to `last_index` not sent yet (state layers before an attention layer are done)."""
        for layer in self.layers:
            if layer.index > last_index:
                break
            if layer.index in out.sent:
                continue
            try:
                tensors = self._read_layer(layer, out.task)
                out.keep.extend(tensors)
                out.transfer.send_layer(layer.index, [_bytes_view(t) for t in tensors])
            except Exception as exc:
                log.warning("prfaas connector: transfer %s layer %s: %s", out.task.transfer_id, layer.name, exc)
                out.transfer.abort(str(exc))
                out.sent.update(layer.index for layer in self.layers)
                return
            out.sent.add(layer.index)

    def _read_layer(self, layer: CacheLayer, task: SendTask) -> list[torch.Tensor]:
        cache = self._caches[layer.name]
        blocks = task.block_ids[layer.group_id]
        if layer.kind == STATE:
            return read_state(cache, self._pages[layer.name], blocks[layer.state_block_index(task.num_tokens)])
        first = layer.first_position(task.start, task.num_tokens)
        keys, values = gather_positions(cache, self._geometry[layer.name], blocks, first, task.num_tokens)
        return [keys, values]

    def finish_step(self) -> None:
        """After the forward: the remaining (state) layers, then close each transfer."""
        for out in self._step_sends:
            self._send_through(out, len(self.layers))
            try:
                out.transfer.finish()
            except Exception as exc:
                log.warning("prfaas connector: transfer %s: %s", out.task.transfer_id, exc)
            self._inflight.append(out)
            self.stats.sent(out.layout.total_bytes)
        self._step_sends = []

    def transfer_results(self) -> tuple[set[str], set[str]]:
        """(finished receives, failed receives) of the pending loads; applies every arrived transfer."""
        self._reap_sends()
        done: set[str] = set()
        failed: set[str] = set()
        now = time.monotonic()
        for req_id, pending in list(self._pending.items()):
            tid = pending.task.transfer_id
            with self._lock:
                staged = self._staged.pop(tid, None)
                failure = self._failed.pop(tid, None)
            if staged is not None:
                error = self._apply(pending.task, staged[0], staged[1])
                (failed if error else done).add(req_id)
                if error:
                    log.warning("prfaas connector: transfer %s not loaded: %s", tid, error)
                    self.stats.load_failed()
                else:
                    self.stats.loaded(pending.task.num_tokens - pending.task.start)
            elif failure is not None or now > pending.deadline_s:
                failed.add(req_id)
                self.stats.load_failed()
                log.warning("prfaas connector: request %s: transfer %s %s; vLLM recomputes or fails it", req_id,
                            tid, failure[0] if failure else f"did not arrive in {pending.task.wait_s:.0f} s")
            else:
                continue
            del self._pending[req_id]
        self._prune(now)
        return done | failed, failed

    def _apply(self, task: LoadTask, layout: StateLayout, tensors: list[torch.Tensor]) -> str | None:
        log.debug("prfaas load %s: positions [%d, %d) blocks %s", task.transfer_id, task.start, task.num_tokens,
                  task.block_ids)
        if layout.num_tokens != task.num_tokens:
            return f"transfer covers {layout.num_tokens} positions, the request needs {task.num_tokens}"
        by_layer: dict[int, list[tuple[Any, torch.Tensor]]] = {}
        for spec, tensor in zip(layout.tensors, tensors, strict=True):
            by_layer.setdefault(spec.layer_index, []).append((spec, tensor))
        if sorted(by_layer) != [layer.index for layer in self.layers]:
            return "the transfer's layers do not match this model's cache layers"
        try:
            for layer in self.layers:
                self._write_layer(layer, task, by_layer[layer.index])
        except (ValueError, RuntimeError) as exc:
            return str(exc)
        return None

    def _write_layer(self, layer: CacheLayer, task: LoadTask, parts: list[tuple[Any, torch.Tensor]]) -> None:
        cache = self._caches[layer.name]
        blocks = task.block_ids[layer.group_id]
        if layer.kind == STATE:
            if tuple(spec.nbytes for spec, _ in parts) != layer.state_bytes:
                raise ValueError(f"layer {layer.name}: state sizes differ from this instance's")
            write_state(cache, self._pages[layer.name], blocks[layer.state_block_index(task.num_tokens)],
                        [t for _, t in parts])
            return
        geo = self._geometry[layer.name]
        (kspec, kbytes), (vspec, vbytes) = parts
        count = kspec.shape[1]
        sent_from = task.num_tokens - count
        first = layer.first_position(task.start, task.num_tokens)
        if sent_from > first or kspec.shape != (geo.kv_heads, count, geo.head_dim) or kspec.shape != vspec.shape:
            raise ValueError(f"layer {layer.name}: transfer has positions [{sent_from}, {task.num_tokens}) of shape "
                             f"{kspec.shape}, the load needs [{first}, {task.num_tokens})")
        dtype = cache.dtype
        keys = kbytes.view(dtype).view(kspec.shape)[:, first - sent_from:]
        values = vbytes.view(dtype).view(vspec.shape)[:, first - sent_from:]
        scatter_positions(cache, geo, blocks, first, keys, values)

    def _reap_sends(self) -> None:
        still: list[_Outgoing] = []
        for out in self._inflight:
            future = out.transfer.future
            if not future.done():
                still.append(out)
                continue
            exc = future.exception()
            if exc is not None:
                self.stats.send_failed()
                log.warning("prfaas connector: transfer %s to %s:%d failed: %s", out.task.transfer_id,
                            out.task.peer_host, out.task.peer_port, exc)
            else:
                self.stats.send_done(time.monotonic() - out.started_s)
        self._inflight = still

    def _prune(self, now: float) -> None:
        horizon = now - self.settings.staged_ttl_s
        with self._lock:
            for tid in [t for t, (_l, _b, at) in self._staged.items() if at < horizon]:
                del self._staged[tid]
                self.stats.unclaimed()
            for tid in [t for t, (_e, at) in self._failed.items() if at < horizon]:
                del self._failed[tid]

    def link_snapshots(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._sender is not None and hasattr(self._sender, "link_snapshots"):
            out["send"] = self._sender.link_snapshots()
        if self._receiver is not None:
            out["receive"] = self._receiver.link_snapshots()
        return out

    @property
    def receiver_address(self) -> tuple[str, int] | None:
        return None if self._receiver is None else self._receiver.address

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
        if self._sender is not None:
            self._sender.close()
