"""The linear double-descent sweep: exact estimator identities and Monte Carlo against the closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.linalg import expm

from multilens.lenses.double_descent.minnorm import (
    _filtered_errors,
    _row_space,
    mean_ci,
    median_ci,
    simulate_point,
)
from multilens.theory import double_descent as th

Z_MAX = 4.0


def _z(x: np.ndarray, expected: float) -> float:
    return abs(x.mean() - expected) / (x.std(ddof=1) / math.sqrt(x.size))


@pytest.mark.parametrize("d", [12, 30, 31, 55])
def test_row_space_estimators_equal_pinv_ridge_and_gradient_flow(d: int, rng: np.random.Generator) -> None:
    """min-norm = pinv(X) y; ridge = (X^T X + n lam)^-1 X^T y; gradient flow = S^+(I - e^{-tS}) X^T y / n."""
    n, c, k = 30, 3, 2
    x = rng.standard_normal((c, n, d))
    beta = rng.standard_normal(d)
    y = x @ beta[None, :, None] + rng.standard_normal((c, n, k))
    s, uy, b_par = _row_space(x, y, beta)
    perp2 = (beta**2).sum() - (b_par**2).sum(axis=1)
    lam, t = 0.3, 2.5
    got_mn = _filtered_errors(uy / s[:, :, None], b_par, perp2)
    got_ridge = _filtered_errors(uy * (s / (s**2 + n * lam))[:, :, None], b_par, perp2)
    got_gf = _filtered_errors(uy * (-np.expm1(-t * s**2 / n) / s)[:, :, None], b_par, perp2)
    for i in range(c):
        xi = x[i]
        b_mn = np.linalg.pinv(xi) @ y[i]
        b_ridge = np.linalg.solve(xi.T @ xi + n * lam * np.eye(d), xi.T @ y[i])
        s_mat = xi.T @ xi / n
        b_gf = np.linalg.pinv(s_mat) @ (np.eye(d) - expm(-t * s_mat)) @ xi.T @ y[i] / n
        for got, ref in ((got_mn, b_mn), (got_ridge, b_ridge), (got_gf, b_gf)):
            np.testing.assert_allclose(got[i], ((ref - beta[:, None]) ** 2).sum(axis=0), rtol=1e-7)


@pytest.mark.parametrize(("n", "d"), [(40, 20), (40, 60)])
def test_simulated_variance_bias_and_risk_match_the_exact_moments(n: int, d: int, seed: int) -> None:
    """The noise-resampled variance and bias, over many designs, match the closed forms within 4 stderr."""
    sigma2, r2 = 0.5, 1.5
    draws = simulate_point(n, d, sigma2, r2, n_designs=1500, n_noise=3, seed=seed)
    assert _z(draws.variance, th.minnorm_variance(n, d, sigma2)) < Z_MAX
    assert _z(draws.bias, th.minnorm_bias(n, d, r2)) < Z_MAX
    assert _z(draws.risk, th.minnorm_risk(n, d, sigma2, r2)) < Z_MAX
    np.testing.assert_allclose(draws.risk, draws.bias + draws.variance, rtol=1e-10, atol=1e-12)
    # Ridge at lam* and gradient flow at 1/lam*: the paired difference to the exact Bayes risk has mean 0.
    assert _z(draws.ridge_risk - draws.ridge_bayes, 0.0) < Z_MAX
    assert _z(draws.es_risk - draws.es_bayes, 0.0) < Z_MAX
    assert np.all(draws.cond >= 1.0)


def test_simulate_point_is_reproducible_and_seed_sensitive(seed: int) -> None:
    a = simulate_point(20, 10, 0.25, 1.0, 10, 2, seed)
    b = simulate_point(20, 10, 0.25, 1.0, 10, 2, seed)
    c = simulate_point(20, 10, 0.25, 1.0, 10, 2, seed + 1)
    np.testing.assert_array_equal(a.risk, b.risk)
    assert not np.array_equal(a.risk, c.risk)


def test_mean_ci_is_the_student_t_interval(rng: np.random.Generator) -> None:
    x = rng.standard_normal(25)
    ci = mean_ci(x, 0.9)
    lo, hi = stats.t.interval(0.9, 24, loc=x.mean(), scale=stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((lo, hi), rel=1e-12)
    assert ci.covers(x.mean()) and ci.n == 25


@pytest.mark.parametrize("n", [10, 25, 101])
def test_median_ci_uses_the_widest_order_statistics_that_keep_coverage(n: int) -> None:
    x = np.arange(1.0, n + 1)
    med, lo, hi = median_ci(x, 0.95)
    assert med == np.median(x)
    j = int(lo)  # values are 1..n, so the value is the 1-based rank
    assert hi == n - j + 1
    assert 1 - 2 * stats.binom.cdf(j - 1, n, 0.5) >= 0.95  # coverage of [x_(j), x_(n-j+1)]
    assert 1 - 2 * stats.binom.cdf(j, n, 0.5) < 0.95  # one step narrower would lose it
