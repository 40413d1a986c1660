"""Per-layer state specs: the single definition of how many bytes a prompt's state takes.

`catalog` builds model architectures from these specs and `perf` computes S_kv(l) from them; the
engine's `HybridState.layout()` and the transport's manifests use the same kinds, so the planner's
S_kv and the bytes on the wire come from one definition (STYLE.md §9).

Kinds and their state for a prompt of l tokens (one request):

    FULL_GQA     K and V for every token          l * n_kv_heads * (d_k + d_v) * kv_dtype
    MLA          one compressed latent per token  l * (kv_lora_rank + rope_dim) * kv_dtype
    SWA          K and V for the last W tokens    min(l, W) * n_kv_heads * (d_k + d_v) * kv_dtype
    LINEAR       fixed recurrent + conv state     heads * d_k * d_v * state_dtype + conv bytes
                 (GDN, KDA, Lightning, Mamba2 and short-conv layers; length independent)
    NONE         no per-request state (e.g. an MLP-only layer)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LayerKind(enum.Enum):
    """How a layer keeps per-request state."""

    FULL_GQA = "full_gqa"
    MLA = "mla"
    SWA = "swa"
    LINEAR = "linear"
    NONE = "none"


class LinearVariant(enum.Enum):
    """Which linear-complexity mechanism a LINEAR layer uses (affects FLOPs, not the state formula)."""

    GDN = "gdn"  # Gated DeltaNet (Qwen3-Next, Qwen3.5)
    KDA = "kda"  # Kimi Delta Attention (Kimi Linear)
    LIGHTNING = "lightning"  # Lightning attention (Ring, MiniMax-Text-01)
    MAMBA2 = "mamba2"  # Mamba2 SSM (Bamba, Nemotron-H)
    CONV = "conv"  # short convolution only (LFM2)


DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a named dtype ('fp32', 'bf16', 'fp16', 'fp8')."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}") from None


@dataclass(frozen=True, slots=True)
class LayerStateSpec:
    """State one layer keeps for one request.

    `kv_elements_per_token` counts elements stored per prompt token (0 for linear layers);
    `window_tokens` caps the number of tokens kept (SWA), None means unbounded;
    `fixed_state_elements` / `fixed_state_dtype` describe the recurrent state;
    `conv_state_elements` / `conv_state_dtype` describe the short-convolution state.
    """

    kind: LayerKind
    kv_elements_per_token: int = 0
    kv_dtype: str = "bf16"
    window_tokens: int | None = None
    fixed_state_elements: int = 0
    fixed_state_dtype: str = "fp32"
    conv_state_elements: int = 0
    conv_state_dtype: str = "bf16"
    linear_variant: LinearVariant | None = None

    def __post_init__(self) -> None:
        for name in ("kv_elements_per_token", "fixed_state_elements", "conv_state_elements"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.window_tokens is not None and self.window_tokens <= 0:
            raise ValueError("window_tokens must be positive when set")
        if self.kind is LayerKind.SWA and self.window_tokens is None:
            raise ValueError("an SWA layer needs window_tokens")
        for name in ("kv_dtype", "fixed_state_dtype", "conv_state_dtype"):
            dtype_bytes(getattr(self, name))

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes stored per kept prompt token."""
        return self.kv_elements_per_token * dtype_bytes(self.kv_dtype)

    @property
    def fixed_state_bytes(self) -> int:
        """Length-independent bytes (recurrent + conv state)."""
        return self.fixed_state_elements * dtype_bytes(
            self.fixed_state_dtype
        ) + self.conv_state_elements * dtype_bytes(self.conv_state_dtype)

    def kept_tokens(self, num_tokens: int) -> int:
        """Tokens whose KV this layer keeps after a prompt of `num_tokens`."""
        if self.window_tokens is None:
            return num_tokens
        return min(num_tokens, self.window_tokens)

    def state_bytes(self, num_tokens: int) -> int:
        """Bytes of this layer's state after a prompt of `num_tokens` tokens."""
        if num_tokens < 0:
            raise ValueError("num_tokens must be >= 0")
        return self.kept_tokens(num_tokens) * self.kv_bytes_per_token + self.fixed_state_bytes


def total_state_bytes(specs: tuple[LayerStateSpec, ...] | list[LayerStateSpec], num_tokens: int) -> int:
    """S_kv(l) in bytes: the sum of every layer's state for a prompt of `num_tokens` tokens."""
    return sum(spec.state_bytes(num_tokens) for spec in specs)
