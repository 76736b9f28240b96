"""Intervals shared by every lens: one :class:`Interval` type and the estimators that produce it.

* :func:`mean_ci`: Student-t interval of a mean over independent replicates (seeds, designs);
  non-finite replicates are dropped and counted (``n_dropped``), never silently.
* :func:`bootstrap_ci`: percentile bootstrap over examples (Efron & Tibshirani 1993, ch. 13) of
  any statistic of one or more aligned arrays, seeded.
* :func:`batch_means_ci`: batch-means interval for serially correlated series such as timings.
* :func:`clopper_pearson`: exact binomial interval (accuracies, failure rates).

JSON helpers for the output boundary live here too (:func:`json_float`, :func:`json_safe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import stats

from multilens.results import Check, CheckKind, Estimate
from multilens.seeding import SeedLike, as_generator

SINGLE_SEED = "single seed: variability over initialisations not measured"
DETERMINISTIC = "deterministic computation: no sampling variability (accuracy is the solver's tolerance)"


@dataclass(frozen=True)
class Interval:
    """An estimate with a ``level`` interval [low, high] obtained by ``method``.

    ``n`` finite replicates (or examples) were used and ``n_dropped`` were left out as non-finite.
    Bounds are NaN when no interval could be formed; ``reason`` then says why.
    """

    estimate: float
    low: float
    high: float
    stderr: float
    n: int
    level: float
    method: str
    n_dropped: int = 0
    reason: str = ""

    @property
    def mean(self) -> float:  # the estimate of mean_ci is a mean
        return self.estimate

    @property
    def ok(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def covers(self, value: float) -> bool:
        return self.ok and self.low <= value <= self.high

    def to_estimate(self, name: str, unit: str = "", note: str = "", **kw: Any) -> Estimate:
        f = json_float
        if self.n_dropped and "dropped" not in note:
            note = (note + "; " if note else "") + f"{self.n_dropped} non-finite replicate(s) dropped"
        return Estimate(
            name, f(self.estimate), f(self.low), f(self.high), f(self.stderr), self.level, self.method, self.n,
            unit, note, n_dropped=self.n_dropped, no_interval_reason="" if self.ok else self.reason, **kw,
        )  # fmt: skip


# Backwards-compatible name: a mean with its t-interval is an Interval.
MeanCI = Interval


def _finite(values: Any) -> tuple[np.ndarray, int]:
    v = np.asarray(values, np.float64).ravel()
    keep = np.isfinite(v)
    return v[keep], int(v.size - keep.sum())


def mean_ci(values: np.ndarray | list[float], level: float = 0.95, unit: str = "seeds") -> Interval:
    """t-interval of the mean; non-finite replicates are dropped and counted in ``n_dropped``."""
    v, dropped = _finite(values)
    n = int(v.size)
    nan = float("nan")
    drop_txt = f" ({dropped} non-finite dropped)" if dropped else ""
    method = f"Student t over {n} independent {unit}{drop_txt}"
    if n == 0:
        return Interval(nan, nan, nan, nan, 0, level, method, dropped, f"no finite replicate{drop_txt}")
    m = float(v.mean())
    if n == 1:
        reason = (
            SINGLE_SEED if unit == "seeds" else f"a single {unit[:-1] if unit.endswith('s') else unit}"
        ) + drop_txt
        return Interval(m, nan, nan, nan, 1, level, method, dropped, reason)
    se = float(v.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
    return Interval(m, m - q * se, m + q * se, se, n, level, method, dropped)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: SeedLike,
    unit: str = "examples",
) -> Interval:
    """Percentile bootstrap of ``statistic(*arrays)`` resampling rows (aligned across arrays)."""
    n = int(np.asarray(arrays[0]).shape[0])
    point = float(statistic(*arrays))
    nan = float("nan")
    if n < 2:
        return Interval(point, nan, nan, nan, n, level, "percentile bootstrap", 0, f"fewer than 2 {unit}")
    rng = as_generator(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        reps[b] = statistic(*(np.asarray(a)[idx] for a in arrays))
    fin, dropped = _finite(reps)
    method = f"percentile bootstrap over {n} {unit}, {fin.size} resamples"
    if fin.size < 2:
        return Interval(point, nan, nan, nan, n, level, method, dropped, "bootstrap replicates not finite")
    lo, hi = np.quantile(fin, [(1 - level) / 2, (1 + level) / 2])
    return Interval(point, float(lo), float(hi), float(fin.std(ddof=1)), n, level, method, dropped)


def batch_means_ci(values: np.ndarray | list[float], n_batches: int = 5, level: float = 0.95) -> Interval:
    """Batch-means interval of the mean of a (possibly autocorrelated) series, e.g. step timings."""
    v, dropped = _finite(values)
    n = int(v.size)
    nan = float("nan")
    b = min(n_batches, n)
    if b < 2:
        m = float(v.mean()) if n else nan
        return Interval(m, nan, nan, nan, n, level, "batch means", dropped, "fewer than 2 timed repetitions")
    means = np.array([chunk.mean() for chunk in np.array_split(v, b)])
    m = float(v.mean())
    se = float(means.std(ddof=1) / math.sqrt(b))
    q = float(stats.t.ppf(0.5 + level / 2.0, b - 1))
    return Interval(m, m - q * se, m + q * se, se, n, level, f"batch means ({b} batches of {n} repetitions)", dropped)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Interval:
    """Exact binomial interval of a proportion k/n."""
    nan = float("nan")
    if n <= 0:
        return Interval(nan, nan, nan, nan, 0, level, "Clopper-Pearson", 0, "no trials")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    p = k / n
    return Interval(p, float(ci.low), float(ci.high), math.sqrt(p * (1 - p) / n), n, level, "Clopper-Pearson exact")


def check_sign(
    name: str, ci: Interval, *, positive: bool, what: str, kind: CheckKind = "agreement", severity: str = "error"
) -> Check:
    """One criterion: the whole interval (typically of a difference) lies above 0, or below 0."""
    side = "above" if positive else "below"
    crit = f"the {ci.level:.0%} interval lies {side} 0"
    if not ci.ok:
        reason = f"{what}: no interval ({ci.reason})"
        return Check(name, None, json_float(ci.estimate), 0.0, None, reason, severity, kind=kind, criterion=crit)
    ok = ci.low > 0 if positive else ci.high < 0
    reason = (
        f"{what}: {ci.estimate:.4g}, interval [{ci.low:.4g}, {ci.high:.4g}] {'lies' if ok else 'does not lie'} {side} 0"
    )
    return Check(name, ok, ci.estimate, 0.0, None, reason, severity, kind=kind, criterion=crit)


def interval_text(ci: Interval, digits: int = 3) -> str:
    """ "[low, high]" or "(no interval: reason)"."""
    if not ci.ok:
        return f"(no interval: {ci.reason})" if ci.reason else "(no interval)"
    return f"[{ci.low:.{digits}g}, {ci.high:.{digits}g}]"


def json_float(x: Any) -> float | None:
    """A JSON-safe float: None for None, NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_floats(xs: Any) -> list[float | None]:
    return [json_float(v) for v in np.asarray(xs, dtype=np.float64).ravel()]


def json_safe(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays and non-finite floats into JSON types (the one serializer)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return json_float(obj)
    return obj


def estimate_from_ci(name: str, ci: Interval, unit: str = "", note: str = "", **kw: Any) -> Estimate:
    """A results.Estimate from an Interval (kept for callers of the old helper)."""
    return ci.to_estimate(name, unit, note, **kw)
