"""The linear double-descent sweep: min-norm, optimal-ridge and early-stopped least squares.

Follows the seed's double-descent theorem (line 158), worked example 5, B.5 and A.13, measured
against the exact finite-sample moments and the limits of Hastie, Montanari, Rosset &
Tibshirani (2019) collected in :mod:`multilens.theory.double_descent`.

For each d = round(gamma n) we draw ``n_designs`` independent designs X (n x d, N(0, 1)
entries) and, per design, ``n_noise`` noise vectors. One spectral decomposition X = U diag(s) V^T gives
every estimator as a filter on the singular values: min-norm (1/s), ridge at the optimal penalty
lam* = sigma2 gamma/r2 (s/(s^2 + n lam*)) and gradient flow stopped at t = 1/lam*
((1 - exp(-t s^2/n))/s). Each estimate lies in the row space span(V), so
||beta_hat - beta||^2 = ||V^T beta_hat - V^T beta||^2 + ||beta||^2 - ||V^T beta||^2 exactly;
that is the excess test risk because x is isotropic. The per-design risk (mean over noise
draws) is the unit of the t-intervals; the noise draws split it into bias (squared error of the
noise-averaged estimate, minus its own 1/K variance share) and variance (the unbiased sample
variance across noise draws), so risk = bias + variance exactly per design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from multilens.seeding import SeedLike, as_generator, derive_seed
from multilens.stats import mean_ci
from multilens.theory import double_descent as th

# Designs per batched SVD: keep each chunk near 2e6 doubles (16 MB) whatever n and d are.
_CHUNK_ELEMENTS = 2_000_000


def median_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Median and its distribution-free order-statistic interval (binomial, coverage >= level).

    For heavy-tailed quantities (condition numbers near d = n) where a mean interval is useless.
    """
    x = np.sort(np.asarray(values, dtype=float).ravel())
    n = x.size
    # Largest j with P(Bin(n, 1/2) < j) <= (1 - level)/2; the interval is [x_(j), x_(n-j+1)] (1-based).
    j = int(stats.binom.ppf((1.0 - level) / 2.0, n, 0.5))
    while j > 0 and stats.binom.cdf(j - 1, n, 0.5) > (1.0 - level) / 2.0:
        j -= 1
    lo = x[max(j - 1, 0)]
    hi = x[min(n - j, n - 1)]
    return float(np.median(x)), float(lo), float(hi)


@dataclass(frozen=True)
class PointDraws:
    """Per-design measurements at one (n, d); every array has one entry per design."""

    n: int
    d: int
    lam: float  # optimal ridge penalty used (n-normalized)
    t_es: float  # gradient-flow stopping time used
    risk: np.ndarray  # min-norm excess risk, mean over noise draws
    bias: np.ndarray  # min-norm bias, from noise resampling
    variance: np.ndarray  # min-norm variance, from noise resampling
    ridge_risk: np.ndarray
    ridge_bayes: np.ndarray  # exact Bayes risk of ridge at lam* given the design
    es_risk: np.ndarray
    es_bayes: np.ndarray  # exact Bayes risk of gradient flow at t_es given the design
    cond: np.ndarray  # s_max/s_min of X (nonzero singular values)
    n_noise: int


def _filtered_errors(coef: np.ndarray, b_par: np.ndarray, perp2: np.ndarray) -> np.ndarray:
    """||beta_hat_k - beta||^2 per (design, draw) from row-space coordinates.

    coef: (c, r, K) estimates in the V basis; b_par: (c, r) = V^T beta; perp2: (c,) the energy of
    beta outside the row space.
    """
    return ((coef - b_par[:, :, None]) ** 2).sum(axis=1) + perp2[:, None]


def _noise_split(coef: np.ndarray, b_par: np.ndarray, perp2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bias, variance) per design from K noise draws at a fixed design (unbiased estimates)."""
    k = coef.shape[2]
    mean = coef.mean(axis=2)  # (c, r)
    variance = ((coef - mean[:, :, None]) ** 2).sum(axis=1).sum(axis=1) / (k - 1)
    bias = ((mean - b_par) ** 2).sum(axis=1) + perp2 - variance / k
    return bias, variance


def _row_space(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular values s, U^T y and V^T beta of each design in the batch ``x`` (c, n, d).

    Uses the eigendecomposition of the smaller Gram matrix (X^T X if d <= n, else X X^T), which is
    several times cheaper than a batched SVD here; the pairing v_j = X^T u_j / s_j keeps the signs
    consistent. Squaring the design costs accuracy only when s_min/s_max < ~1e-5, so designs with
    eigenvalue ratio below 1e-10 are redone with an SVD.
    """
    c, n, d = x.shape
    xt = np.swapaxes(x, 1, 2)  # (c, d, n)
    if d <= n:
        lam, v = np.linalg.eigh(xt @ x)  # (c, d), (c, d, d)
        s = np.sqrt(np.maximum(lam, 0.0))
        b_par = np.einsum("cdr,d->cr", v, beta)
        uy = np.swapaxes(v, 1, 2) @ (xt @ y)  # V^T X^T y = diag(s) U^T y
        with np.errstate(divide="ignore", invalid="ignore"):
            uy = uy / s[:, :, None]
    else:
        lam, u = np.linalg.eigh(x @ xt)  # (c, n), (c, n, n)
        s = np.sqrt(np.maximum(lam, 0.0))
        uy = np.swapaxes(u, 1, 2) @ y
        with np.errstate(divide="ignore", invalid="ignore"):
            b_par = (np.swapaxes(u, 1, 2) @ (x @ beta)[:, :, None])[:, :, 0] / s  # U^T X beta = diag(s) V^T beta
    bad = ~(lam.min(axis=1) > 1e-10 * lam.max(axis=1))
    for i in np.flatnonzero(bad):
        u_i, s_i, vt_i = np.linalg.svd(x[i], full_matrices=False)
        s[i], uy[i], b_par[i] = s_i, u_i.T @ y[i], vt_i @ beta
    return s, uy, b_par


def simulate_point(
    n: int, d: int, sigma2: float, r2: float, n_designs: int, n_noise: int, seed: SeedLike
) -> PointDraws:
    """Draw designs and noise at one (n, d) and measure every estimator's excess risk."""
    rng = as_generator(seed)
    gamma = d / n
    lam = th.optimal_ridge_lambda(gamma, sigma2, r2)
    t_es = 1.0 / lam
    beta = rng.standard_normal(d)
    beta *= math.sqrt(r2) / np.linalg.norm(beta)
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("risk", "bias", "variance", "ridge", "ridge_bayes", "es", "es_bayes", "cond")
    }
    chunk = max(1, min(n_designs, _CHUNK_ELEMENTS // (n * d)))
    done = 0
    while done < n_designs:
        c = min(chunk, n_designs - done)
        x = rng.standard_normal((c, n, d))
        noise = math.sqrt(sigma2) * rng.standard_normal((c, n, n_noise))
        y = x @ beta[None, :, None] + noise  # (c, n, K)
        s, uy, b_par = _row_space(x, y, beta)  # (c, r), (c, r, K), (c, r) with r = min(n, d)
        perp2 = np.maximum(r2 - (b_par**2).sum(axis=1), 0.0)
        eig = s**2 / n  # nonzero eigenvalues of S = X^T X / n
        # min-norm: 1/s on every nonzero singular value (the pseudoinverse, no cutoff)
        coef_mn = uy / s[:, :, None]
        out["risk"].append(_filtered_errors(coef_mn, b_par, perp2).mean(axis=1))
        bias, var = _noise_split(coef_mn, b_par, perp2)
        out["bias"].append(bias)
        out["variance"].append(var)
        coef_ridge = uy * (s / (s**2 + n * lam))[:, :, None]
        out["ridge"].append(_filtered_errors(coef_ridge, b_par, perp2).mean(axis=1))
        coef_es = uy * (-np.expm1(-t_es * eig) / s)[:, :, None]
        out["es"].append(_filtered_errors(coef_es, b_par, perp2).mean(axis=1))
        for i in range(c):
            out["ridge_bayes"].append(np.array([th.conditional_optimal_ridge_risk(eig[i], d, n, sigma2, lam)]))
            out["es_bayes"].append(np.array([th.conditional_gradient_flow_risk(eig[i], d, n, sigma2, r2, t_es)]))
        out["cond"].append(s.max(axis=1) / s.min(axis=1))
        done += c
    cat = {k: np.concatenate(v) for k, v in out.items()}
    return PointDraws(
        n,
        d,
        lam,
        t_es,
        cat["risk"],
        cat["bias"],
        cat["variance"],
        cat["ridge"],
        cat["ridge_bayes"],
        cat["es"],
        cat["es_bayes"],
        cat["cond"],
        n_noise,
    )


def _none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def summarize_point(draws: PointDraws, sigma2: float, r2: float, level: float) -> dict[str, Any]:
    """One sweep point as JSON-able numbers: measurements with intervals beside their predictions."""
    n, d = draws.n, draws.d
    gamma = d / n
    risk = mean_ci(draws.risk, level)
    bias = mean_ci(draws.bias, level)
    var = mean_ci(draws.variance, level)
    ridge = mean_ci(draws.ridge_risk, level)
    ridge_paired = mean_ci(draws.ridge_risk - draws.ridge_bayes, level)
    es = mean_ci(draws.es_risk, level)
    es_paired = mean_ci(draws.es_risk - draws.es_bayes, level)
    cond_med, cond_lo, cond_hi = median_ci(draws.cond, level)
    pred = th.minnorm_risk(n, d, sigma2, r2)
    pred_bias = th.minnorm_bias(n, d, r2)
    pred_var = th.minnorm_variance(n, d, sigma2)
    # A t-interval needs a consistent standard error, i.e. a finite 4th moment of the
    # per-design risk; the inverse-Wishart trace has it iff |d - n| >= 8.
    evaluated = th.inverse_wishart_trace_moment_finite(n, d, 4)
    pred_ridge = th.asymptotic_optimal_ridge_risk(gamma, sigma2, r2)
    pred_es = th.asymptotic_gradient_flow_risk(gamma, draws.t_es, sigma2, r2)
    return {
        "gamma": gamma,
        "d": d,
        "test_risk": risk.mean,
        "ci_low": risk.low,
        "ci_high": risk.high,
        "stderr": risk.stderr,
        "predicted_risk": _none(pred),
        "predicted_risk_asymptotic": _none(th.asymptotic_minnorm_risk(gamma, sigma2, r2)),
        "evaluated": evaluated,
        "covered": (risk.covers(pred) if evaluated and risk.ok else None),
        "bias": bias.mean,
        "bias_ci_low": bias.low,
        "bias_ci_high": bias.high,
        "predicted_bias": pred_bias,
        "predicted_bias_asymptotic": th.asymptotic_minnorm_bias(gamma, r2),
        "bias_covered": (bias.covers(pred_bias) if evaluated else None),
        "variance": var.mean,
        "variance_ci_low": var.low,
        "variance_ci_high": var.high,
        "predicted_variance": _none(pred_var),
        "predicted_variance_asymptotic": _none(th.asymptotic_minnorm_variance(gamma, sigma2)),
        "variance_covered": (var.covers(pred_var) if evaluated else None),
        "cond_median": cond_med,
        "cond_ci_low": cond_lo,
        "cond_ci_high": cond_hi,
        "predicted_cond_asymptotic": _none(th.asymptotic_condition_number(gamma)),
        "ridge_lambda": draws.lam,
        "ridge_risk": ridge.mean,
        "ridge_ci_low": ridge.low,
        "ridge_ci_high": ridge.high,
        "ridge_stderr": ridge.stderr,
        "predicted_ridge_risk": pred_ridge,
        "ridge_minus_bayes": ridge_paired.mean,
        "ridge_minus_bayes_ci_low": ridge_paired.low,
        "ridge_minus_bayes_ci_high": ridge_paired.high,
        "es_time": draws.t_es,
        "es_risk": es.mean,
        "es_ci_low": es.low,
        "es_ci_high": es.high,
        "es_stderr": es.stderr,
        "predicted_es_risk": pred_es,
        "es_minus_bayes": es_paired.mean,
        "es_minus_bayes_ci_low": es_paired.low,
        "es_minus_bayes_ci_high": es_paired.high,
        "n_designs": int(draws.risk.size),
        "n_noise": draws.n_noise,
        "n_dropped": int(risk.n_dropped),
        "n_dropped_other": int(max(bias.n_dropped, var.n_dropped, ridge.n_dropped, es.n_dropped)),
    }


def run_linear_sweep(
    n: int, dims: tuple[int, ...], sigma2: float, r2: float, n_designs: int, n_noise: int, level: float, seed: int
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Every sweep point (JSON-able summary) and its per-design min-norm risks.

    Each point draws from its own derived seed, so a point does not depend on the rest of the grid.
    """
    points, per_design = [], []
    for d in dims:
        draws = simulate_point(n, d, sigma2, r2, n_designs, n_noise, derive_seed(seed, "dd-linear", n, d))
        points.append(summarize_point(draws, sigma2, r2, level))
        per_design.append(draws.risk)
    return points, per_design


# --------------------------------------------------------------------------------------------
# a user's regression arrays: held-out risk by resampling


def resample_point(
    x: np.ndarray, y: np.ndarray, n: int, n_test: int, n_resamples: int, lam: float, seed: SeedLike
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out test MSE of min-norm and of ridge (n-normalized penalty ``lam``) fitted on n random rows.

    Each resample draws n training rows and ``n_test`` disjoint test rows from the pool without
    replacement; min-norm is the pseudoinverse (singular values below max(n, d) eps s_max cut, as
    numpy.linalg.lstsq does) and ridge the filter s/(s^2 + n lam) on the same SVD.
    """
    rng = as_generator(seed)
    pool = x.shape[0]
    mn, rd = np.empty(n_resamples), np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.permutation(pool)
        tr, te = idx[:n], idx[n : n + n_test]
        u, s, vt = np.linalg.svd(x[tr], full_matrices=False)
        keep = s > s[0] * max(x[tr].shape) * np.finfo(float).eps
        uy = u.T @ y[tr]
        with np.errstate(divide="ignore", invalid="ignore"):
            b_mn = vt.T @ np.where(keep, uy / s, 0.0)
        b_rd = vt.T @ (uy * s / (s**2 + n * lam))
        mn[r] = np.mean((x[te] @ b_mn - y[te]) ** 2)
        rd[r] = np.mean((x[te] @ b_rd - y[te]) ** 2)
    return mn, rd
