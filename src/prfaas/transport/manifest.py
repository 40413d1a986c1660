"""The layout manifest carried by BEGIN, the chunk plan both ends derive from it, and limit checks.

The manifest is a compact msgpack array (msgspec, `array_like` structs):

    [version, num_tokens, [[layer_index, kind, name, dtype, [dims...]], ...]]

`plan_chunks(layout, chunk_bytes)` cuts every tensor, in layout order, into chunks of at most
`chunk_bytes`; a chunk never spans two tensors and an empty tensor has none. Sender and receiver
compute the same plan, so a chunk's `(seq, tensor, offset, length)` can be checked exactly:

    tensor 0 (10 KiB)          tensor 1 (0 B)   tensor 2 (3 KiB)      chunk_bytes = 4 KiB
    |seq0 4K|seq1 4K|seq2 2K|  (no chunk)       |seq3 3K|
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import WIRE_DTYPE_BYTES, StateLayout, TensorSpec
from prfaas.transport.config import TransportLimits
from prfaas.transport.errors import LimitExceeded, ProtocolError


class _WireTensor(msgspec.Struct, array_like=True, frozen=True):
    layer_index: int
    kind: str
    name: str
    dtype: str
    shape: list[int]


class _WireLayout(msgspec.Struct, array_like=True, frozen=True):
    version: int
    num_tokens: int
    tensors: list[_WireTensor]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_WireLayout)
_KINDS = {k.value: k for k in LayerKind}


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of the plan: bytes [offset, offset + length) of tensor `tensor_index`."""

    seq: int
    tensor_index: int
    offset: int
    length: int


def encode_layout(layout: StateLayout) -> bytes:
    wire = _WireLayout(
        version=layout.version,
        num_tokens=layout.num_tokens,
        tensors=[
            _WireTensor(t.layer_index, t.layer_kind.value, t.name, t.dtype, list(t.shape))
            for t in layout.tensors
        ],
    )
    return _ENCODER.encode(wire)


def decode_layout(data: bytes | memoryview) -> StateLayout:
    """Decode an untrusted manifest (structure only; see `check_layout_limits`). Raises ProtocolError."""
    try:
        wire = _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise ProtocolError(f"invalid layout manifest: {exc}") from None
    if wire.num_tokens < 0:
        raise ProtocolError("manifest num_tokens must be >= 0")
    return StateLayout(tensors=tuple(_decode_tensor(t) for t in wire.tensors), num_tokens=wire.num_tokens,
                       version=wire.version)


def _decode_tensor(t: _WireTensor) -> TensorSpec:
    kind = _KINDS.get(t.kind)
    if kind is None or t.dtype not in WIRE_DTYPE_BYTES:
        raise ProtocolError(f"tensor {t.name[:64]!r}: unknown layer kind or dtype")
    if t.layer_index < 0 or any(d < 0 for d in t.shape):
        raise ProtocolError(f"tensor {t.name[:64]!r}: negative layer index or dimension")
    return TensorSpec(t.layer_index, kind, t.name, t.dtype, tuple(t.shape))


def check_layout_limits(layout: StateLayout, limits: TransportLimits) -> None:
    """Raise LimitExceeded if the declared layout is above the limits. Call before allocating."""
    if len(layout.tensors) > limits.max_tensors:
        raise LimitExceeded(f"transfer declares {len(layout.tensors)} tensors > limit {limits.max_tensors}")
    total = 0
    for spec in layout.tensors:
        if len(spec.shape) > limits.max_dims:
            raise LimitExceeded(f"tensor {spec.name[:64]!r} has {len(spec.shape)} dims > limit {limits.max_dims}")
        nbytes = math.prod(spec.shape) * WIRE_DTYPE_BYTES[spec.dtype]
        if nbytes > limits.max_tensor_bytes:
            raise LimitExceeded(f"tensor {spec.name[:64]!r} declares {nbytes} B > limit {limits.max_tensor_bytes} B")
        total += nbytes
    if total > limits.max_transfer_bytes:
        raise LimitExceeded(f"transfer declares {total} B > limit {limits.max_transfer_bytes} B")


def num_chunks(layout: StateLayout, chunk_bytes: int) -> int:
    return sum(-(-t.nbytes // chunk_bytes) for t in layout.tensors)


def plan_chunks(layout: StateLayout, chunk_bytes: int) -> tuple[ChunkRef, ...]:
    """The chunk plan (see the module docstring)."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be > 0")
    chunks: list[ChunkRef] = []
    for tensor_index, spec in enumerate(layout.tensors):
        nbytes = spec.nbytes
        for offset in range(0, nbytes, chunk_bytes):
            chunks.append(ChunkRef(len(chunks), tensor_index, offset, min(chunk_bytes, nbytes - offset)))
    return tuple(chunks)


def as_byte_view(buffer: object, *, writable: bool = False) -> memoryview:
    """A flat uint8 memoryview over a C-contiguous buffer (0-d and empty buffers included)."""
    view = memoryview(buffer)  # type: ignore[arg-type]
    if writable and view.readonly:
        raise ValueError("buffer is read-only")
    if view.nbytes == 0:
        return memoryview(bytearray())
    if not view.c_contiguous:
        raise ValueError("buffer must be C-contiguous")
    if view.ndim == 1 and view.format == "B":
        return view
    return view.cast("B")
