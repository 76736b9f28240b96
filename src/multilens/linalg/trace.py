"""Stochastic trace estimation from matvecs: Hutchinson and Hutch++, with standard errors.

* Hutchinson (1989): ``tr(A) = E[z^T A z]`` for Rademacher ``z``; the estimate is the mean of
  ``n`` independent samples and its standard error is their sample standard deviation over
  ``sqrt(n)``. Variance ``2 * sum_{i != j} A_ij^2`` per sample.
* Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021, Algorithm 1): spend a third of the budget
  on a sketch ``Q = orth(A S)``, take ``tr(Q^T A Q)`` exactly, and run Hutchinson on the deflated
  ``(I - QQ^T) A (I - QQ^T)``. Given ``Q`` the first term is exact and the second is an unbiased
  mean of i.i.d. samples, so its sample standard error is the estimator's (conditionally on Q).

Intervals are Student-t intervals ``estimate +- t_{(1+level)/2, n-1} * stderr`` on the ``n``
Hutchinson samples. With ``rtol``/``atol`` set, probes are added one at a time until the
interval's half-width meets ``max(atol, rtol*|estimate|)`` (at least ``min_probes`` first; the
sequential stop makes the nominal level approximate, so the result says so).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg.operator import CountingMatvec, Matvec, check_dim, check_level, check_tol, rademacher
from multilens.seeding import SeedLike, as_generator


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with its standard error and a ``level`` Student-t interval.

    ``n_probes`` Hutchinson samples went into ``stderr``; ``sketch_rank`` is Hutch++'s ``Q`` rank
    (0 for Hutchinson). ``converged`` is True when the interval-width target was met or when no
    target was set (a fixed budget); ``exact`` is True when the sketch spanned the whole space.
    """

    estimate: float
    stderr: float
    ci_low: float
    ci_high: float
    level: float
    n_matvec: int
    n_probes: int
    method: str
    converged: bool
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
            "ci_method": "student-t over the probe samples",
            "n_matvec": self.n_matvec,
            "n_probes": self.n_probes,
            "sketch_rank": self.sketch_rank,
            "exact": self.exact,
            "converged": self.converged,
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
) -> tuple[np.ndarray, bool]:
    """Draw samples until the interval meets the width target (or the budget is spent)."""
    out: list[float] = []
    target = rtol is not None or atol is not None
    while len(out) < budget:
        out.append(sample())
        if target and len(out) >= min_probes:
            est, _, lo, hi = _interval(base, np.array(out), level)
            goal = max(atol or 0.0, (rtol or 0.0) * abs(est))
            if 0.5 * (hi - lo) <= goal:
                return np.array(out), True
    return np.array(out), not target


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
) -> TraceResult:
    """Hutchinson's estimator with Rademacher probes; ``n_matvec`` is the probe budget."""
    dim, level, rtol, atol, min_probes = _validate(dim, n_matvec, level, rtol, atol, min_probes)
    n_matvec = _check_budget("n_matvec", n_matvec, 2)
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim)

    def sample() -> float:
        z = rademacher(rng, (dim,))
        return float(z @ op(z))

    samples, met = _sequential(sample, 0.0, n_matvec, level, rtol, atol, min(min_probes, n_matvec))
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
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim)
    s_eff = min(s, dim)
    sketch = rademacher(rng, (dim, s_eff))
    a_s = np.column_stack([op(sketch[:, i]) for i in range(s_eff)])
    q, r = np.linalg.qr(a_s)
    # Drop directions the sketch did not really reach (A S rank-deficient, e.g. A low-rank).
    keep = np.abs(np.diag(r)) > 1e-12 * max(float(np.abs(np.diag(r)).max(initial=0.0)), 1e-300)
    q = q[:, keep]
    a_q = np.column_stack([op(q[:, i]) for i in range(q.shape[1])]) if q.shape[1] else np.zeros((dim, 0))
    base = float(np.einsum("ij,ij->", q, a_q))
    rank = int(q.shape[1])
    if s_eff == dim:
        # S spans the space, so Q spans range(A) (all of it, or all A reaches when A is
        # rank-deficient): the deflated remainder is zero and tr(Q^T A Q) is the trace itself.
        return _finish("hutch++", base, 0.0, base, base, level, op.count, 0, True, rtol, atol, rank, True)

    def sample() -> float:
        g = rademacher(rng, (dim,))
        g = g - q @ (q.T @ g)  # (I - QQ^T) g
        ag = op(g)
        return float(g @ (ag - q @ (q.T @ ag)))

    budget = n_matvec - op.count
    samples, met = _sequential(sample, base, budget, level, rtol, atol, min(min_probes, budget))
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
    met: bool,
    rtol: float | None,
    atol: float | None,
    rank: int,
    exact: bool,
) -> TraceResult:
    notes = []
    if rtol is not None or atol is not None:
        notes.append("probes were added until the interval met its width target; the level is approximate")
        if not met:
            warnings.warn(
                f"{method} spent its budget of {n_mv} products before the {level:.0%} interval's half-width "
                f"{0.5 * (hi - lo):.3g} met the target; raise `n_matvec` or loosen `rtol`/`atol`.",
                ConvergenceWarning,
                stacklevel=3,
            )
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
        converged=bool(met or exact),
        n_iter=n_probes,
        sketch_rank=rank,
        exact=exact,
        note="; ".join(notes),
    )


def trace_estimate(
    matvec: Matvec,
    dim: int,
    method: str = "hutch++",
    n_matvec: int = 99,
    *,
    seed: SeedLike = 0,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
) -> TraceResult:
    """Dispatch to :func:`hutchpp` or :func:`hutchinson` by ``method``."""
    if method == "hutch++":
        return hutchpp(matvec, dim, n_matvec, seed=seed, level=level, rtol=rtol, atol=atol)
    if method == "hutchinson":
        return hutchinson(matvec, dim, n_matvec, seed=seed, level=level, rtol=rtol, atol=atol)
    raise ConfigError(f"`method` must be 'hutch++' or 'hutchinson'; got {method!r}.")
