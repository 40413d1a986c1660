"""Memory-bound decode step model, its calibration, and the largest batch that meets a TPOT SLO.

One decode step of a batch of B requests at mean context t on one instance of n_gpu GPUs:

    t_step(B, t) = overhead_s + (W(B) / n_gpu + B · S(t) / state_shards) / (mem_bw · efficiency)

- `W(B)`: weight bytes read per step over the whole instance (`weight_bytes_fn`). For a dense model it
  is every weight; for MoE, `moe_weight_bytes_read` counts the experts a batch of B touches.
- `S(t)`: one request's state bytes at context t (KV + recurrent state), read once per step.
- Tensor parallelism: each GPU holds and reads 1/n_gpu of the weights. The state is split
  `state_shards` ways: n_gpu (default) when KV heads are split across GPUs or attention is data-parallel;
  1 for MLA under plain TP, where every GPU holds the whole latent. The slowest GPU sets the step time,
  and all GPUs read in parallel, so the per-GPU bytes are divided by one GPU's bandwidth.
- `overhead_s` (launches, all-reduces, sampling) and `efficiency` (achieved fraction of the HBM
  bandwidth) are calibration data (`DecodeParams`), fitted by `fit_decode` with the relative least
  squares of `perf.roofline.fit_affine_relative`.

`max_batch_under_slo` finds the largest batch whose step time meets the TPOT SLO (the paper's BS_max).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prfaas.catalog.accelerators import Accelerator
from prfaas.catalog.model import ModelArch
from prfaas.core.errors import InfeasibleError
from prfaas.perf.arch import s_kv_bytes_continuous
from prfaas.perf.base import DecodeCostModel
from prfaas.perf.roofline import CalibrationError, fit_affine_relative

WeightBytesFn = Callable[[int], float]  # batch_size -> weight bytes read per step (whole instance)
StateBytesFn = Callable[[float], float]  # context_tokens -> one request's state bytes

DEFAULT_BATCH_CAP = 4096


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """Calibration of a decode step: fixed overhead and achieved fraction of HBM bandwidth."""

    overhead_s: float
    mem_bw_efficiency: float

    def __post_init__(self) -> None:
        if self.overhead_s < 0:
            raise ValueError(f"overhead_s must be >= 0, got {self.overhead_s}")
        if not 0 < self.mem_bw_efficiency <= 1:
            raise ValueError(f"mem_bw_efficiency must be in (0, 1], got {self.mem_bw_efficiency}")


def moe_weight_bytes_read(arch: ModelArch, batch_size: int) -> float:
    """Weight bytes one decode step reads for `batch_size` requests (whole instance).

    Non-expert weights and the LM head are read once; of each MoE layer's E routed experts, a batch of
    B tokens with top-k routing touches E·(1 − (1 − k/E)^B) on average (uniform routing, an upper
    estimate for real, skewed routers). Without FFN geometry: the compute-active parameters.
    The input embedding is a B-row lookup and is ignored.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    bytes_per_param = arch.weight_bytes_per_param
    ffn = arch.ffn
    if ffn is None or not ffn.is_moe:
        return arch.compute_active_params * bytes_per_param
    num_moe_layers = arch.num_layers - ffn.dense_layers(arch.num_layers)
    expert_params = 3 * arch.hidden_size * ffn.expert_intermediate
    active_experts = ffn.experts_per_token
    touched = ffn.num_experts * (1.0 - (1.0 - active_experts / ffn.num_experts) ** batch_size)
    extra = num_moe_layers * (touched - active_experts) * expert_params
    return (arch.compute_active_params + extra) * bytes_per_param


@dataclass(frozen=True, slots=True)
class MemoryBoundDecodeModel:
    """`DecodeCostModel`: the memory-bound step time of the module docstring. Side-effect free."""

    name: str
    weight_bytes_fn: WeightBytesFn
    state_bytes_fn: StateBytesFn
    n_gpu: int
    mem_bw_bytes_per_s: float
    params: DecodeParams
    state_shards: int | None = None

    def __post_init__(self) -> None:
        if self.n_gpu < 1 or self.mem_bw_bytes_per_s <= 0:
            raise ValueError("n_gpu must be >= 1 and mem_bw_bytes_per_s > 0")
        if self.state_shards is not None and self.state_shards < 1:
            raise ValueError("state_shards must be >= 1")

    @classmethod
    def from_arch(
        cls,
        arch: ModelArch,
        accelerator: Accelerator,
        n_gpu: int,
        params: DecodeParams,
        *,
        state_shards: int | None = None,
    ) -> MemoryBoundDecodeModel:
        """The decode model of `arch` on one instance of `n_gpu` × `accelerator`."""

        def weight_bytes_fn(batch_size: int) -> float:
            return moe_weight_bytes_read(arch, batch_size)

        def state_bytes_fn(context_tokens: float) -> float:
            return s_kv_bytes_continuous(arch, context_tokens)

        return cls(
            name=f"{arch.name}@{n_gpu}x{accelerator.name}",
            weight_bytes_fn=weight_bytes_fn,
            state_bytes_fn=state_bytes_fn,
            n_gpu=n_gpu,
            mem_bw_bytes_per_s=accelerator.mem_bw_bytes_per_s,
            params=params,
            state_shards=state_shards,
        )

    def bytes_per_gpu(self, batch_size: int, context_tokens: float) -> float:
        """HBM bytes the busiest GPU reads in one step."""
        shards = self.state_shards if self.state_shards is not None else self.n_gpu
        weights = self.weight_bytes_fn(batch_size) / self.n_gpu
        return weights + batch_size * self.state_bytes_fn(context_tokens) / shards

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        if batch_size < 1 or context_tokens < 0:
            raise ValueError("batch_size must be >= 1 and context_tokens >= 0")
        bandwidth = self.mem_bw_bytes_per_s * self.params.mem_bw_efficiency
        return self.params.overhead_s + self.bytes_per_gpu(batch_size, context_tokens) / bandwidth


@dataclass(frozen=True, slots=True)
class DecodeFit:
    """`fit_decode`'s answer: parameters and per-point residuals (seconds and relative)."""

    params: DecodeParams
    residuals_s: tuple[float, ...]
    rel_errors: tuple[float, ...]

    @property
    def max_abs_rel_error(self) -> float:
        return max(abs(e) for e in self.rel_errors)


def fit_decode(
    points: Sequence[tuple[int, float, float]],
    weight_bytes_fn: WeightBytesFn,
    state_bytes_fn: StateBytesFn,
    n_gpu: int,
    mem_bw_bytes_per_s: float,
    *,
    state_shards: int | None = None,
) -> DecodeFit:
    """Fit overhead and bandwidth efficiency to measured (batch_size, context_tokens, t_step_s) points."""
    probe = MemoryBoundDecodeModel(
        name="fit",
        weight_bytes_fn=weight_bytes_fn,
        state_bytes_fn=state_bytes_fn,
        n_gpu=n_gpu,
        mem_bw_bytes_per_s=mem_bw_bytes_per_s,
        params=DecodeParams(overhead_s=0.0, mem_bw_efficiency=1.0),
        state_shards=state_shards,
    )
    ideal_s = [probe.t_step_s(int(b), float(ctx)) for b, ctx, _ in points]
    fit = fit_affine_relative(ideal_s, [t for _, _, t in points])
    efficiency = 1.0 / fit.slope
    if efficiency > 1.0:
        message = f"points imply bandwidth efficiency {efficiency:.2f} > 1: bytes or bandwidth too low"
        raise CalibrationError(message)
    return DecodeFit(
        params=DecodeParams(overhead_s=fit.intercept, mem_bw_efficiency=efficiency),
        residuals_s=fit.residuals,
        rel_errors=fit.rel_errors,
    )


def max_batch_under_slo(
    model: DecodeCostModel,
    tpot_slo_s: float,
    context_tokens: float,
    batch_cap: int = DEFAULT_BATCH_CAP,
) -> int:
    """Largest batch in [1, batch_cap] whose step time is <= `tpot_slo_s` (step time must grow with batch).

    Raises `InfeasibleError` when even batch 1 misses the SLO.
    """
    if tpot_slo_s <= 0 or batch_cap < 1:
        raise ValueError("tpot_slo_s must be > 0 and batch_cap >= 1")
    t_one = model.t_step_s(1, context_tokens)
    if t_one > tpot_slo_s:
        raise InfeasibleError(
            f"{model.name}: one request at {context_tokens:.0f} tokens takes {t_one * 1e3:.1f} ms per step, "
            f"above the {tpot_slo_s * 1e3:.1f} ms TPOT SLO"
        )
    low, high = 1, batch_cap  # invariant: low meets the SLO
    while low < high:
        mid = (low + high + 1) // 2
        if model.t_step_s(mid, context_tokens) <= tpot_slo_s:
            low = mid
        else:
            high = mid - 1
    return low
