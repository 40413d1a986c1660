"""`prfaas plan --topology`: one run over a topology (optimum + baselines, optionally sizing) as JSON and text.

JSON contract: `scale` (Lambda, the multiple of the traffic mix served), `total_rps`, `regions` (per PD
cluster: threshold_tokens, n_p, n_d, offload_fraction, served_rps, offloaded_rps, local_binding),
`prfaas` (per PrfaaS cluster: served_rps, utilisation), `links` (per link: offloaded_rps, egress_gbps,
capacity_gbps, utilisation), `binding` (constraints with a positive shadow price), `baselines`
({alone, dedicated, naive_split}: scale), `gain_vs` (same keys: scale / baseline scale), `gpus`, `method`,
`assumptions`; with sizing, `sizing` ({budget_instances, sites, best_instances, rows: [{instances, scale}],
min_budget}).
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.planner.model import LengthMode
from prfaas.planner.multi import MultiPlan, optimize_multi
from prfaas.planner.multi_baselines import alone_scale, dedicated_plan, naive_split
from prfaas.planner.multi_case import MultiCase
from prfaas.planner.multi_size import SizingResult, size_prfaas
from prfaas.planner.report import format_table


@dataclass(frozen=True, slots=True)
class MultiRun:
    case: MultiCase
    mode: LengthMode
    plan: MultiPlan
    alone: float
    dedicated: MultiPlan
    naive: float
    sizing: SizingResult | None

    def gain(self, baseline: float) -> float | None:
        return self.plan.scale / baseline if baseline > 0 else None

    def to_json(self) -> dict[str, object]:
        p = self.plan
        base = {"alone": self.alone, "dedicated": self.dedicated.scale, "naive_split": self.naive}
        out: dict[str, object] = {
            "scale": _r(p.scale), "total_rps": _r(p.total_rps),
            "offered_traffic_rps": ({r.name: r.traffic_rps for r in self.case.topology.pd}
                                    if self.case.topology.has_traffic else None),
            "regions": [{"name": r.name, "threshold_tokens": _r(r.threshold_tokens), "n_p": r.n_p, "n_d": r.n_d,
                         "offload_fraction": _r(r.offload_fraction), "served_rps": _r(r.served_rps),
                         "offloaded_rps": _r(r.offloaded_rps), "local_binding": r.local_binding}
                        for r in p.regions],
            "prfaas": [{"name": s.name, "instances": s.instances, "served_rps": _r(s.served_rps),
                        "utilisation": _r(s.utilisation)} for s in p.sites],
            "links": [{"link_id": lk.link_id, "offloaded_rps": _r(lk.offloaded_rps), "egress_gbps": _r(lk.egress_gbps),
                       "capacity_gbps": lk.capacity_gbps, "utilisation": _r(lk.utilisation)} for lk in p.links],
            "binding": list(p.binding),
            "baselines": {k: _r(v) for k, v in base.items()},
            "gain_vs": {k: _r(self.gain(v)) for k, v in base.items()},
            "gpus": self.case.topology.num_gpus,
            "method": {"mode": self.mode.value, "exhaustive": p.exhaustive, "lps_solved": p.num_lps},
            "assumptions": [a.to_json() for a in self.case.assumptions],
        }
        if self.sizing is not None:
            s = self.sizing
            out["sizing"] = {"budget_instances": s.budget_instances, "sites": list(s.sites),
                             "best_instances": dict(zip(s.sites, s.rows[0].instances, strict=True)),
                             "rows": [{"instances": list(r.instances), "scale": _r(r.scale)} for r in s.rows],
                             "min_budget": s.min_budget}
        return out


def run_multi(case: MultiCase, mode: LengthMode = LengthMode.REPRESENTATIVE, *, size_budget: int | None = None,
              size_step: int = 1) -> MultiRun:
    """Optimum, the three baselines and (with a budget) the sizing answer."""
    plan = optimize_multi(case, mode)
    sizing = size_prfaas(case, size_budget, mode, step=size_step) if size_budget is not None else None
    return MultiRun(case, mode, plan, alone_scale(case, mode), dedicated_plan(case, mode),
                    naive_split(case, mode).scale, sizing)


def render_multi(run: MultiRun) -> str:
    p, topo = run.plan, run.case.topology
    traffic = "traffic_rps" if topo.has_traffic else "weights = PD instances"
    lines = [f"PrfaaS multi-site planner ({run.mode.value} lengths): {len(topo.prfaas)} PrfaaS x {len(topo.pd)} PD "
             f"clusters, {topo.num_gpus} GPUs", "",
             f"Λ = {p.scale:.3f} x the traffic mix ({traffic}); {p.total_rps:.3f} req/s in total", ""]
    lines.append(format_table(
        ["PD region", "t (tokens)", "N_p/N_d", "offload", "served req/s", "offloaded req/s", "local binding"],
        [[r.name, f"{r.threshold_tokens:,.0f}", f"{r.n_p}/{r.n_d}", f"{r.offload_fraction * 100:.1f}%",
          r.served_rps, r.offloaded_rps, r.local_binding] for r in p.regions]))
    lines.append("")
    lines.append(format_table(["PrfaaS cluster", "instances", "served req/s", "utilisation"],
                              [[s.name, s.instances, s.served_rps, f"{s.utilisation * 100:.1f}%"] for s in p.sites]))
    lines.append("")
    lines.append(format_table(["link", "offloaded req/s", "egress Gbps", "capacity Gbps", "utilisation"],
                              [[lk.link_id, lk.offloaded_rps, lk.egress_gbps, lk.capacity_gbps,
                                f"{lk.utilisation * 100:.1f}%"] for lk in p.links]))
    lines += ["", f"binding: {', '.join(p.binding) or '-'}"]
    for label, scale in (("each PD cluster alone (no PrfaaS)", run.alone),
                         ("per-region PrfaaS clusters (dedicated)", run.dedicated.scale),
                         ("one shared pool, naive split", run.naive)):
        gain = run.gain(scale)
        lines.append(f"vs {label}: Λ = {scale:.3f}, gain {gain:.2f}x" if gain is not None
                     else f"vs {label}: Λ = 0")
    how = "every threshold combination of the grid" if p.exhaustive else "coordinate ascent over thresholds"
    lines.append(f"method: {how} + exact LP assignment ({p.num_lps} LPs)")
    if run.sizing is not None:
        s = run.sizing
        lines += ["", f"sizing: {s.budget_instances} PrfaaS instances over {', '.join(s.sites)}"]
        lines.append(format_table([*s.sites, "Λ"], [[*r.instances, r.scale] for r in s.rows[:10]]))
        best = ", ".join(f"{name} {n}" for name, n in zip(s.sites, s.rows[0].instances, strict=True))
        lines.append(f"build: {best} (Λ = {s.rows[0].scale:.3f}; refined {s.best.scale:.3f})")
        if topo.has_traffic:
            lines.append(f"smallest budget serving the offered traffic: "
                         f"{s.min_budget if s.min_budget is not None else f'more than {s.budget_instances}'}")
    lines += ["", "assumptions:"]
    lines += [f"  {a.name} = {a.value}  ({a.source})" for a in run.case.assumptions]
    return "\n".join(lines)


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
