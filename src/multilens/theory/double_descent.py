"""Closed-form risk of least squares with isotropic Gaussian design: min-norm, ridge, gradient flow.

Model: rows x_i ~ N(0, I_d), y = X beta + eps with ||beta||^2 = r2 and eps ~ N(0, sigma2 I_n),
n samples, gamma = d/n. "Risk" is the excess test risk E_x[(x^T(beta_hat - beta))^2], which for
isotropic x is exactly ||beta_hat - beta||^2 (test MSE minus the noise floor sigma2).

Exact finite-sample results (expectations over X and eps):

* min-norm variance: sigma2 * d/(n-d-1) for d < n-1 and sigma2 * n/(d-n-1) for d > n+1,
  infinite for n-1 <= d <= n+1. These are the inverse-Wishart mean E tr(W^{-1}) = p/(m-p-1)
  for W ~ W_p(m, I) (Muirhead 1982, Sec. 3.2; Anderson 2003, Sec. 7.7), with W = X^T X below
  and W = X X^T above the threshold. The seed chapter's
  theorem (line 158) states their limits; its inventory checks the exact forms by Monte Carlo.
* min-norm bias above the threshold: r2 * (1 - n/d). The row space of an isotropic Gaussian X is
  a uniformly random n-dimensional subspace, so E||(I - P_row) beta||^2 = r2 (1 - n/d) for every
  fixed beta. Below the threshold the min-norm solution is OLS and unbiased.
* k-th moment of tr(W^{-1}) is finite iff m - p + 1 > 2k (for p = 1 this is E[chi2_m^{-k}] < inf
  iff m > 2k); we use it to decide where a CLT interval over designs is trustworthy.

Limits n, d -> inf with d/n -> gamma (Hastie, Montanari, Rosset, Tibshirani 2019, "Surprises in
High-Dimensional Ridgeless Least Squares Interpolation", Sec. 2-3, isotropic features):

* min-norm risk: sigma2 * gamma/(1-gamma) for gamma < 1; r2 (1 - 1/gamma) + sigma2/(gamma-1)
  for gamma > 1.
* ridge beta_lam = (X^T X / n + lam I)^{-1} X^T y / n: risk -> r2 lam^2 m'(-lam)
  + sigma2 gamma (m(-lam) - lam m'(-lam)), where m is the Stieltjes transform of the
  Marchenko-Pastur law of X^T X / n (Dobriban & Wager 2018, "High-dimensional asymptotics of
  prediction: ridge regression and classification", Sec. 2). Derivation: averaging over an
  isotropic beta (allowed, since X is rotation invariant), the risk given X is
  (r2 lam^2/d) tr((S+lam)^{-2}) + (sigma2/n) tr(S (S+lam)^{-2}) with S = X^T X/n, and
  (1/d) tr((S+lam)^{-1}) -> m(-lam), (1/d) tr((S+lam)^{-2}) -> m'(-lam).
  (Dobriban & Wager 2018, Sec. 2-3, and Hastie et al. 2019 for the isotropic case.)
  Setting lam* = sigma2 * gamma / r2 makes r2 lam*/d = sigma2/n, so the two terms add up to
  (sigma2/n) tr((S+lam*)^{-1}) exactly for every X: lam* is the Bayes posterior-mean penalty and
  minimizes the expected risk over lam in [0, inf] at every finite n, and the optimal risk tends
  to sigma2 * gamma * m(-lam*). Its expectation is at most r2 (the risk of beta_hat = 0, lam = inf).
* gradient flow on (1/2n)||y - X b||^2 from 0, stopped at time t: the filter 1 - exp(-t s) on
  each eigenvalue s of S gives risk r2 * int exp(-2ts) dF(s) + sigma2 gamma int (1-exp(-ts))^2/s
  dF_c(s), F the MP law (with its atom 1 - 1/gamma at 0 when gamma > 1) and F_c its continuous
  part (Ali, Kolter, Tibshirani 2019, "A Continuous-Time View of Early Stopping for Least
  Squares", AISTATS; their main result bounds its Bayes risk, for any X and t, by 1.6862 times
  ridge's at lam = 1/t).
* the design's condition number s_max/s_min -> (1 + sqrt(gamma))/|1 - sqrt(gamma)|, the edges of
  the MP law (Marchenko & Pastur 1967; Bai & Yin 1993 for the extreme singular values).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from multilens.errors import ConfigError
from multilens.validation import check_int

#: Ali, Kolter & Tibshirani (2019): gradient-flow Bayes risk at time t is at most this constant
#: times ridge's Bayes risk at lam = 1/t, for every design and every t >= 0.
ALI_KOLTER_TIBSHIRANI_CONSTANT = 1.6862


def _check_nd(n: int, d: int) -> None:
    check_int("n", n, 1)
    check_int("d", d, 1)


def _check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not (v >= 0.0) or math.isinf(v):
        raise ConfigError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return v


def _check_gamma(gamma: float) -> float:
    g = float(gamma)
    if not (g > 0.0) or math.isinf(g):
        raise ConfigError(f"`gamma` must be a finite number > 0; got {gamma!r}.")
    return g


def minnorm_variance(n: int, d: int, sigma2: float) -> float:
    """Exact E[variance] of min-norm least squares: sigma2 d/(n-d-1) or sigma2 n/(d-n-1); inf near d = n."""
    _check_nd(n, d)
    sigma2 = _check_nonneg("sigma2", sigma2)
    if d < n - 1:
        return sigma2 * d / (n - d - 1)
    if d > n + 1:
        return sigma2 * n / (d - n - 1)
    return math.inf if sigma2 > 0 else 0.0


def minnorm_bias(n: int, d: int, r2: float) -> float:
    """Exact E[bias] of min-norm least squares: 0 for d <= n, r2 (1 - n/d) for d > n."""
    _check_nd(n, d)
    r2 = _check_nonneg("r2", r2)
    return 0.0 if d <= n else r2 * (1.0 - n / d)


def minnorm_risk(n: int, d: int, sigma2: float, r2: float) -> float:
    """Exact finite-sample expected excess risk of min-norm least squares (inf for n-1 <= d <= n+1)."""
    return minnorm_bias(n, d, r2) + minnorm_variance(n, d, sigma2)


def inverse_wishart_trace_moment_finite(n: int, d: int, k: int) -> bool:
    """Whether E[tr(W^{-1})^k] is finite for the min-norm Gram matrix (W_d(n) below, W_n(d) above).

    Finite iff m - p + 1 > 2k with (m, p) = (n, d) for d < n and (d, n) for d > n.
    """
    _check_nd(n, d)
    check_int("k", k, 1)
    m, p = (n, d) if d < n else (d, n)
    return m - p + 1 > 2 * k


def asymptotic_minnorm_risk(gamma: float, sigma2: float, r2: float) -> float:
    """Limiting min-norm risk (Hastie et al. 2019, isotropic case): inf at gamma = 1."""
    g = _check_gamma(gamma)
    sigma2 = _check_nonneg("sigma2", sigma2)
    r2 = _check_nonneg("r2", r2)
    if g < 1.0:
        return sigma2 * g / (1.0 - g)
    if g > 1.0:
        return r2 * (1.0 - 1.0 / g) + sigma2 / (g - 1.0)
    return math.inf


def asymptotic_minnorm_bias(gamma: float, r2: float) -> float:
    g = _check_gamma(gamma)
    return 0.0 if g <= 1.0 else _check_nonneg("r2", r2) * (1.0 - 1.0 / g)


def asymptotic_minnorm_variance(gamma: float, sigma2: float) -> float:
    g = _check_gamma(gamma)
    sigma2 = _check_nonneg("sigma2", sigma2)
    if g == 1.0:
        return math.inf
    return sigma2 * g / (1.0 - g) if g < 1.0 else sigma2 / (g - 1.0)


def mp_stieltjes(lam: float, gamma: float) -> float:
    """m(-lam) = int dF(s)/(s + lam) for the Marchenko-Pastur law of X^T X/n, ratio gamma, lam > 0.

    The root of gamma z m^2 - (1 - gamma - z) m + 1 = 0 at z = -lam that is positive; written
    in a form free of cancellation for small lam.
    """
    g = _check_gamma(gamma)
    lam = float(lam)
    if not lam > 0.0:
        raise ConfigError(f"`lam` must be > 0; got {lam!r}.")
    a = 1.0 - g + lam
    disc = math.sqrt(a * a + 4.0 * g * lam)
    # (-a + disc) / (2 g lam) rewritten as 2 / (a + disc): no cancellation when a > 0.
    return 2.0 / (a + disc) if a > 0 else (disc - a) / (2.0 * g * lam)


def mp_stieltjes_derivative(lam: float, gamma: float) -> float:
    """m'(z) at z = -lam, i.e. int dF(s)/(s + lam)^2 (implicit differentiation of the MP equation)."""
    g = _check_gamma(gamma)
    m = mp_stieltjes(lam, g)
    z = -float(lam)
    return (g * m * m + m) / ((1.0 - g - z) - 2.0 * g * z * m)


def asymptotic_ridge_risk(gamma: float, lam: float, sigma2: float, r2: float) -> float:
    """Limiting ridge risk at penalty lam (n-normalized), isotropic design and beta (Dobriban & Wager 2018)."""
    g = _check_gamma(gamma)
    sigma2 = _check_nonneg("sigma2", sigma2)
    r2 = _check_nonneg("r2", r2)
    m = mp_stieltjes(lam, g)
    dm = mp_stieltjes_derivative(lam, g)
    return r2 * lam * lam * dm + sigma2 * g * (m - lam * dm)


def optimal_ridge_lambda(gamma: float, sigma2: float, r2: float) -> float:
    """lam* = sigma2 gamma / r2, the Bayes (posterior-mean) penalty, optimal at every n."""
    g = _check_gamma(gamma)
    sigma2 = _check_nonneg("sigma2", sigma2)
    r2 = float(r2)
    if not r2 > 0:
        raise ConfigError(f"`r2` must be > 0 for the optimal ridge penalty; got {r2!r}.")
    return sigma2 * g / r2


def asymptotic_optimal_ridge_risk(gamma: float, sigma2: float, r2: float) -> float:
    """Limiting risk of ridge at lam*: sigma2 gamma m(-lam*) (derivation in the module docstring)."""
    g = _check_gamma(gamma)
    lam = optimal_ridge_lambda(g, sigma2, r2)
    if lam == 0.0:  # noiseless: ridgeless is optimal, risk is the min-norm bias
        return asymptotic_minnorm_bias(g, r2)
    return float(sigma2) * g * mp_stieltjes(lam, g)


def conditional_optimal_ridge_risk(eigs: np.ndarray, d: int, n: int, sigma2: float, lam: float) -> float:
    """Exact Bayes risk of ridge at lam* given the design: (sigma2/n) tr((S + lam*)^{-1}).

    ``eigs`` are the nonzero eigenvalues of S = X^T X / n; the other d - len(eigs) are zero.
    Its expectation over X equals the expected risk for any fixed beta with ||beta||^2 = r2.
    """
    eigs = np.asarray(eigs, dtype=float)
    return float(sigma2 / n * (np.sum(1.0 / (eigs + lam)) + (d - eigs.size) / lam))


def conditional_gradient_flow_risk(eigs: np.ndarray, d: int, n: int, sigma2: float, r2: float, t: float) -> float:
    """Exact Bayes risk (isotropic beta) of gradient flow at time t given the design's eigenvalues."""
    eigs = np.asarray(eigs, dtype=float)
    bias = r2 / d * (np.sum(np.exp(-2.0 * t * eigs)) + (d - eigs.size))
    var = sigma2 / n * np.sum(np.expm1(-t * eigs) ** 2 / eigs)
    return float(bias + var)


def mp_atom(gamma: float) -> float:
    """Mass of the MP law at 0 (the d - n zero eigenvalues of X^T X/n when d > n)."""
    g = _check_gamma(gamma)
    return max(0.0, 1.0 - 1.0 / g)


@functools.lru_cache(maxsize=8)
def _gauss_legendre(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, pi] (computing them is O(n^3): cache them)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    theta = 0.5 * math.pi * (x + 1.0)
    theta.setflags(write=False)
    w = 0.5 * math.pi * w
    w.setflags(write=False)
    return theta, w


def mp_integral(h: Callable[[np.ndarray], np.ndarray], gamma: float, n_nodes: int = 512) -> float:
    """int h(s) dF_c(s) over the continuous part of the MP law (mass min(1, 1/gamma)).

    The density is sqrt((b-s)(s-a))/(2 pi gamma s) on [a, b] = [(1-sqrt g)^2, (1+sqrt g)^2].
    Substituting s = c + rho cos(theta) (c = 1+g, rho = 2 sqrt g) removes the square-root edges,
    leaving rho^2 sin^2(theta) h(s)/(2 pi g s) on [0, pi], which Gauss-Legendre integrates to
    near machine precision (the integrand is smooth, including at gamma = 1 where a = 0).
    """
    g = _check_gamma(gamma)
    check_int("n_nodes", n_nodes, 8)
    theta, w = _gauss_legendre(n_nodes)
    c, rho = 1.0 + g, 2.0 * math.sqrt(g)
    s = c + rho * np.cos(theta)
    sin2 = np.sin(theta) ** 2
    # rho^2 sin^2 / s, written as rho^2 (1 - cos)(1 + cos)/s; at gamma = 1, s = 2(1 + cos): no 0/0.
    dens = rho * rho * sin2 / np.maximum(s, np.finfo(float).tiny) / (2.0 * math.pi * g)
    if g == 1.0:
        dens = 2.0 * (1.0 - np.cos(theta)) / (2.0 * math.pi)
    return float(np.sum(w * dens * h(s)))


def asymptotic_gradient_flow_risk(gamma: float, t: float, sigma2: float, r2: float, n_nodes: int = 512) -> float:
    """Limiting risk of gradient flow from 0 stopped at time t (Ali, Kolter, Tibshirani 2019)."""
    g = _check_gamma(gamma)
    sigma2 = _check_nonneg("sigma2", sigma2)
    r2 = _check_nonneg("r2", r2)
    t = float(t)
    if not t >= 0.0:
        raise ConfigError(f"`t` must be >= 0; got {t!r}.")
    bias = r2 * (mp_atom(g) + mp_integral(lambda s: np.exp(-2.0 * t * s), g, n_nodes))
    var = sigma2 * g * mp_integral(lambda s: np.expm1(-t * s) ** 2 / s, g, n_nodes)
    return bias + var


def asymptotic_condition_number(gamma: float) -> float:
    """Limit of s_max(X)/s_min(X) (nonzero singular values): (1 + sqrt g)/|1 - sqrt g|; inf at 1."""
    g = _check_gamma(gamma)
    if g == 1.0:
        return math.inf
    r = math.sqrt(g)
    return (1.0 + r) / abs(1.0 - r)
