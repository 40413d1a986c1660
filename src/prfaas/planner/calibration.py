"""Roofline calibrations from the paper's measurements, for planning with a catalog architecture.

A model measured in the paper's Table 3 (Phi_kv on one 8 x H200 instance) gives four implied prefill
times T(l) = S_kv(l) / Phi_kv(l); `perf.arch.fit_arch_roofline` fits T0 and MFU to them. A model the
paper did not measure gets the median T0 and MFU of the six fits (documented, data-derived).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache

from prfaas.catalog import load_accelerator
from prfaas.catalog.model import ModelArch
from prfaas.catalog.models import load_model
from prfaas.catalog.paper import load_phi_kv_table
from prfaas.core.units import BITS_PER_BYTE, GBPS_BITS_PER_S
from prfaas.perf.arch import fit_arch_roofline, s_kv_bytes
from prfaas.perf.roofline import RooflineParams


@dataclass(frozen=True, slots=True)
class Calibration:
    params: RooflineParams
    source: str
    max_abs_rel_error: float | None  # of the fit to its own points; None for the pooled default


@lru_cache(maxsize=32)
def table3_calibration(model_name: str) -> Calibration | None:
    """T0 and MFU fitted to Table 3's implied prefill times for one model; None if Table 3 lacks it."""
    table = load_phi_kv_table()
    arch = load_model(model_name)
    if arch.name not in table.model_names:
        return None
    points = [(float(r.length_tokens), s_kv_bytes(arch, r.length_tokens) * BITS_PER_BYTE / (r.phi_kv_gbps *
                                                                                            GBPS_BITS_PER_S))
              for r in table.for_model(arch.name)]
    fit = fit_arch_roofline(arch, points, load_accelerator(table.gpu_name), table.gpus_per_instance)
    return Calibration(fit.params, f"fit to Table 3 implied T(l) on {table.gpus_per_instance}x{table.gpu_name}",
                       fit.max_abs_rel_error)


@lru_cache(maxsize=1)
def pooled_calibration() -> Calibration:
    """Median T0 and MFU over every Table 3 model's fit."""
    fits = [table3_calibration(name) for name in load_phi_kv_table().model_names]
    params = [f.params for f in fits if f is not None]
    return Calibration(RooflineParams(statistics.median(p.t0_s for p in params),
                                      statistics.median(p.mfu for p in params)),
                       f"median of {len(params)} Table 3 fits", None)


def calibration_for(arch: ModelArch) -> Calibration:
    return table3_calibration(arch.name) or pooled_calibration()
