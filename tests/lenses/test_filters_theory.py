"""Closed-form spectral filters (multilens.theory.filters) against iterated GD, direct ridge and exhaustive search."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.theory.filters import (
    best_matching_lambda,
    continuum_gd_ridge_gap,
    gd_filter,
    gradient_flow_filter,
    ridge_filter,
)


def _operator(rng: np.random.Generator, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = s.size
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return (u * s) @ v.T, u, v


def test_gd_filter_equals_iterated_gradient_descent(rng: np.random.Generator) -> None:
    s = np.array([1.0, 0.7, 0.3, 0.1, 0.03, 0.01])
    a, u, v = _operator(rng, s)
    eta, y = 0.9, rng.standard_normal(6)
    x = np.zeros(6)
    for t in range(1, 201):
        x = x - eta * a.T @ (a @ x - y)
        if t in (1, 7, 50, 200):
            phi = s * (v.T @ x) / (u.T @ y)  # filter factors of the actual iterate, mode by mode
            np.testing.assert_allclose(phi, gd_filter(s, eta, t), rtol=0, atol=1e-10)


def test_ridge_filter_equals_the_direct_solution(rng: np.random.Generator) -> None:
    s = np.array([2.0, 1.0, 0.5, 0.2, 0.05])
    a, u, v = _operator(rng, s)
    y = rng.standard_normal(5)
    for lam in (1e-3, 0.1, 4.0):
        x = np.linalg.solve(a.T @ a + lam * np.eye(5), a.T @ y)
        phi = s * (v.T @ x) / (u.T @ y)
        np.testing.assert_allclose(phi, ridge_filter(s, lam), rtol=0, atol=1e-10)


def test_gd_filter_accuracy_for_tiny_modes_and_limits() -> None:
    # 1 - (1 - x)^t for x = 1e-12, t = 10: exactly 1e-11 - 45e-24 + ...; the naive form loses digits.
    assert gd_filter(np.sqrt(1e-12), 1.0, 10)[()] == pytest.approx(1e-11 - 45e-24, rel=1e-12)
    assert gd_filter(1.0, 1.0, 3)[()] == 1.0
    assert gradient_flow_filter(1.0, 0.0)[()] == 0.0
    with pytest.raises(ConfigError, match="eta"):
        gd_filter(1.0, 2.5, 3)


def test_best_matching_lambda_against_exhaustive_search() -> None:
    s = np.geomspace(1e-2, 1.0, 30)
    target = gd_filter(s, 1.0, 50)
    match = best_matching_lambda(s, target)
    grid = np.geomspace(1e-6, 10.0, 200_001)
    gaps = np.max(np.abs(ridge_filter(s[None, :], grid[:, None]) - target[None, :]), axis=1)
    assert match.converged and match.n_iter < 400
    assert match.gap <= gaps.min() + 1e-12  # no grid point beats the bisection
    assert match.gap == pytest.approx(gaps.min(), abs=1e-5)  # the grid is 8e-5 apart in log(lam) at a kink
    assert match.lam == pytest.approx(grid[int(np.argmin(gaps))], rel=1e-3)


def test_best_matching_lambda_recovers_an_exact_ridge_filter() -> None:
    s = np.geomspace(1e-3, 1.0, 40)
    match = best_matching_lambda(s, ridge_filter(s, 0.0123))
    assert match.lam == pytest.approx(0.0123, rel=1e-9)
    assert match.gap < 1e-10


def test_continuum_gap_converges_to_the_gradient_flow_constant() -> None:
    # Large t: eta s^2 small on the transition band, GD ~ gradient flow: min_c sup_u |1 - e^-u - u/(u + c)|.
    u = np.geomspace(1e-8, 1e4, 200_001)
    gf = best_matching_lambda(np.sqrt(u), gradient_flow_filter(np.sqrt(u), 1.0))
    far = continuum_gd_ridge_gap(20000)
    assert far.gap == pytest.approx(gf.gap, rel=2e-3)
    assert far.lam * 20000 == pytest.approx(gf.lam, rel=2e-3)
    assert continuum_gd_ridge_gap(1).gap > continuum_gd_ridge_gap(10).gap > far.gap > 0.1


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="`s` must be > 0"):
        best_matching_lambda(np.array([1.0, 0.0]), np.array([0.5, 0.0]))
    with pytest.raises(ConfigError, match="same shape"):
        best_matching_lambda(np.array([1.0]), np.array([0.5, 0.1]))


def test_iteration_cap_warns() -> None:
    from multilens.errors import ConvergenceWarning

    s = np.geomspace(1e-2, 1.0, 10)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        match = best_matching_lambda(s, gd_filter(s, 1.0, 5), max_iter=3)
    assert not match.converged and match.n_iter == 3
