"""Accelerators: memory, bandwidth, dense peak FLOPS and prices, from `data/accelerators.toml`.

`load_accelerator(name)` (case-insensitive) and `list_accelerators()`; `load_accelerators_file(path)`
reads another file with the same schema. Peaks are dense Tensor-Core numbers (CATALOG.md §5.1);
prices are inputs, `None` where unknown (§5.2). Files use datasheet units (decimal GB, TB/s, TFLOP/s);
the dataclass holds SI base units (bytes, bytes/s, FLOP/s).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from prfaas.catalog.tomlfile import convert, read_toml
from prfaas.core.errors import ConfigError, UnknownNameError
from prfaas.core.units import TFLOPS

SCHEMA_ID = "prfaas.accelerators/1"
_GB_BYTES = 1e9
_TB_BYTES = 1e12

Positive = Annotated[float, msgspec.Meta(gt=0)]


class ComputePrecision(enum.Enum):
    """Tensor-Core input precision a cost model assumes."""

    BF16 = "bf16"
    FP8 = "fp8"
    FP4 = "fp4"


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One GPU model. FLOPS are dense per-GPU peaks; `None` means the format is unsupported/unknown."""

    name: str
    display_name: str
    memory_bytes: float
    mem_bw_bytes_per_s: float
    bf16_flops: float
    fp8_flops: float | None
    fp4_flops: float | None
    nic_gbps: float
    price_usd: float | None
    price_usd_per_hour: float | None
    notes: str = ""

    def peak_flops(self, precision: ComputePrecision = ComputePrecision.BF16) -> float:
        """Dense peak FLOP/s per GPU at `precision`; ConfigError if this GPU has none."""
        value = {
            ComputePrecision.BF16: self.bf16_flops,
            ComputePrecision.FP8: self.fp8_flops,
            ComputePrecision.FP4: self.fp4_flops,
        }[precision]
        if value is None:
            raise ConfigError(f"accelerator {self.name!r} has no {precision.value} tensor-core peak")
        return value

    @property
    def ridge_flops_per_byte(self) -> float:
        """BF16 roofline ridge point: FLOPs per byte of HBM traffic at which compute and memory balance."""
        return self.bf16_flops / self.mem_bw_bytes_per_s


class _AcceleratorEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    display_name: str
    memory_gb: Positive
    mem_bw_tb_per_s: Positive
    bf16_tflops: Positive
    nic_gbps: Positive
    fp8_tflops: Positive | None = None
    fp4_tflops: Positive | None = None
    price_usd: Positive | None = None
    price_usd_per_hour: Positive | None = None
    notes: str = ""


def _tflops(value: float | None) -> float | None:
    return None if value is None else value * TFLOPS


def _entry_to_accelerator(name: str, entry: _AcceleratorEntry) -> Accelerator:
    return Accelerator(
        name=name,
        display_name=entry.display_name,
        memory_bytes=entry.memory_gb * _GB_BYTES,
        mem_bw_bytes_per_s=entry.mem_bw_tb_per_s * _TB_BYTES,
        bf16_flops=entry.bf16_tflops * TFLOPS,
        fp8_flops=_tflops(entry.fp8_tflops),
        fp4_flops=_tflops(entry.fp4_tflops),
        nic_gbps=entry.nic_gbps,
        price_usd=entry.price_usd,
        price_usd_per_hour=entry.price_usd_per_hour,
        notes=entry.notes,
    )


def load_accelerators_file(path: Path | str) -> dict[str, Accelerator]:
    """Every accelerator in one file, keyed by lower-case name (file order)."""
    doc = read_toml(path)
    schema = doc.data.get("schema")
    if schema != SCHEMA_ID:
        raise doc.error("schema", f"expected {SCHEMA_ID!r}, got {schema!r}")
    result: dict[str, Accelerator] = {}
    for name, raw in doc.data.items():
        if name == "schema":
            continue
        if not isinstance(raw, dict):
            raise doc.error(name, "expected a table [<gpu-name>]")
        if name != name.lower():
            raise doc.error(name, "accelerator names must be lower case")
        result[name] = _entry_to_accelerator(name, convert(raw, _AcceleratorEntry, doc, name))
    if not result:
        raise doc.error("", "no accelerators defined")
    return result


@cache
def _bundled() -> dict[str, Accelerator]:
    path = Path(str(resources.files("prfaas.catalog").joinpath("data/accelerators.toml")))
    return load_accelerators_file(path)


def list_accelerators() -> list[str]:
    """Names of the bundled accelerators, sorted."""
    return sorted(_bundled())


def load_accelerator(name: str) -> Accelerator:
    """A bundled accelerator by name (case-insensitive); unknown names list the known ones."""
    found = _bundled().get(name.strip().lower())
    if found is None:
        raise UnknownNameError("accelerator", name, list(_bundled()))
    return found
