"""Random HybridState-like layouts and buffers for transport tests (numpy only, no torch)."""

from __future__ import annotations

import numpy as np

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import StateLayout, TensorSpec

SECRET = b"transport-test-secret-0123456789"

# numpy stand-ins for the wire dtypes (bf16 travels as its raw 16-bit pattern)
NUMPY_OF = {"bfloat16": np.uint16, "float32": np.float32, "float16": np.float16, "int64": np.int64}


def hybrid_layout(rng: np.random.Generator, num_layers: int = 6, huge_elems: int = 1 << 18) -> StateLayout:
    """Many small tensors (conv/recurrent state, 0-d lengths), a few huge KV tensors, bf16 and fp32."""
    tensors: list[TensorSpec] = []
    for layer in range(num_layers):
        if layer % 3 == 2:  # full attention: two large KV tensors
            tokens = int(rng.integers(1, 64))
            heads = huge_elems // (tokens * 64) or 1
            for name in ("keys", "values"):
                shape = (1, heads, tokens, 64)
                tensors.append(TensorSpec(layer, LayerKind.FULL_GQA, name, "bfloat16", shape))
        else:  # linear layer: small conv + fp32 recurrent state + a 0-d counter
            conv = (1, int(rng.integers(1, 48)), 4)
            tensors.append(TensorSpec(layer, LayerKind.LINEAR, "conv", "bfloat16", conv))
            rec = (1, int(rng.integers(1, 4)), 16, 16)
            tensors.append(TensorSpec(layer, LayerKind.LINEAR, "recurrent", "float32", rec))
            tensors.append(TensorSpec(layer, LayerKind.LINEAR, "seen", "int64", ()))
    tensors.append(TensorSpec(num_layers, LayerKind.SWA, "empty", "float32", (0, 8)))
    return StateLayout(tuple(tensors), num_tokens=int(rng.integers(1, 4096)))


def random_buffers(layout: StateLayout, rng: np.random.Generator) -> list[np.ndarray]:
    """Random contents with each tensor's shape and (stand-in) dtype."""
    out = []
    for spec in layout.tensors:
        raw = rng.integers(0, 256, size=spec.nbytes, dtype=np.uint8)
        out.append(raw.view(NUMPY_OF[spec.dtype]).reshape(spec.shape))
    return out


def empty_like(layout: StateLayout) -> list[np.ndarray]:
    return [np.zeros(spec.shape, dtype=NUMPY_OF[spec.dtype]) for spec in layout.tensors]


def layer_views(layout: StateLayout, arrays: list[np.ndarray], layer: int) -> list[memoryview]:
    pairs = zip(arrays, layout.tensors, strict=True)
    return [memoryview(a) for a, spec in pairs if spec.layer_index == layer]


class Sink:
    """Records what a KvReceiver hands out (allocations, completions, failures)."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.allocations: list[tuple[object, list[np.ndarray]]] = []
        self.completed: dict[str, list[bytes]] = {}
        self.failed: dict[str, object] = {}
        self.done = threading.Event()

    def allocate(self, layout: StateLayout) -> list[memoryview]:
        arrays = empty_like(layout)
        with self.lock:
            self.allocations.append((layout, arrays))
        return [memoryview(a) for a in arrays]

    def on_complete(self, request_id: str, layout: StateLayout, buffers: list[memoryview]) -> None:
        with self.lock:
            self.completed[request_id] = [bytes(b) for b in buffers]
        self.done.set()

    def on_failed(self, request_id: str, error: object) -> None:
        with self.lock:
            self.failed[request_id] = error
        self.done.set()


def as_bytes(arrays: list[np.ndarray]) -> list[bytes]:
    return [a.tobytes() for a in arrays]
