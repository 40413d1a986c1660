"""Carry a prefill cost model from one accelerator to another.

A prefill time splits into a fixed overhead and compute: T(l) = T0 + C(l) with
C(l) = FLOPs(l) / (n_gpu * peak * MFU). On another accelerator the same FLOPs run at another
`n_gpu * peak * MFU`, so C scales by one factor k and T'(l) = T0 + k * C(l):

    k = (n_gpu * peak * MFU)_source / (n_gpu * peak * MFU)_target

Peak FLOPS are datasheet facts; the MFU ratio is not, so k is fitted from one measured point on
the target (`calibrate_compute_scale`), and the implied MFU ratio is reported, not assumed.
The state a prompt produces (S_kv) does not depend on the accelerator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prfaas.perf.base import PrefillCostModel


class ComputeScaledPrefillModel:
    """`PrefillCostModel`: T'(l) = T0 + k * (T_source(l) - T0); S_kv unchanged."""

    def __init__(self, source: PrefillCostModel, t0_s: float, compute_scale: float, name: str) -> None:
        if compute_scale <= 0:
            raise ValueError("compute_scale must be > 0")
        if t0_s < 0:
            raise ValueError("t0_s must be >= 0")
        self.source = source
        self.t0_s = t0_s
        self.compute_scale = compute_scale
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        compute_s = max(self.source.t_prefill_s(num_tokens, num_cached_tokens) - self.t0_s, 0.0)
        return self.t0_s + self.compute_scale * compute_s

    def s_kv_bytes(self, num_tokens: float) -> float:
        return self.source.s_kv_bytes(num_tokens)

    def t_prefill_array_s(self, num_tokens: np.ndarray) -> np.ndarray:
        """Vectorised fresh-prompt times when the source offers them."""
        source_array = getattr(self.source, "t_prefill_array_s", None)
        if source_array is None:
            base = np.array([self.source.t_prefill_s(float(x)) for x in np.asarray(num_tokens)])
        else:
            base = source_array(num_tokens)
        return np.asarray(self.t0_s + self.compute_scale * np.maximum(base - self.t0_s, 0.0))

    def s_kv_array_bytes(self, num_tokens: np.ndarray) -> np.ndarray:
        source_array = getattr(self.source, "s_kv_array_bytes", None)
        if source_array is None:
            return np.array([self.source.s_kv_bytes(float(x)) for x in np.asarray(num_tokens)])
        return np.asarray(source_array(num_tokens))


@dataclass(frozen=True, slots=True)
class ComputeScaleFit:
    compute_scale: float  # k
    at_tokens: float
    target_t_s: float
    peak_ratio: float  # (n_gpu * peak)_source / (n_gpu * peak)_target
    implied_mfu_ratio: float  # MFU_target / MFU_source = peak_ratio / k


def calibrate_compute_scale(source: PrefillCostModel, t0_s: float, at_tokens: float, target_t_s: float,
                            peak_ratio: float) -> ComputeScaleFit:
    """k such that T0 + k * (T_source(at_tokens) - T0) == target_t_s."""
    compute_s = source.t_prefill_s(at_tokens) - t0_s
    if compute_s <= 0:
        raise ValueError("the source model has no compute time at the calibration length")
    if target_t_s <= t0_s:
        raise ValueError("the calibration time must exceed the fixed overhead T0")
    k = (target_t_s - t0_s) / compute_s
    return ComputeScaleFit(k, at_tokens, target_t_s, peak_ratio, peak_ratio / k)
