"""Calibration functions for anyone's predictions, each returning estimates with intervals.

    >>> from multilens import calibration
    >>> calibration.ece(labels, probs=p).value, calibration.ece(labels, probs=p).ci_low
    >>> ts = calibration.temperature_scale(val_labels, val_logits, test_labels=y, test_logits=z)
    >>> ts.temperature.value, ts.temperature.converged, ts.test["ece"].value
    >>> rep = calibration.calibration_metrics(labels, logits=z)   # dict name -> Estimate

Intervals are percentile bootstraps over examples (``stats.bootstrap_ci``, seeded), except the
debiased calibration error, whose bootstrap distribution is centred on the *plug-in* value of
the resampled data rather than on the debiased estimate: it gets a normal interval with the
bootstrap standard error. Accuracy has the exact Clopper-Pearson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from multilens.lenses.calibration import metrics as M
from multilens.lenses.calibration.temperature import TemperatureFit, fit_temperature
from multilens.results import Estimate
from multilens.seeding import SeedLike, as_generator
from multilens.stats import Interval, bootstrap_ci, clopper_pearson
from multilens.validation import check_int, check_open_unit

METRICS = ("ece", "ece_adaptive", "classwise_ece", "mce", "nll", "brier", "ece_debiased", "aurc")


def _stat(name: str, n_bins: int):
    return {
        "ece": lambda y, p: M.ece(y, p, n_bins),
        "ece_adaptive": lambda y, p: M.ece_adaptive(y, p, n_bins),
        "classwise_ece": lambda y, p: M.classwise_ece(y, p, n_bins),
        "mce": lambda y, p: M.mce(y, p, n_bins),
        "nll": M.nll,
        "brier": M.brier,
        "aurc": M.aurc,
        "sq_ce_debiased": lambda y, p: M.debiased_sq_ce(y, p, n_bins),
    }[name]


def normal_bootstrap_ci(
    statistic: Any, *arrays: np.ndarray, n_boot: int, level: float, seed: SeedLike, unit: str = "examples"
) -> Interval:
    """estimate +- z * (bootstrap standard deviation): for statistics whose bootstrap is off-centre."""
    pct = bootstrap_ci(statistic, *arrays, n_boot=n_boot, level=level, seed=seed, unit=unit)
    z = float(sps.norm.ppf(0.5 + level / 2))
    se = pct.stderr
    if not math.isfinite(se):
        return pct
    method = f"normal interval, bootstrap standard error ({pct.method})"
    return Interval(pct.estimate, pct.estimate - z * se, pct.estimate + z * se, se, pct.n, level, method, pct.n_dropped)


def metric_interval(
    name: str, labels: np.ndarray, probs: np.ndarray, *, n_bins: int = 15, n_boot: int = 1000, level: float = 0.95,
    seed: SeedLike = 0,
) -> Interval:  # fmt: skip
    """One metric of validated (labels, probs) with its bootstrap interval over examples."""
    if name == "accuracy":
        return clopper_pearson(int(np.sum(np.argmax(probs, 1) == labels)), labels.shape[0], level)
    if name == "sq_ce_debiased":
        return normal_bootstrap_ci(_stat(name, n_bins), labels, probs, n_boot=n_boot, level=level, seed=seed)
    if name == "ece_debiased":
        sq = normal_bootstrap_ci(_stat("sq_ce_debiased", n_bins), labels, probs, n_boot=n_boot, level=level, seed=seed)
        r = lambda v: math.sqrt(max(v, 0.0)) if math.isfinite(v) else float("nan")  # noqa: E731
        return Interval(r(sq.estimate), r(sq.low), r(sq.high), float("nan"), sq.n, level,
                        sq.method + ", mapped through sqrt(max(., 0))", sq.n_dropped, sq.reason)  # fmt: skip
    return bootstrap_ci(_stat(name, n_bins), labels, probs, n_boot=n_boot, level=level, seed=seed)


def calibration_metrics(
    labels: Any, probs: Any = None, logits: Any = None, *, n_bins: int = 15, n_boot: int = 1000, level: float = 0.95,
    seed: SeedLike = 0, metrics: tuple[str, ...] = METRICS + ("accuracy",),
) -> dict[str, Estimate]:  # fmt: skip
    """Every calibration metric of (labels, probs or logits), each an Estimate with its interval.

    The NLL is computed from the logits when they are given (exact log-softmax).
    """
    check_int("n_bins", n_bins, 1)
    check_int("n_boot", n_boot, 10)
    check_open_unit("level", level)
    y, p = M.as_probs(labels, probs, logits)
    out: dict[str, Estimate] = {}
    for name in metrics:
        if name == "nll" and logits is not None:
            z = np.asarray(logits, np.float64)
            ci = bootstrap_ci(M.nll_logits, y, z, n_boot=n_boot, level=level, seed=seed)
        else:
            ci = metric_interval(name, y, p, n_bins=n_bins, n_boot=n_boot, level=level, seed=seed)
        out[name] = ci.to_estimate(name)
    return out


def ece(
    labels: Any, probs: Any = None, logits: Any = None, *, n_bins: int = 15, adaptive: bool = False,
    n_boot: int = 1000, level: float = 0.95, seed: SeedLike = 0,
) -> Estimate:  # fmt: skip
    """Top-label ECE (equal-width bins, or equal-mass when ``adaptive``) with its bootstrap interval."""
    name = "ece_adaptive" if adaptive else "ece"
    return calibration_metrics(labels, probs, logits, n_bins=n_bins, n_boot=n_boot, level=level, seed=seed,
                               metrics=(name,))[name]  # fmt: skip


@dataclass(frozen=True)
class TemperatureScaling:
    """A temperature fitted on validation data, its interval, and the metrics it changes."""

    temperature: Estimate  # value, bootstrap interval over validation examples, converged, n_iter
    fit: TemperatureFit
    val_nll_before: float
    val_nll_after: float
    test: dict[str, Estimate] = field(default_factory=dict)  # metrics after scaling (test split)
    test_before: dict[str, Estimate] = field(default_factory=dict)
    n_refits_failed: int = 0


def bootstrap_temperature(
    labels: np.ndarray, logits: np.ndarray, *, n_boot: int, level: float, seed: SeedLike
) -> tuple[Interval, int]:
    """Percentile interval of T over bootstrap refits; refits that did not converge are counted and dropped."""
    rng = as_generator(seed)
    n = labels.shape[0]
    ts, failed = [], 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        f = fit_temperature(labels[idx], logits[idx], xatol=1e-6)
        if not f.at_bound:  # a refit whose optimum sits on the search bound is counted as failed
            ts.append(f.temperature)
        else:
            failed += 1
    ts_a = np.asarray(ts)
    nan = float("nan")
    method = f"percentile bootstrap over {n} examples, {ts_a.size} refits"
    if ts_a.size < 2:
        return Interval(nan, nan, nan, nan, n, level, method, failed, "bootstrap refits did not converge"), failed
    lo, hi = np.quantile(ts_a, [(1 - level) / 2, (1 + level) / 2])
    return Interval(nan, float(lo), float(hi), float(ts_a.std(ddof=1)), n, level, method, failed), failed


def temperature_scale(
    labels: Any, logits: Any, *, test_labels: Any = None, test_logits: Any = None, n_bins: int = 15,
    n_boot: int = 200, level: float = 0.95, seed: SeedLike = 0,
) -> TemperatureScaling:  # fmt: skip
    """Fit T on (labels, logits) (the validation split); evaluate on the test split when given.

    The temperature's interval comes from ``n_boot`` refits on bootstrap resamples of the
    validation examples. With a test split, ``test_before``/``test`` hold every metric of
    :func:`calibration_metrics` before and after scaling (the same bootstrap seed for both).
    """
    check_int("n_boot", n_boot, 10)
    y, _ = M.as_probs(labels, logits=logits)
    z = np.asarray(logits, np.float64)
    fit = fit_temperature(y, z)
    rng = as_generator(seed)
    s_boot, s_test = (int(v) for v in rng.integers(0, 2**31 - 1, 2))
    ci, failed = bootstrap_temperature(y, z, n_boot=n_boot, level=level, seed=s_boot)
    est = Estimate(
        "temperature", fit.temperature, ci.low if ci.ok else None, ci.high if ci.ok else None,
        ci.stderr if ci.ok else None, level, ci.method, ci.n, "", fit.message, fit.converged, fit.n_iter,
        failed, "" if ci.ok else ci.reason,
    )  # fmt: skip
    test, before = {}, {}
    if test_logits is not None:
        if test_labels is None:
            raise M.DataError("`test_logits` given without `test_labels`.")
        zt = np.asarray(test_logits, np.float64)
        before = calibration_metrics(test_labels, logits=zt, n_bins=n_bins, n_boot=max(n_boot, 10), level=level,
                                     seed=s_test)  # fmt: skip
        test = calibration_metrics(test_labels, logits=zt / fit.temperature, n_bins=n_bins, n_boot=max(n_boot, 10),
                                   level=level, seed=s_test)  # fmt: skip
    return TemperatureScaling(est, fit, fit.nll_before, fit.nll_after, test, before, failed)
