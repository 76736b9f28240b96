"""Stability lens estimators against exact answers: the solver, the Lipschitz constant, the bounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from multilens.lenses.stability import LogisticRidge, Settings, StabilitySubject, Task, measure
from multilens.lenses.stability.lens import _slope, coupled_sgd, find_duplicates, replace_one
from multilens.lenses.stability.logistic import gradient_descent_fit, losses


def sphere_task(n_pool=300, d=5, n=100, lam=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_pool, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(rng.random(n_pool) < expit(3 * x[:, 0]), 1.0, -1.0)
    return Task("sphere", x, y, lam, n)


def test_newton_matches_one_dimensional_root():
    lam = 0.3
    x, y = np.array([[2.0]]), np.array([1.0])
    # stationarity: -2 sigma(-2 theta) + lam theta = 0
    root = brentq(lambda t: -2 * expit(-2 * t) + lam * t, 0.0, 10.0, xtol=1e-14)
    f = LogisticRidge(tol=1e-12).fit(x, y, lam)
    assert f.converged and f.theta[0] == pytest.approx(root, abs=1e-10)
    g = gradient_descent_fit(x, y, lam, tol=1e-10)
    assert g.converged and g.theta[0] == pytest.approx(root, abs=1e-8)


def test_logistic_loss_lipschitz_constant_is_radius():
    rng = np.random.default_rng(1)
    tr = LogisticRidge()
    x = rng.standard_normal((50, 4))
    r = float(np.max(np.linalg.norm(x, axis=1)))
    assert tr.lipschitz(r) == r
    for _ in range(20):
        th = rng.standard_normal(4) * 3
        g = x * (-expit(-(x @ th)))[:, None]  # per-example gradients for y = +1
        assert np.max(np.linalg.norm(g, axis=1)) <= r + 1e-12
    # the constant is approached: theta far against x drives sigma(-y theta.x) to 1
    i = int(np.argmax(np.linalg.norm(x, axis=1)))
    th = -50 * x[i] / np.linalg.norm(x[i])
    assert np.linalg.norm(x[i] * expit(-(x[i] @ th))) == pytest.approx(r, rel=1e-6)


def test_replace_one_respects_both_bounds():
    task = sphere_task()
    betas, dists, fits, _ = replace_one(task, task.n, task.lam, 20, np.random.default_rng(2))
    assert all(f.converged for f in fits)
    assert dists.max() <= 2 * 1.0 / (task.lam * task.n) + 1e-9
    assert betas.max() <= 2 * 1.0 / (task.lam * task.n) + 1e-9
    assert betas.min() >= 0 and dists.min() > 0


def test_slope_helper_exact():
    x = np.array([10.0, 20.0, 40.0])
    assert _slope(x, 3.0 / x) == pytest.approx(-1.0, abs=1e-12)
    assert np.isnan(_slope(x, np.array([0.0, 1.0, 2.0])))


def test_coupled_sgd_obeys_hardt_bound():
    task = sphere_task(n=50)
    step = 0.5
    betas, dists = coupled_sgd(task, task.n, (1, 2, 4), step, 10, np.random.default_rng(3))
    for e, row in zip((1, 2, 4), betas):
        assert row.max() <= 2 * 1.0 * step * e + 1e-12  # (2 L^2 / n) * alpha * (e n)
    assert np.all(dists[2] >= 0)


def test_duplicate_detector_exact_counts():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((100, 6))
    b = np.vstack([rng.standard_normal((30, 6)), a[:4], a[10:12] + 1e-9])
    exact, near = find_duplicates(a, b, 0.05)
    assert exact.sum() == 4 and exact[30:34].all()
    assert near.sum() == 6 and near[30:].all()


def test_measure_on_user_task_and_gap_theorem():
    task = sphere_task(n_pool=400, n=120, lam=0.5, seed=5)
    s = Settings.for_profile("smoke")
    s = dataclasses.replace(s, sgd=dataclasses.replace(s.sgd, mlp_pairs=0),
                            gap=dataclasses.replace(s.gap, n_draws=40))  # fmt: skip
    r = measure(StabilitySubject((task,)), s, seed=0)
    assert r.check("sphere_loss_stability_bound").passed is True
    assert r.check("sphere_param_stability_bound").passed is True
    assert r.check("sphere_gap_within_stability_bound").passed is True
    assert r.check("sphere_memorization_nonnegative").passed is True
    assert r.check("sphere_memorization_matches_influence").passed is True
    assert r.metrics["stability.bound"] == pytest.approx(2 / (0.5 * 120))
    assert 1.0 < r.metrics["stability.bound_looseness"] < 1e4


def test_memorization_score_is_nonnegative_exactly():
    task = sphere_task(n=60)
    tr = LogisticRidge(tol=1e-12)
    x, y, n, lam = task.x[:60], task.y[:60], 60, task.lam
    full = tr.fit(x, y, lam)
    for i in range(10):
        keep = np.arange(n) != i
        f = tr.fit(x[keep], y[keep], lam * n / (n - 1), full.theta)
        assert (
            losses(f.theta, x[i : i + 1], y[i : i + 1])[0] >= losses(full.theta, x[i : i + 1], y[i : i + 1])[0] - 1e-12
        )


def test_default_policy_stability_gate_reads_the_bound_check():
    from multilens.protocol.gates import evaluate_policy, load_policy

    task = sphere_task(n_pool=300, n=100, lam=0.5, seed=8)
    s = Settings.for_profile("smoke")
    only = dataclasses.replace(s, scaling=None, gap=None, sgd=None, integrity=None)
    r = measure(StabilitySubject((task,)), only, seed=0)
    res = evaluate_policy(load_policy(), r.metrics, "stability")
    gate = next(g for g in res if g.name == "stability bound holds on the main task")
    assert gate.passed is (r.check("sphere_loss_stability_bound").passed is True) and gate.action == "warn"


class LinearLossTrainer:
    """loss(theta, z) = -y theta.x (convex, L = R), objective mean loss + lam/2 ||theta||^2.

    Minimiser theta_S = mean(y x) / lam, so replacing z_i by z' moves it by exactly (y' x' - y_i x_i) / (lam n).
    """

    tol = 1e-12

    def fit(self, x, y, lam, theta0=None):
        from multilens.lenses.stability.logistic import FitResult

        return FitResult((y[:, None] * x).mean(axis=0) / lam, 0, True, 0.0, 0.0)

    def losses(self, theta, x, y):
        return -y * (x @ theta)

    def lipschitz(self, radius):
        return float(radius)

    def smoothness(self, radius):
        return 0.0


def test_replace_one_exact_for_linear_loss():
    task = dataclasses.replace(sphere_task(n_pool=200, n=50, lam=0.25, seed=9), trainer=LinearLossTrainer())
    rng = np.random.default_rng(10)
    betas, dists, _, (s, pos, rep) = replace_one(task, task.n, task.lam, 8, rng)
    x, y = task.x, task.y
    for b, dd, j, r in zip(betas, dists, pos, rep):
        delta = (y[r] * x[r] - y[s[j]] * x[s[j]]) / (task.lam * task.n)
        assert dd == pytest.approx(np.linalg.norm(delta), rel=1e-12)
        assert b == pytest.approx(np.max(np.abs(y * (x @ delta))), rel=1e-12)  # max over the pool of |z . delta|
        assert b <= 2 * 1.0 / (task.lam * task.n) + 1e-15  # the bound 2 L^2 / (lam n) with L = R = 1


def test_expected_gap_matches_closed_form_for_linear_loss():
    """E[R(theta_S) - R_S(theta_S)] = tr Cov(y x) / (lam n) exactly for the linear-loss ERM (i.i.d. S)."""
    from multilens.lenses.stability.config import GapSettings
    from multilens.lenses.stability.lens import gap_part

    task = dataclasses.replace(sphere_task(n_pool=300, n=40, lam=0.5, seed=11), trainer=LinearLossTrainer())
    v = task.y[:, None] * task.x
    exact = float(np.trace(np.cov(v.T, ddof=0))) / (task.lam * task.n)
    p = gap_part(StabilitySubject((task,)), GapSettings(n_draws=400), seed=3)
    e = next(e for e in p.estimates if e.name == "sphere_expected_gap")
    assert abs(e.value - exact) <= 4 * e.stderr
    assert next(c for c in p.checks if c.name == "sphere_gap_within_stability_bound").passed is True
