"""Calibrated roofline prefill model: T(S, c) = T0 + FLOPs(S, c) / (n_gpu · peak · MFU).

`T0` (fixed per-request overhead: scheduling, launch, the TP all-reduce floor) and `MFU` (achieved
fraction of the dense peak) are calibration data (`RooflineParams`), produced by `fit_roofline` from
measured (num_tokens, seconds) points, never hand-tuned in code.

Fitting method (`fit_affine_relative`): with x = FLOPs / (n_gpu · peak) the model is affine,
T = T0 + k·x with k = 1/MFU. We minimise the sum of squared *relative* residuals
Σ ((T_i − T0 − k·x_i) / T_i)², i.e. weighted least squares with weights 1/T_i², so a 0.4 s point at 1K
counts as much as a 7 s point at 128K. If the unconstrained optimum has T0 < 0 we refit with T0 = 0.
A fit whose slope is not positive, or that implies MFU > 1, raises `CalibrationError`: the FLOPs
function, the peak or the points are wrong, and a silently clamped answer would hide that.

One MFU for all lengths: CATALOG.md §4 shows a single T0 + FLOPs/MFU reproducing Table 3 to first order;
the fit residuals (`RooflineFit.rel_errors`) show where that stops being true. The same fitting routine
calibrates the decode model (`perf.decode`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prfaas.core.errors import PrfaasError
from prfaas.perf.lsq import least_squares

FlopsFn = Callable[[float, float], float]  # (num_tokens, num_cached_tokens) -> FLOPs
SkvFn = Callable[[float], float]  # num_tokens -> bytes


class CalibrationError(PrfaasError):
    """Measured points cannot be explained by the cost model (too few, inconsistent, or MFU > 1)."""


@dataclass(frozen=True, slots=True)
class RooflineParams:
    """Calibration of one (model, accelerator, engine) prefill: fixed overhead and achieved MFU."""

    t0_s: float
    mfu: float

    def __post_init__(self) -> None:
        if self.t0_s < 0:
            raise ValueError(f"t0_s must be >= 0, got {self.t0_s}")
        if not 0 < self.mfu <= 1:
            raise ValueError(f"mfu must be in (0, 1], got {self.mfu}")


class _RelErrors:
    """Fit quality from `rel_errors` (shared by the affine and roofline fits)."""

    __slots__ = ()
    rel_errors: tuple[float, ...]

    @property
    def rms_rel_error(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.rel_errors))))

    @property
    def max_abs_rel_error(self) -> float:
        return float(np.max(np.abs(self.rel_errors)))


@dataclass(frozen=True, slots=True)
class AffineFit(_RelErrors):
    """y ≈ intercept + slope·x fitted by relative least squares; residuals are y − prediction."""

    intercept: float
    slope: float
    residuals: tuple[float, ...]
    rel_errors: tuple[float, ...]



def fit_affine_relative(xs: Sequence[float], ys: Sequence[float]) -> AffineFit:
    """Fit y = a + b·x, a >= 0, minimising Σ ((y − a − b·x) / y)² (see module docstring)."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.size < 2 or np.unique(x).size < 2:
        raise CalibrationError("need at least two points with different x to fit an intercept and a slope")
    if np.any(y <= 0) or not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
        raise CalibrationError("measured values must be finite and > 0")
    w = 1.0 / y  # row scaling: residual_i / y_i
    design = np.column_stack([w, x * w])
    a, b = least_squares([design[:, 0].tolist(), design[:, 1].tolist()], [1.0] * int(y.size))  # perf.lsq
    if a < 0:
        a = 0.0
        b = least_squares([(x * w).tolist()], (w * y).tolist())[0]
    if b <= 0:
        raise CalibrationError("measured times do not grow with the work (fitted slope <= 0)")
    predicted = a + b * x
    residuals = y - predicted
    return AffineFit(
        intercept=float(a),
        slope=float(b),
        residuals=tuple(float(r) for r in residuals),
        rel_errors=tuple(float(r) for r in residuals / y),
    )


@dataclass(frozen=True, slots=True)
class RooflineFit(_RelErrors):
    """`fit_roofline`'s answer: the parameters and how well they explain the points."""

    params: RooflineParams
    num_tokens: tuple[float, ...]
    residuals_s: tuple[float, ...]
    rel_errors: tuple[float, ...]



def fit_roofline(
    points: Sequence[tuple[float, float]],
    flops_fn: FlopsFn,
    n_gpu: int,
    peak_flops_per_gpu: float,
) -> RooflineFit:
    """Fit T0 and MFU to measured (num_tokens, t_prefill_s) points of fresh prompts (no cached prefix)."""
    if n_gpu < 1 or peak_flops_per_gpu <= 0:
        raise ValueError("n_gpu must be >= 1 and peak_flops_per_gpu > 0")
    ideal_s = [flops_fn(float(n), 0.0) / (n_gpu * peak_flops_per_gpu) for n, _ in points]
    fit = fit_affine_relative(ideal_s, [t for _, t in points])
    mfu = 1.0 / fit.slope
    if mfu > 1.0:
        raise CalibrationError(f"points imply MFU {mfu:.2f} > 1: FLOPs or peak too low for these times")
    return RooflineFit(
        params=RooflineParams(t0_s=fit.intercept, mfu=mfu),
        num_tokens=tuple(float(n) for n, _ in points),
        residuals_s=fit.residuals,
        rel_errors=fit.rel_errors,
    )


@dataclass(frozen=True, slots=True)
class RooflinePrefillModel:
    """`PrefillCostModel` for one instance of `n_gpu` GPUs: T0 + FLOPs / (n_gpu · peak · MFU).

    `flops_fn(num_tokens, num_cached_tokens)` gives the work of one prefill and `s_kv_fn(num_tokens)`
    the state bytes (e.g. `perf.arch.prefill_flops` / `s_kv_bytes_continuous` bound to a model).
    Side-effect free.
    """

    name: str
    flops_fn: FlopsFn
    n_gpu: int
    peak_flops_per_gpu: float
    params: RooflineParams
    s_kv_fn: SkvFn

    def __post_init__(self) -> None:
        if self.n_gpu < 1:
            raise ValueError(f"n_gpu must be >= 1, got {self.n_gpu}")
        if self.peak_flops_per_gpu <= 0:
            raise ValueError("peak_flops_per_gpu must be > 0")

    @property
    def effective_flops_per_s(self) -> float:
        """Achieved instance throughput: n_gpu · peak · MFU."""
        return self.n_gpu * self.peak_flops_per_gpu * self.params.mfu

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        if num_tokens < 0 or num_cached_tokens < 0:
            raise ValueError("token counts must be >= 0")
        return self.params.t0_s + self.flops_fn(num_tokens, num_cached_tokens) / self.effective_flops_per_s

    def s_kv_bytes(self, num_tokens: float) -> float:
        return self.s_kv_fn(num_tokens)
