"""Closed-form predictions for the implicit bias of gradient descent in linear models.

Two theorems, each turned into numbers a measurement can be compared with:

1. Under-determined least squares (seed theorem "Implicit Bias of Gradient Descent in Linear
   Models", line 152; worked example 2; exercise B.1). For L(theta) = 1/2 ||X theta - y||^2 with
   X of full row rank n < d, gradient descent theta_{t+1} = theta_t - eta X^T (X theta_t - y)
   with 0 < eta < 2 / s_max^2 converges to X^+ y + P_ker(X) theta_0. Writing X = U S V^T (thin
   SVD, V_r the row-space basis), the error is confined to the row space and decays per mode:

       V_r^T (theta_t - theta_lim) = (I - eta S^2)^t V_r^T (theta_0 - X^+ y),

   so ||theta_t - theta_lim|| is known exactly at every t and its asymptotic per-step rate is
   max_i |1 - eta s_i^2|. The null-space component of theta_0 is never touched.

2. Separable logistic regression (Soudry, Hoffer, Nacson, Gunasekar, Srebro, "The Implicit Bias
   of Gradient Descent on Separable Data", JMLR 19, 2018, Theorem 3 and the characterisation of
   its residual). For the summed loss L(w) = sum_n log(1 + exp(-y_n w^T x_n)) on linearly
   separable data, GD with eta < 2 beta^-1 s_max(X)^-2 (beta = 1/4 for the logistic loss)
   satisfies w(t) = w_hat log t + rho(t) with w_hat the hard-margin SVM solution
   (min ||w|| s.t. y_n w^T x_n >= 1) and rho(t) bounded, so the direction gap
   ||w(t)/||w(t)|| - w_hat/||w_hat|| || is O(1/log t). When the support vectors span R^d,
   rho(t) -> w_tilde, the solution of eta exp(-y_n w_tilde^T x_n) = alpha_n on the support
   vectors (alpha the SVM dual variables), which predicts the whole late-time gap curve.

   Steepest descent in another norm (sign descent = l_inf, greedy coordinate descent = l_1)
   maximises the margin in that norm instead (Gunasekar, Lee, Soudry, Srebro, "Characterizing
   Implicit Bias in Terms of Optimization Geometry", ICML 2018); those max-margin directions are
   linear programs, solved here with HiGHS.

Everything here is pure NumPy/SciPy: the exact answers the implicit-bias lens measures against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, minimize

from multilens.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Least squares: the pseudoinverse limit and the per-mode rate


@dataclass(frozen=True)
class RowSpace:
    """The thin SVD pieces of X that GD on least squares sees: singular values and row basis."""

    s: np.ndarray  # (r,) positive singular values, descending
    v: np.ndarray  # (d, r) orthonormal basis of the row space Im(X^T)

    @property
    def rank(self) -> int:
        return int(self.s.size)

    def project_null(self, theta: np.ndarray) -> np.ndarray:
        """Component of ``theta`` in ker(X) (orthogonal complement of the row space)."""
        return theta - self.v @ (self.v.T @ theta)


def row_space(x: np.ndarray, rtol: float | None = None) -> RowSpace:
    """Row space of ``x`` (n, d) from a dense SVD; singular values below rtol*s_max are dropped."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"`x` must be a 2-D array; got shape {x.shape}.")
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    tol = (max(x.shape) * np.finfo(np.float64).eps) if rtol is None else rtol
    keep = s > tol * (s[0] if s.size else 0.0)
    return RowSpace(s=s[keep], v=vt[keep].T)


def min_norm_solution(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """X^+ y, the minimum-norm least-squares solution (via LAPACK's SVD-based lstsq)."""
    return np.linalg.lstsq(np.asarray(x, np.float64), np.asarray(y, np.float64), rcond=None)[0]


def gd_least_squares_limit(x: np.ndarray, y: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """The limit of GD on 1/2||X theta - y||^2 from ``theta0``: X^+ y + P_ker(X) theta0."""
    return min_norm_solution(x, y) + row_space(x).project_null(np.asarray(theta0, np.float64))


def max_stable_lr(s: np.ndarray) -> float:
    """GD on 1/2||X theta - y||^2 converges iff 0 < eta < 2 / s_max^2."""
    return 2.0 / float(np.max(s)) ** 2


def gd_contraction(s: np.ndarray, eta: float) -> np.ndarray:
    """Per-mode contraction factors |1 - eta s_i^2| of the row-space error."""
    return np.abs(1.0 - eta * np.asarray(s, np.float64) ** 2)


def gd_asymptotic_rate(s: np.ndarray, eta: float) -> float:
    """The late-time per-step factor of ||theta_t - theta_lim||: the slowest mode's contraction."""
    return float(np.max(gd_contraction(s, eta)))


def gd_least_squares_distance(s: np.ndarray, coeffs: np.ndarray, eta: float, steps: np.ndarray) -> np.ndarray:
    """Exact ||theta_t - theta_lim|| at each t in ``steps``.

    ``coeffs`` = V_r^T (theta_0 - X^+ y), the initial error in row-space coordinates.
    """
    rho = gd_contraction(s, eta)  # (r,)
    t = np.asarray(steps, dtype=np.float64)[:, None]  # (T, 1)
    # rho**(2t) through exp/log so huge t underflows cleanly to 0 instead of warning.
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        log_rho = np.where(rho > 0, np.log(np.where(rho > 0, rho, 1.0)), -np.inf)
        decay = np.where(t == 0, 1.0, np.exp(2.0 * t * log_rho[None, :]))  # (T, r)
    energy = decay * np.asarray(coeffs, np.float64)[None, :] ** 2
    return np.sqrt(energy.sum(axis=1))


# --------------------------------------------------------------------------------------------
# Separable classification: the hard-margin SVM, l1/l_inf max-margin LPs, Soudry's asymptote


@dataclass(frozen=True)
class SVMSolution:
    """Hard-margin SVM through the origin: min 1/2||w||^2 s.t. z_n^T w >= 1 (z_n = y_n x_n).

    KKT residuals (all zero at the exact optimum): ``primal_infeasibility`` =
    max(0, 1 - min_n z_n^T w); ``dual_infeasibility`` = max(0, -min alpha);
    ``complementarity`` = max_n |alpha_n (z_n^T w - 1)|; ``duality_gap`` = ||w||^2 - sum alpha
    (w = Z^T alpha by construction, so stationarity holds exactly).
    """

    w: np.ndarray
    alpha: np.ndarray
    support: np.ndarray  # indices with alpha_n > 0
    primal_infeasibility: float
    dual_infeasibility: float
    complementarity: float
    duality_gap: float
    converged: bool
    n_iter: int
    polished: bool  # the active-set solve of the support-vector system was accepted

    @property
    def margin(self) -> float:
        """The geometric margin 1/||w||."""
        return 1.0 / float(np.linalg.norm(self.w))

    @property
    def kkt_residual(self) -> float:
        return max(self.primal_infeasibility, self.dual_infeasibility, self.complementarity, abs(self.duality_gap))


def _kkt(z: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
    w = z.T @ alpha
    m = z @ w
    return (
        w,
        float(max(0.0, 1.0 - m.min())),
        float(max(0.0, -alpha.min())),
        float(np.max(np.abs(alpha * (m - 1.0)))),
        float(w @ w - alpha.sum()),
    )


def hard_margin_svm(x: np.ndarray, y: np.ndarray, tol: float = 1e-9, max_iter: int = 50_000) -> SVMSolution:
    """Solve the homogeneous hard-margin SVM exactly and verify its KKT conditions.

    The dual max_alpha>=0 sum(alpha) - 1/2||Z^T alpha||^2 is a bound-constrained QP, solved with
    L-BFGS-B; its support set is then polished by solving Z_S Z_S^T alpha_S = 1 (the active
    constraints hold with equality), accepted only if it keeps alpha_S > 0 and every margin >= 1.
    ``converged`` means every KKT residual is <= ``tol`` (relative to ||w||^2 for the gap).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"`x` must be (n, d) and `y` (n,); got {x.shape} and {y.shape}.")
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise ConfigError("`y` must contain only -1 and +1 labels.")
    z = x * y[:, None]  # (n, d) signed examples
    n = z.shape[0]
    gram = z @ z.T

    def f(a: np.ndarray) -> float:
        return 0.5 * float(a @ gram @ a) - float(a.sum())

    def g(a: np.ndarray) -> np.ndarray:
        return gram @ a - 1.0

    res = minimize(
        f,
        np.zeros(n),
        jac=g,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * n,
        options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": max_iter, "maxfun": 4 * max_iter},
    )
    alpha = np.maximum(res.x, 0.0)
    n_iter = int(res.nit)
    polished = False
    active = alpha > 1e-6 * max(float(alpha.max()), 1e-300)
    if active.any():
        zs = z[active]
        a_s = np.linalg.lstsq(zs @ zs.T, np.ones(int(active.sum())), rcond=None)[0]
        cand = np.zeros(n)
        cand[active] = a_s
        _, p_inf, d_inf, comp, gap = _kkt(z, cand)
        _, p0, d0, c0, g0 = _kkt(z, alpha)
        if d_inf == 0.0 and max(p_inf, comp, abs(gap)) <= max(p0, c0, abs(g0)):
            alpha, polished = cand, True
    w, p_inf, d_inf, comp, gap = _kkt(z, alpha)
    scale = max(1.0, float(w @ w))
    converged = bool(max(p_inf, d_inf, comp) <= tol and abs(gap) <= tol * scale)
    support = np.flatnonzero(alpha > 0.0)
    return SVMSolution(w, alpha, support, p_inf, d_inf, comp, gap, converged, n_iter, polished)


@dataclass(frozen=True)
class MaxMarginLP:
    """argmax_{||w||_p <= 1} min_n y_n w^T x_n for p in {1, inf}, from a linear program."""

    norm: str  # "l1" or "linf"
    w: np.ndarray  # a maximiser, ||w||_p = 1 (it need not be unique)
    margin: float  # the optimal p-norm margin
    converged: bool
    n_iter: int
    message: str


def max_margin_lp(x: np.ndarray, y: np.ndarray, norm: str) -> MaxMarginLP:
    """The l1- or l_inf-normalised max-margin direction, by HiGHS.

    l_inf: max gamma s.t. Z w >= gamma, -1 <= w_j <= 1. l_1: w = u - v with u, v >= 0 and
    sum(u + v) <= 1. Sign descent converges to the l_inf solution, greedy coordinate descent to
    the l_1 one (Gunasekar et al. 2018).
    """
    if norm not in ("l1", "linf"):
        raise ConfigError(f"`norm` must be 'l1' or 'linf'; got {norm!r}.")
    z = np.asarray(x, np.float64) * np.asarray(y, np.float64)[:, None]
    n, d = z.shape
    if norm == "linf":
        c = np.r_[np.zeros(d), -1.0]
        a_ub = np.c_[-z, np.ones(n)]  # gamma - z_n^T w <= 0
        bounds = [(-1.0, 1.0)] * d + [(None, None)]
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), bounds=bounds, method="highs")
        w = res.x[:d] if res.x is not None else np.full(d, np.nan)
    else:
        c = np.r_[np.zeros(2 * d), -1.0]
        a_ub = np.vstack([np.c_[-z, z, np.ones(n)], np.r_[np.ones(2 * d), 0.0][None, :]])
        b_ub = np.r_[np.zeros(n), 1.0]
        bounds = [(0.0, None)] * (2 * d) + [(None, None)]
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        w = res.x[:d] - res.x[d : 2 * d] if res.x is not None else np.full(d, np.nan)
    ok = bool(res.status == 0)
    margin = float(-res.fun) if ok else math.nan
    return MaxMarginLP(norm, w, margin, ok and margin > 0.0, int(getattr(res, "nit", 0) or 0), str(res.message))


def normalized_margins(x: np.ndarray, y: np.ndarray, w: np.ndarray, norm: str = "l2") -> np.ndarray:
    """y_n w^T x_n / ||w||_p for every example (p = 1, 2 or inf); the minimum is the margin."""
    w = np.asarray(w, np.float64)
    scale = {"l1": np.abs(w).sum(), "l2": np.linalg.norm(w), "linf": np.abs(w).max()}[norm]
    return (np.asarray(x, np.float64) @ w) * np.asarray(y, np.float64) / scale


def direction_gap(w: np.ndarray, w_ref: np.ndarray) -> float:
    """|| w/||w|| - w_ref/||w_ref|| ||_2 (0 when the directions agree, 2 when opposite)."""
    return float(np.linalg.norm(w / np.linalg.norm(w) - w_ref / np.linalg.norm(w_ref)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def logistic_max_lr(x: np.ndarray) -> float:
    """Soudry et al.'s step-size bound 2 / (beta s_max(X)^2) with beta = 1/4 (logistic loss)."""
    s_max = float(np.linalg.norm(np.asarray(x, np.float64), 2))
    return 8.0 / s_max**2


def soudry_residual_limit(x: np.ndarray, y: np.ndarray, svm: SVMSolution, eta: float) -> np.ndarray | None:
    """w_tilde with eta exp(-z_n^T w_tilde) = alpha_n on the support vectors, or None.

    Defined when the support vectors span R^d (then rho(t) = w(t) - w_hat log t -> w_tilde for
    GD on the summed logistic loss); with fewer support vectors than dimensions the component
    of rho(t) outside their span depends on the trajectory and is not predicted.
    """
    z = np.asarray(x, np.float64) * np.asarray(y, np.float64)[:, None]
    sup = svm.support
    d = z.shape[1]
    if sup.size < d or np.linalg.matrix_rank(z[sup]) < d:
        return None
    rhs = -np.log(svm.alpha[sup] / eta)
    w_tilde, *_ = np.linalg.lstsq(z[sup], rhs, rcond=None)
    if np.max(np.abs(z[sup] @ w_tilde - rhs)) > 1e-8 * max(1.0, float(np.abs(rhs).max())):
        return None  # more support vectors than dimensions and inconsistent: degenerate data
    return w_tilde


def soudry_direction_gap(w_hat: np.ndarray, w_tilde: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Predicted direction gap of w_hat log t + w_tilde against w_hat at each t >= 1."""
    t = np.asarray(steps, np.float64)
    u = w_hat / np.linalg.norm(w_hat)
    p = np.log(t)[:, None] * w_hat[None, :] + w_tilde[None, :]  # (T, d)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    return np.linalg.norm(p - u[None, :], axis=1)


def soudry_gap_slope(w_hat: np.ndarray, w_tilde: np.ndarray) -> float:
    """Asymptotic slope b of 1/gap ~ a + b log t: ||w_hat|| / ||w_tilde projected off w_hat||."""
    u = w_hat / np.linalg.norm(w_hat)
    perp = w_tilde - (w_tilde @ u) * u
    return float(np.linalg.norm(w_hat) / np.linalg.norm(perp))
