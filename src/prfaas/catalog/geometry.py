"""Per-layer geometry: the shapes a decoder layer's mixer has, and what follows from them.

One frozen dataclass per mixer family. Each one answers, for a layer of its kind:

- `state_spec(dtypes)`: the `core.layers.LayerStateSpec` (the single S_kv definition);
- `prefill_attention_coeff`: its share of A = Σ n_q·(d_qk + d_v) (full-attention layers; for SWA layers
  the same quantity is kept separately because their cost is capped by the window);
- `decode_attention_coeff`: FLOPs per decode token per token of context (GQA 2·n_q·(d_qk + d_v);
  MLA with weight absorption 2·n_q·(kv_lora_rank + rope + kv_lora_rank));
- `params(hidden_size)`: the projection parameters (CATALOG.md §3.1's "standard shapes").

The formulas follow CATALOG.md §2 (state) and §3 (FLOPs). Element counts only; dtypes are applied in
`state_spec`, so one geometry serves BF16 and FP8 KV alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.core.layers import LayerKind, LayerStateSpec, LinearVariant


@dataclass(frozen=True, slots=True)
class StateDtypes:
    """Element types of a layer's state: KV cache, recurrent state, short-convolution state."""

    kv_dtype: str = "bf16"
    state_dtype: str = "fp32"
    conv_dtype: str = "bf16"


@dataclass(frozen=True, slots=True)
class GqaGeometry:
    """Grouped-query softmax attention, global or sliding-window (`window_tokens` set -> SWA)."""

    num_q_heads: int
    num_kv_heads: int
    head_dim_qk: int
    head_dim_v: int
    window_tokens: int | None = None
    has_output_gate: bool = False  # gated attention: q_proj also emits a per-head output gate

    @property
    def kind(self) -> LayerKind:
        return LayerKind.FULL_GQA if self.window_tokens is None else LayerKind.SWA

    @property
    def kv_elements_per_token(self) -> int:
        return self.num_kv_heads * (self.head_dim_qk + self.head_dim_v)

    def state_spec(self, dtypes: StateDtypes) -> LayerStateSpec:
        return LayerStateSpec(
            kind=self.kind,
            kv_elements_per_token=self.kv_elements_per_token,
            kv_dtype=dtypes.kv_dtype,
            window_tokens=self.window_tokens,
        )

    @property
    def prefill_attention_coeff(self) -> int:
        return self.num_q_heads * (self.head_dim_qk + self.head_dim_v)

    @property
    def decode_attention_coeff(self) -> int:
        return 2 * self.prefill_attention_coeff

    def params(self, hidden_size: int) -> int:
        q_out = self.num_q_heads * self.head_dim_qk
        gate_out = self.num_q_heads * self.head_dim_v if self.has_output_gate else 0
        kv_out = self.num_kv_heads * (self.head_dim_qk + self.head_dim_v)
        o_in = self.num_q_heads * self.head_dim_v
        return hidden_size * (q_out + gate_out + kv_out + o_in)


@dataclass(frozen=True, slots=True)
class MlaGeometry:
    """Multi-head latent attention (DeepSeek-V3 style); the cache holds kv_lora_rank + rope dims."""

    num_q_heads: int
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None

    @property
    def kind(self) -> LayerKind:
        return LayerKind.MLA

    @property
    def kv_elements_per_token(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    def state_spec(self, dtypes: StateDtypes) -> LayerStateSpec:
        return LayerStateSpec(
            kind=LayerKind.MLA, kv_elements_per_token=self.kv_elements_per_token, kv_dtype=dtypes.kv_dtype
        )

    @property
    def prefill_attention_coeff(self) -> int:
        # Non-absorbed prefill: per head d_qk = nope + rope, d_v = v_head_dim.
        return self.num_q_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)

    @property
    def decode_attention_coeff(self) -> int:
        # Absorbed decode: scores against the 576-wide latent, values from the 512-wide latent.
        return 2 * self.num_q_heads * (self.kv_elements_per_token + self.kv_lora_rank)

    def params(self, hidden_size: int) -> int:
        qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
        if self.q_lora_rank is None:
            q = hidden_size * self.num_q_heads * qk_head
        else:
            q = hidden_size * self.q_lora_rank + self.q_lora_rank * self.num_q_heads * qk_head
        kv_a = hidden_size * self.kv_elements_per_token
        kv_b = self.kv_lora_rank * self.num_q_heads * (self.qk_nope_head_dim + self.v_head_dim)
        o = self.num_q_heads * self.v_head_dim * hidden_size
        return q + kv_a + kv_b + o


@dataclass(frozen=True, slots=True)
class LinearGeometry:
    """A linear-attention / recurrent layer (GDN, KDA, Lightning, Mamba2) with optional short conv.

    State (CATALOG.md §2): recurrent `num_heads x head_dim_k x head_dim_v`; conv
    `(conv_kernel - 1) x (2·num_k_heads·head_dim_k + num_heads·head_dim_v)` (q, k and v convolved;
    KDA's 3·(k-1)·H·d is the same formula with num_k_heads = num_heads). `conv_kernel = 0` means none.
    Output gate: full-rank (GDN's z) unless `gate_rank` is set (KDA's low-rank f and g gates).
    """

    variant: LinearVariant
    num_heads: int
    num_k_heads: int
    head_dim_k: int
    head_dim_v: int
    conv_kernel: int = 0
    gate_rank: int | None = None

    @property
    def kind(self) -> LayerKind:
        return LayerKind.LINEAR

    @property
    def recurrent_elements(self) -> int:
        return self.num_heads * self.head_dim_k * self.head_dim_v

    @property
    def conv_channels(self) -> int:
        return 2 * self.num_k_heads * self.head_dim_k + self.num_heads * self.head_dim_v

    @property
    def conv_elements(self) -> int:
        return max(self.conv_kernel - 1, 0) * self.conv_channels

    def state_spec(self, dtypes: StateDtypes) -> LayerStateSpec:
        return LayerStateSpec(
            kind=LayerKind.LINEAR,
            fixed_state_elements=self.recurrent_elements,
            fixed_state_dtype=dtypes.state_dtype,
            conv_state_elements=self.conv_elements,
            conv_state_dtype=dtypes.conv_dtype,
            linear_variant=self.variant,
        )

    @property
    def prefill_attention_coeff(self) -> int:
        return 0

    @property
    def decode_attention_coeff(self) -> int:
        return 0

    @property
    def chunk_elements(self) -> int:
        """num_heads · (d_k + d_v): the per-token width of the chunked-prefill intra-chunk term."""
        return self.num_heads * (self.head_dim_k + self.head_dim_v)

    def params(self, hidden_size: int) -> int:
        qkv = hidden_size * self.conv_channels
        value_width = self.num_heads * self.head_dim_v
        o = value_width * hidden_size
        if self.gate_rank is None:
            gates = hidden_size * value_width + 2 * hidden_size * self.num_heads  # z gate + (a, b)
        else:
            low_rank = hidden_size * self.gate_rank + self.gate_rank * value_width
            gates = 2 * low_rank + hidden_size * self.num_heads  # f and g gates + beta
        conv = self.conv_channels * self.conv_kernel
        return qkv + o + gates + conv


MixerGeometry = GqaGeometry | MlaGeometry | LinearGeometry


@dataclass(frozen=True, slots=True)
class FfnGeometry:
    """The feed-forward blocks: SwiGLU, dense for the first `num_dense_layers` layers (or all when
    `num_experts` is 0), mixture-of-experts for the rest."""

    dense_intermediate: int = 0
    num_dense_layers: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    num_shared_experts: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def dense_layers(self, num_layers: int) -> int:
        return num_layers if not self.is_moe else min(self.num_dense_layers, num_layers)

    def layer_params(self, hidden_size: int, is_dense: bool) -> tuple[int, int]:
        """(total, active) parameters of one layer's FFN, router included."""
        if is_dense:
            dense = 3 * hidden_size * self.dense_intermediate
            return dense, dense
        expert = 3 * hidden_size * self.expert_intermediate
        shared = self.num_shared_experts * 3 * hidden_size * self.shared_intermediate
        router = hidden_size * self.num_experts
        total = self.num_experts * expert + shared + router
        active = self.experts_per_token * expert + shared + router
        return total, active
