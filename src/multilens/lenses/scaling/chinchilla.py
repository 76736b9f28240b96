"""Chinchilla parametric fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Approach 3).

Following "Training Compute-Optimal Large Language Models" (Hoffmann et al. 2022, Sec. 3.3 and
App. D.2), with parameters theta = (a, b, e, alpha, beta) and A, B, E = exp(a), exp(b), exp(e),
the fit minimises

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),   delta = 1e-3,

with L-BFGS from the grid alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
a, b in {0, 5, ..., 25} (4500 starts), keeping the best converged start. The objective is
*summed* over runs, not averaged: Besiroglu et al. (2024, "Chinchilla Scaling: A replication
attempt") found that averaging makes the objective so small that L-BFGS stops early, which
partly explains the implausibly narrow intervals of the original paper.

Speed: the grid is screened by a batched NumPy L-BFGS that advances all 4500 starts at once
(see :mod:`._optim`), and only the best few dozen distinct screened points are polished with
scipy L-BFGS-B (analytic gradient). :func:`fit_chinchilla_exhaustive` runs scipy from every
start and is the reference the screen is tested against.

Bootstrap (:func:`bootstrap_chinchilla`): runs (rows) are resampled with replacement. Each
refit is *warm-started* from the full-data optimum plus the ``refit_starts`` grid starts that
reached the best full-data optima (not the whole grid); all refits are screened together by the
batched L-BFGS and the best start of each refit is polished by scipy L-BFGS-B. A refit whose
polished starts all fail to converge is counted in ``n_failed`` and left out of the intervals.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.lenses.scaling._optim import MAXITER, batched_lbfgs, blas_single_threaded, polish
from multilens.lenses.scaling.data import MIN_POINTS_CHINCHILLA, ScalingData
from multilens.lenses.scaling.intervals import (
    BootstrapResult,
    check_level,
    percentile_interval,
    readonly,
    resample_weights,
)
from multilens.results import SCHEMA_VERSION
from multilens.seeding import SeedLike
from multilens.validation import check_int

HUBER_DELTA = 1e-3
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
ALLOC_NAMES = ("a", "b")  # N* ~ C^a, D* ~ C^b


def hoffmann_grid() -> np.ndarray:
    """The 4500 starting points of Approach 3 as rows (a, b, e, alpha, beta)."""
    ab = np.arange(0.0, 25.0 + 1e-9, 5.0)  # 6 values
    e = np.arange(-1.0, 1.0 + 1e-9, 0.5)  # 5
    ex = np.arange(0.0, 2.0 + 1e-9, 0.5)  # 5
    mesh = np.meshgrid(ab, ab, e, ex, ex, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)  # (4500, 5)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and its derivative psi = clip(r, -delta, delta), elementwise.

    h = psi * (r - psi/2) equals r^2/2 for |r| <= delta and delta*(|r| - delta/2) beyond.
    """
    psi = np.clip(r, -delta, delta)
    h = 0.5 * psi
    np.subtract(r, h, out=h)
    h *= psi
    return h, psi


def _terms(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> tuple[np.ndarray, ...]:
    """For theta (S, 5) and points (n,): LSE prediction and softmax weights of terms 1, 2, (S, n).

    The weight of the constant term e is 1 - w1 - w2 and is not materialised.
    """
    a, b, e, al, be = (theta[:, k : k + 1] for k in range(5))
    t1 = a - al * logN[None, :]
    t2 = b - be * logD[None, :]
    m = np.maximum(t1, t2)
    np.maximum(m, e, out=m)  # shift by the largest term so exp never overflows
    # in-place from here on: these are the hot loops of the 4500-start screen
    np.subtract(t1, m, out=t1)
    np.exp(t1, out=t1)
    np.subtract(t2, m, out=t2)
    np.exp(t2, out=t2)
    s = np.subtract(e, m)
    np.exp(s, out=s)
    s += t1
    s += t2
    inv = np.reciprocal(s)
    np.log(s, out=s)
    s += m
    t1 *= inv
    t2 *= inv
    return s, t1, t2


# Elements per evaluation block: (starts x points) arrays of ~64k doubles stay in L2 cache, which
# makes the ~20 elementwise passes below 3-8x faster than one pass over all 4500 x n at once.
_BLOCK = 1 << 16


def objective_batch(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    weights: np.ndarray,
    delta: float = HUBER_DELTA,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber objective and its gradient for many parameter vectors.

    ``theta`` is (S, 5) rows (a, b, e, alpha, beta); ``weights`` is (n,) or (S, n) run counts
    (a bootstrap resample is the same as integer weights on the original runs). Returns f (S,),
    g (S, 5).
    """
    S, n = theta.shape[0], logL.shape[0]
    step = max(1, _BLOCK // max(n, 1))
    if S <= step:
        return _objective_block(theta, logN, logD, logL, weights, delta)
    f = np.empty(S)
    g = np.empty((S, 5))
    per_row = np.ndim(weights) == 2
    for i in range(0, S, step):
        w = weights[i : i + step] if per_row else weights
        f[i : i + step], g[i : i + step] = _objective_block(theta[i : i + step], logN, logD, logL, w, delta)
    return f, g


def _objective_block(
    theta: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray, weights: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    pred, w1, w2 = _terms(theta, logN, logD)
    pred -= logL[None, :]
    h, psi = _huber(pred, delta)
    if np.ndim(weights) == 1:
        f = h @ weights
        psi *= weights[None, :]
    else:
        f = np.einsum("sn,sn->s", h, weights)
        psi *= weights
    tot = psi.sum(1)
    w1 *= psi
    w2 *= psi
    # one matmul gives each term's sum and its log-N (log-D) moment
    g1 = w1 @ np.stack([np.ones_like(logN), logN], axis=1)  # (S, 2)
    g2 = w2 @ np.stack([np.ones_like(logD), logD], axis=1)
    g = np.stack([g1[:, 0], g2[:, 0], tot - g1[:, 0] - g2[:, 0], -g1[:, 1], -g2[:, 1]], axis=1)
    return f, g


def _scalar_fun(logN: np.ndarray, logD: np.ndarray, logL: np.ndarray, weights: np.ndarray, delta: float):
    """(f, grad) of one parameter vector for scipy; the same algebra as :func:`objective_batch`.

    Runs with weight 0 (left out of a bootstrap resample) are dropped up front. Written out for a
    single vector because scipy calls it thousands of times and batch overhead would dominate.
    """
    keep = weights > 0
    lN, lD, lL, w = logN[keep], logD[keep], logL[keep], weights[keep]

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, al, be = x
        t1 = a - al * lN
        t2 = b - be * lD
        m = np.maximum(np.maximum(t1, t2), e)
        e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
        s = e1 + e2 + e3
        r = m + np.log(s) - lL
        psi = np.clip(r, -delta, delta)
        f = float((psi * (r - 0.5 * psi)) @ w)
        pw = psi * w / s
        q1, q2 = pw * e1, pw * e2
        return f, np.array([q1.sum(), q2.sum(), pw @ e3, -(q1 @ lN), -(q2 @ lD)])

    return fg


def predict_chinchilla(params: dict[str, float] | ChinchillaFit, N: Any, D: Any) -> np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta for a fit or a dict with keys E, A, B, alpha, beta."""
    p = params.params if isinstance(params, ChinchillaFit) else params
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    return p["E"] + p["A"] * N ** (-p["alpha"]) + p["B"] * D ** (-p["beta"])


def theta_to_params(theta: np.ndarray) -> dict[str, float]:
    """(log A, log B, log E, alpha, beta) -> parameters; a refit run off to a boundary (log A > 709)
    gives inf, which the bootstrap's intervals count as a failed refit instead of raising."""
    a, b, e, al, be = (float(v) for v in theta)
    with np.errstate(over="ignore"):
        return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": al, "beta": be}


def allocation_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) with N* ~ C^a, D* ~ C^b under C = 6ND: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    s = alpha + beta
    return beta / s, alpha / s


@dataclass(frozen=True, eq=False)
class ChinchillaFit:
    """The Approach-3 fit of L(N, D) = E + A/N^alpha + B/D^beta.

    ``objective`` is the summed Huber loss at the optimum; ``r2`` and ``rmse`` are of log-loss;
    ``residuals`` are log L_pred - log L_obs per run (input order). ``n_starts`` grid starts were
    screened, ``n_polished`` of them polished by scipy; ``n_iter`` counts the screen plus the
    polish of the best start. ``top_starts`` are the grid starts that reached the best optima
    (used to warm-start bootstrap refits).
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    theta: tuple[float, ...]
    objective: float
    r2: float
    rmse: float
    residuals: tuple[float, ...]
    converged: bool
    n_iter: int
    n_starts: int
    n_polished: int
    n_points: int
    delta: float = HUBER_DELTA
    method: str = "Hoffmann et al. 2022 Approach 3: summed Huber(log L), L-BFGS from 4500-start grid"
    top_starts: tuple[tuple[float, ...], ...] = ()
    message: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}

    @property
    def allocation_exponents(self) -> tuple[float, float]:
        return allocation_exponents(self.alpha, self.beta)

    def predict(self, N: Any, D: Any) -> np.ndarray:
        return predict_chinchilla(self.params, N, D)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "params": self.params,
            "objective": self.objective,
            "r2": self.r2,
            "rmse": self.rmse,
            "converged": self.converged,
            "n_iter": self.n_iter,
            "n_starts": self.n_starts,
            "n_polished": self.n_polished,
            "n_points": self.n_points,
            "delta": self.delta,
            "method": self.method,
            "message": self.message,
            "residuals": list(self.residuals),
        }


def _validate(data: ScalingData, delta: float) -> None:
    if not isinstance(data, ScalingData):
        raise ConfigError(f"`data` must be a ScalingData (see load_scaling_csv); got {type(data).__name__}.")
    if data.n_points < MIN_POINTS_CHINCHILLA:
        raise ConfigError(
            f"`data` must have at least {MIN_POINTS_CHINCHILLA} runs to fit L(N, D) (5 parameters); "
            f"got {data.n_points}."
        )
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (0 < delta < np.inf):
        raise ConfigError(f"`delta` must be a finite number > 0; got {delta!r}.")


def _logs(data: ScalingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.log(data.N), np.log(data.D), np.log(data.loss)


def _goodness(
    theta: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray
) -> tuple[float, float, np.ndarray]:
    pred = _terms(theta[None, :], logN, logD)[0][0]
    res = pred - logL
    ss_tot = float(np.sum((logL - logL.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / ss_tot if ss_tot > 0 else float("nan")
    return r2, float(np.sqrt(np.mean(res**2))), res


def _distinct(points: np.ndarray, order: np.ndarray, k: int, tol: float = 1e-4) -> list[int]:
    """Up to ``k`` indices from ``order`` whose points differ (max-abs) by more than ``tol``."""
    chosen: list[int] = []
    for i in order:
        if all(np.max(np.abs(points[i] - points[j])) > tol for j in chosen):
            chosen.append(int(i))
            if len(chosen) == k:
                break
    return chosen


def _finish(
    data: ScalingData,
    best,
    n_iter: int,
    n_starts: int,
    n_polished: int,
    delta: float,
    top: list[tuple[float, ...]],
    method: str,
) -> ChinchillaFit:
    logN, logD, logL = _logs(data)
    theta = np.asarray(best.theta)
    r2, rmse, res = _goodness(theta, logN, logD, logL)
    if not best.converged:
        warnings.warn(
            f"Chinchilla fit: the best of {n_polished} polished starts did not converge ({best.message}); "
            "the parameters may be inaccurate.",
            ConvergenceWarning,
            stacklevel=4,  # _finish <- fit function <- blas_single_threaded wrapper <- caller
        )
    p = theta_to_params(theta)
    return ChinchillaFit(
        E=p["E"],
        A=p["A"],
        B=p["B"],
        alpha=p["alpha"],
        beta=p["beta"],
        theta=tuple(map(float, theta)),
        objective=best.objective,
        r2=r2,
        rmse=rmse,
        residuals=tuple(map(float, res)),
        converged=best.converged,
        n_iter=n_iter,
        n_starts=n_starts,
        n_polished=n_polished,
        n_points=data.n_points,
        delta=float(delta),
        method=method,
        top_starts=tuple(top),
        message=best.message,
    )


@blas_single_threaded
def fit_chinchilla(
    data: ScalingData,
    *,
    delta: float = HUBER_DELTA,
    screen_iter: int = 60,
    n_polish: int = 24,
    n_top_starts: int = 8,
    starts: np.ndarray | None = None,
    max_iter: int = MAXITER,
) -> ChinchillaFit:
    """Fit L(N, D) by Approach 3 over the full 4500-start grid (screened, then polished).

    ``screen_iter`` batched L-BFGS iterations advance every grid start; the ``n_polish`` best
    *distinct* screened points are polished by scipy L-BFGS-B (``jac=True``) and the best
    converged one is returned (the best overall, with a :class:`ConvergenceWarning`, if none
    converged). ``max_iter`` caps each scipy polish. ``starts`` replaces the grid (rows a, b,
    e, alpha, beta), e.g. for quick repeated fits in simulations. ``n_top_starts`` grid starts
    that reached the best optima are kept in ``top_starts`` for warm-starting bootstrap refits.
    Deterministic: no randomness is involved.
    """
    _validate(data, delta)
    check_int("screen_iter", screen_iter, 0)
    check_int("n_polish", n_polish, 1)
    check_int("n_top_starts", n_top_starts, 0)
    check_int("max_iter", max_iter, 1)
    logN, logD, logL = _logs(data)
    w = np.ones(data.n_points)
    grid = _check_starts(starts)

    def fun(theta: np.ndarray, rows: np.ndarray):
        return objective_batch(theta, logN, logD, logL, w, delta)

    state = batched_lbfgs(fun, grid, n_iter=screen_iter)
    f = np.where(np.isfinite(state.f), state.f, np.inf)
    order = np.argsort(f, kind="stable")
    picks = _distinct(state.theta, order, n_polish)
    fg = _scalar_fun(logN, logD, logL, w, delta)
    runs = [polish(fg, state.theta[i], maxiter=max_iter) for i in picks]
    best_k = _best(runs)
    ranked = sorted(range(len(picks)), key=lambda k: (not runs[k].converged, runs[k].objective))
    top = [tuple(map(float, grid[picks[k]])) for k in ranked[:n_top_starts]]
    return _finish(
        data,
        runs[best_k],
        state.n_iter + runs[best_k].n_iter,
        len(grid),
        len(picks),
        delta,
        top,
        ChinchillaFit.method + f" (batched L-BFGS screen {state.n_iter} iters, scipy L-BFGS-B polish of {len(picks)})",
    )


def _check_starts(starts: np.ndarray | None) -> np.ndarray:
    if starts is None:
        return hoffmann_grid()
    try:
        s = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"`starts` must be an array of shape (k, 5) of numbers; got {starts!r}.") from None
    if s.ndim != 2 or s.shape[1] != 5 or s.shape[0] == 0 or not np.all(np.isfinite(s)):
        raise ConfigError(
            f"`starts` must be a finite array of shape (k, 5) with rows (a, b, e, alpha, beta); got shape {s.shape}."
        )
    return s


def _best(runs: list) -> int:
    """Index of the best converged run (lowest objective); the best overall if none converged."""
    conv = [k for k, r in enumerate(runs) if r.converged]
    pool = conv if conv else list(range(len(runs)))
    return min(pool, key=lambda k: runs[k].objective)


@blas_single_threaded
def fit_chinchilla_exhaustive(
    data: ScalingData, *, delta: float = HUBER_DELTA, starts: np.ndarray | None = None
) -> ChinchillaFit:
    """Reference Approach 3: scipy L-BFGS-B (analytic gradient) from *every* start, best converged.

    Slow (4500 scipy runs); it exists to validate the screened :func:`fit_chinchilla`.
    """
    _validate(data, delta)
    logN, logD, logL = _logs(data)
    fg = _scalar_fun(logN, logD, logL, np.ones(data.n_points), delta)
    grid = _check_starts(starts)
    runs = [polish(fg, s) for s in grid]
    k = _best(runs)
    return _finish(
        data,
        runs[k],
        runs[k].n_iter,
        len(grid),
        len(grid),
        delta,
        [tuple(map(float, grid[k]))],
        ChinchillaFit.method + " (scipy L-BFGS-B from every start)",
    )


# --------------------------------------------------------------------------------------------
# Bootstrap over runs


@blas_single_threaded
def _refit_chunk(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit one chunk of resamples: batched screen of all (resample x start), scipy polish."""
    logN, logD, logL, W, starts, delta, screen_iter = args
    R, K = W.shape[0], starts.shape[0]
    theta0 = np.tile(starts, (R, 1))  # (R*K, 5): resample r's starts are rows r*K .. r*K+K-1
    member_w = np.repeat(np.arange(R), K)

    def fun(theta: np.ndarray, rows: np.ndarray):
        return objective_batch(theta, logN, logD, logL, W[member_w[rows]], delta)

    state = batched_lbfgs(fun, theta0, n_iter=screen_iter)
    f = np.where(np.isfinite(state.f), state.f, np.inf).reshape(R, K)
    out = np.full((R, 5), np.nan)
    ok = np.zeros(R, dtype=bool)
    iters = np.zeros(R)
    for r in range(R):
        fg = _scalar_fun(logN, logD, logL, W[r], delta)
        # Polish the best screened start; fall back to the next ones only if it fails.
        for k in np.argsort(f[r], kind="stable")[: min(3, K)]:
            res = polish(fg, state.theta[r * K + k])
            iters[r] += res.n_iter
            if res.converged:
                out[r], ok[r] = res.theta, True
                break
    return out, ok, iters


@blas_single_threaded
def bootstrap_chinchilla(
    data: ScalingData,
    fit: ChinchillaFit,
    *,
    n_boot: int = 200,
    seed: SeedLike = 0,
    level: float = 0.95,
    refit_starts: int = 4,
    screen_iter: int = 40,
    n_jobs: int = 1,
    chunk: int = 125,
) -> BootstrapResult:
    """Percentile bootstrap over runs for E, A, B, alpha, beta and the allocation exponents a, b.

    Resamples are drawn up front from ``seed``, so the result does not depend on ``n_jobs`` or
    ``chunk``. Each refit is warm-started from the full-data optimum plus ``refit_starts`` of
    ``fit.top_starts`` (the grid starts that reached the best full-data optima), not the whole
    grid. ``n_jobs`` > 1 spreads chunks of resamples over a process pool.
    """
    if not isinstance(fit, ChinchillaFit):
        raise ConfigError(f"`fit` must be a ChinchillaFit from fit_chinchilla; got {type(fit).__name__}.")
    _validate(data, fit.delta)
    if fit.n_points != data.n_points:
        raise ConfigError(
            f"`fit` was made on {fit.n_points} runs but `data` has {data.n_points}; pass the data it was fitted on."
        )
    check_int("n_boot", n_boot, 1)
    check_int("refit_starts", refit_starts, 0)
    check_int("screen_iter", screen_iter, 0)
    check_int("n_jobs", n_jobs, 1)
    check_int("chunk", chunk, 1)
    level = check_level(level)
    logN, logD, logL = _logs(data)
    W = resample_weights(data.n_points, n_boot, seed)
    starts = np.array([fit.theta, *fit.top_starts[:refit_starts]], dtype=np.float64)
    jobs = [(logN, logD, logL, W[i : i + chunk], starts, fit.delta, screen_iter) for i in range(0, n_boot, chunk)]
    if n_jobs == 1 or len(jobs) == 1:
        parts = [_refit_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as ex:
            parts = list(ex.map(_refit_chunk, jobs))
    thetas = np.concatenate([p[0] for p in parts])
    ok = np.concatenate([p[1] for p in parts])
    iters = np.concatenate([p[2] for p in parts])
    names = PARAM_NAMES + ALLOC_NAMES
    samples = np.full((n_boot, len(names)), np.nan)
    for r in np.flatnonzero(ok):
        p = theta_to_params(thetas[r])
        samples[r, :5] = [p[k] for k in PARAM_NAMES]
        samples[r, 5:] = allocation_exponents(p["alpha"], p["beta"])
    n_failed = int((~ok).sum())
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n_boot} bootstrap refits did not converge from any warm start; they are left out "
            "of the intervals (see n_failed).",
            ConvergenceWarning,
            stacklevel=3,
        )
    point = [*(fit.params[k] for k in PARAM_NAMES), *fit.allocation_exponents]
    intervals = {k: percentile_interval(v, samples[:, j], level) for j, (k, v) in enumerate(zip(names, point))}
    return BootstrapResult(
        names=names,
        samples=readonly(samples),
        intervals=intervals,
        n_boot=n_boot,
        n_failed=n_failed,
        level=level,
        method=(
            "bootstrap percentile over runs (rows resampled with replacement); each refit warm-started from the "
            f"full-data optimum + {len(starts) - 1} best grid starts, batched L-BFGS screen, scipy L-BFGS-B polish"
        ),
        n_iter_mean=float(iters.mean()),
        weights=readonly(W),
    )


__all__ = [
    "HUBER_DELTA",
    "ChinchillaFit",
    "allocation_exponents",
    "bootstrap_chinchilla",
    "fit_chinchilla",
    "fit_chinchilla_exhaustive",
    "hoffmann_grid",
    "objective_batch",
    "predict_chinchilla",
]
