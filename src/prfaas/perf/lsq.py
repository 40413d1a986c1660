"""Small least-squares fits that give the same bits on every machine.

`numpy.linalg.lstsq` and `numpy.polyfit` call LAPACK, whose blocking and SIMD kernels differ between CPUs and
BLAS builds: the same profile fitted on two machines gave prefill times 1e-11 apart (relative), enough to
reorder events in the simulator and change its records. The fits in `perf` have 2-3 unknowns and a handful of
points, so they are solved here in plain Python floats (IEEE double, correctly rounded) with Householder QR
and `math.fsum` for every dot product: deterministic, and better conditioned than the normal equations.
Columns are scaled to a largest magnitude of 1 first (a quadratic in prompt length spans 1 .. 1e10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def least_squares(columns: Sequence[Sequence[float]], y: Sequence[float]) -> list[float]:
    """x minimising ||sum_j x_j * columns[j] - y||_2. A column that adds no rank (zero, or a combination of
    the earlier ones within rounding) gets coefficient 0."""
    n, m = len(columns), len(y)
    if n == 0:
        return []
    if any(len(col) != m for col in columns):
        raise ValueError("every column needs one value per observation")
    scale = [max((abs(float(v)) for v in col), default=0.0) or 1.0 for col in columns]
    a = [[float(columns[j][i]) / scale[j] for j in range(n)] for i in range(m)]
    b = [float(v) for v in y]
    pivots = [0.0] * n
    for k in range(min(n, m)):
        norm = math.sqrt(math.fsum(a[i][k] * a[i][k] for i in range(k, m)))
        if norm == 0.0:
            continue
        alpha = -norm if a[k][k] >= 0.0 else norm
        v = [0.0] * m
        v[k] = a[k][k] - alpha
        for i in range(k + 1, m):
            v[i] = a[i][k]
        vv = math.fsum(v[i] * v[i] for i in range(k, m))
        if vv == 0.0:
            pivots[k] = a[k][k]
            continue
        for j in range(k, n):
            f = 2.0 * math.fsum(v[i] * a[i][j] for i in range(k, m)) / vv
            for i in range(k, m):
                a[i][j] -= f * v[i]
        f = 2.0 * math.fsum(v[i] * b[i] for i in range(k, m)) / vv
        for i in range(k, m):
            b[i] -= f * v[i]
        pivots[k] = a[k][k]
    largest = max((abs(p) for p in pivots), default=0.0)
    x = [0.0] * n
    for k in range(min(n, m) - 1, -1, -1):
        if largest == 0.0 or abs(pivots[k]) <= 1e-12 * largest:
            continue  # no rank in this column
        rest = math.fsum(a[k][j] * x[j] for j in range(k + 1, n))
        x[k] = (b[k] - rest) / a[k][k]
    return [x[j] / scale[j] for j in range(n)]


def squared_error(columns: Sequence[Sequence[float]], coef: Sequence[float], y: Sequence[float]) -> float:
    """sum_i (sum_j coef_j * columns[j][i] - y_i)^2, summed exactly (`math.fsum`)."""
    residuals = (math.fsum(c * float(col[i]) for c, col in zip(coef, columns, strict=True)) - float(y[i])
                 for i in range(len(y)))
    return math.fsum(r * r for r in residuals)
