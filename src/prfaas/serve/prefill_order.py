"""What a node's fair prefill order needs from the deployment: the regions' weights and a prefill's cost.

    worker = ModelWorker(backend, max_batch, on_events, region_weights=region_weights(cfg))
    worker.submit(job, region=msg.region, cost_s=prefill_cost_s(backend, len(msg.token_ids)), load=msg.region_load)
    meter = region_load_meter(cfg)       # a region gateway: stamps PrefillRequest.region_load from it

The order itself is `policy.fair_queue.FairQueue` inside `serve.worker.ModelWorker` (the simulator's policy
object). Weights are the gateways' fair-share weights (`policy.sites`: the topology's `traffic_rps` per PD region,
or its instance count when no region gives one), so the order at the node and the admission at the gateways
share one notion of a region's share; without [topology] there are none (every region weighs 1).
The cost is the prefill's expected seconds on this node: the emulated engine's own cost model
(`EmulatedBackend.expected_prefill_s`), else proportional to the prompt's tokens (`FALLBACK_S_PER_TOKEN`
per token, the gateway's estimate without a profile). Prompt tokens, not uncached ones: the node learns its
prefix-cache hit only when the prefill runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prfaas.policy.region_load import LOAD_WINDOW_S, RegionLoadMeter
from prfaas.serve.config import EngineKind
from prfaas.serve.emulated_backend import EmulatedBackend
from prfaas.serve.sites import FALLBACK_S_PER_TOKEN

if TYPE_CHECKING:
    from prfaas.serve.backend import Backend
    from prfaas.serve.config import DeployConfig


def region_weights(cfg: DeployConfig) -> dict[str, float]:
    """Weight per PD region for the node's fair order (positive ones only; the rest weigh 1)."""
    topo = cfg.topology
    if topo is None:
        return {}
    return {name: w for name, w in zip(topo.pd_names, topo.traffic_weights(), strict=True) if w > 0}


def region_load_meter(cfg: DeployConfig) -> RegionLoadMeter | None:
    """The offered-load meter of a region gateway (`policy.region_load`): its region's arrivals against the
    region's traffic weight, over `LOAD_WINDOW_S` of the deployment's own time (the emulated engine's time scale
    applied, as to its compute). None for a gateway without a region in a topology."""
    topo, region = cfg.topology, cfg.gateway.region
    if topo is None or region is None or region not in topo.pd_names:
        return None
    weight = topo.traffic_weights()[topo.pd_names.index(region)]
    if not weight > 0:
        return None
    emulated = cfg.model.emulated if cfg.model.engine is EngineKind.EMULATED else None
    scale = emulated.time_scale if emulated is not None else 1.0
    return RegionLoadMeter(weight, LOAD_WINDOW_S * scale)


def prefill_cost_s(backend: Backend, num_tokens: int) -> float:
    """The fair order's cost of a prefill of `num_tokens` prompt tokens on `backend` (module docstring)."""
    if isinstance(backend, EmulatedBackend):
        return backend.expected_prefill_s(num_tokens)
    return num_tokens * FALLBACK_S_PER_TOKEN
