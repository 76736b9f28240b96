"""Optimizers shared by the scaling fits: a batched L-BFGS screen and a scipy L-BFGS-B polish.

Hoffmann et al. (2022, Approach 3) minimise a Huber objective from a grid of 4500 starts. Running
scipy's L-BFGS-B 4500 times is dominated by per-call Python overhead, so the grid is first
*screened*: one NumPy L-BFGS (two-loop recursion, Armijo backtracking) advances every start at
once, each iteration one vectorised objective/gradient evaluation over (starts x points). The
most promising screened points are then polished with ``scipy.optimize.minimize(method="L-BFGS-B",
jac=True)``, whose ``success`` flag defines convergence. The screen is validated in the tests
against the exhaustive 4500-start scipy run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from scipy.optimize import minimize

try:  # a dependency of scikit-learn, so normally present; without it BLAS threads stay as they are
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

F = TypeVar("F", bound=Callable[..., Any])


def blas_single_threaded(fn: F) -> F:
    """Run ``fn`` with BLAS/LAPACK limited to one thread.

    scipy's L-BFGS-B and least_squares call LAPACK on 5x5 problems thousands of times; with
    OpenBLAS's default thread pool each call wakes spinning threads, which measured 30x slower
    (4.3 s instead of 0.11 s of CPU for 24 polishes) on a 2-core machine. The elementwise NumPy
    work that dominates the screen is single-threaded anyway.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas") if threadpool_limits is not None else nullcontext():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# fun(theta[S, p], rows[S]) -> (f[S], g[S, p]); ``rows`` says which batch members are evaluated
# (the bootstrap uses it to pick each member's resample weights).
BatchedFun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class BatchedState:
    """Where the batched L-BFGS left every start: parameters, objective, gradient, iterations."""

    theta: np.ndarray  # (S, p)
    f: np.ndarray  # (S,)
    g: np.ndarray  # (S, p)
    n_iter: int


def batched_lbfgs(fun: BatchedFun, theta0: np.ndarray, **kwargs: Any) -> BatchedState:
    """Run ``n_iter`` L-BFGS iterations on every row of ``theta0`` simultaneously.

    Grid starts far from the optimum overflow and divide by zero in their trial steps; those
    members are detected by ``np.isfinite`` and backtracked, so the floating-point warnings are
    expected and silenced here rather than leaking to callers (where tests treat them as errors).
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        return _batched_lbfgs(fun, theta0, **kwargs)


def _batched_lbfgs(
    fun: BatchedFun,
    theta0: np.ndarray,
    *,
    n_iter: int,
    memory: int = 8,
    c1: float = 1e-4,
    max_halvings: int = 30,
    gtol: float = 1e-12,
) -> BatchedState:
    """Run ``n_iter`` L-BFGS iterations on every row of ``theta0`` simultaneously.

    Each member has its own curvature history and step length; members whose line search fails
    restart from steepest descent. This is a screen, not a solver: it reports no convergence.
    """
    theta = np.array(theta0, dtype=np.float64)
    S, p = theta.shape
    all_rows = np.arange(S)
    f, g = fun(theta, all_rows)
    s_hist = np.zeros((S, memory, p))
    y_hist = np.zeros((S, memory, p))
    rho = np.zeros((S, memory))
    valid = np.zeros((S, memory), dtype=bool)  # newest pair is at index memory-1
    it = 0
    for it in range(1, n_iter + 1):
        active = np.max(np.abs(g), axis=1) > gtol
        if not active.any():
            it -= 1
            break
        d = _two_loop(g, s_hist, y_hist, rho, valid)
        gd = np.einsum("sp,sp->s", g, d)
        # Not a descent direction (stale curvature): fall back to a unit steepest-descent step.
        bad = ~(gd < 0) | ~np.isfinite(gd)
        if bad.any():
            gn = np.linalg.norm(g[bad], axis=1, keepdims=True)
            d[bad] = -g[bad] / np.maximum(gn, 1e-300)
            gd[bad] = -gn[:, 0]
            valid[bad] = False
        t = np.ones(S)
        new_theta = theta.copy()
        new_f = f.copy()
        new_g = g.copy()
        todo = np.flatnonzero(active)
        for _ in range(max_halvings):
            if todo.size == 0:
                break
            cand = theta[todo] + t[todo, None] * d[todo]
            fc, gc = fun(cand, todo)
            ok = np.isfinite(fc) & (fc <= f[todo] + c1 * t[todo] * gd[todo])
            acc = todo[ok]
            new_theta[acc], new_f[acc], new_g[acc] = cand[ok], fc[ok], gc[ok]
            todo = todo[~ok]
            t[todo] *= 0.5
        moved = np.zeros(S, dtype=bool)
        moved[active] = True
        moved[todo] = False  # line search failed: keep the point, forget the curvature
        valid[todo] = False
        s = new_theta - theta
        y = new_g - g
        sy = np.einsum("sp,sp->s", s, y)
        upd = moved & (sy > 1e-16 * np.maximum(np.einsum("sp,sp->s", y, y), 1e-300))
        s_hist[upd] = np.roll(s_hist[upd], -1, axis=1)
        y_hist[upd] = np.roll(y_hist[upd], -1, axis=1)
        rho[upd] = np.roll(rho[upd], -1, axis=1)
        valid[upd] = np.roll(valid[upd], -1, axis=1)
        s_hist[upd, -1], y_hist[upd, -1] = s[upd], y[upd]
        rho[upd, -1] = 1.0 / sy[upd]
        valid[upd, -1] = True
        theta, f, g = new_theta, new_f, new_g
    return BatchedState(theta, f, g, it)


def _two_loop(g: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, rho: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """L-BFGS direction -H g for every member (Nocedal & Wright, Algorithm 7.4), vectorised."""
    S, m, _ = s_hist.shape
    q = g.copy()
    alpha = np.zeros((S, m))
    for j in range(m - 1, -1, -1):
        a = np.where(valid[:, j], rho[:, j] * (s_hist[:, j] * q).sum(1), 0.0)
        q -= a[:, None] * y_hist[:, j]
        alpha[:, j] = a
    # Initial Hessian scaling from the newest pair; without history, a unit-length first step.
    has = valid[:, -1]
    yy = np.einsum("sp,sp->s", y_hist[:, -1], y_hist[:, -1])
    sy = np.einsum("sp,sp->s", s_hist[:, -1], y_hist[:, -1])
    gamma = np.where(has, sy / np.where(has, yy, 1.0), 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300))
    r = gamma[:, None] * q
    for j in range(m):
        b = np.where(valid[:, j], rho[:, j] * (y_hist[:, j] * r).sum(1), 0.0)
        r += s_hist[:, j] * (alpha[:, j] - b)[:, None]
    return -r


@dataclass(frozen=True)
class PolishResult:
    """One scipy L-BFGS-B run: final point, objective, convergence flag, iterations, message."""

    theta: tuple[float, ...]
    objective: float
    converged: bool
    n_iter: int
    message: str


# Tight tolerances: the Huber objective of Approach 3 is O(1e-3) and L-BFGS-B's ftol test divides
# by max(|f|, 1), so the default ftol (2.2e-9) would stop ~1e-6 *relative* short of the optimum.
FTOL = 1e-15
GTOL = 1e-10
MAXITER = 2000


def polish(
    fun_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], theta0: np.ndarray, *, maxiter: int = MAXITER
) -> PolishResult:
    """Minimise with scipy L-BFGS-B (analytic gradient, ``jac=True``) from ``theta0``."""
    res = minimize(
        fun_grad,
        np.asarray(theta0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": FTOL, "gtol": GTOL, "maxiter": maxiter, "maxls": 50},
    )
    f = float(res.fun)
    return PolishResult(
        tuple(float(v) for v in res.x), f, bool(res.success) and np.isfinite(f), int(res.nit), str(res.message)
    )
