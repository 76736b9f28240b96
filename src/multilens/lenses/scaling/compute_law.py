"""Compute scaling law L(C) = A * C^(-alpha) + L_inf with the irreducible floor L_inf estimated.

Kaplan et al. (2020) and Hoffmann et al. (2022) model loss against training compute as a power
law plus an irreducible term. Fitting a straight line to log L against log C ignores L_inf and
biases the exponent toward zero (the reducible part is a shrinking fraction of L), so here the
three parameters are fitted jointly by nonlinear least squares on log-loss residuals

    r_i = log(A C_i^-alpha + L_inf) - log L_i          (multiplicative noise is additive in logs)

with ``scipy.optimize.least_squares`` (trust-region reflective, analytic Jacobian) from a small
grid of starts. Positivity is built in: A, alpha and L_inf are exponentials of the free
parameters, and log C is centred at its geometric mean so that A's scale does not depend on the
units of C. ``naive_alpha`` (minus the log-log OLS slope) is reported only as the contrast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.lenses.scaling._optim import blas_single_threaded
from multilens.lenses.scaling.data import MIN_POINTS_COMPUTE
from multilens.lenses.scaling.intervals import BootstrapResult, check_level, percentile_interval, readonly
from multilens.results import SCHEMA_VERSION
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int

COMPUTE_PARAM_NAMES = ("A", "alpha", "L_inf")
_ALPHA_STARTS = (0.03, 0.1, 0.3, 1.0)
_FLOOR_FRACTIONS = (0.0, 0.5, 0.9, 0.99)  # L_inf start as a fraction of min(L)


def validate_compute_inputs(C: Any, loss: Any) -> tuple[np.ndarray, np.ndarray]:
    """Arrays C and loss as float64, checked: 1-D, same length, finite, > 0, >= 3 distinct C."""
    out = []
    for name, v in (("C", C), ("loss", loss)):
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"`{name}` must be an array of numbers; got {v!r}.") from None
        if a.ndim != 1:
            raise DataError(f"`{name}` must be one-dimensional; got shape {a.shape}.")
        bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
        if bad.size:
            raise DataError(f"`{name}`[{bad[0]}] is {a[bad[0]]}; every value must be finite and > 0.")
        out.append(a)
    if len(out[0]) != len(out[1]):
        raise DataError(f"`C` and `loss` must have the same length; got {len(out[0])} and {len(out[1])}.")
    if len(np.unique(out[0])) < MIN_POINTS_COMPUTE:
        raise DataError(
            f"L(C) has 3 parameters and needs at least {MIN_POINTS_COMPUTE} distinct compute budgets; "
            f"got {len(np.unique(out[0]))}."
        )
    return out[0], out[1]


def naive_loglog_slope(C: Any, loss: Any) -> float:
    """OLS slope of log L on log C: the floor-ignoring estimate of -alpha (biased toward 0)."""
    x, y = np.log(np.asarray(C, dtype=float)), np.log(np.asarray(loss, dtype=float))
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


@dataclass(frozen=True, eq=False)
class ComputeLawFit:
    """Fit of L(C) = A C^-alpha + L_inf. ``r2``/``rmse``/``residuals`` are of log-loss
    (residual = log L_pred - log L_obs, input order). ``naive_alpha`` is the biased log-log slope."""

    A: float
    alpha: float
    L_inf: float
    r2: float
    rmse: float
    cost: float  # 0.5 * sum of squared log residuals
    residuals: tuple[float, ...]
    converged: bool
    n_iter: int
    n_starts: int
    n_points: int
    naive_alpha: float
    log_c_ref: float  # log of the geometric-mean compute the internal parameters are centred at
    message: str = ""
    method: str = "nonlinear least squares on log-loss (scipy least_squares, trf, multi-start)"
    schema_version: int = SCHEMA_VERSION

    @property
    def params(self) -> dict[str, float]:
        return {"A": self.A, "alpha": self.alpha, "L_inf": self.L_inf}

    def predict(self, C: Any) -> np.ndarray:
        return predict_compute(self.params, C)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "params": self.params,
            "r2": self.r2,
            "rmse": self.rmse,
            "cost": self.cost,
            "converged": self.converged,
            "n_iter": self.n_iter,
            "n_starts": self.n_starts,
            "n_points": self.n_points,
            "naive_alpha": self.naive_alpha,
            "method": self.method,
            "message": self.message,
        }


def predict_compute(params: dict[str, float], C: Any) -> np.ndarray:
    """L(C) = A C^-alpha + L_inf (C in the units the law was fitted in)."""
    C = np.asarray(C, dtype=np.float64)
    return params["A"] * C ** (-params["alpha"]) + params["L_inf"]


def _residuals_and_jac(z: np.ndarray, xc: np.ndarray, logL: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log residuals and Jacobian in z = (u, v, w): L = exp(u - e^v xc) + e^w, xc = log C - log C_ref."""
    u, v, w = z
    alpha = np.exp(v)
    lt = u - alpha * xc  # log of the reducible term
    lp = np.logaddexp(lt, w)  # log(t + floor) without underflow to log(0) when both terms are tiny
    r = lp - logL
    J = np.empty((len(xc), 3))
    J[:, 0] = np.exp(lt - lp)  # t / p
    J[:, 1] = -J[:, 0] * xc * alpha
    J[:, 2] = np.exp(w - lp)  # floor / p
    return r, J


def _solve(z0: np.ndarray, xc: np.ndarray, logL: np.ndarray, max_nfev: int = 2000):
    def fun(z):
        return _residuals_and_jac(z, xc, logL)[0]

    def jac(z):
        return _residuals_and_jac(z, xc, logL)[1]

    with np.errstate(over="ignore", invalid="ignore"):
        return least_squares(
            fun, z0, jac=jac, method="trf", x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=max_nfev
        )


def _starts(xc: np.ndarray, L: np.ndarray) -> list[np.ndarray]:
    out = []
    lmin = float(L.min())
    for frac in _FLOOR_FRACTIONS:
        floor = frac * lmin
        for a in _ALPHA_STARTS:
            # A at the centre chosen so the start passes through the data's typical reducible loss
            u = float(np.log(np.median((L - floor) * np.exp(a * xc))))
            out.append(np.array([u, np.log(a), np.log(max(floor, 1e-3 * lmin))]))
    return out


def _fit_core(C: np.ndarray, L: np.ndarray, log_c_ref: float, z_starts: list[np.ndarray], max_nfev: int = 2000):
    xc = np.log(C) - log_c_ref
    logL = np.log(L)
    best = None
    for z0 in z_starts:
        res = _solve(z0, xc, logL, max_nfev)
        if not np.all(np.isfinite(res.x)) or not np.isfinite(res.cost):
            continue
        conv = res.status > 0
        key = (not conv, float(res.cost))
        if best is None or key < best[0]:
            best = (key, res, conv)
    return best


def _to_params(z: np.ndarray, log_c_ref: float) -> dict[str, float]:
    u, v, w = (float(t) for t in z)
    alpha = float(np.exp(v))
    return {"A": float(np.exp(u + alpha * log_c_ref)), "alpha": alpha, "L_inf": float(np.exp(w))}


@blas_single_threaded
def fit_compute_law(C: Any, loss: Any, *, max_nfev: int = 2000) -> ComputeLawFit:
    """Fit L(C) = A C^-alpha + L_inf (floor estimated) by multi-start log-space least squares.

    Returns the lowest-cost converged start (lowest-cost overall, with a
    :class:`ConvergenceWarning`, when none converged). ``max_nfev`` caps each start's
    residual evaluations. Deterministic.
    """
    C, L = validate_compute_inputs(C, loss)
    check_int("max_nfev", max_nfev, 1)
    log_c_ref = float(np.mean(np.log(C)))
    xc = np.log(C) - log_c_ref
    starts = _starts(xc, L)
    best = _fit_core(C, L, log_c_ref, starts, max_nfev)
    if best is None:
        raise DataError("L(C) fit failed from every start (non-finite residuals); check that loss decreases with C.")
    _, res, conv = best
    if not conv:
        warnings.warn(
            f"L(C) fit did not converge ({res.message}); the parameters may be inaccurate.",
            ConvergenceWarning,
            stacklevel=3,
        )
    p = _to_params(res.x, log_c_ref)
    r = res.fun
    logL = np.log(L)
    ss_tot = float(np.sum((logL - logL.mean()) ** 2))
    return ComputeLawFit(
        A=p["A"],
        alpha=p["alpha"],
        L_inf=p["L_inf"],
        r2=1.0 - float(r @ r) / ss_tot if ss_tot > 0 else float("nan"),
        rmse=float(np.sqrt(np.mean(r**2))),
        cost=float(res.cost),
        residuals=tuple(map(float, r)),
        converged=bool(conv),
        n_iter=int(res.njev if res.njev is not None else res.nfev),
        n_starts=len(starts),
        n_points=len(L),
        naive_alpha=-naive_loglog_slope(C, L),
        log_c_ref=log_c_ref,
        message=str(res.message),
    )


def _internal(fit: ComputeLawFit) -> np.ndarray:
    return np.array([np.log(fit.A) - fit.alpha * fit.log_c_ref, np.log(fit.alpha), np.log(fit.L_inf)])


@blas_single_threaded
def bootstrap_compute_law(
    C: Any, loss: Any, fit: ComputeLawFit, *, n_boot: int = 200, seed: SeedLike = 0, level: float = 0.95
) -> BootstrapResult:
    """Percentile bootstrap over runs for A, alpha, L_inf.

    Each refit is warm-started from the full-data optimum and falls back to the full start grid
    only if that fails to converge. A resample with fewer than 3 distinct budgets cannot identify
    the law and counts as a failed refit (``n_failed``), as does one that does not converge.
    """
    C, L = validate_compute_inputs(C, loss)
    if not isinstance(fit, ComputeLawFit):
        raise ConfigError(f"`fit` must be a ComputeLawFit from fit_compute_law; got {type(fit).__name__}.")
    check_int("n_boot", n_boot, 1)
    level = check_level(level)
    rng = as_generator(seed)
    n = len(L)
    idx = rng.integers(0, n, size=(n_boot, n))
    z_hat = _internal(fit)
    samples = np.full((n_boot, 3), np.nan)
    iters = np.zeros(n_boot)
    for b in range(n_boot):
        Cb, Lb = C[idx[b]], L[idx[b]]
        if len(np.unique(Cb)) < MIN_POINTS_COMPUTE:
            continue
        best = _fit_core(Cb, Lb, fit.log_c_ref, [z_hat])
        if best is None or not best[2]:
            best = _fit_core(Cb, Lb, fit.log_c_ref, _starts(np.log(Cb) - fit.log_c_ref, Lb))
        if best is None or not best[2]:
            continue
        p = _to_params(best[1].x, fit.log_c_ref)
        samples[b] = [p[k] for k in COMPUTE_PARAM_NAMES]
        iters[b] = best[1].nfev
    ok = np.all(np.isfinite(samples), axis=1)
    intervals = {k: percentile_interval(fit.params[k], samples[:, j], level) for j, k in enumerate(COMPUTE_PARAM_NAMES)}
    return BootstrapResult(
        names=COMPUTE_PARAM_NAMES,
        samples=readonly(samples),
        intervals=intervals,
        n_boot=n_boot,
        n_failed=int((~ok).sum()),
        level=level,
        method="bootstrap percentile over runs (rows resampled with replacement); "
        "refits warm-started from the full-data optimum",
        n_iter_mean=float(iters[ok].mean()) if ok.any() else float("nan"),
    )
