"""perf.lsq: the machine-independent least squares the perf fits use (numpy's LAPACK gave prefill times 1e-11
apart on two CPUs). Checked against the exact rational solution of the normal equations."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from prfaas.perf.lsq import least_squares, squared_error
from prfaas.perf.measured import fit_quadratic_nonneg


def _exact(columns: list[list[float]], y: list[float]) -> list[Fraction]:
    n, m = len(columns), len(y)
    a = [[Fraction(v) for v in col] for col in columns]
    normal = [[sum(a[i][k] * a[j][k] for k in range(m)) for j in range(n)] for i in range(n)]
    rhs = [sum(a[i][k] * Fraction(y[k]) for k in range(m)) for i in range(n)]
    for c in range(n):
        for i in range(c + 1, n):
            f = normal[i][c] / normal[c][c]
            normal[i] = [normal[i][j] - f * normal[c][j] for j in range(n)]
            rhs[i] -= f * rhs[c]
    x = [Fraction(0)] * n
    for c in reversed(range(n)):
        x[c] = (rhs[c] - sum(normal[c][j] * x[j] for j in range(c + 1, n))) / normal[c][c]
    return x


@pytest.mark.parametrize("seed", range(6))
def test_fits_a_quadratic_in_prompt_length_to_the_exact_solution(seed: int) -> None:
    rng = random.Random(seed)
    m = rng.randint(3, 9)
    lengths = [float(v) for v in sorted(rng.sample(range(128, 131_073), m))]
    columns = [[1.0] * m, lengths, [v * v for v in lengths]]
    y = [rng.uniform(0.01, 50.0) for _ in range(m)]
    exact = _exact(columns, y)
    got = least_squares(columns, y)
    for i in range(m):
        want = float(sum(exact[j] * Fraction(columns[j][i]) for j in range(3)))
        fitted = sum(got[j] * columns[j][i] for j in range(3))
        assert fitted == pytest.approx(want, rel=1e-11)


def test_exact_data_is_recovered_and_a_dependent_column_gets_zero() -> None:
    x = [1.0, 2.0, 4.0, 8.0]
    y = [3.0 + 0.5 * v for v in x]
    assert least_squares([[1.0] * 4, x], y) == pytest.approx([3.0, 0.5], rel=1e-14)
    twice = [2 * v for v in x]
    coef = least_squares([[1.0] * 4, x, twice], y)
    assert coef[2] == 0.0 and coef[:2] == pytest.approx([3.0, 0.5], rel=1e-12)
    assert squared_error([[1.0] * 4, x], [3.0, 0.5], y) == 0.0


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per observation"):
        least_squares([[1.0, 2.0], [1.0]], [1.0, 2.0])


def test_nonnegative_quadratic_fit_keeps_its_sign_constraints() -> None:
    lengths = [128.0, 1024.0, 8192.0, 65536.0]
    times = [0.05 + 2e-5 * v + 3e-10 * v * v for v in lengths]
    a, b, c = fit_quadratic_nonneg(lengths, times)
    assert (a, b, c) == pytest.approx((0.05, 2e-5, 3e-10), rel=1e-9)
    a, b, c = fit_quadratic_nonneg(lengths, [1.0 - 1e-6 * v for v in lengths])  # decreasing: no negative slope
    assert min(a, b, c) >= 0.0
