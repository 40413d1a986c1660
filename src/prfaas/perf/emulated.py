"""Emulated accelerators (pure): the scale of an emulation, the emulated model's state geometry, its cost models.

    scale = EmulationScale(time_scale=2.0, state_scale=64.0)
    layers = emulated_layers(*affine_state_fit(points), num_layers=64, linear_per_full=3)   # catalog specs
    prefill = EmulatedPrefillModel(h200_profile, layers, scale)     # T x k_t, S_kv = Σ layer state (exact)
    decode = EmulatedDecodeModel(t_step_s=0.025, scale=scale)       # one batch step x k_t

The emulated engine (`serve.emulated_backend`) sleeps for these durations and ships exactly
`core.layers.total_state_bytes(layers, l)` bytes; `bench.paper` gives the simulator the same two models, so
live and simulated runs share one definition of time and of S_kv.

Scale (docs/emulated.md). An emulation keeps every ratio of the emulated system with two factors:

- `time_scale` k_t: every duration x k_t (prefill, decode step), every rate / k_t (arrivals, throughput);
- `state_scale` k_b: every state byte / k_b (the emulated model is the real one with each layer's state
  k_b times narrower: MLA latent width and KDA state size divided, layer count and kinds kept);
- hence every link capacity / (k_t x k_b): link utilisation, compute-vs-link balance, queueing (in units of
  service time) and the offload share are those of the unscaled system.

One factor alone cannot fit the paper on a small machine: bytes alone (k_t = 1) leave 1,024 decode steps of
25 ms per request (a few thousand token events per second through Python processes), time alone leaves
900 MB per offloaded request. What is NOT scaled: fixed per-transfer and per-message costs of the real control
plane and transport (measured and reported by the benchmark, not hidden).

Geometry. The paper's model (Kimi Linear architecture, KDA:MLA = 3:1, layer count unpublished) is emulated by
`num_layers` layers, every (linear_per_full + 1)-th one MLA (per-token latent) and the rest KDA (fixed
recurrent state), fp8-sized elements (1 byte) so any byte total is exact. Its S_kv(l) = A + B·l with A and B
the least-squares line through the profile's measured S_kv points (Table 5: 172.0 MiB + 16.7 KiB/token),
each divided by k_b and rounded to whole bytes, spread over the layers as evenly as integers allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prfaas.core.layers import LayerKind, LayerStateSpec, LinearVariant, total_state_bytes
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.lsq import least_squares

DEFAULT_NUM_LAYERS = 64
DEFAULT_LINEAR_PER_FULL = 3  # KDA:MLA = 3:1


@dataclass(frozen=True, slots=True)
class EmulationScale:
    time_scale: float = 1.0  # k_t: durations x k_t
    state_scale: float = 1.0  # k_b: bytes / k_b

    def __post_init__(self) -> None:
        if not (self.time_scale > 0 and self.state_scale > 0):
            raise ValueError("time_scale and state_scale must be > 0")

    def duration_s(self, real_s: float) -> float:
        return real_s * self.time_scale

    def rate_rps(self, real_rps: float) -> float:
        return real_rps / self.time_scale

    def state_bytes(self, real_bytes: float) -> float:
        return real_bytes / self.state_scale

    def link_gbps(self, real_gbps: float) -> float:
        return real_gbps / (self.time_scale * self.state_scale)

    def describe(self) -> str:
        return (f"k_t = {self.time_scale:g} (durations x k_t), k_b = {self.state_scale:g} (bytes / k_b), "
                f"links / {self.time_scale * self.state_scale:g}")


def affine_state_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept A, slope B) of S_kv(l) = A + B·l through (length, bytes) points, both >= 0."""
    if not points:
        raise ValueError("need at least one S_kv point")
    x = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    if len(points) == 1:
        return 0.0, float(y[0] / x[0])
    intercept, slope = least_squares([[1.0] * len(points), x.tolist()], y.tolist())  # same bits everywhere
    if intercept < 0:  # through the origin
        return 0.0, least_squares([x.tolist()], y.tolist())[0]
    return float(intercept), float(max(slope, 0.0))


def _spread(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def emulated_layers(intercept_bytes: float, slope_bytes_per_token: float, *, state_scale: float = 1.0,
                    num_layers: int = DEFAULT_NUM_LAYERS,
                    linear_per_full: int = DEFAULT_LINEAR_PER_FULL) -> tuple[LayerStateSpec, ...]:
    """Per-layer state specs whose S_kv(l) is round(A / k_b) + l · round(B / k_b) bytes exactly."""
    period = linear_per_full + 1
    full = [i for i in range(num_layers) if (i + 1) % period == 0]
    if not full or len(full) == num_layers:
        raise ValueError(f"{num_layers} layers with {linear_per_full} linear per full layer leave no layer of a kind")
    per_token = _spread(round(slope_bytes_per_token / state_scale), len(full))
    fixed = _spread(round(intercept_bytes / state_scale), num_layers - len(full))
    specs, fi, li = [], 0, 0
    for i in range(num_layers):
        if i in full:
            specs.append(LayerStateSpec(LayerKind.MLA, kv_elements_per_token=per_token[fi], kv_dtype="fp8"))
            fi += 1
        else:
            specs.append(LayerStateSpec(LayerKind.LINEAR, fixed_state_elements=fixed[li], fixed_state_dtype="fp8",
                                        linear_variant=LinearVariant.KDA))
            li += 1
    return tuple(specs)


class EmulatedPrefillModel:
    """`PrefillCostModel` of an emulated instance: the accelerator's T_prefill x k_t, S_kv of the layers."""

    def __init__(self, timing: PrefillCostModel, layers: Sequence[LayerStateSpec], scale: EmulationScale) -> None:
        self.timing = timing
        self.layers = tuple(layers)
        self.scale = scale
        self._fixed = total_state_bytes(self.layers, 0)
        self._per_token = total_state_bytes(self.layers, 1) - self._fixed
        self._name = f"emulated {timing.name} ({scale.describe()})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def fixed_overhead_s(self) -> float:
        base = getattr(self.timing, "fixed_overhead_s", 0.0)
        return float(base) * self.scale.time_scale

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        return self.timing.t_prefill_s(num_tokens, num_cached_tokens) * self.scale.time_scale

    def s_kv_bytes(self, num_tokens: float) -> float:
        """Exact at integer lengths (`total_state_bytes`); every layer is affine, so linear in between."""
        return self._fixed + self._per_token * max(num_tokens, 0.0)

    def t_prefill_array_s(self, num_tokens: np.ndarray) -> np.ndarray:
        inner = getattr(self.timing, "t_prefill_array_s", None)
        x = np.asarray(num_tokens, dtype=np.float64)
        base = inner(x) if inner is not None else np.array([self.timing.t_prefill_s(float(v)) for v in x])
        return np.asarray(base, dtype=np.float64) * self.scale.time_scale

    def s_kv_array_bytes(self, num_tokens: np.ndarray) -> np.ndarray:
        return self._fixed + self._per_token * np.maximum(np.asarray(num_tokens, dtype=np.float64), 0.0)


class EmulatedDecodeModel:
    """`DecodeCostModel`: one decode step of the whole batch takes `t_step_s` x k_t, whatever its size up to
    BS_max (the paper's model: T_decode = 1 / SLO at BS_max)."""

    def __init__(self, t_step_s: float, scale: EmulationScale) -> None:
        if not t_step_s > 0:
            raise ValueError("t_step_s must be > 0")
        self.t_step_real_s = t_step_s
        self.scale = scale

    @property
    def name(self) -> str:
        return f"emulated decode {self.t_step_real_s * 1e3:g} ms/step x {self.scale.time_scale:g}"

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        return self.t_step_real_s * self.scale.time_scale
