"""A vLLM instance's load (its Prometheus `/metrics`) and our connector's link telemetry, as heartbeat fields.

    load = parse_metrics(text)          # VllmLoad: running, waiting, kv usage, prompt tokens, cached prompt tokens
    links = parse_telemetry(doc)        # the connector's GET /prfaas/telemetry -> sender-side LinkSnapshots

Mapping onto `Heartbeat` (docs/vllm.md): running_batch = vllm:num_requests_running, queued_requests =
vllm:num_requests_waiting, free_kv_bytes stays unknown (vLLM reports a usage fraction, not bytes; the fraction is
logged and kept in `VllmLoad`), prefill_tokens_total = vllm:prompt_tokens_total - vllm:prompt_tokens_cached_total
(computed prompt tokens), links = the connector's sender links (what `KvSender.link_snapshots` gives our nodes).
Metrics with several label sets (one per model or engine) are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from prfaas.core.link import LinkSnapshot

_GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:prompt_tokens": "prompt_tokens_total",  # counter family (sample vllm:prompt_tokens_total)
    "vllm:prompt_tokens_cached": "prompt_tokens_cached_total",
}


@dataclass(frozen=True, slots=True)
class VllmLoad:
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0  # fraction of vLLM's KV blocks in use (0..1)
    prompt_tokens_total: int = 0
    prompt_tokens_cached_total: int = 0

    @property
    def computed_prompt_tokens_total(self) -> int:
        return max(0, self.prompt_tokens_total - self.prompt_tokens_cached_total)


def parse_metrics(text: str) -> VllmLoad:
    """vLLM's Prometheus text -> `VllmLoad` (absent metrics read 0)."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        key = _GAUGES.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            sums[key] = sums.get(key, 0.0) + float(sample.value)
    return VllmLoad(running=int(sums.get("running", 0)), waiting=int(sums.get("waiting", 0)),
                    kv_usage=float(sums.get("kv_usage", 0.0)),
                    prompt_tokens_total=int(sums.get("prompt_tokens_total", 0)),
                    prompt_tokens_cached_total=int(sums.get("prompt_tokens_cached_total", 0)))


_LINK_FIELDS = {f.name for f in fields(LinkSnapshot)}


def _snapshot(raw: Any) -> LinkSnapshot | None:
    if not isinstance(raw, dict) or not {"link_id", "time_s", "goodput_gbps"} <= raw.keys():
        return None
    values = {k: v for k, v in raw.items() if k in _LINK_FIELDS}
    try:
        return LinkSnapshot(**values)
    except TypeError:
        return None


def parse_telemetry(doc: dict[str, Any]) -> list[LinkSnapshot]:
    """The sender-side links of the connector's telemetry document (`integrations.vllm.telemetry_http`):
    `links.send` maps each peer to a snapshot. Malformed entries are skipped."""
    links = doc.get("links") or {}
    send = links.get("send") if isinstance(links, dict) else None
    if isinstance(send, dict):
        candidates = list(send.values())
    elif isinstance(send, list):
        candidates = send
    else:
        return []
    return [s for s in (_snapshot(raw) for raw in candidates) if s is not None]


def cache_block_tokens(doc: dict[str, Any]) -> int:
    """vLLM's KV block size in positions, from the connector telemetry's `layers` (0: not reported)."""
    layers = doc.get("layers") if isinstance(doc, dict) else None
    sizes = [int(layer.get("block_size", 0)) for layer in layers or [] if isinstance(layer, dict)
             and layer.get("kind") != "state" and isinstance(layer.get("block_size"), int)]
    return max(sizes, default=0)
