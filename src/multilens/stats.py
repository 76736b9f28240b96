"""Interval helpers shared by the lenses: Student-t intervals of a mean over independent seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from multilens.results import Estimate


@dataclass(frozen=True)
class MeanCI:
    """Mean of independent replicates with a Student-t interval (``n`` replicates)."""

    mean: float
    low: float
    high: float
    stderr: float
    n: int
    level: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def method(self) -> str:
        return f"Student t over {self.n} independent seeds"


def mean_ci(values: np.ndarray | list[float], level: float = 0.95) -> MeanCI:
    """t-interval of the mean; with one finite value the interval is unavailable (NaN bounds)."""
    v = np.asarray([x for x in np.asarray(values, np.float64).ravel() if math.isfinite(x)])
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, nan, 0, level)
    m = float(v.mean())
    if n == 1:
        return MeanCI(m, float("nan"), float("nan"), float("nan"), 1, level)
    se = float(v.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
    return MeanCI(m, m - q * se, m + q * se, se, n, level)


def interval_text(ci: MeanCI, digits: int = 3) -> str:
    """ "[low, high]" or "(no interval)" when fewer than two finite replicates were available."""
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return "(no interval)"
    return f"[{ci.low:.{digits}g}, {ci.high:.{digits}g}]"


def json_float(x: Any) -> float | None:
    """A JSON-safe float: None for None, NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_floats(xs: Any) -> list[float | None]:
    return [json_float(v) for v in np.asarray(xs, dtype=np.float64).ravel()]


def estimate_from_ci(name: str, ci: MeanCI, unit: str = "", note: str = "", **kw: Any) -> Estimate:
    """A results.Estimate from a mean with its t-interval."""
    f = json_float
    return Estimate(name, f(ci.mean), f(ci.low), f(ci.high), f(ci.stderr), ci.level, ci.method, ci.n, unit, note, **kw)
