"""Loading model architectures: `load_model(name_or_path)` and `list_models()`.

A catalog name is the file stem of `data/models/<name>.toml` (case-insensitive). Anything that ends
in `.toml` or contains a path separator is read as a file. The loader validates the file against
`catalog.model_schema`, expands the layout rules to one geometry per layer and builds a `ModelArch`.
Every problem raises `ConfigError` naming the file and line; unknown names raise `UnknownNameError`.

Layout expansion: each rule selects layers (`period`/`phase`: 0-based i with i % period == phase;
`indices`: 0-based list; `indices_1based`: 1-based list, as in Kimi-Linear's config) and assigns
them a named block. A layer claimed by two rules is an error; unclaimed layers take `default`, and
with no default every layer must be claimed.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from prfaas.catalog.geometry import (
    FfnGeometry,
    GqaGeometry,
    LinearGeometry,
    MixerGeometry,
    MlaGeometry,
    StateDtypes,
)
from prfaas.catalog.model import ModelArch
from prfaas.catalog.model_schema import (
    BLOCK_KINDS,
    SCHEMA_ID,
    Block,
    FfnSection,
    GqaBlock,
    LayoutRule,
    LinearBlock,
    MlaBlock,
    ModelFile,
    SwaBlock,
)
from prfaas.catalog.tomlfile import TomlDoc, convert, read_toml
from prfaas.core.errors import UnknownNameError
from prfaas.core.layers import DTYPE_BYTES, LinearVariant

MODELS_PACKAGE = "prfaas.catalog"
MODELS_DIR = "data/models"


def _models_dir() -> Path:
    return Path(str(resources.files(MODELS_PACKAGE).joinpath(MODELS_DIR)))


def list_models() -> list[str]:
    """Catalog names of every bundled model, sorted."""
    return sorted(p.stem for p in _models_dir().glob("*.toml"))


def model_path(name: str) -> Path:
    """The bundled file of a catalog model; unknown names list the known ones."""
    key = name.strip().lower()
    path = _models_dir() / f"{key}.toml"
    if not path.is_file():
        raise UnknownNameError("model", name, list_models())
    return path


def _is_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path


def load_model(name_or_path: str) -> ModelArch:
    """A model by catalog name (case-insensitive) or TOML path. Bundled models are parsed once."""
    if _is_path(name_or_path):
        return load_model_file(Path(name_or_path))
    return _load_bundled(model_path(name_or_path))


@cache
def _load_bundled(path: Path) -> ModelArch:
    arch = load_model_file(path)
    if arch.name != path.stem:
        raise read_toml(path).error("name", f"must equal the file name {path.stem!r}, got {arch.name!r}")
    return arch


def load_model_file(path: Path | str) -> ModelArch:
    """Parse and validate one model file."""
    doc = read_toml(path)
    spec = convert(doc.data, ModelFile, doc)
    if spec.schema != SCHEMA_ID:
        raise doc.error("schema", f"expected {SCHEMA_ID!r}, got {spec.schema!r}")
    if not spec.attention:
        raise doc.error("attention", "at least one [attention.<block>] table is required")
    blocks = {name: _block(doc, name, raw) for name, raw in spec.attention.items()}
    layer_blocks = _expand_layout(doc, spec, set(blocks))
    geometry = tuple(_geometry(doc, name, blocks[name]) for name in layer_blocks)
    dtypes = _dtypes(doc, spec)
    _check_dtype(doc, "model.weight_dtype", spec.model.weight_dtype)
    _check_unverified(doc, spec.unverified)
    ffn = _ffn(doc, spec.ffn, spec.params.compute_active)
    return ModelArch(
        name=spec.name,
        display_name=spec.display_name,
        hidden_size=spec.model.hidden_size,
        geometry=geometry,
        vocab_size=spec.model.vocab_size,
        max_position_tokens=spec.model.max_position_tokens,
        weight_dtype=spec.model.weight_dtype,
        total_params=spec.params.total,
        active_params=spec.params.active,
        ffn=ffn,
        explicit_compute_active_params=spec.params.compute_active,
        dtypes=dtypes,
        unverified_fields=tuple(spec.unverified),
        sources=spec.sources.strip(),
    )


def _block(doc: TomlDoc, name: str, raw: dict[str, object]) -> Block:
    prefix = f"attention.{name}"
    kind = raw.get("kind")
    if kind not in BLOCK_KINDS:
        got = "missing" if kind is None else repr(kind)
        raise doc.error(f"{prefix}.kind", f"unknown layer kind {got}; known: {', '.join(BLOCK_KINDS)}")
    return convert(raw, Block, doc, prefix)  # type: ignore[arg-type]


def _selected(doc: TomlDoc, index: int, rule: LayoutRule, num_layers: int) -> list[int]:
    prefix = f"layout.rule[{index}]"
    selectors = [rule.period is not None, rule.indices is not None, rule.indices_1based is not None]
    if sum(selectors) != 1:
        raise doc.error(prefix, "give exactly one selector: period (+ phase), indices or indices_1based")
    if rule.period is not None:
        phase = rule.phase or 0
        if phase >= rule.period:
            raise doc.error(f"{prefix}.phase", f"must be < period ({rule.period}), got {phase}")
        return [i for i in range(num_layers) if i % rule.period == phase]
    if rule.phase is not None:
        raise doc.error(f"{prefix}.phase", "phase only goes with period")
    key, offset = ("indices", 0) if rule.indices is not None else ("indices_1based", 1)
    chosen = [i - offset for i in (rule.indices if rule.indices is not None else rule.indices_1based or [])]
    bad = [i + offset for i in chosen if not 0 <= i < num_layers]
    if bad:
        raise doc.error(f"{prefix}.{key}", f"layer {bad[0]} out of range for {num_layers} layers")
    if len(set(chosen)) != len(chosen):
        raise doc.error(f"{prefix}.{key}", "lists a layer twice")
    return chosen


def _expand_layout(doc: TomlDoc, spec: ModelFile, block_names: set[str]) -> list[str]:
    """One block name per layer, from the layout rules and default."""
    num_layers = spec.model.num_layers
    assigned: list[str | None] = [None] * num_layers
    known = ", ".join(sorted(block_names))
    for index, rule in enumerate(spec.layout.rule):
        if rule.use not in block_names:
            raise doc.error(f"layout.rule[{index}].use", f"unknown block {rule.use!r}; known: {known}")
        for layer in _selected(doc, index, rule, num_layers):
            if assigned[layer] is not None:
                taken = assigned[layer]
                raise doc.error(f"layout.rule[{index}]", f"layer {layer} (0-based) is already {taken!r}")
            assigned[layer] = rule.use
    default = spec.layout.default
    if default is not None and default not in block_names:
        raise doc.error("layout.default", f"unknown block {default!r}; known: {known}")
    missing = [i for i, name in enumerate(assigned) if name is None]
    if missing and default is None:
        raise doc.error("layout", f"layers {missing[:8]} (0-based) match no rule and there is no default")
    return [name if name is not None else str(default) for name in assigned]


def _geometry(doc: TomlDoc, name: str, block: Block) -> MixerGeometry:
    if isinstance(block, GqaBlock | SwaBlock):
        window = block.window_tokens if isinstance(block, SwaBlock) else None
        return GqaGeometry(
            num_q_heads=block.num_q_heads,
            num_kv_heads=block.num_kv_heads,
            head_dim_qk=block.head_dim_qk,
            head_dim_v=block.head_dim_v,
            window_tokens=window,
            has_output_gate=block.output_gate,
        )
    if isinstance(block, MlaBlock):
        return MlaGeometry(
            num_q_heads=block.num_q_heads,
            kv_lora_rank=block.kv_lora_rank,
            qk_rope_head_dim=block.qk_rope_head_dim,
            qk_nope_head_dim=block.qk_nope_head_dim,
            v_head_dim=block.v_head_dim,
            q_lora_rank=block.q_lora_rank,
        )
    return _linear_geometry(doc, name, block)


def _linear_geometry(doc: TomlDoc, name: str, block: LinearBlock) -> LinearGeometry:
    variants = {v.value: v for v in LinearVariant}
    if block.variant not in variants:
        known = ", ".join(variants)
        message = f"unknown linear variant {block.variant!r}; known: {known}"
        raise doc.error(f"attention.{name}.variant", message)
    return LinearGeometry(
        variant=variants[block.variant],
        num_heads=block.num_heads,
        num_k_heads=block.num_k_heads if block.num_k_heads is not None else block.num_heads,
        head_dim_k=block.head_dim_k,
        head_dim_v=block.head_dim_v,
        conv_kernel=block.conv_kernel,
        gate_rank=block.gate_rank,
    )


def _check_dtype(doc: TomlDoc, key: str, value: str) -> None:
    if value not in DTYPE_BYTES:
        raise doc.error(key, f"unknown dtype {value!r}; known: {', '.join(DTYPE_BYTES)}")


def _dtypes(doc: TomlDoc, spec: ModelFile) -> StateDtypes:
    for key in ("kv", "state", "conv"):
        _check_dtype(doc, f"dtypes.{key}", getattr(spec.dtypes, key))
    return StateDtypes(kv_dtype=spec.dtypes.kv, state_dtype=spec.dtypes.state, conv_dtype=spec.dtypes.conv)


def _check_unverified(doc: TomlDoc, keys: list[str]) -> None:
    """Each unverified entry must name a key that the file defines."""
    for index, key in enumerate(keys):
        if _lookup_dotted(doc.data, key) is None:
            raise doc.error(f"unverified[{index}]", f"names {key!r}, which this file does not define")


def _lookup_dotted(data: object, key: str) -> object | None:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _ffn(doc: TomlDoc, ffn: FfnSection | None, compute_active: float | None) -> FfnGeometry | None:
    if (ffn is None) == (compute_active is None):
        raise doc.error("ffn", "give exactly one of [ffn] (params recomputed) or params.compute_active")
    if ffn is None:
        return None
    if ffn.num_experts == 0 and ffn.dense_intermediate == 0:
        raise doc.error("ffn", "a dense model needs dense_intermediate > 0")
    if ffn.num_experts > 0 and not 0 < ffn.experts_per_token <= ffn.num_experts:
        raise doc.error("ffn.experts_per_token", f"must be in 1..num_experts ({ffn.num_experts})")
    if ffn.num_experts > 0 and ffn.expert_intermediate == 0:
        raise doc.error("ffn.expert_intermediate", "an MoE model needs expert_intermediate > 0")
    return FfnGeometry(
        dense_intermediate=ffn.dense_intermediate,
        num_dense_layers=ffn.first_dense_layers,
        num_experts=ffn.num_experts,
        experts_per_token=ffn.experts_per_token,
        num_shared_experts=ffn.num_shared_experts,
        expert_intermediate=ffn.expert_intermediate,
        shared_intermediate=ffn.shared_intermediate,
    )
