"""Per-layer state geometry of a loaded model: tensor shapes and dtypes, and the `LayerStateSpec` they imply.

A `LayerGeometry` says exactly which tensors one layer keeps for one request after `num_tokens` prompt tokens:

    FULL_KV     keys [1, kh, T, kd] + values [1, vh, T, vd]          (GQA: kh = vh = n_kv; MLA: latent + rope)
    SLIDING_KV  keys [1, kh, min(T, W), kd] + values [1, vh, min(T, W), vd]   W = sliding_window - 1, which is
                what transformers' `DynamicSlidingWindowLayer` keeps (NOTE(engine): not the full window)
    LINEAR      conv [1, channels, kernel] (optional) + recurrent [1, *state] (optional)
    NONE        nothing (MLP-only layers)

`to_state_spec()` turns it into the shared `prfaas.core.layers.LayerStateSpec`, so
`core.layers.total_state_bytes(specs, T)` equals the bytes of the tensors listed by `tensor_specs(T)`: the planner's
S_kv and the bytes on the wire come from one definition. The sliding-window layer's cumulative length is not a
tensor: it always equals the layout's `num_tokens`, so the receiver derives it from there.

Pure data (no torch): the family adapters in `engine.families` build geometries from a Hugging Face config.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from prfaas.core.layers import LayerKind, LayerStateSpec, LinearVariant
from prfaas.core.state_layout import TensorSpec

# torch dtype name (as in TensorSpec) -> core.layers dtype name.
_WIRE_TO_SPEC_DTYPE: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class PartKind(enum.Enum):
    """Which state container a layer uses."""

    FULL_KV = "full_kv"
    SLIDING_KV = "sliding_kv"
    LINEAR = "linear"
    NONE = "none"


def spec_dtype(wire_dtype: str) -> str:
    """`core.layers` dtype name ('fp32') of a torch dtype name ('float32')."""
    try:
        return _WIRE_TO_SPEC_DTYPE[wire_dtype]
    except KeyError:
        raise ValueError(f"dtype {wire_dtype!r} has no core.layers equivalent") from None


@dataclass(frozen=True, slots=True)
class LayerGeometry:
    """The tensors one layer keeps for one request (shapes exclude the batch dimension)."""

    layer_index: int
    part_kind: PartKind
    layer_kind: LayerKind
    key_shape: tuple[int, int] = (0, 0)  # (heads, dim) per token
    value_shape: tuple[int, int] = (0, 0)
    kv_dtype: str = "float32"
    window_tokens: int | None = None
    conv_shape: tuple[int, ...] | None = None  # (channels, kernel)
    conv_dtype: str = "float32"
    recurrent_shape: tuple[int, ...] | None = None
    recurrent_dtype: str = "float32"
    linear_variant: LinearVariant | None = None

    def kept_tokens(self, num_tokens: int) -> int:
        if self.window_tokens is None:
            return num_tokens
        return min(num_tokens, self.window_tokens)

    def tensor_specs(self, num_tokens: int) -> tuple[TensorSpec, ...]:
        """The tensors of this layer after `num_tokens` prompt tokens, in wire order."""
        i, kind = self.layer_index, self.layer_kind
        if self.part_kind in (PartKind.FULL_KV, PartKind.SLIDING_KV):
            kept = self.kept_tokens(num_tokens)
            kh, kd = self.key_shape
            vh, vd = self.value_shape
            return (
                TensorSpec(i, kind, "keys", self.kv_dtype, (1, kh, kept, kd)),
                TensorSpec(i, kind, "values", self.kv_dtype, (1, vh, kept, vd)),
            )
        specs: list[TensorSpec] = []
        if self.conv_shape is not None:
            specs.append(TensorSpec(i, kind, "conv", self.conv_dtype, (1, *self.conv_shape)))
        if self.recurrent_shape is not None:
            specs.append(TensorSpec(i, kind, "recurrent", self.recurrent_dtype, (1, *self.recurrent_shape)))
        return tuple(specs)

    def to_state_spec(self) -> LayerStateSpec:
        """The shared `LayerStateSpec` whose byte formula matches `tensor_specs`."""
        if self.part_kind in (PartKind.FULL_KV, PartKind.SLIDING_KV):
            per_token = self.key_shape[0] * self.key_shape[1] + self.value_shape[0] * self.value_shape[1]
            return LayerStateSpec(
                kind=self.layer_kind,
                kv_elements_per_token=per_token,
                kv_dtype=spec_dtype(self.kv_dtype),
                window_tokens=self.window_tokens,
            )
        if self.part_kind is PartKind.LINEAR:
            return LayerStateSpec(
                kind=LayerKind.LINEAR,
                fixed_state_elements=math.prod(self.recurrent_shape or (0,)),
                fixed_state_dtype=spec_dtype(self.recurrent_dtype),
                conv_state_elements=math.prod(self.conv_shape or (0,)),
                conv_state_dtype=spec_dtype(self.conv_dtype),
                linear_variant=self.linear_variant,
            )
        return LayerStateSpec(kind=LayerKind.NONE)


def layout_tensor_specs(geometries: tuple[LayerGeometry, ...], num_tokens: int) -> tuple[TensorSpec, ...]:
    """Every layer's tensors after `num_tokens` prompt tokens, layer by layer."""
    return tuple(spec for g in geometries for spec in g.tensor_specs(num_tokens))
