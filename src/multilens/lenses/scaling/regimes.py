"""Scaling regimes: piecewise power laws with 0, 1 or 2 breakpoints chosen by cross-validation.

The response is explicit. By default it is y = ln L against ln C (a power law is a
straight line there); with ``l_inf`` given it is the log *reducible* loss y = log(L - l_inf),
whose slope is the local exponent -alpha without the floor's bias. The model is a *continuous*
piecewise-linear function of x (a broken power law, as in the regime tables of the seed chapter,
task C.1), written in the hinge basis

    y = c + s_0 x + sum_k (s_k - s_{k-1}) * max(0, x - tau_k),   k = 1..K, K in {0, 1, 2},

with x = ln C, so the segments meet at the breakpoints tau_k (reported as log10 C) and the slopes
s_k = d ln(response) / d ln C are local exponents (alpha_k = -s_k). For fixed tau the fit is ordinary
least squares; tau is found by exhaustive search on a grid over the admissible range (every
segment keeps ``min_seg`` points) followed by a finer grid around the best point.

K is chosen by K-fold cross-validation (folds seeded; mean squared held-out error of y) with the
one-standard-error rule by default: the fewest breakpoints whose CV error is within one standard
error of the minimum (Hastie, Tibshirani & Friedman, ESL 7.10), which keeps a noisy pure power
law from being split. "How sure" is answered by the bootstrap over runs: the fraction of
resamples whose own CV selection picks each K, and percentile intervals of the breakpoint
locations and segment slopes from refitting the chosen K on each resample. Folds are grouped by
original run so a resample's duplicated runs never sit on both sides of a fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError, DataError
from multilens.lenses.scaling._optim import blas_single_threaded
from multilens.lenses.scaling.intervals import ParamInterval, check_level, percentile_interval
from multilens.results import SCHEMA_VERSION, _finite_or_none
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int

MAX_BREAKS = 2
_LN10 = float(np.log(10.0))


@dataclass(frozen=True)
class PiecewiseFit:
    """Least-squares continuous piecewise-linear fit with fixed number of breakpoints."""

    breakpoints: tuple[float, ...]  # tau_k, increasing, in x units (ln C)
    coef: tuple[float, ...]  # (c, s_0, ds_1, ...)
    sse: float
    n_candidates: int

    @property
    def slopes(self) -> tuple[float, ...]:
        return tuple(float(v) for v in np.cumsum(self.coef[1:]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _design(np.asarray(x, dtype=float), np.asarray(self.breakpoints, dtype=float)[None, :])[0] @ np.asarray(
            self.coef
        )


def _design(x: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Hinge design matrices for each candidate: taus (M, K) -> (M, n, 2 + K)."""
    M, K = taus.shape
    X = np.empty((M, len(x), 2 + K))
    X[:, :, 0] = 1.0
    X[:, :, 1] = x[None, :]
    for k in range(K):
        X[:, :, 2 + k] = np.maximum(0.0, x[None, :] - taus[:, k : k + 1])
    return X


def _ols_batch(x: np.ndarray, y: np.ndarray, w: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted OLS for every candidate row of taus: coefficients (M, p) and SSE (M,)."""
    X = _design(x, taus)
    XwT = (X * w[None, :, None]).transpose(0, 2, 1)  # (M, p, n)
    XtX = XwT @ X  # (M, p, p); matmul, not einsum: einsum's batched contractions are slow here
    Xty = XwT @ y  # (M, p)
    # A tiny ridge only guards exactly singular candidates (they are excluded by min_seg anyway).
    XtX += 1e-12 * np.eye(X.shape[2])[None]
    coef = np.linalg.solve(XtX, Xty[..., None])[..., 0]
    r = y[None, :] - (X @ coef[..., None])[..., 0]
    return coef, (r * r) @ w


def _admissible(x: np.ndarray, w: np.ndarray, taus: np.ndarray, min_seg: int) -> np.ndarray:
    """Candidates whose every segment holds at least ``min_seg`` runs (counted with weights)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cw = np.concatenate([[0.0], np.cumsum(w[order])])  # weight of runs with x < xs[i] is cw[i]
    edges = np.searchsorted(xs, taus, side="left")  # (M, K): runs strictly left of each tau
    below = cw[edges]
    seg = np.diff(np.concatenate([np.zeros((len(taus), 1)), below, np.full((len(taus), 1), cw[-1])], axis=1), axis=1)
    ok = np.all(seg >= min_seg, axis=1)
    if taus.shape[1] > 1:
        ok &= np.all(np.diff(taus, axis=1) > 0, axis=1)
    return ok


def _candidates(lo: float, hi: float, K: int, n_grid: int) -> np.ndarray:
    g = np.linspace(lo, hi, n_grid)
    if K == 1:
        return g[:, None]
    i, j = np.triu_indices(n_grid, k=1)
    return np.stack([g[i], g[j]], axis=1)


def fit_piecewise(
    x: np.ndarray, y: np.ndarray, n_breaks: int, *, w: np.ndarray | None = None, min_seg: int = 3, n_grid: int = 40
) -> PiecewiseFit | None:
    """Best continuous piecewise-linear fit with ``n_breaks`` breakpoints (None if infeasible)."""
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    if n_breaks == 0:
        coef, sse = _ols_batch(x, y, w, np.zeros((1, 0)))
        return PiecewiseFit((), tuple(map(float, coef[0])), float(sse[0]), 1)
    xs = np.sort(x[w > 0])
    lo, hi = xs[0], xs[-1]
    if hi <= lo:
        return None
    n_tried = 0
    best_tau, best_sse = None, np.inf
    step = (hi - lo) / (n_grid - 1)
    for cand in (_candidates(lo, hi, n_breaks, n_grid), None):
        if cand is None:  # refine: a finer grid of +-1 coarse step around the best coarse point
            if best_tau is None:
                return None
            offs = np.linspace(-step, step, 11)
            mesh = np.meshgrid(*([offs] * n_breaks), indexing="ij")
            cand = best_tau[None, :] + np.stack([m.ravel() for m in mesh], axis=1)
            cand = cand[np.all(np.diff(cand, axis=1) > 0, axis=1)] if n_breaks > 1 else cand
        cand = cand[_admissible(x, w, cand, min_seg)]
        n_tried += len(cand)
        if len(cand) == 0:
            continue
        _, sse = _ols_batch(x, y, w, cand)
        k = int(np.argmin(sse))
        if sse[k] < best_sse:
            best_sse, best_tau = float(sse[k]), cand[k]
    if best_tau is None:
        return None
    coef, sse = _ols_batch(x, y, w, best_tau[None, :])
    return PiecewiseFit(tuple(map(float, best_tau)), tuple(map(float, coef[0])), float(sse[0]), n_tried)


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold label of each original run: a random permutation dealt round-robin."""
    lab = np.empty(n, dtype=np.intp)
    lab[rng.permutation(n)] = np.arange(n) % n_folds
    return lab


def _cv(x, y, w, fold_of, n_folds, min_seg, n_grid) -> tuple[np.ndarray, np.ndarray]:
    """Pooled held-out MSE and its standard error (over folds) for K = 0, 1, 2."""
    per_fold = np.full((MAX_BREAKS + 1, n_folds), np.nan)
    counts = np.zeros(n_folds)
    for f in range(n_folds):
        test = (fold_of == f) & (w > 0)
        train_w = np.where(fold_of == f, 0.0, w)
        counts[f] = w[test].sum()
        if counts[f] == 0:
            continue
        for K in range(MAX_BREAKS + 1):
            fit = fit_piecewise(x, y, K, w=train_w, min_seg=min_seg, n_grid=n_grid)
            if fit is None:
                per_fold[K, f] = np.inf
                continue
            r = y[test] - fit.predict(x[test])
            per_fold[K, f] = float(np.sum(w[test] * r * r) / counts[f])
    used = counts > 0
    wts = counts[used] / counts[used].sum()
    mean = per_fold[:, used] @ wts
    se = np.array(
        [
            np.std(per_fold[K, used], ddof=1) / np.sqrt(used.sum())
            if np.all(np.isfinite(per_fold[K, used]))
            else np.inf
            for K in range(MAX_BREAKS + 1)
        ]
    )
    return mean, se


def _select(cv: np.ndarray, se: np.ndarray, rule: str) -> int:
    best = int(np.argmin(cv))
    if rule == "min":
        return best
    return int(min(K for K in range(MAX_BREAKS + 1) if cv[K] <= cv[best] + se[best]))


@dataclass(frozen=True, eq=False)
class RegimeResult:
    """Piecewise power-law regimes of loss against compute.

    ``n_breaks`` is the CV-chosen number of breakpoints; ``breakpoints`` are in log10 C (and
    ``breakpoints_C`` in C) with bootstrap ``breakpoint_intervals``; ``slopes`` are per-segment
    d(response)/d(log C) (a local exponent is -slope) with ``slope_intervals``; ``cv_error`` and
    ``cv_stderr`` are per K in 0..2; ``selection_frequency`` is the fraction of bootstrap
    resamples whose CV chose each K. The breakpoint search is a fixed grid (a fixed budget, no
    stopping rule), so ``converged`` is None; ``n_iter`` counts candidate breakpoint
    configurations evaluated on the full data.
    """

    n_breaks: int
    breakpoints: tuple[float, ...]
    breakpoints_C: tuple[float, ...]
    breakpoint_intervals: tuple[ParamInterval, ...]
    slopes: tuple[float, ...]
    slope_intervals: tuple[ParamInterval, ...]
    cv_error: tuple[float, ...]
    cv_stderr: tuple[float, ...]
    selection_frequency: tuple[float, ...]
    response: str
    rule: str
    n_folds: int
    n_boot: int
    n_points: int
    level: float
    converged: bool | None
    n_iter: int
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "n_breaks": self.n_breaks,
            "breakpoints_log10_C": list(self.breakpoints),
            "breakpoints_C": list(self.breakpoints_C),
            "breakpoint_intervals": [p.to_dict() for p in self.breakpoint_intervals],
            "slopes": list(self.slopes),
            "slope_intervals": [p.to_dict() for p in self.slope_intervals],
            "cv_error": {str(K): _finite_or_none(v) for K, v in enumerate(self.cv_error)},
            "cv_stderr": {str(K): _finite_or_none(v) for K, v in enumerate(self.cv_stderr)},
            "selection_frequency": {str(K): _finite_or_none(v) for K, v in enumerate(self.selection_frequency)},
            "response": self.response,
            "rule": self.rule,
            "n_folds": self.n_folds,
            "n_boot": self.n_boot,
            "n_points": self.n_points,
            "level": self.level,
            "converged": self.converged,
            "n_iter": self.n_iter,
        }


@blas_single_threaded
def detect_regimes(
    C: Any,
    loss: Any,
    *,
    l_inf: float | None = None,
    n_folds: int = 5,
    n_boot: int = 200,
    seed: SeedLike = 0,
    level: float = 0.95,
    min_seg: int = 3,
    n_grid: int = 40,
    rule: str = "1se",
) -> RegimeResult:
    """Choose 0, 1 or 2 breakpoints of a broken power law in loss vs compute by K-fold CV.

    The response is log L, or log(L - l_inf) when ``l_inf`` is given; x is ln C (breakpoints are
    reported in log10 C). Folds and bootstrap resamples are drawn from ``seed``. See the module
    docstring for the model. The scaling lens passes the L(C) fit's floor as ``l_inf``.
    """
    try:
        C = np.asarray(C, dtype=float)
        L = np.asarray(loss, dtype=float)
    except (TypeError, ValueError):
        raise DataError("`C` and `loss` must be arrays of numbers.") from None
    if C.ndim != 1 or C.shape != L.shape:
        raise DataError(f"`C` and `loss` must be 1-D of the same length; got shapes {C.shape} and {L.shape}.")
    if not (np.all(np.isfinite(C)) and np.all(C > 0) and np.all(np.isfinite(L)) and np.all(L > 0)):
        raise DataError("`C` and `loss` must be finite and > 0 everywhere.")
    check_int("n_folds", n_folds, 2)
    check_int("n_boot", n_boot, 0)
    check_int("min_seg", min_seg, 2)
    check_int("n_grid", n_grid, 3)
    level = check_level(level)
    if rule not in ("1se", "min"):
        raise ConfigError(f"`rule` must be '1se' or 'min'; got {rule!r}.")
    if l_inf is None:
        y = np.log(L)
        response = "ln L vs ln C"
    else:
        if isinstance(l_inf, bool) or not isinstance(l_inf, (int, float)) or not np.isfinite(l_inf):
            raise ConfigError(f"`l_inf` must be a finite number or None; got {l_inf!r}.")
        if np.any(L <= l_inf):
            raise DataError(
                f"`l_inf` = {l_inf:g} is not below every loss (min {L.min():g}); "
                "the reducible loss L - l_inf must be > 0."
            )
        y = np.log(L - l_inf)
        response = f"ln(L - {l_inf:g}) vs ln C (reducible loss)"
    x = np.log(C)  # natural logs on both axes: slopes are exponents; breakpoints reported in log10 C
    n = len(x)
    if n < 2 * n_folds or n < (MAX_BREAKS + 1) * min_seg + 2:
        raise DataError(
            f"regime detection needs at least {max(2 * n_folds, 3 * min_seg + 2)} runs for {n_folds}-fold CV; got {n}."
        )
    rng = as_generator(seed)
    w1 = np.ones(n)
    cv, se = _cv(x, y, w1, _folds(n, n_folds, rng), n_folds, min_seg, n_grid)
    K_hat = _select(cv, se, rule)
    fit = fit_piecewise(x, y, K_hat, w=w1, min_seg=min_seg, n_grid=n_grid)
    assert fit is not None  # K_hat has a finite CV error, so it is feasible on the full data
    counts = np.zeros(MAX_BREAKS + 1)
    taus = np.full((n_boot, K_hat), np.nan)
    slopes = np.full((n_boot, K_hat + 1), np.nan)
    for b in range(n_boot):
        wb = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float)
        cvb, seb = _cv(x, y, wb, _folds(n, n_folds, rng), n_folds, min_seg, n_grid)
        if np.all(~np.isfinite(cvb)):
            continue
        counts[_select(cvb, seb, rule)] += 1
        fb = fit_piecewise(x, y, K_hat, w=wb, min_seg=min_seg, n_grid=n_grid)
        if fb is not None:
            taus[b] = fb.breakpoints
            slopes[b] = fb.slopes
    freq = tuple(float(c / counts.sum()) if counts.sum() else float("nan") for c in counts)
    return RegimeResult(
        n_breaks=K_hat,
        breakpoints=tuple(t / _LN10 for t in fit.breakpoints),
        breakpoints_C=tuple(float(np.exp(t)) for t in fit.breakpoints),
        breakpoint_intervals=tuple(
            percentile_interval(t / _LN10, taus[:, k] / _LN10, level) for k, t in enumerate(fit.breakpoints)
        ),
        slopes=fit.slopes,
        slope_intervals=tuple(percentile_interval(s, slopes[:, k], level) for k, s in enumerate(fit.slopes)),
        cv_error=tuple(map(float, cv)),
        cv_stderr=tuple(map(float, se)),
        selection_frequency=freq,
        response=response,
        rule=rule,
        n_folds=n_folds,
        n_boot=n_boot,
        n_points=n,
        level=level,
        converged=None,
        n_iter=fit.n_candidates,
    )
