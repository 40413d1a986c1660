"""`ModelArch`: one model's decoder as data, with the coefficients the cost models need.

A `ModelArch` is built from per-layer geometry (`catalog.geometry`) and the state dtypes. Everything
else is derived once, at construction, and never written back:

- `layers`: one `core.layers.LayerStateSpec` per decoder layer (S_kv comes from these only);
- `attention_flops_coeff` (A): Σ over full-attention layers (GQA and MLA) of n_q·(d_qk + d_v);
  prefill attention FLOPs for S new tokens on c cached ones = A·S² + 2·A·S·c (CATALOG.md §3);
- `decode_attention_coeff`: decode attention FLOPs per token of context (GQA 2·n_q·(d_qk+d_v),
  MLA absorbed 2·n_q·(576 + 512));
- `swa_terms`: (A_swa, window) per distinct window, whose cost is capped at the window;
- `linear_recurrent_elements` and `linear_chunk_elements`: Σ H·d_k·d_v and Σ H·(d_k + d_v) over the
  linear layers, for the approximate recurrent FLOP terms of CATALOG.md §3;
- `compute_active_params` (N, linear FLOPs = 2N per token; excludes the input embedding) and the
  recomputed `computed_total_params` when the FFN geometry is known.

`with_dtypes` re-types the state (e.g. FP8 KV) and returns a new `ModelArch`; nothing is mutated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prfaas.catalog.geometry import FfnGeometry, GqaGeometry, LinearGeometry, MixerGeometry, StateDtypes
from prfaas.core.layers import LayerKind, LayerStateSpec, dtype_bytes


@dataclass(frozen=True, slots=True)
class SwaTerm:
    """SWA layers sharing one window: A_swa = Σ n_q·(d_qk + d_v) and the window in tokens."""

    coeff: int
    window_tokens: int


@dataclass(frozen=True, slots=True)
class ParamCounts:
    """Recomputed parameter counts: total, active (top-k + shared + router, embeddings included) and
    compute-active N (active minus the input embedding lookup)."""

    total: float
    active: float
    compute_active: float


@dataclass(frozen=True, slots=True)
class ModelArch:
    """A model's decoder: geometry in, derived state specs and FLOP coefficients out (see module doc)."""

    name: str
    display_name: str
    hidden_size: int
    geometry: tuple[MixerGeometry, ...]
    vocab_size: int
    max_position_tokens: int
    weight_dtype: str
    total_params: float
    active_params: float
    ffn: FfnGeometry | None = None
    explicit_compute_active_params: float | None = None
    dtypes: StateDtypes = field(default_factory=StateDtypes)
    unverified_fields: tuple[str, ...] = ()
    sources: str = ""
    layers: tuple[LayerStateSpec, ...] = field(init=False)
    attention_flops_coeff: int = field(init=False)
    decode_attention_coeff: int = field(init=False)
    swa_terms: tuple[SwaTerm, ...] = field(init=False)
    linear_recurrent_elements: int = field(init=False)
    linear_chunk_elements: int = field(init=False)
    param_counts: ParamCounts | None = field(init=False)
    compute_active_params: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.geometry:
            raise ValueError(f"{self.name}: a model needs at least one layer")
        if (self.ffn is None) == (self.explicit_compute_active_params is None):
            raise ValueError(f"{self.name}: give exactly one of ffn geometry or compute-active params")
        dtype_bytes(self.weight_dtype)
        object.__setattr__(self, "layers", tuple(g.state_spec(self.dtypes) for g in self.geometry))
        full = [g for g in self.geometry if not isinstance(g, LinearGeometry) and g.kind is not LayerKind.SWA]
        object.__setattr__(self, "attention_flops_coeff", sum(g.prefill_attention_coeff for g in full))
        object.__setattr__(self, "decode_attention_coeff", sum(g.decode_attention_coeff for g in full))
        object.__setattr__(self, "swa_terms", _swa_terms(self.geometry))
        linear = [g for g in self.geometry if isinstance(g, LinearGeometry)]
        object.__setattr__(self, "linear_recurrent_elements", sum(g.recurrent_elements for g in linear))
        object.__setattr__(self, "linear_chunk_elements", sum(g.chunk_elements for g in linear))
        counts = None if self.ffn is None else _param_counts(self)
        object.__setattr__(self, "param_counts", counts)
        n = counts.compute_active if counts is not None else self.explicit_compute_active_params
        assert n is not None
        object.__setattr__(self, "compute_active_params", float(n))

    @property
    def num_layers(self) -> int:
        return len(self.geometry)

    def count(self, kind: LayerKind) -> int:
        """Number of decoder layers of one kind."""
        return sum(1 for spec in self.layers if spec.kind is kind)

    @property
    def weight_bytes_per_param(self) -> int:
        return dtype_bytes(self.weight_dtype)

    @property
    def computed_total_params(self) -> float | None:
        return None if self.param_counts is None else self.param_counts.total

    def with_dtypes(
        self, *, kv_dtype: str | None = None, state_dtype: str | None = None, conv_dtype: str | None = None
    ) -> ModelArch:
        """A copy whose layer specs use the given KV / recurrent-state / conv-state dtypes."""
        dtypes = StateDtypes(
            kv_dtype=kv_dtype or self.dtypes.kv_dtype,
            state_dtype=state_dtype or self.dtypes.state_dtype,
            conv_dtype=conv_dtype or self.dtypes.conv_dtype,
        )
        for value in (dtypes.kv_dtype, dtypes.state_dtype, dtypes.conv_dtype):
            dtype_bytes(value)
        return dataclasses.replace(self, dtypes=dtypes)


def _swa_terms(geometry: tuple[MixerGeometry, ...]) -> tuple[SwaTerm, ...]:
    by_window: dict[int, int] = {}
    for g in geometry:
        if isinstance(g, GqaGeometry) and g.window_tokens is not None:
            by_window[g.window_tokens] = by_window.get(g.window_tokens, 0) + g.prefill_attention_coeff
    return tuple(SwaTerm(coeff=c, window_tokens=w) for w, c in sorted(by_window.items()))


def _param_counts(arch: ModelArch) -> ParamCounts:
    """CATALOG.md §3.1: SwiGLU FFNs, standard projections, untied embeddings; norms are ignored."""
    assert arch.ffn is not None
    hidden = arch.hidden_size
    mixer = sum(g.params(hidden) for g in arch.geometry)
    num_dense = arch.ffn.dense_layers(arch.num_layers)
    dense_total, dense_active = arch.ffn.layer_params(hidden, is_dense=True)
    moe_total, moe_active = arch.ffn.layer_params(hidden, is_dense=False) if arch.ffn.is_moe else (0, 0)
    num_moe = arch.num_layers - num_dense
    embedding = arch.vocab_size * hidden
    head = embedding
    total = mixer + num_dense * dense_total + num_moe * moe_total + embedding + head
    active = mixer + num_dense * dense_active + num_moe * moe_active + embedding + head
    return ParamCounts(total=float(total), active=float(active), compute_active=float(active - embedding))
