"""Cost models for planning with a catalog architecture (`prfaas plan --model NAME`).

- Prefill on both clusters: the roofline T0 + FLOPs(l) / (n_gpu * peak * MFU) with the architecture's
  FLOPs and S_kv, calibrated by `planner.calibration` (Table 3 fit, or the pooled median). On the PD
  GPU the MFU is the PrfaaS MFU times an MFU ratio: the paper case study's implied H20/H200 ratio for
  that pair, 1.0 otherwise (capped at MFU 1); `--pd-compute-scale` overrides with an explicit k.
- Decode: `perf.decode.MemoryBoundDecodeModel` on the PD GPU (HBM efficiency 0.8, the H20 empirical
  scaling factor of NVIDIA's AIConfigurator data, CATALOG §5.1; a fixed per-step overhead, default
  5 ms, an assumption). BS_max is the largest batch meeting the SLO at the mean decode context
  (mean input + half the output), also capped by HBM capacity left after the weights.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from prfaas.catalog import load_accelerator
from prfaas.catalog.accelerators import Accelerator
from prfaas.catalog.model import ModelArch
from prfaas.catalog.models import load_model
from prfaas.core.errors import InfeasibleError
from prfaas.perf.arch import arch_prefill_model, s_kv_bytes_continuous
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.decode import DecodeParams, MemoryBoundDecodeModel, max_batch_under_slo
from prfaas.perf.roofline import RooflineParams
from prfaas.perf.transfer import ComputeScaledPrefillModel
from prfaas.planner.calibration import calibration_for
from prfaas.planner.report import Assumption
from prfaas.workload.distribution import DiscreteLengthDistribution

if TYPE_CHECKING:  # build.py imports this module
    from prfaas.planner.build import PlanInputs

DEFAULT_DECODE_OVERHEAD_MS = 5.0
DEFAULT_HBM_EFFICIENCY = 0.8
PAPER_MFU_RATIO_H20_OVER_H200 = 2.069  # implied by the case study's one-point calibration (planner.paper)


def arch_models(inputs: PlanInputs, gpus_per_instance: int, slo_tokens_per_s: float,
                lengths: DiscreteLengthDistribution, output_tokens: float, notes: list[Assumption]
                ) -> tuple[PrefillCostModel, PrefillCostModel, int]:
    """(PrfaaS prefill, PD prefill, BS_max) for `inputs.model` (a `PlanInputs`)."""
    assert inputs.model is not None
    arch = load_model(inputs.model)
    src_name = (inputs.prfaas_gpu or "h200").lower()
    dst_name = (inputs.pd_gpu or "h20").lower()
    src, dst = load_accelerator(src_name), load_accelerator(dst_name)
    cal = calibration_for(arch)
    prfaas_model = arch_prefill_model(arch, src, gpus_per_instance, cal.params)
    scale = inputs.pd_compute_scale
    if scale is not None:
        pd_model: PrefillCostModel = ComputeScaledPrefillModel(prfaas_model, cal.params.t0_s, scale,
                                                               name=f"{arch.name}@{dst_name} (k={scale:g})")
        why = f"k = {scale:g} (inputs)"
    else:
        ratio = PAPER_MFU_RATIO_H20_OVER_H200 if (src_name, dst_name) == ("h200", "h20") else 1.0
        mfu = min(cal.params.mfu * ratio, 1.0)
        pd_model = arch_prefill_model(arch, dst, gpus_per_instance, RooflineParams(cal.params.t0_s, mfu))
        why = f"MFU {mfu:.3f} = PrfaaS MFU x {ratio:g} (paper-implied ratio for h200->h20, else 1)"
    notes.extend([
        Assumption("model", arch.name, "catalog architecture (S_kv and FLOPs from its layers)"),
        Assumption("prefill_roofline_t0_s", round(cal.params.t0_s, 4), cal.source),
        Assumption("prefill_roofline_mfu", round(cal.params.mfu, 4), cal.source),
        Assumption("pd_prefill_model", why, "planner.arch_models"),
    ])
    bs_max = _bs_max(inputs, arch, dst, gpus_per_instance, slo_tokens_per_s, lengths, output_tokens, notes)
    return prfaas_model, pd_model, bs_max


def _bs_max(inputs: PlanInputs, arch: ModelArch, accelerator: Accelerator, gpus_per_instance: int,
            slo_tokens_per_s: float, lengths: DiscreteLengthDistribution, output_tokens: float,
            notes: list[Assumption]) -> int:
    if inputs.bs_max is not None:
        notes.append(Assumption("bs_max", inputs.bs_max, "inputs"))
        return inputs.bs_max
    overhead_ms = inputs.decode_overhead_ms or DEFAULT_DECODE_OVERHEAD_MS
    params = DecodeParams(overhead_s=overhead_ms / 1000.0, mem_bw_efficiency=DEFAULT_HBM_EFFICIENCY)
    decode = MemoryBoundDecodeModel.from_arch(arch, accelerator, gpus_per_instance, params)
    context = lengths.mean() + output_tokens / 2.0
    slo_s = 1.0 / slo_tokens_per_s
    by_slo = max_batch_under_slo(decode, slo_s, context)  # raises InfeasibleError
    memory_bytes = accelerator.memory_bytes * gpus_per_instance
    weights = arch.total_params * arch.weight_bytes_per_param
    free = memory_bytes * 0.9 - weights
    if free <= 0:
        raise InfeasibleError(f"{arch.name} weights ({weights / 1e9:.0f} GB) do not fit in "
                              f"{gpus_per_instance} x {memory_bytes / gpus_per_instance / 1e9:.0f} GB")
    by_memory = math.floor(free / s_kv_bytes_continuous(arch, context))
    if by_memory < 1:
        raise InfeasibleError(f"one request's state at {context:.0f} tokens does not fit next to the weights")
    bs_max = min(by_slo, by_memory)
    notes.extend([
        Assumption("decode_model", f"memory-bound, HBM efficiency {DEFAULT_HBM_EFFICIENCY}, overhead "
                   f"{overhead_ms:g} ms", "CATALOG §5.1 (efficiency); overhead is an assumption"),
        Assumption("bs_max", bs_max, f"min(SLO: {by_slo}, HBM: {by_memory}) at {context:.0f} tokens of context"),
    ])
    return bs_max
