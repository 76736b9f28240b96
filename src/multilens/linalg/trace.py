"""Stochastic trace estimation from matvecs: Hutchinson, Hutch++ and XTrace, with standard errors.

* Hutchinson (1989): ``tr(A) = E[z^T A z]`` for Rademacher ``z``; the estimate is the mean of
  ``n`` independent samples and its standard error is their sample standard deviation over
  ``sqrt(n)``. Variance ``2 * sum_{i != j} A_ij^2`` per sample.
* Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021, Algorithm 1): spend a third of the budget
  on a sketch ``Q = orth(A S)``, take ``tr(Q^T A Q)`` exactly, and run Hutchinson on the deflated
  ``(I - QQ^T) A (I - QQ^T)``. Given ``Q`` the first term is exact and the second is an unbiased
  mean of i.i.d. samples, so its sample standard error is the estimator's (conditionally on Q).

* XTrace (Epperly, Tropp & Webber, SIAM J. Matrix Anal. Appl. 45, 2024, Algorithm 1): with
  ``s = n_matvec // 2`` test vectors ``W``, ``Q = orth(A W)``, and for each ``i`` the Hutch++
  estimate that uses ``Q_{-i}`` (the basis without test vector ``i``) and test vector ``i`` for
  the remainder; the estimate is the mean of the ``s`` exchangeable estimates, so every product
  serves both the low-rank part and the residual part. Its error estimate is the paper's
  (section 2.3): the standard deviation of the ``s`` estimates over ``sqrt(s)``.

Intervals are Student-t intervals ``estimate +- t_{(1+level)/2, n-1} * stderr`` on the ``n``
Hutchinson samples (for XTrace on its ``s`` exchangeable estimates: an error estimate, not an
interval from independent samples, so the result says so). With ``rtol``/``atol`` set, probes
are added block by block until the interval's half-width meets ``max(atol, rtol*|estimate|)``
(at least ``min_probes`` first; the sequential stop makes the nominal level approximate, so the
result says so) and only then is ``converged`` True; a fixed budget has ``converged=None``.

Probes are applied as blocks of ``block_size`` columns (one call of the operator's ``matmat``
when it has one: a vectorized pass of Hessian-vector products on the model side).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg.operator import CountingMatvec, Matmat, Matvec, check_dim, check_level, check_tol, rademacher
from multilens.seeding import SeedLike, as_generator


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with its standard error and a ``level`` Student-t interval.

    ``n_probes`` Hutchinson samples went into ``stderr`` (XTrace: its exchangeable estimates);
    ``sketch_rank`` is the rank of the sketch ``Q`` (0 for Hutchinson). ``converged`` is True or
    False only when an interval-width target (``rtol``/``atol``) was set, met or not; a fixed
    budget has ``converged=None``. ``exact`` is True when the sketch captured the whole operator.
    """

    estimate: float
    stderr: float
    ci_low: float
    ci_high: float
    level: float
    n_matvec: int
    n_probes: int
    method: str
    converged: bool | None
    n_iter: int
    sketch_rank: int = 0
    exact: bool = False
    note: str = ""
    schema_version: int = 1

    @property
    def half_width(self) -> float:
        return 0.5 * (self.ci_high - self.ci_low)

    def to_dict(self) -> dict[str, Any]:
        def f(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "schema_version": self.schema_version,
            "method": self.method,
            "estimate": f(self.estimate),
            "stderr": f(self.stderr),
            "ci_low": f(self.ci_low),
            "ci_high": f(self.ci_high),
            "level": self.level,
            "ci_method": (
                "student-t over XTrace's exchangeable estimates (its error estimate)"
                if self.method == "xtrace"
                else "student-t over the probe samples"
            ),
            "n_matvec": self.n_matvec,
            "n_probes": self.n_probes,
            "sketch_rank": self.sketch_rank,
            "exact": self.exact,
            "converged": self.converged,
            "budget": "fixed budget" if self.converged is None else "interval-width target",
            "n_iter": self.n_iter,
            "note": self.note,
        }


def _check_budget(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _interval(base: float, samples: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """(estimate, stderr, low, high) for ``base + mean(samples)`` with a Student-t interval.

    The stderr is floored at the rounding error of the sums (a few ulps of the magnitudes
    involved): when the deflated remainder is numerically zero its sample spread is ~1e-18 and
    would otherwise claim more precision than float64 arithmetic has.
    """
    n = samples.size
    est = base + float(samples.mean())
    if n < 2:
        return est, math.inf, -math.inf, math.inf
    floor = 16.0 * np.finfo(np.float64).eps * (abs(base) + float(np.abs(samples).mean())) * math.sqrt(n)
    se = max(float(samples.std(ddof=1)) / math.sqrt(n), floor)
    q = float(stats.t.ppf(0.5 + level / 2.0, df=n - 1))
    return est, se, est - q * se, est + q * se


def _sequential(
    sample: Any,
    base: float,
    budget: int,
    level: float,
    rtol: float | None,
    atol: float | None,
    min_probes: int,
    block_size: int,
) -> tuple[np.ndarray, bool | None]:
    """Draw samples block by block until the interval meets the width target (or the budget is spent).

    ``sample(b)`` returns ``b`` samples from one block product. Returns the samples and whether
    the target was met (None when no target was set: a fixed budget).
    """
    out: list[float] = []
    target = rtol is not None or atol is not None
    while len(out) < budget:
        want = budget - len(out)
        if target:
            want = min(want, max(min_probes - len(out), block_size))
        else:
            want = min(want, block_size)
        out.extend(sample(want))
        if target and len(out) >= min_probes:
            est, _, lo, hi = _interval(base, np.array(out), level)
            goal = max(atol or 0.0, (rtol or 0.0) * abs(est))
            if 0.5 * (hi - lo) <= goal:
                return np.array(out), True
    return np.array(out), (False if target else None)


def _blocked(op: CountingMatvec, v: np.ndarray, block_size: int) -> np.ndarray:
    """``A V`` in blocks of at most ``block_size`` columns."""
    if v.shape[1] == 0:
        return np.zeros((op.dim, 0))
    return np.hstack([op.matmat(v[:, i : i + block_size]) for i in range(0, v.shape[1], block_size)])


def _probes(rng: np.random.Generator, dim: int, b: int) -> np.ndarray:
    """``b`` Rademacher probes as columns, drawn one after another (the stream does not depend on blocking)."""
    return np.column_stack([rademacher(rng, (dim,)) for _ in range(b)])


def _check_block(block_size: object) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or int(block_size) < 1:
        raise ConfigError(f"`block_size` must be an int >= 1; got {block_size!r}.")
    return int(block_size)


def _validate(dim: int, n_matvec: int, level: float, rtol: float | None, atol: float | None, min_probes: int):
    dim = check_dim(dim)
    level = check_level(level)
    if rtol is not None:
        rtol = check_tol("rtol", rtol)
    if atol is not None:
        atol = check_tol("atol", atol)
    min_probes = _check_budget("min_probes", min_probes, 2)
    return dim, level, rtol, atol, min_probes


def hutchinson(
    matvec: Matvec,
    dim: int,
    n_matvec: int = 100,
    *,
    seed: SeedLike = 0,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
    min_probes: int = 10,
    block_size: int = 16,
    matmat: Matmat | None = None,
) -> TraceResult:
    """Hutchinson's estimator with Rademacher probes; ``n_matvec`` is the probe budget.

    Probes go to the operator in blocks of ``block_size`` (``matmat``, default ``matvec.matmat``).
    """
    dim, level, rtol, atol, min_probes = _validate(dim, n_matvec, level, rtol, atol, min_probes)
    n_matvec = _check_budget("n_matvec", n_matvec, 2)
    block_size = _check_block(block_size)
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim, matmat)

    def sample(b: int) -> list[float]:
        z = _probes(rng, dim, b)
        return [float(x) for x in np.einsum("ij,ij->j", z, op.matmat(z))]

    samples, met = _sequential(sample, 0.0, n_matvec, level, rtol, atol, min(min_probes, n_matvec), block_size)
    est, se, lo, hi = _interval(0.0, samples, level)
    return _finish("hutchinson", est, se, lo, hi, level, op.count, samples.size, met, rtol, atol, 0, False)


def hutchpp(
    matvec: Matvec,
    dim: int,
    n_matvec: int = 99,
    *,
    seed: SeedLike = 0,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
    min_probes: int = 10,
    sketch_size: int | None = None,
    block_size: int = 16,
    matmat: Matmat | None = None,
) -> TraceResult:
    """Hutch++: a rank-``sketch_size`` exact part plus Hutchinson on the deflated remainder.

    Budget split as in Meyer et al.: ``sketch_size = n_matvec // 3`` products for ``A S``,
    as many for ``A Q``, the rest (at least 2) for residual probes.
    """
    dim, level, rtol, atol, min_probes = _validate(dim, n_matvec, level, rtol, atol, min_probes)
    n_matvec = _check_budget("n_matvec", n_matvec, 4)
    s = n_matvec // 3 if sketch_size is None else _check_budget("sketch_size", sketch_size, 1)
    if n_matvec - 2 * s < 2:
        raise ConfigError(f"`n_matvec` ({n_matvec}) must leave at least 2 probes after the sketch (2*{s}); raise it.")
    block_size = _check_block(block_size)
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim, matmat)
    s_eff = min(s, dim)
    sketch = rademacher(rng, (dim, s_eff))
    a_s = _blocked(op, sketch, block_size)
    q, r = np.linalg.qr(a_s)
    # Drop directions the sketch did not really reach (A S rank-deficient, e.g. A low-rank).
    keep = np.abs(np.diag(r)) > 1e-12 * max(float(np.abs(np.diag(r)).max(initial=0.0)), 1e-300)
    q = q[:, keep]
    a_q = _blocked(op, q, block_size)
    base = float(np.einsum("ij,ij->", q, a_q))
    rank = int(q.shape[1])
    if s_eff == dim:
        # S spans the space, so Q spans range(A) (all of it, or all A reaches when A is
        # rank-deficient): the deflated remainder is zero and tr(Q^T A Q) is the trace itself.
        met0 = True if (rtol is not None or atol is not None) else None  # a zero-width interval meets any target
        return _finish("hutch++", base, 0.0, base, base, level, op.count, 0, met0, rtol, atol, rank, True)

    def sample(b: int) -> list[float]:
        g = _probes(rng, dim, b)
        g = g - q @ (q.T @ g)  # (I - QQ^T) g
        ag = op.matmat(g)
        return [float(x) for x in np.einsum("ij,ij->j", g, ag - q @ (q.T @ ag))]

    budget = n_matvec - op.count
    samples, met = _sequential(sample, base, budget, level, rtol, atol, min(min_probes, budget), block_size)
    est, se, lo, hi = _interval(base, samples, level)
    return _finish("hutch++", est, se, lo, hi, level, op.count, samples.size, met, rtol, atol, rank, False)


def _finish(
    method: str,
    est: float,
    se: float,
    lo: float,
    hi: float,
    level: float,
    n_mv: int,
    n_probes: int,
    met: bool | None,
    rtol: float | None,
    atol: float | None,
    rank: int,
    exact: bool,
) -> TraceResult:
    notes = []
    if rtol is not None or atol is not None:
        notes.append("probes were added until the interval met its width target; the level is approximate")
        if met is False:
            warnings.warn(
                f"{method} spent its budget of {n_mv} products before the {level:.0%} interval's half-width "
                f"{0.5 * (hi - lo):.3g} met the target; raise `n_matvec` or loosen `rtol`/`atol`.",
                ConvergenceWarning,
                stacklevel=3,
            )
    else:
        notes.append("fixed budget")
    if exact:
        notes.append("the sketch spans the whole space: the trace is exact up to rounding")
    return TraceResult(
        estimate=est,
        stderr=se,
        ci_low=lo,
        ci_high=hi,
        level=level,
        n_matvec=n_mv,
        n_probes=n_probes,
        method=method,
        converged=met,
        n_iter=n_probes,
        sketch_rank=rank,
        exact=exact,
        note="; ".join(notes),
    )


def xtrace(
    matvec: Matvec,
    dim: int,
    n_matvec: int = 100,
    *,
    seed: SeedLike = 0,
    level: float = 0.95,
    block_size: int = 16,
    matmat: Matmat | None = None,
) -> TraceResult:
    """XTrace (Epperly, Tropp & Webber 2024): Hutch++ made exchangeable, with its error estimate.

    ``n_matvec // 2`` Rademacher test vectors ``W``; ``Q, R = qr(A W)``; for each ``i`` the
    Hutch++ estimate with basis ``Q_{-i}`` (``Q Q^T`` minus its ``i``-th leave-one-out direction
    ``s_i``, the normalized ``i``-th column of ``R^{-T}``) and Hutchinson on test vector ``i``:
    ``tr(Q^T A Q) - s_i^T Q^T A Q s_i + w_i^T (I - Q_{-i} Q_{-i}^T) A (I - Q_{-i} Q_{-i}^T) w_i``.
    The estimate is their mean, ``stderr`` their standard deviation over ``sqrt(n_matvec // 2)``
    (the paper's error estimate). A fixed budget: ``converged`` is None.
    """
    dim = check_dim(dim)
    level = check_level(level)
    n_matvec = _check_budget("n_matvec", n_matvec, 4)
    block_size = _check_block(block_size)
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim, matmat)
    m = min(n_matvec // 2, dim)
    w = rademacher(rng, (dim, m))
    a_w = _blocked(op, w, block_size)
    q, r = np.linalg.qr(a_w)
    d = np.abs(np.diag(r))
    if m == dim or d.min(initial=np.inf) <= 1e-12 * max(float(d.max(initial=0.0)), 1e-300):
        # W spans the space, or A W is rank-deficient: then range(A) lies in span(Q) (with
        # probability one), so tr(Q^T A Q) is the trace itself (A symmetric).
        a_q = _blocked(op, q, block_size)
        base = float(np.einsum("ij,ij->", q, a_q))
        return _finish("xtrace", base, 0.0, base, base, level, op.count, 0, None, None, None, m, True)
    a_q = _blocked(op, q, block_size)
    h = q.T @ a_q
    h = 0.5 * (h + h.T)
    s_mat = np.linalg.inv(r.T)  # R^{-T}
    s_mat = s_mat / np.linalg.norm(s_mat, axis=0, keepdims=True)
    tr_h = float(np.trace(h))

    # The m leave-one-out estimates at once (matrix products, not a loop of matrix-vector ones):
    # with Q_{-i} Q_{-i}^T = Q (I - s_i s_i^T) Q^T,
    # c_i = (I - s_i s_i^T) Q^T w_i, A (I - Q_{-i} Q_{-i}^T) w_i = A w_i - A Q c_i, and the
    # projection (I - Q_{-i} Q_{-i}^T) of that vector likewise.
    def loo(mat: np.ndarray) -> np.ndarray:  # column i -> (I - s_i s_i^T) column i
        return mat - s_mat * np.einsum("ij,ij->j", s_mat, mat)[None, :]

    apw = a_w - a_q @ loo(q.T @ w)
    papw = apw - q @ loo(q.T @ apw)
    ests = tr_h - np.einsum("ij,ij->j", s_mat, h @ s_mat) + np.einsum("ij,ij->j", w, papw)
    est, se, lo, hi = _interval(0.0, ests, level)
    return _finish("xtrace", est, se, lo, hi, level, op.count, m, None, None, None, m, False)


TRACE_METHODS: tuple[str, ...] = ("xtrace", "hutch++", "hutchinson")
# The default of hessian_trace/trace_estimate: the estimator with the smaller measured error at
# equal budget over a fast-decaying and a flat spectrum (geometric mean of the relative RMSEs);
# test_default_trace_method_is_the_measured_best re-measures it.
DEFAULT_TRACE_METHOD = "xtrace"


def trace_estimate(
    matvec: Matvec,
    dim: int,
    method: str = "auto",
    n_matvec: int = 99,
    *,
    seed: SeedLike = 0,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
    block_size: int = 16,
    matmat: Matmat | None = None,
) -> TraceResult:
    """Dispatch to :func:`xtrace`, :func:`hutchpp` or :func:`hutchinson` by ``method``.

    ``method="auto"`` is :data:`DEFAULT_TRACE_METHOD`, or Hutch++ when an interval-width target
    is set (XTrace has no sequential stopping rule).
    """
    if method == "auto":
        method = "hutch++" if (rtol is not None or atol is not None) else DEFAULT_TRACE_METHOD
    kw = {"seed": seed, "level": level, "block_size": block_size, "matmat": matmat}
    if method == "xtrace":
        if rtol is not None or atol is not None:
            raise ConfigError("`rtol`/`atol` (an interval-width target) need method 'hutch++' or 'hutchinson'.")
        return xtrace(matvec, dim, n_matvec, **kw)
    if method == "hutch++":
        return hutchpp(matvec, dim, n_matvec, rtol=rtol, atol=atol, **kw)
    if method == "hutchinson":
        return hutchinson(matvec, dim, n_matvec, rtol=rtol, atol=atol, **kw)
    raise ConfigError(f"`method` must be 'auto' or one of {', '.join(map(repr, TRACE_METHODS))}; got {method!r}.")
