"""The TOML schema of a model file (`data/models/<name>.toml`), as msgspec structs.

These structs only describe the file; `catalog.models` turns a validated file into a `ModelArch`.
Bounds that msgspec can check (positive counts, ranges) are declared here with `Meta`; the rest
(layout coverage, block names, dtype names) is checked by the loader. See catalog/README.md.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

SCHEMA_ID = "prfaas.model/1"

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ModelSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    num_layers: Positive
    hidden_size: Positive
    vocab_size: Positive
    max_position_tokens: Positive
    weight_dtype: str


class ParamsSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    total: PositiveFloat
    active: PositiveFloat
    compute_active: PositiveFloat | None = None


class DtypesSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kv: str = "bf16"
    state: str = "fp32"
    conv: str = "bf16"


class GqaBlock(msgspec.Struct, forbid_unknown_fields=True, tag_field="kind", tag="full_gqa", frozen=True):
    num_q_heads: Positive
    num_kv_heads: Positive
    head_dim_qk: Positive
    head_dim_v: Positive
    output_gate: bool = False


class SwaBlock(msgspec.Struct, forbid_unknown_fields=True, tag_field="kind", tag="swa", frozen=True):
    num_q_heads: Positive
    num_kv_heads: Positive
    head_dim_qk: Positive
    head_dim_v: Positive
    window_tokens: Positive
    output_gate: bool = False


class MlaBlock(msgspec.Struct, forbid_unknown_fields=True, tag_field="kind", tag="mla", frozen=True):
    num_q_heads: Positive
    kv_lora_rank: Positive
    qk_rope_head_dim: NonNegative
    qk_nope_head_dim: NonNegative
    v_head_dim: Positive
    q_lora_rank: Positive | None = None


class LinearBlock(msgspec.Struct, forbid_unknown_fields=True, tag_field="kind", tag="linear", frozen=True):
    variant: str
    num_heads: Positive
    head_dim_k: Positive
    head_dim_v: Positive
    num_k_heads: Positive | None = None
    conv_kernel: NonNegative = 0
    gate_rank: Positive | None = None


Block = GqaBlock | SwaBlock | MlaBlock | LinearBlock
BLOCK_KINDS = ("full_gqa", "swa", "mla", "linear")


class LayoutRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Assigns the block `use` to the layers it selects (exactly one selector)."""

    use: str
    period: Positive | None = None
    phase: NonNegative | None = None
    indices: list[NonNegative] | None = None
    indices_1based: list[Positive] | None = None


class LayoutSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    default: str | None = None
    rule: list[LayoutRule] = []


class FfnSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    dense_intermediate: NonNegative = 0
    first_dense_layers: NonNegative = 0
    num_experts: NonNegative = 0
    experts_per_token: NonNegative = 0
    num_shared_experts: NonNegative = 0
    expert_intermediate: NonNegative = 0
    shared_intermediate: NonNegative = 0


class ModelFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Top level. `attention` is checked per block by the loader (so errors name the block)."""

    schema: str
    name: str
    display_name: str
    model: ModelSection
    params: ParamsSection
    attention: dict[str, dict[str, object]]
    layout: LayoutSection
    sources: str = ""
    unverified: list[str] = []
    dtypes: DtypesSection = DtypesSection()
    ffn: FfnSection | None = None
