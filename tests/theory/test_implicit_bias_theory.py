"""multilens.theory.implicit_bias against exact answers: pinv, simulated GD, QPs, LPs, grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from multilens.errors import ConfigError
from multilens.theory import implicit_bias as ib

EPS = np.finfo(np.float64).eps


def _separable(rng: np.random.Generator, n: int, d: int, margin: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    x = rng.standard_normal((8 * n, d))
    x = x[np.abs(x @ w) >= margin][:n]
    return x, np.sign(x @ w)


def _svm_slsqp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An independent solver: the primal QP min 1/2||w||^2 s.t. y x^T w >= 1 by SLSQP."""
    z = x * y[:, None]
    w0 = np.linalg.lstsq(z, np.ones(len(y)), rcond=None)[0] * 2.0
    res = minimize(
        lambda w: 0.5 * w @ w,
        w0,
        jac=lambda w: w,
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda w: z @ w - 1.0, "jac": lambda w: z}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success
    return res.x


# ---------------------------------------------------------------------------------------- least squares


def test_min_norm_solution_is_the_pseudoinverse(rng: np.random.Generator) -> None:
    x = rng.standard_normal((7, 19))
    y = rng.standard_normal(7)
    np.testing.assert_allclose(ib.min_norm_solution(x, y), np.linalg.pinv(x) @ y, rtol=0, atol=1e-12)


def test_row_space_projector_annihilates_and_complements(rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 12))
    rs = ib.row_space(x)
    v = rng.standard_normal(12)
    null = rs.project_null(v)
    assert rs.rank == 5
    np.testing.assert_allclose(x @ null, 0.0, atol=1e-12)
    # The null part is exactly v minus its row-space projection pinv(X) X v.
    np.testing.assert_allclose(null, v - np.linalg.pinv(x) @ (x @ v), atol=1e-12)


def test_predicted_distance_matches_simulated_gd_at_every_step(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 15))
    y = rng.standard_normal(6)
    theta0 = rng.standard_normal(15)
    rs = ib.row_space(x)
    eta = 1.3 / rs.s[0] ** 2
    lim = ib.gd_least_squares_limit(x, y, theta0)
    th = theta0.copy()
    dists = [np.linalg.norm(th - lim)]
    for _ in range(300):
        th = th - eta * x.T @ (x @ th - y)
        dists.append(np.linalg.norm(th - lim))
    pred = ib.gd_least_squares_distance(rs.s, rs.v.T @ (theta0 - ib.min_norm_solution(x, y)), eta, np.arange(301))
    np.testing.assert_allclose(pred, dists, rtol=0, atol=1e-11 * dists[0])
    # The limit keeps theta0's null-space component and interpolates.
    np.testing.assert_allclose(x @ lim, y, atol=1e-10)
    np.testing.assert_allclose(rs.project_null(lim), rs.project_null(theta0), atol=1e-12)


def test_asymptotic_rate_is_slowest_mode() -> None:
    s = np.array([3.0, 2.0, 0.5])
    eta = 1.0 / 9.0
    assert ib.gd_asymptotic_rate(s, eta) == pytest.approx(1.0 - 0.25 / 9.0, abs=1e-15)
    assert ib.max_stable_lr(s) == pytest.approx(2.0 / 9.0)
    # Past 2/s_max^2 the largest mode's factor exceeds 1: divergence.
    assert ib.gd_asymptotic_rate(s, 2.1 / 9.0) > 1.0


def test_predicted_distance_handles_huge_steps_and_exact_zero_modes() -> None:
    s = np.array([1.0, 0.5])
    out = ib.gd_least_squares_distance(s, np.array([1.0, 2.0]), 1.0, np.array([0, 1, 10**9]))
    # Mode 1 has factor exactly 0 (eta s^2 = 1): gone after one step; mode 2 underflows cleanly.
    np.testing.assert_allclose(out, [np.sqrt(5.0), 2.0 * 0.75, 0.0], atol=1e-15)


# ---------------------------------------------------------------------------------------- SVM


def test_svm_on_a_hand_solved_problem() -> None:
    # z = (1, 1) and (1, -1): min ||w|| with w1 + w2 >= 1 and w1 - w2 >= 1 is w = (1, 0), alpha = (1/2, 1/2).
    x = np.array([[1.0, 1.0], [1.0, -1.0], [3.0, 0.0]])
    y = np.array([1.0, 1.0, 1.0])
    s = ib.hard_margin_svm(x, y)
    np.testing.assert_allclose(s.w, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(s.alpha, [0.5, 0.5, 0.0], atol=1e-12)
    assert s.converged and s.kkt_residual <= 1e-12
    assert s.margin == pytest.approx(1.0)
    assert list(s.support) == [0, 1]


@pytest.mark.parametrize("d", [2, 5, 12])
def test_svm_agrees_with_independent_primal_solver_and_kkt(rng: np.random.Generator, d: int) -> None:
    x, y = _separable(rng, 40, d)
    s = ib.hard_margin_svm(x, y)
    assert s.converged, s.kkt_residual
    w_ref = _svm_slsqp(x, y)
    np.testing.assert_allclose(s.w, w_ref, rtol=0, atol=1e-6 * np.linalg.norm(w_ref))
    z = x * y[:, None]
    assert (z @ s.w).min() >= 1.0 - 1e-9
    assert np.all(s.alpha >= 0.0)
    np.testing.assert_allclose(s.w, z.T @ s.alpha, atol=1e-12)
    np.testing.assert_allclose((z @ s.w)[s.support], 1.0, atol=1e-9)


def test_svm_rejects_bad_labels() -> None:
    with pytest.raises(ConfigError, match="`y` must contain only -1 and \\+1"):
        ib.hard_margin_svm(np.ones((2, 2)), np.array([1.0, 0.0]))


# ---------------------------------------------------------------------------------------- LPs


def test_lp_margins_on_a_hand_solved_problem() -> None:
    x = np.array([[1.0, 1.0]])
    y = np.array([1.0])
    linf = ib.max_margin_lp(x, y, "linf")
    l1 = ib.max_margin_lp(x, y, "l1")
    assert linf.converged and l1.converged
    np.testing.assert_allclose(linf.w, [1.0, 1.0], atol=1e-12)
    assert linf.margin == pytest.approx(2.0)
    assert l1.margin == pytest.approx(1.0)
    assert np.abs(l1.w).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_lp_margin_matches_exhaustive_search_in_2d(rng: np.random.Generator, norm: str) -> None:
    x, y = _separable(rng, 25, 2, margin=0.3)
    lp = ib.max_margin_lp(x, y, norm)
    # Every direction of the plane, finely: the best normalised minimum margin.
    ang = np.linspace(0.0, 2.0 * np.pi, 400_001)
    w = np.stack([np.cos(ang), np.sin(ang)])  # (2, A)
    scale = np.abs(w).sum(axis=0) if norm == "l1" else np.abs(w).max(axis=0)
    best = ((x * y[:, None]) @ w).min(axis=0) / scale
    # Grid resolution: the normalised margin moves by at most ~4 max||x|| per radian of direction.
    step = ang[1] - ang[0]
    assert lp.margin == pytest.approx(best.max(), abs=4.0 * np.linalg.norm(x, axis=1).max() * step)
    assert lp.margin >= best.max() - 1e-12  # the LP is exact; the grid can only fall short
    assert ib.normalized_margins(x, y, lp.w, norm).min() == pytest.approx(lp.margin, abs=1e-9)


def test_lp_rejects_unknown_norm() -> None:
    with pytest.raises(ConfigError, match="`norm` must be 'l1' or 'linf'"):
        ib.max_margin_lp(np.ones((1, 2)), np.ones(1), "l3")


def test_svm_direction_maximises_the_l2_margin_over_lp_directions(rng: np.random.Generator) -> None:
    x, y = _separable(rng, 30, 6)
    svm = ib.hard_margin_svm(x, y)
    for norm in ("l1", "linf"):
        lp = ib.max_margin_lp(x, y, norm)
        assert ib.normalized_margins(x, y, lp.w, "l2").min() <= svm.margin + 1e-9
        assert ib.normalized_margins(x, y, svm.w, norm).min() <= lp.margin + 1e-9


# ---------------------------------------------------------------------------------------- Soudry


def test_soudry_residual_solves_its_defining_equations(rng: np.random.Generator) -> None:
    x = np.array([[1.0, 0.3], [1.0, -0.5], [3.0, 2.0], [2.5, -2.0]])
    y = np.ones(4)
    svm = ib.hard_margin_svm(x, y)
    assert svm.support.size == 2
    eta = 0.1
    wt = ib.soudry_residual_limit(x, y, svm, eta)
    assert wt is not None
    z = x[svm.support]
    np.testing.assert_allclose(eta * np.exp(-z @ wt), svm.alpha[svm.support], rtol=1e-12)


def test_soudry_residual_undefined_with_too_few_support_vectors() -> None:
    x = np.array([[1.0, 0.0], [2.0, 1.0], [2.0, -1.0]])
    y = np.ones(3)
    svm = ib.hard_margin_svm(x, y)
    assert svm.support.size == 1
    assert ib.soudry_residual_limit(x, y, svm, 0.1) is None


def test_soudry_gap_is_order_one_over_log_t() -> None:
    w_hat = np.array([2.0, 0.0])
    w_tilde = np.array([-1.0, 0.5])
    t = np.array([1e3, 1e6, 1e12, 1e50])
    gap = ib.soudry_direction_gap(w_hat, w_tilde, t)
    assert np.all(np.diff(gap) < 0)
    # gap * log t -> ||w_tilde_perp|| / ||w_hat|| = 0.25, i.e. 1/gap ~ slope * log t with slope 4.
    assert gap[-1] * np.log(t[-1]) == pytest.approx(0.25, rel=0.01)
    assert ib.soudry_gap_slope(w_hat, w_tilde) == pytest.approx(4.0)


def test_direction_gap_and_cosine_basics() -> None:
    a = np.array([3.0, 0.0])
    assert ib.direction_gap(a, 2 * a) == 0.0
    assert ib.direction_gap(a, -a) == pytest.approx(2.0)
    assert ib.cosine(a, np.array([0.0, 1.0])) == 0.0
    assert ib.logistic_max_lr(np.diag([2.0, 1.0])) == pytest.approx(2.0)
