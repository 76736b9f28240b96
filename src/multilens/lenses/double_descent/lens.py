"""The double-descent lens: measured risk curves beside their exact and asymptotic predictions.

Follows the seed's double-descent theorem (line 158), worked example 5, A.13, B.5 and C.3.

**Subject** (:class:`Subject`), two optional halves:

* ``regression`` for the ``linear`` part: either a :class:`GaussianDesign` (n, sigma2, r2: fresh
  isotropic Gaussian designs are drawn, the exact theory's own model, so the exact finite-sample
  moments apply by construction) or a user's :class:`Regression` arrays (X, y): the min-norm
  (and optimal-ridge) held-out risk is measured by resampling training sets of n = D/gamma rows,
  and the exact Gaussian theory is compared only when the design passes an isotropy check (its
  sample covariance's extreme eigenvalues at the Marchenko-Pastur edges), which the result says;
* ``classification`` (:class:`Classification`: training and test features and labels) for the
  ``random_features`` and ``mlp`` parts;
* ``family`` (a :class:`multilens.data.family.FamilySpec`: the protocol's shared data family, or a
  user's own instance of it) for the ``family`` and ``peak_vs_batch`` parts.

Parts:

1. ``linear``: min-norm least squares risk, bias and variance (split by resampling the noise at a
   fixed design) and the design's condition number along gamma = d/n, beside the exact
   finite-sample moments and the Hastie-Montanari-Rosset-Tibshirani (2019) limits; optimal ridge
   and early-stopped gradient flow as variants that remove the peak, beside their limits.
2. ``random_features``: random ReLU features fitted by least squares: where the ridgeless fit
   starts to interpolate against the theory's p = n, where the test-risk peak appears (clean and
   with label noise) and whether it grows with the noise, and how ridge and early stopping move it.
3. ``mlp``: a one-hidden-layer MLP width sweep: the same questions, informational checks only
   (no exact theorem applies).
4. ``family``: min-norm random features on the shared data family (C.18): the interpolation
   threshold p*/n against the theory's p = n and the test-loss peak location, with intervals over
   seeds; p*/n is handed to later phases (``double_descent.interpolation_ratio``).
5. ``peak_vs_batch``: the same family width sweep trained by minibatch SGD at batch b and at batch
   workers*b (synchronous data parallelism): does the peak move? (C.20, expansion line 1480).
   See :mod:`multilens.lenses.double_descent.family`.

The random-features draws, the MLP trainings and both family sweeps run through
``runtime.executor`` when one is given.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy import stats

import multilens.plots as fig
from multilens.data.family import FamilySpec
from multilens.errors import ConfigError
from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.double_descent.family import family_part, peak_vs_batch_part
from multilens.lenses.double_descent.minnorm import median_ci, resample_point, run_linear_sweep
from multilens.lenses.double_descent.neural import mlp_width_sweep, random_features_sweep
from multilens.lenses.double_descent.settings import LinearSettings, MlpSettings, RandomFeaturesSettings, Settings
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Figure,
    LensResult,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_in_interval,
    check_within,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import clopper_pearson, json_safe, mean_ci
from multilens.theory import double_descent as th

LENS = "double_descent"
N_BOOT = 1000
COVERS = "the measured interval covers the prediction"


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    return float(x) if math.isfinite(float(x)) else None


# --------------------------------------------------------------------------------------------
# subjects


@dataclass(frozen=True)
class GaussianDesign:
    """The exact theory's model: rows x_i ~ N(0, I_d), y = X beta + N(0, sigma2), ||beta||^2 = r2, n rows."""

    n: int
    sigma2: float
    r2: float

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 8:
            raise ConfigError(f"`n` must be an int >= 8; got {self.n!r}.")
        for k in ("sigma2", "r2"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ConfigError(f"`{k}` must be a finite number > 0; got {v!r}.")


@dataclass(frozen=True, eq=False)
class Regression:
    """A user's regression arrays: design ``x`` (N, D) and targets ``y`` (N,).

    ``sigma2`` (noise variance) and ``r2`` (||beta||^2), when known, are used by the exact Gaussian
    theory; otherwise they are estimated by least squares on all N rows (needs N >= D + 10).
    """

    x: np.ndarray
    y: np.ndarray
    sigma2: float | None = None
    r2: float | None = None
    name: str = "user regression arrays"

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64).ravel()
        if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] != y.size:
            raise ConfigError(f"`x` must be (N, D) with D >= 2 and N = len(y); got {x.shape} and {y.size} targets.")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ConfigError("`x` and `y` must be finite.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)


@dataclass(frozen=True, eq=False)
class Classification:
    """Training and test features (rows) and integer labels 0..K-1 (a user's own, or the bundled digits)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = "user classification arrays"

    def __post_init__(self) -> None:
        xs = [np.asarray(getattr(self, k), dtype=np.float64) for k in ("x_train", "x_test")]
        ys = [np.asarray(getattr(self, k)).ravel() for k in ("y_train", "y_test")]
        for x, yv, which in zip(xs, ys, ("train", "test")):
            if x.ndim != 2 or x.shape[0] != yv.size or x.shape[0] < 2:
                raise ConfigError(f"`x_{which}` must be (N, d) with N = len(y_{which}) >= 2; got {x.shape}.")
            if not np.all(np.isfinite(x)):
                raise ConfigError(f"`x_{which}` must be finite.")
            if not np.issubdtype(yv.dtype, np.integer) or yv.min() < 0:
                raise ConfigError(f"`y_{which}` must hold integer labels >= 0.")
        if xs[0].shape[1] != xs[1].shape[1]:
            raise ConfigError(f"`x_train` and `x_test` must have the same columns; got {xs[0].shape}, {xs[1].shape}.")
        for k, v in zip(("x_train", "x_test", "y_train", "y_test"), (*xs, *(y.astype(np.int64) for y in ys))):
            object.__setattr__(self, k, v)

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def head(self, n_train: int | None) -> Classification:
        """The first n_train training rows (all when None)."""
        if n_train is None or n_train >= self.x_train.shape[0]:
            return self
        return Classification(self.x_train[:n_train], self.y_train[:n_train], self.x_test, self.y_test, self.name)


@dataclass(frozen=True)
class Subject:
    """What the double-descent lens measures: regression data for ``linear``, classification arrays for
    ``random_features`` and ``mlp``, a data family for ``family`` and ``peak_vs_batch``."""

    regression: GaussianDesign | Regression | None = None
    classification: Classification | None = None
    family: FamilySpec | None = None


# --------------------------------------------------------------------------------------------
# shared helpers


def binomial_coverage_check(
    name: str, covered: list[bool], level: float, alpha: float, what: str, *, dropped: int = 0
) -> Check:
    """Agreement: the number of covering intervals is not implausibly low for nominal ``level``.

    Under the theory each interval covers with probability ``level``, independently across
    points (independent designs), so the count is Binomial(m, level); the check fails when the
    count is below that distribution's ``alpha`` quantile (a one-sided test at level alpha).
    """
    crit = f"covering count >= the Binomial(m, {level:g}) {alpha:g} quantile"
    drop_txt = f"; {dropped} non-finite replicate(s) dropped before forming the intervals" if dropped else ""
    m = len(covered)
    if m == 0:
        return Check(name, None, None, level, None, f"{what}: no point could be evaluated{drop_txt}",
                     kind="agreement", criterion=crit)  # fmt: skip
    k = int(sum(covered))
    k_min = int(stats.binom.ppf(alpha, m, level))
    ok = k >= k_min
    reason = (
        f"{what}: {k}/{m} intervals cover the prediction ({k / m:.0%}); nominal {level:.0%}, "
        f"pass needs >= {k_min} (binomial {alpha:g} quantile){drop_txt}"
    )
    return Check(name, bool(ok), k / m, level, level - k_min / m, reason, kind="agreement", criterion=crit)


def _bootstrap_argmax(
    per_point: list[np.ndarray], xs: list[float], rng: np.random.Generator, level: float
) -> tuple[float, float]:
    """Percentile interval of the argmax of the mean, resampling the (independent) units of each point."""
    per_point = [v[np.isfinite(v)] for v in per_point]
    locs = np.empty(N_BOOT)
    for b in range(N_BOOT):
        means = [np.mean(v[rng.integers(0, v.size, v.size)]) for v in per_point]
        locs[b] = xs[int(np.argmax(means))]
    a = (1.0 - level) / 2.0
    return float(np.quantile(locs, a)), float(np.quantile(locs, 1.0 - a))


def _bootstrap_argmax_joint(
    per_rep: np.ndarray, xs: list[float], rng: np.random.Generator, level: float
) -> tuple[float, float]:
    """Percentile interval of the argmax of the mean log value, resampling repetitions (columns) jointly."""
    logs = np.log(np.maximum(np.asarray(per_rep, dtype=float), np.finfo(float).tiny))  # (len(xs), reps)
    r = logs.shape[1]
    locs = np.empty(N_BOOT)
    for b in range(N_BOOT):
        locs[b] = xs[int(np.nanargmax(np.nanmean(logs[:, rng.integers(0, r, r)], axis=1)))]
    a = (1.0 - level) / 2.0
    return float(np.quantile(locs, a)), float(np.quantile(locs, 1.0 - a))


def _window_check(name: str, x: float | None, w: float, what: str, *, severity: str = "error") -> Check:
    """Agreement: a measured peak location x (in units of the threshold) lies in [1/w, w]."""
    crit = f"1/{w:g} <= peak location / threshold <= {w:g}"
    if x is None:
        return Check(name, None, None, 1.0, None, f"{what}: no location", severity, kind="agreement", criterion=crit)
    ok = 1.0 / w <= x <= w
    return Check(name, bool(ok), x, 1.0, None, f"{what}: peak at {x:.3g} x threshold, pass needs [{1 / w:.3g}, {w:g}]",
                 severity, kind="agreement", criterion=crit)  # fmt: skip


# --------------------------------------------------------------------------------------------
# part `linear` on a Gaussian design: Monte Carlo over designs against the exact moments


def _linear_checks(
    ps: LinearSettings, n: int, r2: float, points: list[dict[str, Any]]
) -> tuple[list[Check], dict[str, Any]]:
    checks: list[Check] = []
    dropped = sum(p.get("n_dropped", 0) for p in points)
    for p in points:
        g = p["gamma"]
        name = f"{LENS}.risk_point.gamma={g:.2f}"
        drop = f"; {p['n_dropped']} non-finite design(s) dropped" if p.get("n_dropped") else ""
        if not p["evaluated"]:
            checks.append(
                Check(
                    name,
                    None,
                    p["test_risk"],
                    p["predicted_risk"],
                    None,
                    f"gamma={g:.2f} (d={p['d']}): not evaluated; |d-n| = {abs(p['d'] - n)} < 8, so the per-design "
                    f"risk has no finite 4th moment (inverse-Wishart) and a t-interval's standard error is unreliable"
                    + ("; the exact expected risk is infinite here" if p["predicted_risk"] is None else "")
                    + drop,
                    severity="info",
                    kind="agreement",
                    criterion=COVERS,
                )
            )
            continue
        checks.append(
            check_in_interval(
                name,
                p["predicted_risk"],
                p["ci_low"],
                p["ci_high"],
                kind="agreement",
                severity="info",
                what=f"exact min-norm risk at gamma={g:.2f} vs measured {ps.level:.0%} CI{drop}",
            )
        )
    ev = [p for p in points if p["evaluated"]]
    ev_dropped = sum(p.get("n_dropped", 0) for p in ev)
    checks.append(
        binomial_coverage_check(
            f"{LENS}.coverage",
            [bool(p["covered"]) for p in ev],
            ps.level,
            ps.coverage_alpha,
            "exact finite-sample min-norm risk inside the measured CI (points with |d-n| >= 8)",
            dropped=ev_dropped,
        )
    )
    checks.append(
        binomial_coverage_check(
            f"{LENS}.variance_coverage",
            [bool(p["variance_covered"]) for p in ev],
            ps.level,
            ps.coverage_alpha,
            "variance term sigma2 d/(n-d-1) | sigma2 n/(d-n-1) inside the noise-resampling CI",
            dropped=ev_dropped,
        )
    )
    checks.append(
        binomial_coverage_check(
            f"{LENS}.bias_coverage",
            [bool(p["bias_covered"]) for p in ev],
            ps.level,
            ps.coverage_alpha,
            "bias term 0 | r2 (1 - n/d) inside the noise-resampling CI",
            dropped=ev_dropped,
        )
    )
    # Peak location: the exact expected risk is infinite only for n-1 <= d <= n+1.
    risks = [p["test_risk"] for p in points]
    j = int(np.nanargmax(risks))
    peak_gamma = points[j]["gamma"]
    checks.append(
        check_within(
            f"{LENS}.peak_location",
            peak_gamma,
            1.0,
            ps.peak_window,
            kind="agreement",
            what=f"gamma of the largest measured mean min-norm risk ({risks[j]:.4g}) vs the theory's gamma = 1 "
            "(expected risk infinite for n-1 <= d <= n+1)"
            + (f"; {dropped} non-finite design(s) dropped over the sweep" if dropped else ""),
        )
    )
    # Optimal ridge: its expected risk is at most r2 (the risk of beta_hat = 0) at every n and gamma.
    jr_lo = int(np.argmax([p["ridge_ci_low"] for p in points]))
    checks.append(
        check_bound(
            f"{LENS}.ridge_below_null_risk",
            points[jr_lo]["ridge_ci_low"],
            r2,
            what=f"largest lower CI end of the optimal-ridge risk (gamma={points[jr_lo]['gamma']:.3g}) vs r2, the "
            "risk of beta_hat = 0 that the Bayes-optimal penalty never exceeds",
        )
    )
    ridge_hi = max(p["ridge_ci_high"] for p in points)
    ridge_max = max(p["ridge_risk"] for p in points)
    ratio = risks[j] / ridge_max
    ok = ridge_hi * ps.no_peak_factor < risks[j]
    checks.append(
        Check(
            f"{LENS}.ridge_no_peak",
            bool(ok),
            ridge_hi * ps.no_peak_factor,
            risks[j],
            None,
            f"optimal ridge: max upper CI {ridge_hi:.4g} over the sweep x {ps.no_peak_factor:g} = "
            f"{ridge_hi * ps.no_peak_factor:.4g} vs min-norm peak {risks[j]:.4g} (ratio of means {ratio:.3g}); "
            "theory: the optimal-ridge risk stays bounded where min-norm diverges",
            kind="agreement",
            criterion=f"{ps.no_peak_factor:g} x max ridge upper CI < min-norm peak risk",
        )
    )
    # Ridge and early stopping against their limits, with an O(1/n) finite-sample allowance, and
    # against the exact conditional Bayes risk (a paired difference whose mean is exactly 0).
    allowance = 2.0 / n

    def widened(p: dict[str, Any], key: str, pred_key: str) -> bool:
        lo = p[f"{key}_ci_low"] - allowance * p[pred_key]
        hi = p[f"{key}_ci_high"] + allowance * p[pred_key]
        return bool(lo <= p[pred_key] <= hi)

    checks.append(
        binomial_coverage_check(
            f"{LENS}.ridge_limit_coverage",
            [widened(p, "ridge", "predicted_ridge_risk") for p in points],
            ps.level,
            ps.coverage_alpha,
            f"limiting optimal-ridge risk sigma2 gamma m(-lam*) inside the CI widened by {allowance:.3g} x the limit "
            "(finite-n allowance 2/n, fixed in advance)",
        )
    )
    checks.append(
        binomial_coverage_check(
            f"{LENS}.ridge_exact_coverage",
            [p["ridge_minus_bayes_ci_low"] <= 0.0 <= p["ridge_minus_bayes_ci_high"] for p in points],
            ps.level,
            ps.coverage_alpha,
            "measured ridge risk minus exact conditional Bayes risk (sigma2/n) tr((S+lam*)^-1): CI covers 0",
        )
    )
    checks.append(
        binomial_coverage_check(
            f"{LENS}.early_stopping_limit_coverage",
            [widened(p, "es", "predicted_es_risk") for p in points],
            ps.level,
            ps.coverage_alpha,
            f"limiting gradient-flow risk at t=1/lam* inside the CI widened by {allowance:.3g} x the limit",
        )
    )
    checks.append(
        binomial_coverage_check(
            f"{LENS}.early_stopping_exact_coverage",
            [p["es_minus_bayes_ci_low"] <= 0.0 <= p["es_minus_bayes_ci_high"] for p in points],
            ps.level,
            ps.coverage_alpha,
            "measured early-stopping risk minus exact conditional Bayes risk: CI covers 0",
        )
    )
    # Ali, Kolter & Tibshirani (2019): GF Bayes risk at t <= 1.6862 x ridge's at lam = 1/t.
    ratios = [p["es_ci_low"] / p["ridge_ci_high"] for p in points]
    jw = int(np.argmax(ratios))
    checks.append(
        check_bound(
            f"{LENS}.early_stopping_vs_ridge",
            ratios[jw],
            th.ALI_KOLTER_TIBSHIRANI_CONSTANT,
            what=f"largest (early-stopping CI low)/(ridge CI high) over the sweep (gamma={points[jw]['gamma']:.3g}) vs "
            "the Ali, Kolter & Tibshirani (2019) constant (t = 1/lam* here)",
            severity="info",
        )
    )
    # The condition number blows up at gamma = 1 (the Marchenko-Pastur lower edge reaches 0; B.5).
    jc = int(np.argmax([p["cond_median"] for p in points]))
    checks.append(
        check_within(
            f"{LENS}.cond_peak_location",
            points[jc]["gamma"],
            1.0,
            ps.peak_window,
            kind="agreement",
            severity="info",
            what=f"gamma of the largest median condition number ({points[jc]['cond_median']:.3g}) vs the "
            "Marchenko-Pastur prediction gamma = 1 (s_min -> 0)",
        )
    )
    summary = {
        "peak_gamma": peak_gamma,
        "peak_index": j,
        "peak_risk": risks[j],
        "ridge_max_risk": ridge_max,
        "peak_suppression": ratio,
        "finite_n_allowance": allowance,
        "coverage_evaluated": len(ev),
        "coverage_covered": int(sum(bool(p["covered"]) for p in ev)),
        "n_dropped": dropped,
    }
    return checks, summary


def gaussian_linear_part(design: GaussianDesign, ps: LinearSettings, *, seed: int) -> Part:
    n, sigma2, r2 = design.n, design.sigma2, design.r2
    points, per_design = run_linear_sweep(n, ps.dims(n), sigma2, r2, ps.n_designs, ps.n_noise, ps.level, seed)
    checks, summary = _linear_checks(ps, n, r2, points)
    boot_rng = as_generator(derive_seed(seed, "bootstrap"))
    gammas = [p["gamma"] for p in points]
    pk_lo, pk_hi = _bootstrap_argmax(per_design, gammas, boot_rng, ps.level)
    k, m = summary["coverage_covered"], summary["coverage_evaluated"]
    j = summary["peak_index"]
    jr = int(np.argmax([p["ridge_risk"] for p in points]))
    med_pk, med_lo, med_hi = median_ci(per_design[j][np.isfinite(per_design[j])], ps.level)
    cov = clopper_pearson(k, m, ps.level).to_estimate(
        f"{LENS}.coverage", note=f"fraction of evaluated points whose {ps.level:.0%} CI covers the exact risk"
    )
    estimates = [
        Estimate(
            f"{LENS}.peak_gamma",
            summary["peak_gamma"],
            pk_lo,
            pk_hi,
            level=ps.level,
            method=f"argmax of mean risk over the gamma grid; percentile bootstrap over designs ({N_BOOT} resamples)",
            n=ps.n_designs,
            note="a grid search: resolution is the grid spacing",
        ),
        Estimate(
            f"{LENS}.peak_risk_median",
            med_pk,
            med_lo,
            med_hi,
            level=ps.level,
            method="median over designs at the peak; order-statistic interval (distribution-free)",
            n=int(np.isfinite(per_design[j]).sum()),
            n_dropped=int((~np.isfinite(per_design[j])).sum()),
            note=f"the mean there ({points[j]['test_risk']:.4g}) estimates an infinite expectation, so the "
            "median is the stable summary",
        ),
        cov,
        Estimate(
            f"{LENS}.ridge_max_risk",
            points[jr]["ridge_risk"],
            points[jr]["ridge_ci_low"],
            points[jr]["ridge_ci_high"],
            stderr=points[jr]["ridge_stderr"],
            level=ps.level,
            method=f"t-interval over designs at the worst gamma ({points[jr]['gamma']:.3g})",
            n=ps.n_designs,
        ),
    ]
    ns = SimpleNamespace(n=n, sigma2=sigma2, r2=r2, level=ps.level)
    metrics = {
        **metric_with_interval(f"{LENS}.peak_gamma", estimates[0]),
        **metric_with_interval(f"{LENS}.coverage", cov),
        f"{LENS}.peak_suppression": summary["peak_suppression"],
        **metric_with_interval(f"{LENS}.ridge_max_risk", estimates[3]),
    }
    assumptions = [
        Assumption(
            "Rows of X are i.i.d. N(0, I_d); noise is N(0, sigma2); ||beta||^2 = r2 (the subject draws them so; the "
            "exact moments must then cover the measurements)",
            "GaussianDesign subject",
            checked_by=(f"{LENS}.coverage", f"{LENS}.variance_coverage", f"{LENS}.bias_coverage"),
        ),
        Assumption(
            "The exact expected min-norm risk is infinite only for n-1 <= d <= n+1, so the risk peaks at gamma = 1",
            "inverse-Wishart moments (Muirhead 1982)",
            checked_by=(f"{LENS}.peak_location",),
        ),
        Assumption(
            "Limiting (n -> inf) ridge and gradient-flow formulas are compared at finite n with a 2/n relative "
            "allowance (their finite-n bias is O(1/n))",
            "Dobriban & Wager 2018; Ali et al. 2019",
            checked_by=(f"{LENS}.ridge_limit_coverage", f"{LENS}.early_stopping_limit_coverage"),
        ),
    ]
    recs = [
        Recommendation(
            f"Min-norm least squares peaked at gamma = d/n = {summary['peak_gamma']:.3g} with mean risk "
            f"{summary['peak_risk']:.3g}, {summary['peak_suppression']:.3g}x the worst optimal-ridge risk "
            f"({summary['ridge_max_risk']:.3g}); near d ~ n, fit with a ridge penalty of about sigma2*gamma/r2 "
            "(or stop gradient descent early) instead of interpolating.",
            rests_on=(f"{LENS}.peak_location", f"{LENS}.ridge_no_peak", f"{LENS}.ridge_exact_coverage"),
        )
    ]
    keys = ("gamma", "d", "test_risk", "ci_low", "ci_high", "predicted_risk", "ridge_risk", "cond_median")
    data = {
        "subject": "gaussian design",
        "n": n,
        "sigma2": sigma2,
        "r2": r2,
        "level": ps.level,
        "risk_definition": "excess test risk E_x[(x^T(beta_hat - beta))^2] = ||beta_hat - beta||^2 (isotropic x): "
        "test MSE minus the noise floor sigma2",
        "points": points,
        "peak": {"gamma": summary["peak_gamma"], "ci_low": pk_lo, "ci_high": pk_hi, "risk": summary["peak_risk"]},
        "ridge": {
            "lambda_rule": "lam* = sigma2 gamma / r2 (n-normalized penalty)",
            "max_risk": summary["ridge_max_risk"],
            "peak_suppression": summary["peak_suppression"],
        },
        "early_stopping": {"rule": "gradient flow on (1/2n)||y - X b||^2 from 0, stopped at t = 1/lam*"},
        "finite_n_allowance": summary["finite_n_allowance"],
        "n_dropped": summary["n_dropped"],
    }
    curve = {
        "n": n, "sigma2": sigma2, "r2": r2, "points": [{k: p[k] for k in keys} for p in points], "peak": data["peak"],
    }  # fmt: skip
    return Part(
        "linear",
        estimates=estimates,
        checks=checks,
        figures=_linear_figures(ns, points),
        tables=(_points_table(points),),
        assumptions=assumptions,
        recommendations=recs,
        metrics=metrics,
        outputs={f"{LENS}.curve": json_safe(curve)},
        predictions={
            "minnorm_risk_exact": {str(p["gamma"]): p["predicted_risk"] for p in points},
            "minnorm_risk_asymptotic": {str(p["gamma"]): p["predicted_risk_asymptotic"] for p in points},
            "optimal_ridge_risk_asymptotic": {str(p["gamma"]): p["predicted_ridge_risk"] for p in points},
            "early_stopping_risk_asymptotic": {str(p["gamma"]): p["predicted_es_risk"] for p in points},
            "peak_gamma": 1.0,
        },
        data=json_safe(data),
        notes=(
            "The early-stopping variant evaluates gradient flow through its exact spectral solution "
            "(filter 1 - exp(-t s^2/n)), not by iterating; the filters lens checks that iterated GD equals its "
            "closed form to rounding.",
        ),
    )


# --------------------------------------------------------------------------------------------
# part `linear` on a user's regression arrays: held-out risk by resampling


def isotropy_check(x: np.ndarray, tol: float) -> Check:
    """Agreement: the sample covariance's extreme eigenvalues sit at the Marchenko-Pastur edges (1 +- sqrt(D/N))^2.

    For rows ~ N(0, I_D) the extremes converge to the edges (Bai & Yin 1993); a relative tolerance
    ``tol`` (a setting) allows for finite N. Any mean, scale or correlation moves them off.
    """
    n_rows, d = x.shape
    eig = np.linalg.eigvalsh(x.T @ x / n_rows)
    q = math.sqrt(d / n_rows)
    lo_edge, hi_edge = (1 - q) ** 2, (1 + q) ** 2
    dev = max(eig[-1] / hi_edge - 1.0, 1.0 - eig[0] / lo_edge if lo_edge > 0 else 0.0)
    ok = dev <= tol
    return Check(
        f"{LENS}.design_isotropic",
        bool(ok),
        float(dev),
        0.0,
        tol,
        f"sample covariance of the {n_rows} x {d} design: eigenvalues [{eig[0]:.4g}, {eig[-1]:.4g}] vs the "
        f"Marchenko-Pastur edges [{lo_edge:.4g}, {hi_edge:.4g}] of an isotropic Gaussian design; largest relative "
        f"excursion beyond an edge {dev:.3g} (pass <= {tol:g}); the exact Gaussian theory is compared only if "
        "this passes",
        kind="agreement",
        criterion=f"extreme eigenvalues within {tol:g} (relative) of the Marchenko-Pastur edges",
    )


def _plug_in(reg: Regression) -> tuple[float | None, float | None, str]:
    """sigma2 and r2 for the theory: given by the subject, else unbiased least-squares estimates on all rows."""
    if reg.sigma2 is not None and reg.r2 is not None:
        return float(reg.sigma2), float(reg.r2), "given by the subject"
    n_rows, d = reg.x.shape
    if n_rows < d + 10:
        return None, None, f"not available: {n_rows} rows < D + 10 = {d + 10}, no least-squares estimate"
    beta, *_ = np.linalg.lstsq(reg.x, reg.y, rcond=None)
    s2 = float(np.sum((reg.y - reg.x @ beta) ** 2) / (n_rows - d))
    r2 = float(beta @ beta - s2 * np.trace(np.linalg.inv(reg.x.T @ reg.x)))
    sigma2 = float(reg.sigma2) if reg.sigma2 is not None else s2
    r2 = float(reg.r2) if reg.r2 is not None else max(r2, 1e-12)
    return (
        sigma2,
        r2,
        f"least-squares plug-in on all {n_rows} rows (sigma2 = RSS/(N-D), r2 = ||b||^2 - sigma2 tr((X^T X)^-1))",
    )


def regression_linear_part(reg: Regression, ps: LinearSettings, *, seed: int) -> Part:
    """Min-norm and optimal-ridge held-out risk of a user's (X, y) along gamma = D/n, by resampling n rows."""
    n_rows, d = reg.x.shape
    ns_all = sorted({max(2, round(d / g)) for g in ps.gammas})
    feasible = [n for n in ns_all if n + ps.n_test <= n_rows]
    skipped = [n for n in ns_all if n not in feasible]
    notes = []
    if skipped:
        notes.append(
            f"linear: training sizes n = {skipped} skipped: n + n_test ({ps.n_test}) exceeds the {n_rows} rows"
        )
    sigma2, r2, how = _plug_in(reg)
    iso = isotropy_check(reg.x, ps.isotropy_tolerance)
    theory = iso.passed is True and sigma2 is not None
    why_not = "the design failed the isotropy check" if iso.passed is not True else f"sigma2 and r2 are {how}"
    if len(feasible) < 3:
        return Part("linear", checks=(iso,), notes=(*notes, "linear: fewer than 3 feasible training sizes; "
                                                    "no risk curve measured (add rows or lower n_test)"))  # fmt: skip
    lam_sig, lam_r2 = (sigma2, r2) if sigma2 is not None else (1.0, 1.0)
    points, per_point = [], []
    for n in sorted(feasible, reverse=True):  # ascending gamma = d/n
        gamma = d / n
        lam = th.optimal_ridge_lambda(gamma, lam_sig, lam_r2)
        mn, rd = resample_point(reg.x, reg.y, n, ps.n_test, ps.n_designs, lam, derive_seed(seed, "resample", n))
        ci, ci_r = mean_ci(mn, ps.level, "resamples"), mean_ci(rd, ps.level, "resamples")
        pred = None
        if theory:
            risk = th.minnorm_risk(n, d, sigma2, r2)
            pred = sigma2 + risk if math.isfinite(risk) else None
        evaluated = theory and pred is not None and th.inverse_wishart_trace_moment_finite(n, d, 4) and ci.ok
        points.append(
            {
                "gamma": gamma, "n": n, "d": d, "test_mse": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                "n_dropped": ci.n_dropped, "predicted_test_mse": pred, "evaluated": bool(evaluated),
                "covered": bool(ci.covers(pred)) if evaluated else None, "ridge_lambda": lam,
                "ridge_test_mse": ci_r.estimate, "ridge_ci_low": ci_r.low, "ridge_ci_high": ci_r.high,
            }
        )  # fmt: skip
        per_point.append(mn)
    dropped = sum(p["n_dropped"] for p in points)
    drop_txt = f"; {dropped} non-finite resample(s) dropped" if dropped else ""
    checks: list[Check] = [iso]
    for p in points:
        name = f"{LENS}.risk_point.gamma={p['gamma']:.2f}"
        if not p["evaluated"]:
            why = why_not if not theory else "|D - n| < 8 (no finite 4th moment) or the exact risk is infinite"
            checks.append(Check(name, None, p["test_mse"], p["predicted_test_mse"], None,
                                f"gamma={p['gamma']:.2f} (n={p['n']}): not evaluated: {why}", "info",
                                kind="agreement", criterion=COVERS))  # fmt: skip
            continue
        checks.append(
            check_in_interval(name, p["predicted_test_mse"], p["ci_low"], p["ci_high"], kind="agreement",
                              severity="info", what=f"exact Gaussian test MSE sigma2 + risk at gamma={p['gamma']:.2f}")
        )  # fmt: skip
    ev = [p for p in points if p["evaluated"]]
    if theory:
        checks.append(
            binomial_coverage_check(
                f"{LENS}.coverage",
                [bool(p["covered"]) for p in ev],
                ps.level,
                ps.coverage_alpha,
                f"exact Gaussian test MSE (sigma2, r2 {how}) inside the resampling CI (|D-n| >= 8; resamples "
                "overlap in a finite pool, so the intervals assume N >> n)",
                dropped=sum(p["n_dropped"] for p in ev),
            )
        )
    else:
        checks.append(Check(f"{LENS}.coverage", None, None, ps.level, None,
                            f"exact Gaussian theory not applied: {why_not}{drop_txt}", kind="agreement",
                            criterion="covering count >= the binomial quantile"))  # fmt: skip
    mses = [p["test_mse"] for p in points]
    j = int(np.nanargmax(mses))
    checks.append(
        check_within(
            f"{LENS}.peak_location", points[j]["gamma"], 1.0, ps.peak_window, kind="agreement",
            what=f"gamma = D/n of the largest held-out min-norm test MSE ({mses[j]:.4g}) vs the interpolation "
            f"threshold gamma = 1 (n = D){drop_txt}",
        )
    )  # fmt: skip
    ridge_hi = max(p["ridge_ci_high"] for p in points)
    ok = ridge_hi * ps.no_peak_factor < mses[j]
    checks.append(
        Check(
            f"{LENS}.ridge_no_peak", bool(ok), ridge_hi * ps.no_peak_factor, mses[j], None,
            f"ridge at lam = sigma2 gamma/r2 ({'plug-in' if sigma2 is not None else 'sigma2 = r2 = 1: no estimate'}): "
            f"max upper CI {ridge_hi:.4g} x {ps.no_peak_factor:g} vs min-norm peak {mses[j]:.4g}",
            kind="agreement", criterion=f"{ps.no_peak_factor:g} x max ridge upper CI < min-norm peak test MSE",
        )
    )  # fmt: skip
    pk_lo, pk_hi = _bootstrap_argmax(
        per_point, [p["gamma"] for p in points], as_generator(derive_seed(seed, "bootstrap")), ps.level
    )
    estimates = [
        Estimate(f"{LENS}.peak_gamma", points[j]["gamma"], pk_lo, pk_hi, level=ps.level,
                 method=f"argmax of mean held-out test MSE over the gamma grid; percentile bootstrap over resamples "
                 f"({N_BOOT})", n=ps.n_designs, note="a grid search: resolution is the grid spacing"),
    ]  # fmt: skip
    if sigma2 is not None:
        estimates.append(Estimate(f"{LENS}.sigma2_used", sigma2, no_interval_reason=f"{how}; no interval carried"))
        estimates.append(Estimate(f"{LENS}.r2_used", r2, no_interval_reason=f"{how}; no interval carried"))
    metrics = {**metric_with_interval(f"{LENS}.peak_gamma", estimates[0])}
    if ev:
        cov = clopper_pearson(sum(bool(p["covered"]) for p in ev), len(ev), ps.level).to_estimate(f"{LENS}.coverage")
        estimates.append(cov)
        metrics |= metric_with_interval(f"{LENS}.coverage", cov)
    assumptions = [
        Assumption(
            "Rows of X are i.i.d. isotropic Gaussian and y = X beta + i.i.d. N(0, sigma2) noise, so the exact "
            "finite-sample min-norm moments apply",
            "exact Gaussian theory (Muirhead 1982; Hastie et al. 2019)",
            checked_by=(f"{LENS}.design_isotropic", f"{LENS}.coverage"),
        ),
        Assumption(
            "Min-norm least squares on a full-rank design has its variance singular at n = D, so the held-out risk "
            "peaks at gamma = 1",
            "inverse-Wishart moments",
            checked_by=(f"{LENS}.peak_location",),
        ),
    ]
    data = {
        "subject": reg.name, "rows": n_rows, "D": d, "sigma2": sigma2, "r2": r2, "sigma2_r2_source": how,
        "theory_applied": theory, "level": ps.level, "n_test": ps.n_test, "points": points,
        "risk_definition": "held-out test MSE of the min-norm fit on n random rows (includes the noise floor)",
        "peak": {"gamma": points[j]["gamma"], "ci_low": pk_lo, "ci_high": pk_hi, "test_mse": mses[j]},
    }  # fmt: skip
    g = [p["gamma"] for p in points]
    traces = fig.band_traces(g, _pos([p["ci_low"] for p in points]), [p["ci_high"] for p in points], "min-norm CI")
    traces.append(fig.line_trace(g, mses, "min-norm, held-out"))
    traces.append(fig.line_trace(g, [p["ridge_test_mse"] for p in points], "ridge at lam*, held-out"))
    if theory:
        traces.append(fig.curve_trace(g, [p["predicted_test_mse"] for p in points], "exact Gaussian theory"))
    figure = fig.figure(
        "double_descent_regression", "Min-norm least squares on the subject's arrays: held-out test MSE vs D/n",
        traces, xlabel="gamma = D/n", ylabel="held-out test MSE", ylog=True,
        caption=f"{ps.n_designs} resamples of n training rows and {ps.n_test} test rows per point.",
    )  # fmt: skip
    curve = {"n": None, "sigma2": sigma2, "r2": r2, "points": points, "peak": data["peak"]}
    return Part(
        "linear",
        estimates=estimates,
        checks=checks,
        figures=(figure,),
        assumptions=assumptions,
        metrics=metrics,
        outputs={f"{LENS}.curve": json_safe(curve)},
        predictions={"peak_gamma": 1.0},
        data=json_safe(data),
        notes=(*notes, "linear: one y per design, so bias and variance are not split on user arrays."),
    )


def linear_part(regression: Any, ps: LinearSettings, *, seed: int) -> Part:
    if regression is None:
        return Part("linear", notes=("linear: not measured: the subject has no regression data",))
    if isinstance(regression, GaussianDesign):
        return gaussian_linear_part(regression, ps, seed=seed)
    return regression_linear_part(regression, ps, seed=seed)


# --------------------------------------------------------------------------------------------
# part `random_features`


def _rf_checks(ps: RandomFeaturesSettings, rf: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    n = rf["n_train"]
    ps_grid = rf["p"]
    want = [min(n, p) for p in ps_grid]
    bad = [(p, lo, hi) for p, lo, hi, w in zip(ps_grid, rf["rank_min"], rf["rank_max"], want) if lo != w or hi != w]
    checks.append(
        Check(
            f"{LENS}.rf_rank",
            not bad,
            float(len(bad)),
            0.0,
            0.0,
            f"rank(Phi) = min(n, p) for every width and feature draw (n = {n}); mismatches (p, min rank, max rank): "
            f"{bad or 'none'}",
            kind="sanity",
            criterion="numerical rank of the training features == min(n, p) at every grid point",
        )
    )
    # The theory's threshold p = n, on the grid: the first grid width >= n.
    theo = next((p for p in ps_grid if p >= n), None)
    mn = [c for c in rf["curves"] if c["variant"] == "min-norm"]
    emp = {c["label_noise"]: c["threshold_empirical_p"] for c in mn}
    ok = theo is not None and all(e == theo for e in emp.values())
    observed = max((e for e in emp.values() if e is not None), default=None)
    checks.append(
        Check(
            f"{LENS}.rf_threshold",
            bool(ok) if theo is not None else None,
            None if observed is None else observed / n,
            None if theo is None else theo / n,
            0.0,
            f"ridgeless random features: first grid width whose training MSE is <= {rf['interpolation_rtol']:g} x the "
            f"target energy, per label noise: "
            + ", ".join(f"{q:.0%}: p/n = {'none' if e is None else f'{e / n:.3g}'}" for q, e in emp.items())
            + f"; the theory's threshold p = n = {n} is grid width p/n = "
            + ("none (no grid width >= n)" if theo is None else f"{theo / n:.3g}"),
            kind="agreement",
            criterion="empirical interpolation threshold == the first grid width >= n",
        )
    )
    for c in mn:
        pk = c["peak"]
        tag = f"noise={c['label_noise']:g}"
        checks.append(
            Check(
                f"{LENS}.rf_peak_significant.{tag}",
                bool(pk["significant"]),
                pk["height"],
                None,
                None,
                f"ridgeless, label noise {c['label_noise']:.0%}: highest geometric-mean test MSE {pk['height']:.3g} at "
                f"p/n={pk['x']:.3g}; its lower {ps.level:.0%} bound on the mean log MSE "
                f"{'exceeds' if pk['significant'] else 'does not exceed'} the upper bound of a point on each side"
                + (f"; {pk['n_dropped']} non-finite run(s) dropped" if pk.get("n_dropped") else ""),
                kind="agreement",
                criterion="the peak's lower interval bound (log scale) above some point's upper bound on each side",
            )
        )
        checks.append(
            _window_check(
                f"{LENS}.rf_peak_location.{tag}",
                pk["x"],
                ps.peak_window,
                f"ridgeless, label noise {c['label_noise']:.0%}: argmax of the geometric-mean test MSE over the grid "
                "vs the theory's p = n (variance singular there)",
            )
        )
        for r in rf["curves"]:
            if r["label_noise"] != c["label_noise"] or r["variant"] == "min-norm":
                continue
            rk = r["peak"]
            lower = rk["height"] < pk["height"]
            checks.append(
                Check(
                    f"{LENS}.rf_regularized.{r['variant'].replace(' ', '_')}.{tag}",
                    bool(lower),
                    rk["height"],
                    pk["height"],
                    None,
                    f"{r['variant']}: highest test MSE (geometric mean) {rk['height']:.3g} at p/n={rk['x']:.3g} vs "
                    f"ridgeless peak {pk['height']:.3g} at p/n={pk['x']:.3g}; largest df/n reached "
                    f"{max(r['df_over_n']):.3g}",
                    severity="info",
                    kind="agreement",
                    criterion="regularized worst point < ridgeless peak (geometric means)",
                )
            )
    checks.append(_noise_growth_check(ps, rf))
    return checks


def _noise_growth_check(ps: RandomFeaturesSettings, rf: dict[str, Any]) -> Check:
    """Agreement (WE5): the ridgeless risk near p = n is higher with more label noise (the variance scales with it).

    Paired over feature draws (the same features and clean labels underlie every noise level): per
    draw, the mean over the grid widths with p/n in [1/peak_window, peak_window] of log test MSE
    at the highest noise level minus that at the lowest; a t-interval over draws.
    """
    name = f"{LENS}.rf_peak_grows_with_noise"
    crit = "the interval of the paired mean log-ratio (noisiest / cleanest) near p = n lies above 0"
    mn = sorted((c for c in rf["curves"] if c["variant"] == "min-norm"), key=lambda c: c["label_noise"])
    w = ps.peak_window
    idx = [i for i, x in enumerate(rf["p_over_n"]) if 1.0 / w <= x <= w]
    if len(mn) < 2 or mn[0]["label_noise"] == mn[-1]["label_noise"] or not idx:
        why = "fewer than two label-noise levels" if idx else f"no grid width with p/n in [{1 / w:.3g}, {w:g}]"
        return Check(name, None, None, None, None, f"not evaluated: {why}", kind="agreement", criterion=crit)
    lo_c, hi_c = mn[0], mn[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.asarray(hi_c["test_mse_per_seed"], dtype=float)[idx])
        b = np.log(np.asarray(lo_c["test_mse_per_seed"], dtype=float)[idx])
    ci = mean_ci((a - b).mean(axis=0), ps.level, "feature draws")
    drop = f"; {ci.n_dropped} non-finite draw(s) dropped" if ci.n_dropped else ""
    if not ci.ok:
        return Check(name, None, ci.estimate, 0.0, None, f"no interval: {ci.reason}", kind="agreement", criterion=crit)
    ok = ci.low > 0
    return Check(
        name,
        bool(ok),
        ci.estimate,
        0.0,
        None,
        f"ridgeless test MSE near p = n ({len(idx)} widths, p/n in [{1 / w:.3g}, {w:g}]), label noise "
        f"{hi_c['label_noise']:.0%} vs {lo_c['label_noise']:.0%}: mean log-ratio {ci.estimate:.3g} "
        f"(x{math.exp(ci.estimate):.3g}), {ps.level:.0%} interval [{ci.low:.3g}, {ci.high:.3g}] over {ci.n} feature "
        f"draws{drop}",
        kind="agreement",
        criterion=crit,
    )


def random_features_part(
    data: Classification | None, ps: RandomFeaturesSettings, *, seed: int, runtime: Runtime | None
) -> Part:
    if data is None:
        return Part("random_features", notes=("random_features: not measured: the subject has no classification data",))
    rt = runtime or Runtime()
    rf = random_features_sweep(
        data, ps.ratios, ps.seeds, ps.label_noise, ps.ridge, ps.gd_steps, ps.level, seed,
        executor=rt.executor, progress=rt.progress,
    )  # fmt: skip
    checks = _rf_checks(ps, rf)
    noisiest = max(ps.label_noise)
    mn = next(c for c in rf["curves"] if c["variant"] == "min-norm" and c["label_noise"] == noisiest)
    rng = as_generator(derive_seed(seed, "bootstrap"))
    lo, hi = _bootstrap_argmax_joint(np.array(mn["test_mse_per_seed"]), mn["p_over_n"], rng, ps.level)
    est = Estimate(
        f"{LENS}.rf_peak_p_over_n",
        mn["peak"]["x"],
        lo,
        hi,
        level=ps.level,
        method=f"argmax of geometric-mean test MSE over the p/n grid; percentile bootstrap over feature draws "
        f"({N_BOOT})",
        n=rf["n_seeds"],
        note=f"label noise {noisiest:.0%}; a grid search: the grid spacing bounds its resolution",
    )
    n = rf["n_train"]
    recs = []
    for c in rf["curves"]:
        if c["variant"] != "min-norm":
            continue
        tag = f"noise={c['label_noise']:g}"
        best = min((r for r in rf["curves"] if r["label_noise"] == c["label_noise"]), key=lambda r: r["peak"]["height"])
        recs.append(
            Recommendation(
                f"Random features (label noise {c['label_noise']:.0%}): ridgeless test MSE peaked at p/n = "
                f"{c['peak']['x']:.3g} (geometric mean {c['peak']['height']:.3g}); {best['variant']} kept the worst "
                f"point at {best['peak']['height']:.3g}: avoid p ~ n = {n} without regularization.",
                rests_on=(f"{LENS}.rf_peak_significant.{tag}", f"{LENS}.rf_peak_location.{tag}"),
            )
        )
    assumptions = [
        Assumption(
            "The ridgeless fit interpolates exactly from p = n on, because rank(Phi) = min(n, p) for generic features",
            "linear algebra of ridgeless least squares",
            checked_by=(f"{LENS}.rf_rank", f"{LENS}.rf_threshold"),
        ),
        Assumption(
            "The ridgeless test-risk peak sits at p = n, where the variance is singular (Belkin et al. 2019; Mei & "
            "Montanari 2019); the data are not Gaussian, so only the location is predicted",
            "theory of ridgeless least squares",
            checked_by=(f"{LENS}.rf_peak_significant.*", f"{LENS}.rf_peak_location.*"),
        ),
    ]
    notes = []
    if rf["n_failed"]:
        notes.append(f"random_features: {rf['n_failed']} feature draw(s) failed and were left out: {rf['errors'][:3]}")
    return Part(
        "random_features",
        estimates=(est,),
        checks=checks,
        figures=(_rf_figure(rf), _rf_train_figure(rf)),
        assumptions=assumptions,
        recommendations=recs,
        metrics=metric_with_interval(f"{LENS}.rf_peak_p_over_n", est),
        predictions={"rf_threshold_p": n},
        data=json_safe(rf),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# part `mlp`


def _mlp_tag(c: dict[str, Any]) -> str:
    return f"noise={c['label_noise']:g},wd={c['weight_decay']:g},T={c['horizon']}"


def _mlp_checks(ps: MlpSettings, mlp: dict[str, Any]) -> list[Check]:
    """Informational: where a significant MLP peak sits relative to n*K, and what early stopping does to it."""
    checks: list[Check] = []
    nk = mlp["threshold_theoretical_params"]
    for c in mlp["curves"]:
        pk = c["peak"]
        tag = _mlp_tag(c)
        name = f"{LENS}.mlp_peak_location.{tag}"
        emp = c["threshold_empirical_params"]
        where = (
            f"zero training error first at {emp if emp is not None else 'no width'} params vs n*K={nk}; "
            "informational (no exact theorem for MLPs)"
        )
        if pk is None or not pk["significant"]:
            why = (
                "some widths have < 2 finished runs"
                if pk is None
                else f"no significant peak (highest geometric-mean test MSE at params/(nK)={pk['x']:.3g})"
            )
            checks.append(
                Check(name, None, None if pk is None else pk["x"], 1.0, None,
                      f"MLP {tag}: {why}; location not evaluated; {where}", severity="info", kind="agreement",
                      criterion=f"a significant peak with 1/{ps.peak_window:g} <= params/(nK) <= {ps.peak_window:g}")
            )  # fmt: skip
            continue
        checks.append(
            _window_check(
                name, pk["x"], ps.peak_window, f"MLP {tag}: significant test-MSE peak; {where}", severity="info"
            )
        )
    keys = sorted({(c["label_noise"], c["weight_decay"]) for c in mlp["curves"]})
    for q, wd in keys:
        cs = sorted(
            (c for c in mlp["curves"] if c["label_noise"] == q and c["weight_decay"] == wd), key=lambda c: c["horizon"]
        )
        if len(cs) < 2 or cs[0]["peak"] is None or cs[-1]["peak"] is None:
            continue
        early, late = cs[0]["peak"]["height"], cs[-1]["peak"]["height"]
        checks.append(
            Check(
                f"{LENS}.mlp_early_stopping.noise={q:g},wd={wd:g}",
                bool(early < late),
                early,
                late,
                None,
                f"MLP, label noise {q:.0%}, weight decay {wd:g}: worst geometric-mean test MSE over widths {early:.3g} "
                f"after {cs[0]['horizon']} steps vs {late:.3g} after {cs[-1]['horizon']}",
                severity="info",
                kind="agreement",
                criterion="worst point after the first horizon < worst point after the last",
            )
        )
    return checks


def mlp_part(data: Classification | None, ps: MlpSettings, *, seed: int, runtime: Runtime | None) -> Part:
    if data is None:
        return Part("mlp", notes=("mlp: not measured: the subject has no classification data",))
    rt = runtime or Runtime()
    mlp = mlp_width_sweep(
        data.head(ps.n_train), ps.widths, ps.seeds, ps.label_noise, ps.weight_decays, ps.steps, ps.lr, ps.horizons,
        ps.level, seed, executor=rt.executor, progress=rt.progress,
    )  # fmt: skip
    checks = _mlp_checks(ps, mlp)
    recs = []
    for c in mlp["curves"]:
        if c["peak"] is None or not c["peak"]["significant"]:
            continue
        last, top = c["test_mse"][-1], c["test_mse"][c["peak"]["index"]]
        recovered = last is not None and top is not None and last < top
        recs.append(
            Recommendation(
                f"MLP widths (label noise {c['label_noise']:.0%}, weight decay {c['weight_decay']:g}, {c['horizon']} "
                f"steps): test MSE peaked at {c['peak']['x']:.3g} x n*K parameters"
                + (
                    f" and the widest model recovered to {last:.3g} (from {top:.3g}); read the whole width curve "
                    "before choosing a size."
                    if recovered
                    else "; the widest model did not recover, so prefer a width below the peak or regularize."
                ),
                rests_on=(f"{LENS}.mlp_peak_location.{_mlp_tag(c)}",),
            )
        )
    notes = []
    if mlp["n_diverged"]:
        notes.append(f"mlp: {mlp['n_diverged']} runs diverged (non-finite loss) and were left out of the intervals.")
    if mlp["n_failed"]:
        notes.append(f"mlp: {mlp['n_failed']} runs failed in the executor and were left out: {mlp['errors'][:3]}")
    return Part(
        "mlp",
        checks=checks,
        figures=(_mlp_figure(mlp),),
        recommendations=recs[:2],
        predictions={"mlp_threshold_params": mlp["threshold_theoretical_params"]},
        data=json_safe(mlp),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# the contract


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> Subject:
    """The bundled subjects: a Gaussian design (n, sigma2, r2), the scikit-learn digits (n_train rows) and the
    protocol's shared data family ``FamilySpec()``."""
    cls = None
    if settings.random_features is not None or settings.mlp is not None:
        from multilens.data.digits import load_digits_split

        split = load_digits_split(seed, n_train=settings.n_train)
        cls = Classification(
            split.x_train.numpy(), split.y_train.numpy(), split.x_test.numpy(), split.y_test.numpy(), name="digits"
        )
    fam = FamilySpec() if settings.family is not None or settings.peak_vs_batch is not None else None
    return Subject(GaussianDesign(settings.n, settings.sigma2, settings.r2), cls, fam)


def measure(subject: Subject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Measure double descent on ``subject`` (see the module docstring for the subject and the parts)."""
    if isinstance(subject, (GaussianDesign, Regression)):
        subject = Subject(regression=subject)
    elif isinstance(subject, Classification):
        subject = Subject(classification=subject)
    elif isinstance(subject, FamilySpec):
        subject = Subject(family=subject)
    if not isinstance(subject, Subject):
        raise ConfigError(
            f"the double-descent lens measures a Subject (regression and/or classification arrays, a data family); got "
            f"{type(subject).__name__}."
        )
    t0 = time.perf_counter()
    cls = subject.classification
    parts, notes = run_parts(
        LENS,
        [
            ("linear", settings.linear, lambda ps, s: linear_part(subject.regression, ps, seed=s)),
            (
                "random_features",
                settings.random_features,
                lambda ps, s: random_features_part(cls, ps, seed=s, runtime=runtime),
            ),
            ("mlp", settings.mlp, lambda ps, s: mlp_part(cls, ps, seed=s, runtime=runtime)),
            ("family", settings.family, lambda ps, s: family_part(subject.family, ps, seed=s, runtime=runtime)),
            (
                "peak_vs_batch",
                settings.peak_vs_batch,
                lambda ps, s: peak_vs_batch_part(subject.family, ps, seed=s, runtime=runtime),
            ),
        ],  # fmt: skip
        seed,
    )
    info = {
        "regression": None if subject.regression is None else type(subject.regression).__name__,
        "classification": None if cls is None else {"name": cls.name, "n_train": int(cls.x_train.shape[0]),
                                                    "n_test": int(cls.x_test.shape[0]), "n_classes": cls.n_classes},
        "family": None if subject.family is None else subject.family.to_dict(),
    }  # fmt: skip
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": json_safe(info)})


# --------------------------------------------------------------------------------------------
# figures and tables


def _pos(values: list[float | None]) -> list[float | None]:
    """Non-positive values as None: a log axis cannot show them (Plotly leaves a gap)."""
    return [v if v is not None and v > 0 else None for v in values]


def _linear_figures(cfg: Any, points: list[dict[str, Any]]) -> list[Figure]:
    g = [p["gamma"] for p in points]
    n = cfg.n
    dense_d = list(range(1, max(p["d"] for p in points) + 1))
    dense_g = [d / n for d in dense_d]
    exact = [_finite(th.minnorm_risk(n, d, cfg.sigma2, cfg.r2)) for d in dense_d]
    asym = [_finite(th.asymptotic_minnorm_risk(x, cfg.sigma2, cfg.r2)) for x in dense_g]
    ridge_curve = [th.asymptotic_optimal_ridge_risk(x, cfg.sigma2, cfg.r2) for x in dense_g]
    traces = fig.band_traces(
        g, _pos([p["ci_low"] for p in points]), [p["ci_high"] for p in points], f"min-norm {cfg.level:.0%} CI"
    )
    traces.append(fig.line_trace(g, [p["test_risk"] for p in points], "min-norm, measured"))
    traces.append(fig.curve_trace(dense_g, exact, "exact finite-sample theory", dash="solid"))
    traces.append(fig.curve_trace(dense_g, asym, "asymptotic (Hastie et al. 2019)", dash="dash"))
    traces.append(
        fig.errorbar_trace(
            g,
            [p["ridge_risk"] for p in points],
            [p["ridge_ci_low"] for p in points],
            [p["ridge_ci_high"] for p in points],
            "optimal ridge, measured",
        )
    )
    traces.append(fig.curve_trace(dense_g, ridge_curve, "optimal ridge, limit", dash="dot"))
    traces.append(
        fig.errorbar_trace(
            g,
            [p["es_risk"] for p in points],
            [p["es_ci_low"] for p in points],
            [p["es_ci_high"] for p in points],
            "gradient flow at t=1/lam*, measured",
        )
    )
    risk_fig = fig.figure(
        "double_descent_risk",
        "Min-norm least squares: test risk vs gamma = d/n",
        traces,
        xlabel="gamma = d/n",
        ylabel="excess test risk ||beta_hat - beta||^2",
        ylog=True,
        caption=(
            f"n={n}, sigma2={cfg.sigma2:g}, r2={cfg.r2:g}; {points[0]['n_designs']} designs x "
            f"{points[0]['n_noise']} noise draws per point. The exact curve is infinite for n-1 <= d <= n+1 "
            "(gap). Non-positive interval ends are not drawn on the log axis."
        ),
    )
    bv = [
        fig.errorbar_trace(
            g,
            _pos([p["variance"] for p in points]),
            _pos([p["variance_ci_low"] for p in points]),
            [p["variance_ci_high"] for p in points],
            "variance, measured",
        ),
        fig.curve_trace(
            dense_g, [_finite(th.minnorm_variance(n, d, cfg.sigma2)) for d in dense_d], "variance, exact", dash="solid"
        ),
        fig.errorbar_trace(
            g,
            _pos([p["bias"] for p in points]),
            _pos([p["bias_ci_low"] for p in points]),
            [p["bias_ci_high"] for p in points],
            "bias, measured",
        ),
        fig.curve_trace(dense_g, [th.minnorm_bias(n, d, cfg.r2) or None for d in dense_d], "bias, exact", dash="solid"),
    ]
    bv_fig = fig.figure(
        "double_descent_bias_variance",
        "Bias and variance split by resampling the noise",
        bv,
        xlabel="gamma = d/n",
        ylabel="risk component",
        ylog=True,
        caption="Bias is 0 below the threshold (OLS is unbiased); measured values that are <= 0 are "
        "not drawn on the log axis.",
    )
    cond = [
        fig.errorbar_trace(
            g,
            [p["cond_median"] for p in points],
            [p["cond_ci_low"] for p in points],
            [p["cond_ci_high"] for p in points],
            "median s_max/s_min (order-statistic CI)",
        ),
        fig.curve_trace(
            dense_g, [_finite(th.asymptotic_condition_number(x)) for x in dense_g], "(1+sqrt g)/|1-sqrt g| (MP edges)"
        ),
    ]
    cond_fig = fig.figure(
        "double_descent_condition",
        "Condition number of the design along the sweep",
        cond,
        xlabel="gamma = d/n",
        ylabel="condition number",
        ylog=True,
    )
    return [risk_fig, bv_fig, cond_fig]


def _rf_figure(rf: dict[str, Any]) -> Figure:
    traces = []
    for c in rf["curves"]:
        name = f"{c['variant']}, noise {c['label_noise']:.0%}"
        traces.append(
            fig.errorbar_trace(
                c["p_over_n"],
                c["test_mse"],
                _pos(c["test_mse_ci_low"]),
                c["test_mse_ci_high"],
                name,
                mode="lines+markers",
            )
        )
    return fig.figure(
        "double_descent_random_features",
        "Random ReLU features on digits: test MSE vs p/n",
        traces,
        xlabel="p/n (features per training example)",
        ylabel="test MSE (per output)",
        xlog=True,
        ylog=True,
        caption=f"n={rf['n_train']} training digits, {rf['n_seeds']} feature draws; min-norm fits interpolate "
        "from p = n (df = n); ridge and early-stopped GD keep df < n.",
    )


def _rf_train_figure(rf: dict[str, Any]) -> Figure:
    traces = []
    for c in rf["curves"]:
        if c["variant"] != "min-norm":
            continue
        traces.append(fig.line_trace(c["p_over_n"], c["train_err"], f"train error, noise {c['label_noise']:.0%}"))
        traces.append(fig.line_trace(c["p_over_n"], c["test_err"], f"test error, noise {c['label_noise']:.0%}"))
    traces.append(fig.line_trace(rf["p_over_n"], [r / rf["n_train"] for r in rf["rank_mean"]], "rank(Phi)/n"))
    return fig.figure(
        "double_descent_rf_train_test",
        "Random features, ridgeless: train and test error",
        traces,
        xlabel="p/n",
        ylabel="classification error / rank fraction",
        xlog=True,
    )


def _mlp_figure(mlp: dict[str, Any]) -> Figure:
    traces = []
    for c in mlp["curves"]:
        name = f"noise {c['label_noise']:.0%}, wd {c['weight_decay']:g}, T={c['horizon']}"
        traces.append(
            fig.errorbar_trace(
                c["params_over_nK"],
                c["test_mse"],
                _pos(c["test_mse_ci_low"]),
                c["test_mse_ci_high"],
                name,
                mode="lines+markers",
            )
        )
    return fig.figure(
        "double_descent_mlp",
        "One-hidden-layer MLP on digits: test MSE vs parameters/(nK)",
        traces,
        xlabel="parameters / (n K)",
        ylabel="test MSE (per output)",
        xlog=True,
        ylog=True,
        caption=f"n={mlp['n_train']}, K={mlp['n_classes']}, {mlp['n_seeds']} seeds, full-batch Adam; T = steps "
        "at which the test error was read (early stopping).",
    )


def _points_table(points: list[dict[str, Any]]) -> Table:
    rows = [
        [
            p["gamma"],
            p["d"],
            p["test_risk"],
            p["ci_low"],
            p["ci_high"],
            p["predicted_risk"],
            p["predicted_risk_asymptotic"],
            "n/e" if p["covered"] is None else ("yes" if p["covered"] else "NO"),
            p["ridge_risk"],
            p["predicted_ridge_risk"],
            p["es_risk"],
            p["predicted_es_risk"],
            p["cond_median"],
        ]
        for p in points
    ]
    return Table(
        "double_descent_points",
        "Min-norm sweep: measured vs predicted",
        [
            "gamma",
            "d",
            "risk",
            "CI low",
            "CI high",
            "exact",
            "asymptotic",
            "covered",
            "ridge",
            "ridge limit",
            "early stop",
            "ES limit",
            "cond (median)",
        ],
        rows,
        caption="n/e: not evaluated (|d-n| < 8: the risk's 4th moment is infinite, a t-interval unreliable).",
    )
