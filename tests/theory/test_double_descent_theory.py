"""Closed forms of multilens.theory.double_descent against exact answers and Monte Carlo (z-bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.theory import double_descent as th

Z_MAX = 4.0  # |z| bound for Monte Carlo means: P(|N(0,1)| > 4) ~ 6e-5 per assertion


def _z(samples: np.ndarray, expected: float) -> float:
    return abs(samples.mean() - expected) / (samples.std(ddof=1) / math.sqrt(samples.size))


def test_minnorm_variance_values_and_singular_window() -> None:
    assert th.minnorm_variance(100, 50, 1.0) == pytest.approx(50 / 49, rel=1e-15)
    assert th.minnorm_variance(100, 400, 0.5) == pytest.approx(0.5 * 100 / 299, rel=1e-15)
    for d in (99, 100, 101):
        assert th.minnorm_variance(100, d, 0.25) == math.inf
    assert th.minnorm_variance(100, 98, 0.25) == pytest.approx(0.25 * 98 / 1)
    assert th.minnorm_bias(100, 100, 1.0) == 0.0
    assert th.minnorm_bias(100, 200, 2.0) == pytest.approx(1.0)
    assert th.minnorm_risk(100, 200, 0.25, 2.0) == pytest.approx(1.0 + 0.25 * 100 / 99)


def test_asymptotic_minnorm_risk_is_the_limit_of_the_exact_risk() -> None:
    for gamma in (0.3, 0.8, 1.5, 4.0):
        n = 200_000
        exact = th.minnorm_risk(n, round(gamma * n), 0.3, 1.7)
        assert exact == pytest.approx(th.asymptotic_minnorm_risk(gamma, 0.3, 1.7), rel=1e-4)
    assert th.asymptotic_minnorm_risk(1.0, 0.3, 1.7) == math.inf


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="`n` must be an int >= 1"):
        th.minnorm_variance(0, 3, 1.0)
    with pytest.raises(ConfigError, match="`sigma2`"):
        th.minnorm_variance(10, 3, -1.0)
    with pytest.raises(ConfigError, match="`gamma`"):
        th.asymptotic_minnorm_risk(0.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="`lam`"):
        th.mp_stieltjes(0.0, 0.5)


def test_inverse_wishart_moment_condition_matches_chi_square_case() -> None:
    # p = 1: W = chi2_m, E[W^-k] < inf iff m > 2k.
    assert th.inverse_wishart_trace_moment_finite(5, 1, 2)  # m=5 > 4
    assert not th.inverse_wishart_trace_moment_finite(4, 1, 2)
    # Symmetric in the two regimes: (n, d) = (100, 92) and (100, 108) both have |d-n| = 8.
    assert th.inverse_wishart_trace_moment_finite(100, 92, 4)
    assert th.inverse_wishart_trace_moment_finite(100, 108, 4)
    assert not th.inverse_wishart_trace_moment_finite(100, 93, 4)


@pytest.mark.parametrize(("n", "d"), [(40, 20), (40, 30), (40, 52), (40, 90)])
def test_minnorm_variance_and_bias_by_monte_carlo(n: int, d: int, rng: np.random.Generator) -> None:
    """sigma2 tr((X^T X)^+) over designs and the noise-resampled variance both match the closed form."""
    sigma2, r2, designs, draws = 0.5, 2.0, 600, 4
    beta = rng.standard_normal(d)
    beta *= math.sqrt(r2) / np.linalg.norm(beta)
    var_est, bias_est = np.empty(designs), np.empty(designs)
    for i in range(designs):
        x = rng.standard_normal((n, d))
        pinv = np.linalg.pinv(x)
        y = x @ beta[:, None] + math.sqrt(sigma2) * rng.standard_normal((n, draws))
        b = pinv @ y  # (d, draws): min-norm solutions
        mean = b.mean(axis=1)
        v = ((b - mean[:, None]) ** 2).sum() / (draws - 1)
        var_est[i] = v
        bias_est[i] = ((mean - beta) ** 2).sum() - v / draws
    assert _z(var_est, th.minnorm_variance(n, d, sigma2)) < Z_MAX
    # Below the threshold OLS is unbiased, so the noise-corrected bias estimate has mean exactly 0.
    assert _z(bias_est, th.minnorm_bias(n, d, r2)) < Z_MAX


def test_stieltjes_transform_against_quadrature_and_a_large_wishart(rng: np.random.Generator) -> None:
    for gamma in (0.25, 1.0, 2.5):
        for lam in (0.05, 0.5, 3.0):
            m = th.mp_stieltjes(lam, gamma)
            quad = th.mp_integral(lambda s, lam=lam: 1.0 / (s + lam), gamma) + th.mp_atom(gamma) / lam
            assert m == pytest.approx(quad, rel=1e-10)
            # m'(z) at z = -lam equals int dF/(s + lam)^2
            dm = th.mp_stieltjes_derivative(lam, gamma)
            quad2 = th.mp_integral(lambda s, lam=lam: 1.0 / (s + lam) ** 2, gamma) + th.mp_atom(gamma) / lam**2
            assert dm == pytest.approx(quad2, rel=1e-10)
            assert th.mp_integral(np.ones_like, gamma) == pytest.approx(min(1.0, 1.0 / gamma), abs=1e-12)
    # A large sample covariance: (1/d) tr((S + lam)^-1) concentrates at m(-lam) with O(1/n) bias.
    n, d, lam = 1500, 750, 0.3
    x = rng.standard_normal((n, d))
    eig = np.linalg.eigvalsh(x.T @ x / n)
    assert np.mean(1.0 / (eig + lam)) == pytest.approx(th.mp_stieltjes(lam, d / n), rel=5e-3)


def test_optimal_ridge_lambda_minimizes_the_limiting_ridge_risk() -> None:
    for gamma in (0.4, 1.0, 2.0):
        sigma2, r2 = 0.25, 1.0
        lam_star = th.optimal_ridge_lambda(gamma, sigma2, r2)
        grid = np.geomspace(lam_star / 30, lam_star * 30, 2001)  # exhaustive search on a fine grid
        risks = [th.asymptotic_ridge_risk(gamma, lam, sigma2, r2) for lam in grid]
        best = grid[int(np.argmin(risks))]
        assert best == pytest.approx(lam_star, rel=5e-3)
        assert th.asymptotic_ridge_risk(gamma, lam_star, sigma2, r2) == pytest.approx(
            th.asymptotic_optimal_ridge_risk(gamma, sigma2, r2), rel=1e-12
        )
        assert th.asymptotic_optimal_ridge_risk(gamma, sigma2, r2) < r2


def test_conditional_ridge_bayes_risk_is_the_two_term_formula_at_lambda_star(rng: np.random.Generator) -> None:
    n, d, sigma2, r2 = 30, 45, 0.4, 1.3
    lam = th.optimal_ridge_lambda(d / n, sigma2, r2)
    x = rng.standard_normal((n, d))
    s_mat = x.T @ x / n
    inv = np.linalg.inv(s_mat + lam * np.eye(d))
    two_term = r2 * lam**2 / d * np.trace(inv @ inv) + sigma2 / n * np.trace(s_mat @ inv @ inv)
    eig = np.linalg.eigvalsh(x @ x.T / n)  # the n nonzero eigenvalues
    assert th.conditional_optimal_ridge_risk(eig, d, n, sigma2, lam) == pytest.approx(two_term, rel=1e-10)


def test_conditional_gradient_flow_risk_matches_matrix_exponential(rng: np.random.Generator) -> None:
    from scipy.linalg import expm

    n, d, sigma2, r2, t = 25, 15, 0.3, 2.0, 1.7
    x = rng.standard_normal((n, d))
    s_mat = x.T @ x / n
    e = expm(-t * s_mat)
    # Bayes risk of beta_t = (I - e^{-tS}) S^{-1} X^T y / n with isotropic beta (E beta beta^T = r2/d I):
    bias = r2 / d * np.trace(e @ e)
    a = (np.eye(d) - e) @ np.linalg.inv(s_mat)
    var = sigma2 / n * np.trace(a @ s_mat @ a.T)
    eig = np.linalg.eigvalsh(s_mat)
    assert th.conditional_gradient_flow_risk(eig, d, n, sigma2, r2, t) == pytest.approx(bias + var, rel=1e-10)


def test_gradient_flow_limit_reaches_the_min_norm_limit_as_t_grows() -> None:
    for gamma in (0.5, 3.0):
        assert th.asymptotic_gradient_flow_risk(gamma, 1e7, 0.25, 1.0) == pytest.approx(
            th.asymptotic_minnorm_risk(gamma, 0.25, 1.0), rel=1e-5
        )
    assert th.asymptotic_gradient_flow_risk(2.0, 0.0, 0.25, 1.0) == pytest.approx(1.0, rel=1e-12)  # beta_hat = 0


def test_gradient_flow_limit_against_finite_n_average(rng: np.random.Generator) -> None:
    """The conditional Bayes risk averaged over designs approaches the MP limit (bias O(1/n))."""
    n, d, sigma2, r2, t = 400, 200, 0.25, 1.0, 2.0
    vals = []
    for _ in range(30):
        x = rng.standard_normal((n, d))
        eig = np.linalg.eigvalsh(x.T @ x / n)
        vals.append(th.conditional_gradient_flow_risk(eig, d, n, sigma2, r2, t))
    limit = th.asymptotic_gradient_flow_risk(d / n, t, sigma2, r2)
    assert abs(np.mean(vals) - limit) / limit < 3.0 / n


def test_asymptotic_condition_number_against_a_large_matrix(rng: np.random.Generator) -> None:
    s = np.linalg.svd(rng.standard_normal((2000, 500)), compute_uv=False)
    assert s[0] / s[-1] == pytest.approx(th.asymptotic_condition_number(0.25), rel=0.03)
    assert th.asymptotic_condition_number(1.0) == math.inf
