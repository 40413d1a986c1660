"""`HybridState`: one request's prompt state, as ordered per-layer parts, ready to ship or to decode from.

Parts, one per layer that keeps state (MLP-only layers have none), in layer order:

    FullAttentionKV   keys [1, kh, T, kd], values [1, vh, T, vd]       (GQA, or MLA latent + rope key)
    SlidingWindowKV   keys/values over the last min(T, W) tokens + cumulative_length (= T, all tokens seen)
    LinearState       conv [1, channels, kernel] and/or recurrent [1, ...]   (MiniMax: recurrent only, its
                      `linear_cache` entry)

Contract with the transport: `layout()` lists the tensors in wire order; `tensor_views()` returns one uint8
memoryview per tensor in that same order, over the tensor's own storage (zero-copy, CPU only).
`HybridState.allocate(layout, device)` builds a state of empty tensors whose views a receiver fills in place.
`cumulative_length` is not a tensor: the receiver takes it from `layout.num_tokens`.

The state is immutable as a container; its tensors are owned by whoever holds the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import StateLayout, TensorSpec
from prfaas.engine.errors import StateLayoutMismatchError


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the TensorSpec dtype name."""
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    """torch.float32 for 'float32'."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise StateLayoutMismatchError(f"unknown tensor dtype {name!r}")
    return dtype


@dataclass(frozen=True, slots=True)
class FullAttentionKV:
    layer_index: int
    layer_kind: LayerKind  # FULL_GQA or MLA
    keys: torch.Tensor  # [1, kh, T, kd]
    values: torch.Tensor  # [1, vh, T, vd]

    def named_tensors(self) -> tuple[tuple[str, torch.Tensor], ...]:
        return (("keys", self.keys), ("values", self.values))


@dataclass(frozen=True, slots=True)
class SlidingWindowKV:
    layer_index: int
    keys: torch.Tensor  # [1, kh, min(T, W), kd]
    values: torch.Tensor  # [1, vh, min(T, W), vd]
    cumulative_length: int  # every token seen, T

    layer_kind = LayerKind.SWA

    def named_tensors(self) -> tuple[tuple[str, torch.Tensor], ...]:
        return (("keys", self.keys), ("values", self.values))


@dataclass(frozen=True, slots=True)
class LinearState:
    layer_index: int
    conv: torch.Tensor | None  # [1, channels, kernel]
    recurrent: torch.Tensor | None  # [1, heads, d_k, d_v] (GDN/KDA/Lightning) or [1, heads, head_dim, d_state]

    layer_kind = LayerKind.LINEAR

    def named_tensors(self) -> tuple[tuple[str, torch.Tensor], ...]:
        named: list[tuple[str, torch.Tensor]] = []
        if self.conv is not None:
            named.append(("conv", self.conv))
        if self.recurrent is not None:
            named.append(("recurrent", self.recurrent))
        return tuple(named)


LayerPart = FullAttentionKV | SlidingWindowKV | LinearState


def part_tensor_specs(part: LayerPart) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(part.layer_index, part.layer_kind, name, dtype_name(t.dtype), tuple(t.shape))
        for name, t in part.named_tensors()
    )


def uint8_view(tensor: torch.Tensor) -> memoryview:
    """A writable uint8 memoryview over a contiguous CPU tensor's storage (0-d tensors included)."""
    if tensor.device.type != "cpu":
        raise StateLayoutMismatchError("tensor views need CPU tensors; move the state with .to('cpu') first")
    if not tensor.is_contiguous():
        raise StateLayoutMismatchError("tensor views need contiguous tensors")
    return tensor.reshape(-1).view(torch.uint8).numpy().data


def part_views(part: LayerPart) -> list[memoryview]:
    """uint8 views over one part's tensors, in wire order (for streaming a layer from `on_layer_done`)."""
    return [uint8_view(t) for _name, t in part.named_tensors()]


@dataclass(frozen=True, slots=True)
class HybridState:
    """A request's prompt state after `num_tokens` tokens: ordered per-layer parts."""

    parts: tuple[LayerPart, ...]
    num_tokens: int

    def iter_tensors(self) -> Iterator[torch.Tensor]:
        for part in self.parts:
            for _name, tensor in part.named_tensors():
                yield tensor

    def layout(self) -> StateLayout:
        specs = tuple(spec for part in self.parts for spec in part_tensor_specs(part))
        return StateLayout(tensors=specs, num_tokens=self.num_tokens)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.iter_tensors())

    def tensor_views(self) -> list[memoryview]:
        """uint8 views over every tensor, in `layout().tensors` order (zero-copy)."""
        return [uint8_view(t) for t in self.iter_tensors()]

    def layer_parts(self, layer_index: int) -> tuple[LayerPart, ...]:
        return tuple(p for p in self.parts if p.layer_index == layer_index)

    def to(self, device: torch.device | str) -> HybridState:
        return HybridState(tuple(_map_part(p, lambda t: t.to(device)) for p in self.parts), self.num_tokens)

    def clone(self) -> HybridState:
        return HybridState(tuple(_map_part(p, lambda t: t.clone()) for p in self.parts), self.num_tokens)

    @classmethod
    def allocate(cls, layout: StateLayout, device: torch.device | str = "cpu") -> HybridState:
        """An empty state with pre-allocated tensors matching `layout`, for a receiver to fill."""
        by_layer: dict[int, dict[str, torch.Tensor]] = {}
        kinds: dict[int, LayerKind] = {}
        for spec in layout.tensors:
            tensor = torch.empty(spec.shape, dtype=torch_dtype(spec.dtype), device=device)
            by_layer.setdefault(spec.layer_index, {})[spec.name] = tensor
            kinds[spec.layer_index] = spec.layer_kind
        parts = tuple(_build_part(i, kinds[i], named, layout.num_tokens) for i, named in by_layer.items())
        return cls(parts, layout.num_tokens)


def _map_part(part: LayerPart, apply: Callable[[torch.Tensor], torch.Tensor]) -> LayerPart:
    if isinstance(part, FullAttentionKV):
        return FullAttentionKV(part.layer_index, part.layer_kind, apply(part.keys), apply(part.values))
    if isinstance(part, SlidingWindowKV):
        return SlidingWindowKV(part.layer_index, apply(part.keys), apply(part.values), part.cumulative_length)
    return LinearState(
        part.layer_index,
        None if part.conv is None else apply(part.conv),
        None if part.recurrent is None else apply(part.recurrent),
    )


def _build_part(index: int, kind: LayerKind, named: dict[str, torch.Tensor], num_tokens: int) -> LayerPart:
    try:
        if kind in (LayerKind.FULL_GQA, LayerKind.MLA):
            return FullAttentionKV(index, kind, named["keys"], named["values"])
        if kind is LayerKind.SWA:
            return SlidingWindowKV(index, named["keys"], named["values"], num_tokens)
    except KeyError as exc:
        raise StateLayoutMismatchError(f"layer {index} ({kind.value}) lacks tensor {exc.args[0]!r}") from None
    if kind is LayerKind.LINEAR:
        unknown = set(named) - {"conv", "recurrent"}
        if unknown or not named:
            raise StateLayoutMismatchError(f"layer {index} (linear) has unexpected tensors {sorted(named)}")
        return LinearState(index, named.get("conv"), named.get("recurrent"))
    raise StateLayoutMismatchError(f"layer {index} has kind {kind.value}, which carries no tensors")


def check_layout(actual: StateLayout, expected: StateLayout) -> None:
    """Raise StateLayoutMismatchError naming the first difference between two layouts."""
    if actual.version != expected.version:
        raise StateLayoutMismatchError(f"layout version {actual.version}, expected {expected.version}")
    if actual.num_tokens != expected.num_tokens:
        raise StateLayoutMismatchError(f"state covers {actual.num_tokens} tokens, expected {expected.num_tokens}")
    if len(actual.tensors) != len(expected.tensors):
        raise StateLayoutMismatchError(
            f"state has {len(actual.tensors)} tensors, this model expects {len(expected.tensors)}"
        )
    for got, want in zip(actual.tensors, expected.tensors, strict=True):
        if got != want:
            raise StateLayoutMismatchError(
                f"tensor mismatch at layer {want.layer_index}: got {got.name} {got.dtype} {list(got.shape)}, "
                f"expected {want.name} {want.dtype} {list(want.shape)}"
            )
