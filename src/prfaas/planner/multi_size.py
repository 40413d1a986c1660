"""Sizing mode: which PrfaaS cluster to build where, and how big, for a set of PD regions.

The topology lists the PD regions and the *candidate* PrfaaS sites with their links (their `instances` are
ignored). For a budget of N PrfaaS instances we solve the multi-site optimum (`planner.multi`) for every way
of spreading N over the candidate sites (in steps of `step` instances) and keep the best (ties: fewer sites
used, then the order of the candidates). Region tables do not depend on the counts, so they are built once
and only the assignment LPs are re-solved; the winner is then re-solved with the refined threshold search.

With `traffic_rps` on every PD region, `min_budget` also answers "how big": the smallest budget whose best
spread serves the offered traffic (Lambda >= 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prfaas.planner.model import LengthMode
from prfaas.planner.multi import MAX_JOINT_COMBINATIONS, MultiPlan, best_on_grid, optimize_multi
from prfaas.planner.multi_case import MultiCase, RegionTable, candidate_thresholds, region_table

SIZING_COARSE_CANDIDATES = 32


@dataclass(frozen=True, slots=True)
class SizingRow:
    instances: tuple[int, ...]  # per candidate PrfaaS site, in the topology's order
    scale: float


@dataclass(frozen=True, slots=True)
class SizingResult:
    budget_instances: int
    sites: tuple[str, ...]
    rows: tuple[SizingRow, ...]  # every spread of the budget, best first
    best: MultiPlan  # the winner, re-solved with the refined search
    min_budget: int | None  # smallest budget serving the offered traffic (None: no traffic_rps, or not reached)


def spreads(total: int, num_sites: int, step: int = 1) -> Iterator[tuple[int, ...]]:
    """Every way to put `total` instances on `num_sites` sites in multiples of `step`."""
    if num_sites == 1:
        if total % step == 0:
            yield (total,)
        return
    for first in range(0, total + 1, step):
        for rest in spreads(total - first, num_sites - 1, step):
            yield (first, *rest)


def _best_spread(case: MultiCase, tables: list[RegionTable], total: int, step: int,
                 max_joint: int) -> list[SizingRow]:
    rows = [SizingRow(alloc, best_on_grid(case, tables, alloc, max_joint).scale)
            for alloc in spreads(total, len(case.topology.prfaas), step)]
    order = {alloc.instances: n for n, alloc in enumerate(rows)}
    rows.sort(key=lambda r: (-round(r.scale, 12), sum(1 for n in r.instances if n > 0), order[r.instances]))
    return rows


def size_prfaas(case: MultiCase, budget_instances: int, mode: LengthMode = LengthMode.REPRESENTATIVE, *,
                step: int = 1, num_coarse: int = SIZING_COARSE_CANDIDATES,
                max_joint: int = MAX_JOINT_COMBINATIONS) -> SizingResult:
    """Best spread of `budget_instances` PrfaaS instances over the candidate sites (module docstring)."""
    if budget_instances < 0 or step < 1:
        raise ValueError("budget must be >= 0 and step >= 1")
    if not case.topology.prfaas:
        raise ValueError("the topology lists no candidate PrfaaS site")
    grid = candidate_thresholds(case, num_coarse)
    tables = [region_table(case, j, grid, mode) for j in range(len(case.topology.pd))]
    rows = _best_spread(case, tables, budget_instances, step, max_joint)
    best = optimize_multi(case, mode, instances=rows[0].instances, max_joint=max_joint)
    min_budget = None
    if case.topology.has_traffic:
        for total in range(0, budget_instances + 1, step):
            if _best_spread(case, tables, total, step, max_joint)[0].scale >= 1.0:
                min_budget = total
                break
    return SizingResult(budget_instances, case.topology.prfaas_names, tuple(rows), best, min_budget)
