"""The layout of a request's transferable state, shared by `engine` (produces/consumes it) and
`transport` (puts it on the wire). Pure data: no torch.

A `StateLayout` is an ordered list of `TensorSpec`s, one per tensor of every layer part, in the
order the prefill emits them (layer by layer). `LayerKind` comes from `core.layers`, so the bytes
on the wire are computed from the same per-layer kinds the planner uses for S_kv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prfaas.core.layers import LayerKind

LAYOUT_VERSION = 1

# Element sizes of the tensor dtypes that may cross the wire (torch names without the prefix).
WIRE_DTYPE_BYTES: dict[str, int] = {
    "float32": 4, "bfloat16": 2, "float16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1,
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of one layer part: e.g. layer 3, FULL_GQA, 'keys', bfloat16, [1, 2, 2048, 64]."""

    layer_index: int
    layer_kind: LayerKind
    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in WIRE_DTYPE_BYTES:
            raise ValueError(f"unsupported wire dtype {self.dtype!r}; known: {', '.join(WIRE_DTYPE_BYTES)}")
        if self.layer_index < 0 or any(d < 0 for d in self.shape):
            raise ValueError("layer_index and shape dims must be >= 0")

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.num_elements * WIRE_DTYPE_BYTES[self.dtype]


@dataclass(frozen=True, slots=True)
class StateLayout:
    """Ordered tensors of a request's state plus the number of prompt tokens it covers."""

    tensors: tuple[TensorSpec, ...]
    num_tokens: int
    version: int = LAYOUT_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def layer_bytes(self, layer_index: int) -> int:
        return sum(t.nbytes for t in self.tensors if t.layer_index == layer_index)

    @property
    def layer_indices(self) -> tuple[int, ...]:
        seen: dict[int, None] = {}
        for t in self.tensors:
            seen.setdefault(t.layer_index, None)
        return tuple(seen)
