"""Theory of the distributed lens against exact linear algebra and against simulation (no processes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from multilens.errors import ConfigError
from multilens.lenses.distributed import theory
from multilens.lenses.distributed.problems import make_least_squares_shards, make_quadratic

EPS = np.finfo(np.float64).eps


@pytest.fixture
def quad(seed: int):
    return make_quadratic(8, 4.0, 5.0, seed)


def test_quadratic_has_the_stated_spectrum(quad) -> None:
    lam = np.linalg.eigvalsh(quad.hessian)
    np.testing.assert_allclose(lam, np.linspace(0.25, 1.0, 8), atol=50 * EPS)
    assert quad.mu == pytest.approx(0.25) and quad.lipschitz == pytest.approx(1.0)
    assert np.linalg.norm(quad.theta0 - quad.theta_star) == pytest.approx(5.0)


@pytest.mark.parametrize("m", [1, 3])
def test_exact_floor_equals_dense_lyapunov_solution(quad, m: int) -> None:
    """Stationary covariance of e' = (I - eta H) e - eta xi, xi ~ N(0, sigma^2/(d m) I), solved densely."""
    eta, sigma2, d = 0.7, 2.0, quad.dim
    a = np.eye(d) - eta * quad.hessian
    p = solve_discrete_lyapunov(a, (eta**2 * sigma2 / (d * m)) * np.eye(d))
    assert theory.exact_stationary_floor(quad.eigvals, eta, sigma2, m) == pytest.approx(np.trace(p), rel=1e-10)
    # the delayed floor at tau = 0 is the same quantity through the companion construction
    assert theory.delayed_stationary_floor(quad.eigvals, eta, sigma2, m, 0) == pytest.approx(np.trace(p), rel=1e-10)


def test_exact_floor_is_below_the_theorem_bound_and_falls_as_one_over_m(quad) -> None:
    for eta in (0.1, 0.5, 1.0):  # eta <= 1/L
        for m in (1, 2, 4):
            exact = theory.exact_stationary_floor(quad.eigvals, eta, 1.0, m)
            assert exact <= theory.theorem_floor(quad.mu, eta, 1.0, m)
            assert exact * m == pytest.approx(theory.exact_stationary_floor(quad.eigvals, eta, 1.0, 1), rel=1e-12)


def test_exact_error_curve_matches_the_covariance_recursion(quad) -> None:
    eta, sigma2, m, d = 0.5, 1.5, 2, quad.dim
    e0 = quad.theta0 - quad.theta_star
    a = np.eye(d) - eta * quad.hessian
    cov = np.outer(e0, e0)
    want = [np.trace(cov)]
    for _ in range(30):
        cov = a @ cov @ a.T + (eta**2 * sigma2 / (d * m)) * np.eye(d)
        want.append(np.trace(cov))
    got = theory.exact_error_curve(quad.eigvals, quad.eigvecs.T @ e0, eta, sigma2, m, np.arange(31))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_exact_floor_against_simulation_within_standard_error(quad, rng: np.random.Generator) -> None:
    """Plain single-process simulation of averaged SGD (m noise draws per step, averaged)."""
    eta, sigma2, m, d, reps, steps, burn = 0.5, 1.0, 3, quad.dim, 200, 400, 100
    e = np.tile(quad.theta0 - quad.theta_star, (reps, 1))  # (R, d)
    acc = np.zeros(reps)
    for t in range(steps):
        xi = rng.standard_normal((m, reps, d)).mean(axis=0) * math.sqrt(sigma2 / d)
        e = e - eta * (e @ quad.hessian + xi)
        if t >= burn:
            acc += (e**2).sum(axis=1)
    per_rep = acc / (steps - burn)
    se = per_rep.std(ddof=1) / math.sqrt(reps)
    z = (per_rep.mean() - theory.exact_stationary_floor(quad.eigvals, eta, sigma2, m)) / se
    assert abs(z) < 4.0


@pytest.mark.parametrize("tau", [0, 1, 2, 3, 5, 8])
def test_levin_may_threshold_is_the_companion_stability_boundary(tau: int) -> None:
    a_star = theory.levin_may_threshold(tau)
    below = theory.delayed_spectral_radius(np.array([1.0]), a_star * (1 - 1e-6), tau)
    above = theory.delayed_spectral_radius(np.array([1.0]), a_star * (1 + 1e-6), tau)
    assert below < 1.0 < above


@pytest.mark.parametrize("eta_l", [0.05, 0.3, 0.62, 0.9, 1.0, 1.5])
def test_max_stable_delay_is_the_last_stable_delay(eta_l: float) -> None:
    tau = theory.max_stable_delay(eta_l)
    assert tau >= 0
    assert theory.delayed_spectral_radius(np.array([1.0]), eta_l, tau) < 1.0
    assert theory.delayed_spectral_radius(np.array([1.0]), eta_l, tau + 1) >= 1.0 - 1e-9


def test_delayed_floor_against_simulation_within_standard_error(rng: np.random.Generator) -> None:
    lam, eta, sigma2, tau, reps, steps, burn = np.array([0.3, 0.6, 1.0]), 0.4, 1.0, 2, 300, 500, 150
    d = lam.size
    hist = [np.ones((reps, d))] * (tau + 1)  # e_{t-tau}, ..., e_t
    acc = np.zeros(reps)
    for t in range(steps):
        e, old = hist[-1], hist[0]
        new = e - eta * (lam * old + rng.standard_normal((reps, d)) * math.sqrt(sigma2 / d))
        hist = hist[1:] + [new]
        if t >= burn:
            acc += (new**2).sum(axis=1)
    per_rep = acc / (steps - burn)
    z = (per_rep.mean() - theory.delayed_stationary_floor(lam, eta, sigma2, 1, tau)) / (
        per_rep.std(ddof=1) / math.sqrt(reps)
    )
    assert abs(z) < 4.0
    assert theory.delayed_stationary_floor(lam, 1.5, sigma2, 1, 3) is None  # unstable: no floor


def test_local_sgd_prediction_equals_brute_force_local_gd(seed: int) -> None:
    sh = make_least_squares_shards(5, 3, 40, (0.0, 1.0), seed)
    eta = 0.5 / sh.max_local_curvature
    for li in range(2):
        hs, bs = list(sh.hessians[li]), list(sh.linear[li])
        for k in (1, 3):
            theta = np.zeros(5)
            for _ in range(12):  # rounds
                locals_ = []
                for h, b in zip(hs, bs):
                    th = theta.copy()
                    for _ in range(k):
                        th = th - eta * (h @ th - b)
                    locals_.append(th)
                theta = np.mean(locals_, axis=0)
            pred = theory.local_sgd_iterate(hs, bs, eta, k, np.zeros(5), 12)
            np.testing.assert_allclose(pred, theta, atol=1e3 * EPS)
        # K = 1 is gradient averaging: its fixed point is the global optimum (no drift)
        np.testing.assert_allclose(theory.local_sgd_fixed_point(hs, bs, eta, 1), sh.theta_star, atol=1e-10)


def test_local_sgd_drift_grows_with_k_and_heterogeneity(seed: int) -> None:
    sh = make_least_squares_shards(10, 2, 128, (0.0, 0.5, 1.0), seed)
    eta = 0.5 / sh.max_local_curvature
    drift = np.array(
        [
            [
                np.sum((theory.local_sgd_fixed_point(list(hs), list(bs), eta, k) - sh.theta_star) ** 2)
                for k in (2, 4, 16)
            ]
            for hs, bs in zip(sh.hessians, sh.linear)
        ]
    )
    assert np.all(np.diff(drift, axis=1) > 0)
    assert np.all(np.diff(drift, axis=0) > 0)


def test_delay_pmfs() -> None:
    np.testing.assert_allclose(theory.delay_pmf("uniform", 3), [0.25] * 4)
    g = theory.delay_pmf("geometric", 3, 0.5)
    np.testing.assert_allclose(g, np.array([8, 4, 2, 1]) / 15)
    np.testing.assert_allclose(theory.delay_pmf("const", 2), [0, 0, 1])
    with pytest.raises(ConfigError, match="`kind` must be"):
        theory.delay_pmf("poisson", 3)


def test_bad_arguments_raise_config_errors(quad) -> None:
    with pytest.raises(ConfigError, match="`eta` must be in"):
        theory.exact_stationary_floor(quad.eigvals, 2.5, 1.0, 1)
    with pytest.raises(ConfigError, match="`m` must be an int >= 1; got 0."):
        theory.exact_stationary_floor(quad.eigvals, 0.5, 1.0, 0)
