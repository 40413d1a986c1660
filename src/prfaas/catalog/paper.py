"""The paper's measured numbers as data: Table 5 (internal 1T profile) and Table 3 (Φ_kv per model).

- `load_paper_profile_table()` -> `PaperProfileTable`: length -> S_kv (MiB), T_prefill (s), Φ_kv (Gbps)
  for the internal 1T hybrid on one 8×H200 instance. `perf.measured` turns these rows into a cost model.
- `load_phi_kv_table()` -> `PhiKvTable`: Φ_kv (Gbps) at 1K/8K/32K/128K for six catalog models.

Both loaders check the files: rows sorted by length, positive values, and (Table 5) Φ_kv consistent with
S_kv / T_prefill within the table's rounding (Eq. 1, decimal Gbps with binary MiB, which reproduces
arXiv 2604.15039 Table 5).
Table 3 keys must be catalog model names.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from prfaas.catalog.accelerators import list_accelerators
from prfaas.catalog.models import list_models
from prfaas.catalog.tomlfile import TomlDoc, convert, read_toml
from prfaas.core.errors import UnknownNameError
from prfaas.core.units import MIB_BYTES, bytes_per_s_to_gbps

PROFILE_SCHEMA_ID = "prfaas.paper_profile/1"
PHI_SCHEMA_ID = "prfaas.phi_kv_table/1"
# Φ_kv printed in Table 5 vs S_kv / T recomputed: T has 2-3 significant digits, so allow 2%.
PHI_CONSISTENCY_REL_TOL = 0.02

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


@dataclass(frozen=True, slots=True)
class PaperProfileRow:
    """One measured length of the paper's Table 5."""

    length_tokens: int
    s_kv_mib: float
    t_prefill_s: float
    phi_kv_gbps: float

    @property
    def s_kv_bytes(self) -> float:
        return self.s_kv_mib * MIB_BYTES


@dataclass(frozen=True, slots=True)
class PaperProfileTable:
    """A measured prefill profile from the paper, with where and on what it was measured."""

    name: str
    model_description: str
    gpu_name: str
    gpus_per_instance: int
    source: str
    rows: tuple[PaperProfileRow, ...]


@dataclass(frozen=True, slots=True)
class PhiKvRow:
    model_name: str
    length_tokens: int
    phi_kv_gbps: float


@dataclass(frozen=True, slots=True)
class PhiKvTable:
    """Table 3: Φ_kv of one instance per (model, length)."""

    gpu_name: str
    gpus_per_instance: int
    source: str
    lengths_tokens: tuple[int, ...]
    rows: tuple[PhiKvRow, ...]

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(row.model_name for row in self.rows))

    def for_model(self, model_name: str) -> tuple[PhiKvRow, ...]:
        """Rows of one model in length order; unknown names list the known ones."""
        rows = tuple(row for row in self.rows if row.model_name == model_name.lower())
        if not rows:
            raise UnknownNameError("model in Phi_kv table", model_name, self.model_names)
        return rows

    def phi_kv_gbps(self, model_name: str, length_tokens: int) -> float:
        for row in self.for_model(model_name):
            if row.length_tokens == length_tokens:
                return row.phi_kv_gbps
        known = [str(x) for x in self.lengths_tokens]
        raise UnknownNameError("length in Phi_kv table", str(length_tokens), known)


class _ProfileRow(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    length_tokens: PositiveInt
    s_kv_mib: PositiveFloat
    t_prefill_s: PositiveFloat
    phi_kv_gbps: PositiveFloat


class _ProfileFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    schema: str
    name: str
    model_description: str
    gpu: str
    gpus_per_instance: PositiveInt
    source: str
    row: list[_ProfileRow]


class _PhiFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    schema: str
    gpu: str
    gpus_per_instance: PositiveInt
    source: str
    lengths_tokens: list[PositiveInt]
    phi_kv_gbps: dict[str, list[PositiveFloat]]


def _data_path(filename: str) -> Path:
    return Path(str(resources.files("prfaas.catalog").joinpath(f"data/paper/{filename}")))


def _check_common(doc: TomlDoc, schema: str, expected: str, gpu: str) -> None:
    if schema != expected:
        raise doc.error("schema", f"expected {expected!r}, got {schema!r}")
    if gpu.lower() not in list_accelerators():
        raise doc.error("gpu", f"unknown accelerator {gpu!r}; known: {', '.join(list_accelerators())}")


def _check_increasing(doc: TomlDoc, key: str, lengths: list[int]) -> None:
    for i in range(1, len(lengths)):
        if lengths[i] <= lengths[i - 1]:
            raise doc.error(key.format(i=i), "lengths must be strictly increasing")


def load_paper_profile_table(path: Path | str | None = None) -> PaperProfileTable:
    """Table 5 (or another file with the same schema)."""
    doc = read_toml(path if path is not None else _data_path("internal-1t-table5.toml"))
    spec = convert(doc.data, _ProfileFile, doc)
    _check_common(doc, spec.schema, PROFILE_SCHEMA_ID, spec.gpu)
    if not spec.row:
        raise doc.error("row", "at least one [[row]] is required")
    _check_increasing(doc, "row[{i}].length_tokens", [r.length_tokens for r in spec.row])
    for i, r in enumerate(spec.row):
        implied = bytes_per_s_to_gbps(r.s_kv_mib * MIB_BYTES / r.t_prefill_s)
        if abs(implied - r.phi_kv_gbps) > PHI_CONSISTENCY_REL_TOL * r.phi_kv_gbps:
            message = f"{r.phi_kv_gbps} disagrees with S_kv/T = {implied:.3f} Gbps"
            raise doc.error(f"row[{i}].phi_kv_gbps", message)
    rows = tuple(PaperProfileRow(r.length_tokens, r.s_kv_mib, r.t_prefill_s, r.phi_kv_gbps) for r in spec.row)
    return PaperProfileTable(
        name=spec.name,
        model_description=spec.model_description,
        gpu_name=spec.gpu.lower(),
        gpus_per_instance=spec.gpus_per_instance,
        source=spec.source,
        rows=rows,
    )


def load_phi_kv_table(path: Path | str | None = None) -> PhiKvTable:
    """Table 3 (or another file with the same schema)."""
    doc = read_toml(path if path is not None else _data_path("phi-kv-table3.toml"))
    spec = convert(doc.data, _PhiFile, doc)
    _check_common(doc, spec.schema, PHI_SCHEMA_ID, spec.gpu)
    _check_increasing(doc, "lengths_tokens", spec.lengths_tokens)
    known = list_models()
    rows: list[PhiKvRow] = []
    for model_name, values in spec.phi_kv_gbps.items():
        key = f"phi_kv_gbps.{model_name}"
        if model_name not in known:
            raise doc.error(key, f"unknown model {model_name!r}; known: {', '.join(known)}")
        if len(values) != len(spec.lengths_tokens):
            raise doc.error(key, f"has {len(values)} values for {len(spec.lengths_tokens)} lengths")
        rows.extend(PhiKvRow(model_name, n, v) for n, v in zip(spec.lengths_tokens, values, strict=True))
    return PhiKvTable(
        gpu_name=spec.gpu.lower(),
        gpus_per_instance=spec.gpus_per_instance,
        source=spec.source,
        lengths_tokens=tuple(spec.lengths_tokens),
        rows=tuple(rows),
    )
