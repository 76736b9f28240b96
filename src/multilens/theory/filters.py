"""Spectral filter factors of early-stopped gradient descent and ridge, and how well they match.

For least squares min (1/2)||A x - y||^2 with SVD A = U diag(s) V^T, an estimator that is a
function of A^T A acts mode by mode: x = sum_j phi_j / s_j (u_j^T y) v_j. Its filter factors
phi_j (1 = naive inverse, 0 = mode discarded) are (Hansen 2010, "Discrete Inverse Problems",
Ch. 4; Engl, Hanke, Neubauer 1996, Ch. 4-6; the seed's A.9 at line 300 and B.12 at line 333):

* gradient descent (Landweber) from x_0 = 0 with step eta, after t steps:
  phi = 1 - (1 - eta s^2)^t  (the recursion e_{t+1} = (I - eta A^T A) e_t in each mode);
* gradient flow, time t: phi = 1 - exp(-t s^2);
* ridge (Tikhonov) min ||A x - y||^2 + lam ||x||^2: phi = s^2 / (s^2 + lam).

GD and ridge share the limits (phi -> 1 for large s, phi ~ t eta s^2 vs s^2/lam for small s),
which suggests lam ~ 1/(eta t); but the one-parameter families have different shapes, so on a
wide spectrum no single lam reproduces a GD filter on every mode. The best lam in the minimax
sense, min_lam max_j |phi_gd_j - phi_ridge_j(lam)|, is found exactly by bisection: each ridge
filter decreases in lam, so the largest positive deviation decreases and the largest negative
deviation increases, and the minimax is where they cross.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.validation import check_int


def gd_filter(s: np.ndarray | float, eta: float, t: int | np.ndarray) -> np.ndarray:
    """1 - (1 - eta s^2)^t, computed as -expm1(t log1p(-eta s^2)) so tiny filters keep their digits.

    Requires eta s^2 in [0, 2) (a convergent step); ``t`` broadcasts against ``s``.
    """
    x = float(eta) * np.asarray(s, dtype=float) ** 2
    if np.any(x < 0) or np.any(x >= 2):
        raise ConfigError(f"`eta` * s^2 must lie in [0, 2) for a convergent step; got max {float(np.max(x)):.4g}.")
    t = np.asarray(t)
    out = np.empty(np.broadcast(x, t).shape)
    xb, tb = np.broadcast_arrays(x, t)
    small = xb < 1.0
    # Below x = 1 the log form is exact to rounding; at and above it (1 - x) <= 0 and powers are exact enough.
    out[small] = -np.expm1(tb[small] * np.log1p(-xb[small]))
    out[~small] = 1.0 - np.power(1.0 - xb[~small], tb[~small])
    return out


def gradient_flow_filter(s: np.ndarray | float, t: float | np.ndarray) -> np.ndarray:
    """1 - exp(-t s^2)."""
    return -np.expm1(-np.asarray(t, dtype=float) * np.asarray(s, dtype=float) ** 2)


def ridge_filter(s: np.ndarray | float, lam: float | np.ndarray) -> np.ndarray:
    """s^2 / (s^2 + lam)."""
    s2 = np.asarray(s, dtype=float) ** 2
    return s2 / (s2 + np.asarray(lam, dtype=float))


@dataclass(frozen=True)
class FilterMatch:
    """The minimax-best ridge penalty for a target filter and the discrepancy it leaves."""

    lam: float
    gap: float  # max_j |target_j - ridge_filter(s_j, lam)|
    worst_index: int  # the mode where the gap is attained
    converged: bool
    n_iter: int


def best_matching_lambda(s: np.ndarray, target: np.ndarray, *, rtol: float = 1e-12, max_iter: int = 400) -> FilterMatch:
    """argmin_lam max_j |target_j - s_j^2/(s_j^2 + lam)| by bisection on log(lam).

    ``s`` must be positive. The deviation d_j(lam) = ridge_j(lam) - target_j decreases in lam,
    so D+(lam) = max_j d_j decreases and D-(lam) = max_j (-d_j) increases; the minimax is at
    their crossing. Stops when the bracket's relative width in lam is below ``rtol``.
    """
    s = np.asarray(s, dtype=float).ravel()
    target = np.asarray(target, dtype=float).ravel()
    if s.shape != target.shape or s.size == 0:
        raise ConfigError(f"`s` and `target` must be non-empty and the same shape; got {s.shape} and {target.shape}.")
    if np.any(s <= 0):
        raise ConfigError("`s` must be > 0 for every mode; drop zero singular values first.")
    check_int("max_iter", max_iter, 1)
    s2 = s * s

    def phi(u: float) -> float:
        dev = s2 / (s2 + math.exp(u)) - target
        return float(dev.max() + dev.min())  # D+ - D- = max(dev) - max(-dev)

    # Bracket: far below the smallest s^2 ridge is ~1 on every mode (phi >= 0); far above the
    # largest it is ~0 (phi <= 0).
    lo = math.log(s2.min()) - 40.0
    hi = math.log(s2.max()) + 40.0
    n_iter = 0
    converged = False
    while n_iter < max_iter:
        n_iter += 1
        mid = 0.5 * (lo + hi)
        if phi(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= rtol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"best_matching_lambda stopped at max_iter={max_iter} with log-bracket width {hi - lo:.3g} "
            f"> rtol={rtol:g}; raise max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    lam = math.exp(0.5 * (lo + hi))
    dev = np.abs(ridge_filter(s, lam) - target)
    j = int(np.argmax(dev))
    return FilterMatch(lam=lam, gap=float(dev[j]), worst_index=j, converged=converged, n_iter=n_iter)


def continuum_gd_ridge_gap(t: int, *, n_grid: int = 20001) -> FilterMatch:
    """min_mu sup_{x in (0, 1]} |1 - (1-x)^t - x/(x + mu)|: the best a single ridge can do for GD at t.

    x = eta s^2 is the mode's step-scaled curvature (eta <= 1/s_max^2 puts every mode in (0, 1]),
    mu = eta lam. Because any operator's modes are a subset of (0, 1], its own minimax gap is at
    most this value; a wide, densely sampled spectrum approaches it. The sup is taken on a
    log-spaced grid reaching far below 1/t, fine enough that the discretization changes the gap
    by far less than 1e-6 (the grid ratio is ~1.001). ``lam`` in the result is mu = eta lam.
    """
    check_int("t", t, 1)
    check_int("n_grid", n_grid, 101)
    x = np.geomspace(1e-6 / t, 1.0, n_grid)
    s = np.sqrt(x)  # with eta = 1: s^2 = x
    return best_matching_lambda(s, gd_filter(s, 1.0, t))
