"""Under-determined least squares: GD converges to X^+ y at the rate the spectrum predicts.

Seed theorem at line 152 (worked example 2, exercise B.1). X is n x d Gaussian with n < d (full
row rank almost surely), y = X beta* + noise. Gradient descent on 1/2||X theta - y||^2 with
eta = lr_fraction / s_max^2 is run for real, and at every step the measured distance to its limit
is set beside the exact prediction sqrt(sum_i (1 - eta s_i^2)^(2t) c_i^2)
(multilens.theory.implicit_bias). From theta_0 = 0 the limit is X^+ y; from a theta_0 with a
null-space component that component is carried through unchanged, so the limit is
X^+ y + P_ker theta_0 and the distance to X^+ y stalls at ||P_ker theta_0||.

What-if (worked example 2): the null-space component costs test error. For x ~ N(0, I_d) the
excess risk of X^+ y + P_ker theta_0 over X^+ y is ||P_ker theta_0||^2 - 2 theta_0^T P_ker beta*,
whose expectation over theta_0 ~ N(0, s^2/d I) is s^2 (d - n) / d; it is measured on held-out data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from multilens.errors import ConvergenceWarning
from multilens.seeding import SeedLike, as_generator
from multilens.theory.implicit_bias import gd_asymptotic_rate, gd_least_squares_distance, min_norm_solution, row_space
from multilens.validation import check_int


@dataclass(frozen=True)
class LeastSquaresProblem:
    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    beta: np.ndarray  # (d,) the teacher
    x_test: np.ndarray  # (n_test, d)
    y_test: np.ndarray  # (n_test,)


def make_problem(n: int, d: int, noise: float, n_test: int, seed: SeedLike) -> LeastSquaresProblem:
    """x ~ N(0, I_d); beta* ~ N(0, I_d / d) (unit signal energy); y = x^T beta* + noise * eps."""
    check_int("n", n, 1)
    check_int("d", d, n + 1)
    rng = as_generator(seed)
    beta = rng.standard_normal(d) / np.sqrt(d)
    x = rng.standard_normal((n, d))
    xt = rng.standard_normal((n_test, d))
    return LeastSquaresProblem(
        x, x @ beta + noise * rng.standard_normal(n), beta, xt, xt @ beta + noise * rng.standard_normal(n_test)
    )


@dataclass(frozen=True)
class GDRun:
    """One GD run on least squares, its exact prediction, and what it left in the null space."""

    steps: np.ndarray  # (T+1,) 0..T
    dist_limit: np.ndarray  # (T+1,) measured ||theta_t - theta_lim||
    dist_limit_pred: np.ndarray  # (T+1,) exact prediction
    dist_pinv: np.ndarray  # (T+1,) measured ||theta_t - X^+ y||
    eta: float
    rate_pred: float  # max_i |1 - eta s_i^2|
    theta_final: np.ndarray
    theta_limit: np.ndarray
    null_drift: float  # ||P_ker theta_T - P_ker theta_0||
    null_norm: float  # ||P_ker theta_0||
    mode_dev: float  # max_t,i |v_i^T (theta_t - lim) - (1 - eta s_i^2)^t c_i| / ||c||: the per-mode law
    converged: bool
    n_iter: int
    s_min: float
    s_max: float


def run_gd(
    prob: LeastSquaresProblem,
    theta0: np.ndarray,
    lr_fraction: float,
    max_steps: int,
    tol: float,
    stop: str = "limit",
) -> GDRun:
    """GD from ``theta0`` until the stopping rule holds or the cap.

    ``stop="limit"``: ||theta_t - theta_lim|| <= tol * max(1, ||theta_lim||), with the limit computed
    independently by lstsq + projection. ``stop="gradient"``: ||X^T (X theta_t - y)|| <= tol * ||X^T y||,
    a rule that knows nothing of the predicted limit (so the distance to it is a measurement).
    """
    if stop not in ("limit", "gradient"):
        raise ValueError(f"`stop` must be 'limit' or 'gradient'; got {stop!r}.")
    rs = row_space(prob.x)
    eta = lr_fraction / float(rs.s[0]) ** 2
    pinv = min_norm_solution(prob.x, prob.y)
    theta0 = np.asarray(theta0, np.float64)
    null0 = rs.project_null(theta0)
    limit = pinv + null0
    coeffs = rs.v.T @ (theta0 - pinv)  # row-space error coordinates (null part cancels)
    xt_y = prob.x.T @ prob.y
    gram = prob.x.T @ prob.x  # (d, d): one matvec per step
    by_grad = stop == "gradient"
    bar = tol * (max(float(np.linalg.norm(xt_y)), 1e-300) if by_grad else max(1.0, float(np.linalg.norm(limit))))

    def done(th: np.ndarray, dist: float) -> bool:
        return (float(np.linalg.norm(gram @ th - xt_y)) if by_grad else dist) <= bar

    theta = theta0.copy()
    factor = 1.0 - eta * rs.s**2  # signed per-mode factors
    modal = coeffs.copy()  # predicted row-space coordinates of theta_t - theta_lim
    scale = max(float(np.linalg.norm(coeffs)), 1e-300)
    mode_dev = 0.0
    dl = [float(np.linalg.norm(theta - limit))]
    dp = [float(np.linalg.norm(theta - pinv))]
    converged = done(theta, dl[0])
    t = 0
    while not converged and t < max_steps:
        theta = theta - eta * (gram @ theta - xt_y)
        t += 1
        modal = modal * factor
        mode_dev = max(mode_dev, float(np.max(np.abs(rs.v.T @ (theta - limit) - modal))) / scale)
        dl.append(float(np.linalg.norm(theta - limit)))
        dp.append(float(np.linalg.norm(theta - pinv)))
        converged = done(theta, dl[-1])
    if not converged:
        what = "gradient norm" if by_grad else "distance"
        now = float(np.linalg.norm(gram @ theta - xt_y)) if by_grad else dl[-1]
        warnings.warn(
            f"least-squares GD stopped at the cap of {max_steps} steps with {what} {now:.3e} > {bar:.3e}",
            ConvergenceWarning,
            stacklevel=2,
        )
    steps = np.arange(t + 1)
    return GDRun(
        steps,
        np.array(dl),
        gd_least_squares_distance(rs.s, coeffs, eta, steps),
        np.array(dp),
        eta,
        gd_asymptotic_rate(rs.s, eta),
        theta,
        limit,
        float(np.linalg.norm(rs.project_null(theta) - null0)),
        float(np.linalg.norm(null0)),
        mode_dev,
        bool(converged),
        int(t),
        float(rs.s[-1]),
        float(rs.s[0]),
    )


def decay_rates(
    measured: np.ndarray, predicted: np.ndarray, lo: float = 1e-9, hi: float = 1e-4
) -> tuple[float, float] | None:
    """Per-step decay factors of the measured and predicted distance curves over one window.

    The window is the steps where the predicted distance, relative to its start, lies in [lo, hi]
    (past the fast modes, above the rounding floor); each factor is exp of the least-squares slope
    of log distance against t there. None if the window has fewer than 3 steps.
    """
    rel = predicted / predicted[0]
    idx = np.flatnonzero((rel >= lo) & (rel <= hi))
    if idx.size < 3:
        return None
    t = idx.astype(np.float64)
    return (
        float(np.exp(np.polyfit(t, np.log(measured[idx]), 1)[0])),
        float(np.exp(np.polyfit(t, np.log(predicted[idx]), 1)[0])),
    )


def test_mse(prob: LeastSquaresProblem, theta: np.ndarray) -> float:
    """Held-out mean squared error of x^T theta."""
    return float(np.mean((prob.x_test @ theta - prob.y_test) ** 2))


def init_with_null_component(d: int, scale: float, seed: SeedLike) -> np.ndarray:
    """theta_0 ~ N(0, scale^2 / d I_d): generic, so it has a null-space component when n < d."""
    return scale * as_generator(seed).standard_normal(d) / np.sqrt(d)
