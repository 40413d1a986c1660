"""A small dense simplex for `maximize c.z s.t. A z <= b, z >= 0` with `b >= 0` (the origin is feasible).

The multi-site planner's assignment problems have a handful of variables (one per link plus Lambda), so a
tableau simplex in numpy is exact and fast enough, and keeps the planner free of a solver dependency
(scipy's import pulls in sockets, which the pure packages may not). Bland's rule (lowest index enters,
lowest basic index leaves on ties) guarantees termination on the degenerate vertices these problems
have (every `demand - assignment <= 0` row has b = 0).

Returns the primal optimum, its value and the duals (the shadow price of each row: > 0 means the row
binds -- relaxing it raises the optimum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


class UnboundedLP(ValueError):
    """The objective grows without bound (a modelling error: some constraint is missing)."""


@dataclass(frozen=True, slots=True)
class LPSolution:
    z: np.ndarray  # primal optimum
    value: float  # c.z at the optimum
    duals: np.ndarray  # one per row of A, >= 0
    pivots: int


def lp_max(c: np.ndarray, a_ub: np.ndarray, b_ub: np.ndarray, max_pivots: int = 10_000) -> LPSolution:
    """Solve `max c.z, A z <= b, z >= 0` for `b >= 0` (see module docstring)."""
    c = np.asarray(c, dtype=np.float64)
    a = np.asarray(a_ub, dtype=np.float64)
    b = np.asarray(b_ub, dtype=np.float64)
    m, n = a.shape
    if b.shape != (m,) or c.shape != (n,):
        raise ValueError("shapes of c, A and b do not agree")
    if (b < 0).any():
        raise ValueError("b must be >= 0 (the origin must be feasible)")
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1.0)
    tol = _EPS * scale
    tab = np.zeros((m + 1, n + m + 1))
    tab[:m, :n] = a
    tab[:m, n:n + m] = np.eye(m)
    tab[:m, -1] = b
    tab[m, :n] = -c
    basis = np.arange(n, n + m)
    pivots = 0
    while True:
        entering = np.flatnonzero(tab[m, :-1] < -1e-12 * max(1.0, float(np.abs(c).max(initial=0.0))))
        if entering.size == 0:
            break
        j = int(entering[0])
        col = tab[:m, j]
        rows = np.flatnonzero(col > tol)
        if rows.size == 0:
            raise UnboundedLP(f"unbounded along variable {j}")
        ratios = tab[rows, -1] / col[rows]
        best = ratios.min()
        ties = rows[ratios <= best + 1e-12 * max(1.0, abs(best))]
        r = int(ties[np.argmin(basis[ties])])
        tab[r] /= tab[r, j]
        others = np.flatnonzero(tab[:, j] != 0.0)
        others = others[others != r]
        tab[others] -= np.outer(tab[others, j], tab[r])
        basis[r] = j
        pivots += 1
        if pivots > max_pivots:
            raise RuntimeError("simplex did not terminate")
    z = np.zeros(n + m)
    z[basis] = tab[:m, -1]
    duals = np.maximum(tab[m, n:n + m], 0.0)
    return LPSolution(z=np.maximum(z[:n], 0.0), value=float(tab[m, -1]), duals=duals, pivots=pivots)
