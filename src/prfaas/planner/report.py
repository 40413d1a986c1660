"""Plain-data views of planner results: the JSON contract and human-readable tables.

JSON contract of `prfaas plan --json` (tests and tools read it): one object with a key per
configuration (`prfaas_pd`, `homogeneous`, `naive`), each holding `threshold_tokens`, `n_prfaas`,
`n_p`, `n_d`, `theta_prfaas`, `theta_pd_p`, `theta_pd_d`, `lambda_max`, `offload_fraction`,
`egress_gbps`, `binding_stage` (+ extras); top-level `speedup_vs_homogeneous`, `speedup_vs_naive`,
`assumptions` (list of {name, value, source}).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prfaas.planner.model import PlanPoint, Stage


@dataclass(frozen=True, slots=True)
class Assumption:
    """A derived or calibrated input: its value and where it came from."""

    name: str
    value: float | int | str
    source: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "source": self.source}


def point_to_json(point: PlanPoint) -> dict[str, object]:
    """The per-configuration object of the JSON contract."""
    return {
        "threshold_tokens": _round(point.threshold_tokens),
        "n_prfaas": point.n_prfaas if point.n_prfaas > 0 else None,
        "n_p": point.n_p if point.n_p > 0 else None,
        "n_d": point.n_d,
        "theta_prfaas": _round(point.theta_prfaas),
        "theta_pd_p": _round(point.theta_pd_p),
        "theta_pd_d": _round(point.theta_pd_d),
        "lambda_max": _round(point.lambda_max),
        "offload_fraction": _round(point.offload_fraction),
        "egress_gbps": _round(point.egress_gbps),
        "binding_stage": point.binding_stage.value,
        "stage_limits_rps": {stage.value: _round(cap) for stage, cap in point.stage_limits},
        "headroom": {stage.value: _round(point.headroom(stage)) for stage, _ in point.stage_limits},
        "l_long_tokens": _round(point.l_long_tokens),
        "l_short_tokens": _round(point.l_short_tokens),
        "theta_prfaas_compute": _round(point.theta_prfaas_compute),
        "theta_prfaas_egress": _round(point.theta_prfaas_egress),
    }


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None:
        return None
    if value == float("inf"):
        return None
    return round(float(value), digits)


def binding_sentence(point: PlanPoint) -> str:
    """'pd_prefill binds at 3.24 req/s; prfaas_prefill has +1% headroom, pd_decode +21%'."""
    parts = []
    for stage, _cap in point.stage_limits[1:]:
        head = point.headroom(stage)
        if head is not None:
            parts.append(f"{stage.value} +{head * 100:.1f}%")
    rest = f"; headroom: {', '.join(parts)}" if parts else ""
    return f"{point.binding_stage.value} binds at {point.lambda_max:.3f} req/s{rest}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body])


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, Stage):
        return value.value
    return str(value)
