"""State sizes and FLOPs computed from a `catalog.ModelArch` (CATALOG.md §2-§3), and the bridge from an
architecture to a calibrated roofline prefill model.

State (bytes, one request of l prompt tokens):

    S_kv(l) = Σ_layers state_bytes(l)                       (core.layers.total_state_bytes, exact)
            = fixed_state_bytes + l · kv_bytes_per_token    for l >= the largest SWA window

    kv_bytes_per_token   Σ over unbounded layers (full GQA, MLA) of per-token KV bytes
    recurrent_state_bytes  Σ over linear layers of recurrent + conv state (length independent)
    swa_window_bytes     Σ over SWA layers of window · per-token KV bytes (the state once windows are full)
    fixed_state_bytes    recurrent_state_bytes + swa_window_bytes (CATALOG.md §2's "fixed" column)

FLOPs (S new tokens on c cached, one decode token at context t):

    prefill = 2N·S + A·S² + 2A·S·c + Σ_swa 2·A_w·∫_c^{c+S} min(x, W) dx + S·linear_prefill
    decode  = 2N + D·t + Σ_swa 2·A_w·min(t, W) + linear_decode

with N = compute-active params, A = `attention_flops_coeff`, D = `decode_attention_coeff`. The SWA
integral is the continuous analogue of the causal S²/2 + S·c term, capped at the window. The linear-layer
terms are the approximations of CATALOG.md §3 [U]: `RECURRENT_FLOPS_PER_STATE_ELEMENT` per element of
H·d_k·d_v per token, plus 2·H·C·(d_k + d_v) per token for chunked prefill with chunk C.

Φ_kv (paper Eq. 1) = S_kv / T_prefill, in decimal Gbps with binary byte sizes (the pairing that reproduces
arXiv 2604.15039 Table 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from prfaas.catalog.accelerators import Accelerator, ComputePrecision
from prfaas.catalog.model import ModelArch
from prfaas.core.layers import total_state_bytes
from prfaas.core.units import bytes_per_s_to_gbps
from prfaas.perf.roofline import RooflineFit, RooflineParams, RooflinePrefillModel, fit_roofline

# NOTE(catalog): approximate constants of CATALOG.md §3 (not calibration parameters): decay, outer-product
# update and readout cost ~6 FLOPs per recurrent-state element per token; chunked prefill uses C = 64.
RECURRENT_FLOPS_PER_STATE_ELEMENT = 6
PREFILL_CHUNK_TOKENS = 64


def kv_bytes_per_token(arch: ModelArch) -> int:
    """Bytes per prompt token of the layers whose state grows without bound (full GQA, MLA)."""
    return sum(spec.kv_bytes_per_token for spec in arch.layers if spec.window_tokens is None)


def recurrent_state_bytes(arch: ModelArch) -> int:
    """Length-independent recurrent + convolution state of the linear layers."""
    return sum(spec.fixed_state_bytes for spec in arch.layers)


def swa_window_bytes(arch: ModelArch) -> int:
    """State of the SWA layers once every window is full."""
    return sum(spec.kv_bytes_per_token * spec.window_tokens for spec in arch.layers if spec.window_tokens)


def fixed_state_bytes(arch: ModelArch) -> int:
    """The intercept of S_kv(l) for l >= the largest window: recurrent state + full SWA windows."""
    return recurrent_state_bytes(arch) + swa_window_bytes(arch)


def s_kv_bytes(arch: ModelArch, num_tokens: int) -> int:
    """S_kv(l): exact bytes of one request's transferable state after `num_tokens` prompt tokens."""
    return total_state_bytes(arch.layers, num_tokens)


def s_kv_bytes_continuous(arch: ModelArch, num_tokens: float) -> float:
    """S_kv at a fractional length: exact at integers, linear in between (S_kv is piecewise linear)."""
    if num_tokens < 0:
        raise ValueError("num_tokens must be >= 0")
    low = math.floor(num_tokens)
    s_low = s_kv_bytes(arch, low)
    if num_tokens == low:
        return float(s_low)
    return s_low + (num_tokens - low) * (s_kv_bytes(arch, low + 1) - s_low)


def _swa_prefill_integral(num_tokens: float, num_cached_tokens: float, window_tokens: int) -> float:
    """∫_c^{c+S} min(x, W) dx: attended positions summed over the new tokens, capped at W."""
    start, end = num_cached_tokens, num_cached_tokens + num_tokens
    below_end = min(end, window_tokens)
    uncapped = (below_end**2 - start**2) / 2 if start < window_tokens else 0.0
    capped = window_tokens * (end - max(start, window_tokens)) if end > window_tokens else 0.0
    return uncapped + capped


def linear_layer_decode_flops(arch: ModelArch) -> float:
    """Recurrent-form FLOPs per token of all linear layers (approximate, CATALOG.md §3)."""
    return float(RECURRENT_FLOPS_PER_STATE_ELEMENT * arch.linear_recurrent_elements)


def linear_layer_prefill_flops(arch: ModelArch) -> float:
    """Chunked-prefill FLOPs per token of all linear layers: recurrent term + intra-chunk term."""
    return linear_layer_decode_flops(arch) + 2.0 * PREFILL_CHUNK_TOKENS * arch.linear_chunk_elements


def prefill_flops(arch: ModelArch, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
    """FLOPs to prefill `num_tokens` new tokens after `num_cached_tokens` cached ones (one request)."""
    if num_tokens < 0 or num_cached_tokens < 0:
        raise ValueError("token counts must be >= 0")
    s, c = float(num_tokens), float(num_cached_tokens)
    dense = 2.0 * arch.compute_active_params * s
    full = arch.attention_flops_coeff * (s * s + 2.0 * s * c)
    swa = sum(2.0 * t.coeff * _swa_prefill_integral(s, c, t.window_tokens) for t in arch.swa_terms)
    return dense + full + swa + s * linear_layer_prefill_flops(arch)


def decode_flops(arch: ModelArch, context_tokens: float) -> float:
    """FLOPs of one decode token at context `context_tokens` (weight-absorbed MLA)."""
    if context_tokens < 0:
        raise ValueError("context_tokens must be >= 0")
    t = float(context_tokens)
    swa = sum(2.0 * term.coeff * min(t, term.window_tokens) for term in arch.swa_terms)
    attention = arch.decode_attention_coeff * t + swa
    return 2.0 * arch.compute_active_params + attention + linear_layer_decode_flops(arch)


def phi_kv_gbps(s_kv_bytes: float, t_prefill_s: float) -> float:
    """Paper Eq. 1: Φ_kv = S_kv / T_prefill in decimal Gbps (bytes binary, bits decimal)."""
    if t_prefill_s <= 0:
        raise ValueError("t_prefill_s must be > 0")
    return bytes_per_s_to_gbps(s_kv_bytes / t_prefill_s)


def arch_prefill_model(
    arch: ModelArch,
    accelerator: Accelerator,
    n_gpu: int,
    params: RooflineParams,
    *,
    precision: ComputePrecision = ComputePrecision.BF16,
    name: str | None = None,
) -> RooflinePrefillModel:
    """A `PrefillCostModel` for `arch` on one instance of `n_gpu` × `accelerator`, calibrated by `params`."""

    def flops_fn(num_tokens: float, num_cached_tokens: float) -> float:
        return prefill_flops(arch, num_tokens, num_cached_tokens)

    def s_kv_fn(num_tokens: float) -> float:
        return s_kv_bytes_continuous(arch, num_tokens)

    return RooflinePrefillModel(
        name=name or f"{arch.name}@{n_gpu}x{accelerator.name}",
        flops_fn=flops_fn,
        n_gpu=n_gpu,
        peak_flops_per_gpu=accelerator.peak_flops(precision),
        params=params,
        s_kv_fn=s_kv_fn,
    )


def fit_arch_roofline(
    arch: ModelArch,
    points: Sequence[tuple[float, float]],
    accelerator: Accelerator,
    n_gpu: int,
    *,
    precision: ComputePrecision = ComputePrecision.BF16,
) -> RooflineFit:
    """`fit_roofline` with this architecture's prefill FLOPs and the accelerator's dense peak."""

    def flops_fn(num_tokens: float, num_cached_tokens: float) -> float:
        return prefill_flops(arch, num_tokens, num_cached_tokens)

    return fit_roofline(points, flops_fn, n_gpu, accelerator.peak_flops(precision))
