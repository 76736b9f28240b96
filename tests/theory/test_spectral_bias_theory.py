"""multilens.theory.spectral_bias against exact answers: matrix powers, expm, brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

from multilens.theory import spectral_bias as sb


def _psd(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = rng.standard_normal((n, 2 * n))
    k = a @ a.T / (2 * n)
    lam, u = np.linalg.eigh(k)
    return k, lam, u


def test_discrete_modes_match_iterated_kernel_gd(rng: np.random.Generator) -> None:
    k, lam, u = _psd(rng, 9)
    y = rng.standard_normal(9)
    eta = 0.9 / lam.max()
    f = np.zeros(9)
    traj = [u.T @ f]
    for _ in range(50):
        f = f - eta * k @ (f - y)
        traj.append(u.T @ f)
    pred = sb.modal_trajectory_discrete(u.T @ y, lam, eta, np.arange(51))
    np.testing.assert_allclose(pred, np.array(traj), rtol=0, atol=1e-12)


def test_continuous_modes_match_the_matrix_exponential(rng: np.random.Generator) -> None:
    k, lam, u = _psd(rng, 7)
    y = rng.standard_normal(7)
    t = np.array([0.0, 0.3, 2.0, 17.0])
    # Gradient flow df/dt = -K (f - y), f(0) = 0, solved by f(t) = (I - expm(-t K)) y.
    exact = np.stack([u.T @ ((np.eye(7) - expm(-s * k)) @ y) for s in t])
    np.testing.assert_allclose(sb.modal_trajectory_continuous(u.T @ y, lam, t), exact, rtol=0, atol=1e-12)


def test_discretization_bound_holds_and_is_tight_for_small_steps() -> None:
    for h in (1e-3, 1e-2, 0.1, 0.5, 0.9):
        k = np.arange(0, int(20 / h) + 2)
        gap = np.max(np.abs(np.exp(-h * k) - (1 - h) ** k))
        bound = sb.discretization_bound(np.array([1.0]), np.array([h]), 1.0)[0]
        assert gap <= bound * (1 + 1e-12)
        if h <= 1e-2:
            assert gap >= 0.98 * bound  # first order: the bound's constant 1/(2e) is the right one
    assert math.isinf(sb.discretization_bound(np.array([1.0]), np.array([1.5]), 1.0)[0])


def test_linearized_residual_is_a_matrix_power(rng: np.random.Generator) -> None:
    k, lam, u = _psd(rng, 6)
    r0 = rng.standard_normal(6)
    eta = 1.5 / lam.max()
    steps = np.array([0, 1, 5, 33])
    exact = np.stack([np.linalg.matrix_power(np.eye(6) - eta * k, int(s)) @ r0 for s in steps])
    np.testing.assert_allclose(sb.linearized_residual(u, lam, r0, eta, steps), exact, atol=1e-12)
    # With a truncated basis the rest of r0 stays put.
    part = sb.linearized_residual(u[:, -2:], lam[-2:], r0, eta, np.array([10**6]))[0]
    np.testing.assert_allclose(part, r0 - u[:, -2:] @ (u[:, -2:].T @ r0), atol=1e-12)


def test_mode_fit_step_is_the_first_crossing() -> None:
    lam = np.array([2.0, 0.5, 0.01, 0.0, 3.9])
    eta, thr = 0.25, 0.1
    got = sb.mode_fit_step(lam, eta, thr)
    for j, lj in enumerate(lam):
        rho = abs(1 - eta * lj)
        if rho >= 1:
            assert math.isinf(got[j])
            continue
        first = next(k for k in range(10**6) if rho**k <= thr)
        assert got[j] == first
    assert sb.mode_fit_time(np.array([2.0]), math.exp(-1.0))[0] == pytest.approx(0.5)


def test_negative_base_powers_alternate() -> None:
    out = sb.modal_trajectory_discrete(np.array([1.0]), np.array([1.5]), 1.0, np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(out[:, 0], [0.0, 1.5, 0.75, 1.125])
