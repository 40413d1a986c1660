"""`PrfaasConnector`: the class vLLM loads through ``kv_connector_module_path = "prfaas.integrations.vllm.connector"``.

One class for both of vLLM's roles: the scheduler half (`SchedulerSide`) in the engine-core process, the worker
half (`WorkerSide`) in the worker process; they share only `meta.StepMeta`. `kv_both` is the normal role: the
same instance prefills for others and decodes for itself, so the gateway changes a node's P/D role by routing
alone (no restart). Declares `SupportsHMA`: hybrid models (linear attention, SSM, sliding window) keep vLLM's
hybrid KV-cache manager, and their state pages cross with the attention KV.
"""

from __future__ import annotations

from typing import Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    KVConnectorTransferResults,
    SupportsHMA,
)

from prfaas.integrations.vllm.layers import ATTENTION, SLIDING, cache_layers
from prfaas.integrations.vllm.meta import StepMeta
from prfaas.integrations.vllm.scheduler_side import SchedulerSide
from prfaas.integrations.vllm.settings import ConnectorSettings
from prfaas.integrations.vllm.telemetry_http import TelemetryServer
from prfaas.integrations.vllm.worker_side import WorkerSide


class PrfaasMetadata(KVConnectorMetadata):
    def __init__(self, step: StepMeta) -> None:
        self.step = step


class PrfaasConnector(KVConnectorBase_V1, SupportsHMA):
    def __init__(self, vllm_config: Any, role: KVConnectorRole, kv_cache_config: Any = None) -> None:
        super().__init__(vllm_config, role, kv_cache_config)
        transfer = vllm_config.kv_transfer_config
        self.settings = ConnectorSettings.from_extra(dict(transfer.kv_connector_extra_config or {}))
        parallel = vllm_config.parallel_config
        if parallel.tensor_parallel_size * parallel.pipeline_parallel_size != 1:
            raise ValueError("prfaas connector: tensor/pipeline parallel instances are not supported yet "
                             "(run one instance per accelerator)")
        mamba_mode = getattr(vllm_config.cache_config, "mamba_cache_mode", "none")
        self.layers = cache_layers(kv_cache_config, mamba_mode)
        attention = [layer for layer in self.layers if layer.kind in (ATTENTION, SLIDING)]
        block_size = attention[0].block_size if attention else vllm_config.cache_config.block_size
        self._scheduler: SchedulerSide | None = None
        self._worker: WorkerSide | None = None
        self._telemetry: TelemetryServer | None = None
        if role == KVConnectorRole.SCHEDULER:
            self._scheduler = SchedulerSide(block_size)
        else:
            receives = transfer.kv_role in ("kv_consumer", "kv_both")
            self._worker = WorkerSide(self.settings, self.layers, receives=receives)

    # --- scheduler half ----------------------------------------------------------------------------
    def bind_kv_cache_manager(self, kv_cache_manager: Any) -> None:
        super().bind_kv_cache_manager(kv_cache_manager)
        assert self._scheduler is not None
        self._scheduler.bind(kv_cache_manager)

    def on_new_request(self, request: Any) -> None:
        assert self._scheduler is not None
        self._scheduler.on_new_request(request)

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int | None, bool]:
        assert self._scheduler is not None
        return self._scheduler.matched_tokens(request, num_computed_tokens)

    def get_loaded_kv_cache_group_ids(self, request: Any) -> tuple[int, ...]:
        return tuple(range(len(self._kv_cache_config.kv_cache_groups)))

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        assert self._scheduler is not None
        self._scheduler.after_alloc(request, blocks, num_external_tokens)

    def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata:
        assert self._scheduler is not None
        return PrfaasMetadata(self._scheduler.build_meta(scheduler_output))

    def update_connector_output(self, connector_output: Any) -> None:
        assert self._scheduler is not None
        failed = getattr(connector_output, "failed_recving", None)
        if failed:
            self._scheduler.load_failed(set(failed))

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        assert self._scheduler is not None
        return False, self._scheduler.finished(request)

    def request_finished_all_groups(self, request: Any,
                                    block_ids: tuple[list[int], ...]) -> tuple[bool, dict[str, Any] | None]:
        assert self._scheduler is not None
        return False, self._scheduler.finished(request)

    # --- worker half -------------------------------------------------------------------------------
    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        assert self._worker is not None
        self._worker.register(kv_caches, _cpu_layouts(self._vllm_config, self.layers))
        if self.settings.telemetry_port:
            self._telemetry = TelemetryServer(self.settings.telemetry_host, self.settings.telemetry_port,
                                              self._worker)
            self._telemetry.start()

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        return None  # loads are applied between steps (transfer results); nothing blocks the forward

    def bind_connector_metadata(self, connector_metadata: KVConnectorMetadata) -> None:
        super().bind_connector_metadata(connector_metadata)
        assert self._worker is not None and isinstance(connector_metadata, PrfaasMetadata)
        self._worker.bind(connector_metadata.step)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return None  # a request is scheduled only after its whole load was applied

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        assert self._worker is not None
        self._worker.save_layer(layer_name)

    def wait_for_save(self) -> None:
        assert self._worker is not None
        self._worker.finish_step()

    def get_transfer_results(self, finished_req_ids: set[str]) -> KVConnectorTransferResults:
        assert self._worker is not None
        done, failed = self._worker.transfer_results()
        return KVConnectorTransferResults(finished_sending=set(), finished_recving=done, failed_recving=failed)

    def shutdown(self) -> None:
        if self._telemetry is not None:
            self._telemetry.close()
        if self._worker is not None:
            self._worker.close()


def _cpu_layouts(vllm_config: Any, layers: Any) -> dict[str, tuple[Any, Any]]:
    """Per attention layer on vLLM's CPU backend, where its kernel keeps position t, dimension d of a block's keys
    and values (`paged`'s permutations): probed once per layer shape by writing known bit patterns through the
    kernel's own cache-write op, so the connector never guesses an ISA's layout."""
    import logging

    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return {}
    try:
        from vllm import _custom_ops as ops
        from vllm.v1.attention.backends.cpu_attn import _get_attn_isa
    except ImportError:
        raise ValueError("prfaas connector: cannot probe vLLM's CPU attention layout in this vLLM version") from None
    forward = getattr(vllm_config.compilation_config, "static_forward_context", {})
    dtype, cache_dtype = vllm_config.model_config.dtype, vllm_config.cache_config.cache_dtype
    probed: dict[tuple[int, int, int, str], tuple[Any, Any]] = {}
    out = {}
    for layer in layers:
        if layer.kind == "state":
            continue
        isa = getattr(forward.get(layer.name), "isa", None) or _get_attn_isa(dtype, layer.block_size, layer.head_dim,
                                                                               cache_dtype)
        key = (layer.block_size, layer.kv_heads, layer.head_dim, isa)
        if key not in probed:
            probed[key] = _probe(ops, dtype, isa, *key[:3])
        out[layer.name] = probed[key]
    logging.getLogger("vllm.prfaas").info("prfaas connector: probed CPU attention layouts %s", sorted(probed))
    return out


def _probe(ops: Any, dtype: Any, isa: str, block_size: int, kv_heads: int, head_dim: int) -> tuple[Any, Any]:
    import torch

    n = block_size * head_dim
    canonical = torch.arange(n).view(block_size, head_dim)
    found = [torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)]  # memory offset -> canonical
    for bit in range(max(1, (n - 1).bit_length())):
        cache = torch.zeros(1, kv_heads, block_size, 2 * head_dim, dtype=dtype)
        key_cache, value_cache = cache.view(1, kv_heads, 2 * block_size, head_dim).chunk(2, dim=2)
        pattern = ((canonical >> bit) & 1).to(dtype).unsqueeze(1).expand(block_size, kv_heads, head_dim).contiguous()
        ops.cpu_attn_reshape_and_cache(pattern, pattern.clone(), key_cache, value_cache, torch.arange(block_size),
                                       isa, k_scale=1.0, v_scale=1.0, kv_cache_dtype="auto")
        region = cache.view(kv_heads, 2, n)[0]
        for part in (0, 1):
            found[part] |= (region[part] != 0).long() << bit
    result = []
    for mem_to_canonical in found:
        if not torch.equal(torch.sort(mem_to_canonical).values, torch.arange(n)):
            raise ValueError(f"prfaas connector: vLLM's CPU attention layout ({isa}) is not a per-block permutation")
        index = torch.empty(n, dtype=torch.long)
        index[mem_to_canonical] = torch.arange(n)  # canonical -> memory offset
        result.append(None if torch.equal(index, torch.arange(n)) else index)
    return result[0], result[1]
