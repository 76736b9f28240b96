"""Bootstrap intervals shared by the scaling fits: percentile intervals over refits on resampled runs.

The unit resampled is a run (a row: one trained model), drawn with replacement (Efron &
Tibshirani 1993, ch. 13 percentile interval). A resample is represented as integer weights on
the original runs, which is exactly equivalent to repeating rows in a summed objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError
from multilens.results import SCHEMA_VERSION, Estimate, _finite_or_none
from multilens.seeding import SeedLike, as_generator


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only copy, so frozen results cannot be mutated through their arrays."""
    a = np.array(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class ParamInterval:
    """A point estimate with its bootstrap percentile interval and bootstrap standard error.

    The bootstrap result type of the scaling fits (one per parameter, per allocation budget, per
    regime breakpoint). ``n`` finite refits formed the interval and ``n_dropped`` were left out as
    non-finite (failed refits). :meth:`to_estimate` gives the :class:`multilens.results.Estimate`.
    """

    estimate: float
    ci_low: float | None
    ci_high: float | None
    stderr: float | None
    n: int = 0
    n_dropped: int = 0

    def to_dict(self) -> dict[str, float | None]:
        d: dict[str, Any] = {k: _finite_or_none(getattr(self, k)) for k in ("estimate", "ci_low", "ci_high", "stderr")}
        return d | {"n": self.n, "n_dropped": self.n_dropped}

    def to_estimate(
        self, name: str, *, level: float, method: str, unit: str = "", note: str = "", **kw: Any
    ) -> Estimate:
        """The Estimate of this interval; without one, ``no_interval_reason`` says why."""
        reason = ""
        if self.ci_low is None or self.ci_high is None:
            reason = f"fewer than 2 finite bootstrap refits ({self.n} finite, {self.n_dropped} dropped)"
        if self.n_dropped and "dropped" not in note:
            note = (note + "; " if note else "") + f"{self.n_dropped} non-finite bootstrap refit(s) dropped"
        return Estimate(
            name, _finite_or_none(self.estimate), self.ci_low, self.ci_high, self.stderr, level, method, self.n,
            unit, note, n_dropped=self.n_dropped, no_interval_reason=reason, **kw,
        )  # fmt: skip


def percentile_interval(estimate: float, samples: np.ndarray, level: float) -> ParamInterval:
    """Percentile interval of the finite ``samples`` at ``level`` and their standard deviation.

    Non-finite samples (failed refits) are left out and counted in ``n_dropped``.
    """
    s = np.asarray(samples, dtype=np.float64).ravel()
    fin = np.isfinite(s)
    dropped = int(s.size - fin.sum())
    s = s[fin]
    if s.size < 2:
        return ParamInterval(float(estimate), None, None, None, int(s.size), dropped)
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    with np.errstate(over="ignore", invalid="ignore"):  # refits at a boundary (A ~ 1e200) overflow the square
        sd = float(np.std(s, ddof=1))
    return ParamInterval(float(estimate), float(lo), float(hi), sd if np.isfinite(sd) else None, int(s.size), dropped)


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Bootstrap refits over runs: per-parameter percentile intervals and the raw samples.

    ``samples`` is (n_boot, len(names)) with NaN rows for failed refits; ``intervals`` maps each
    name to a :class:`ParamInterval` computed from the ``n_boot - n_failed`` successful refits.
    """

    names: tuple[str, ...]
    samples: np.ndarray
    intervals: dict[str, ParamInterval]
    n_boot: int
    n_failed: int
    level: float
    method: str
    n_iter_mean: float = float("nan")
    weights: np.ndarray | None = None  # (n_boot, n) run counts of each resample, aligned with ``samples``
    schema_version: int = SCHEMA_VERSION

    @property
    def n_ok(self) -> int:
        return self.n_boot - self.n_failed

    def column(self, name: str) -> np.ndarray:
        return self.samples[:, self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "n_boot": self.n_boot,
            "n_failed": self.n_failed,
            "level": self.level,
            "method": self.method,
        }


def check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (0.0 < level < 1.0):
        raise ConfigError(f"`level` must be a number in (0, 1), e.g. 0.95; got {level!r}.")
    return float(level)


def resample_weights(n: int, n_boot: int, seed: SeedLike) -> np.ndarray:
    """(n_boot, n) run counts of bootstrap resamples (rows drawn with replacement)."""
    rng = as_generator(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)
