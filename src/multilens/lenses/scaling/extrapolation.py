"""Extrapolation check: fit on the smaller budgets, predict the largest held-out budget.

A scaling law is only useful if it predicts runs larger than the ones it was fitted on
(Hoffmann et al. 2022 validate Chinchilla this way; the seed chapter's task C.1 asks to "validate
on held-out scaling points, not only in-sample fits"). The runs at the largest
``holdout_budgets`` distinct compute budgets C = 6ND (budgets equal to 3 significant digits in
log10 C are one budget) are held out; the law is fitted on the rest and bootstrapped over runs.

Prediction interval at each held-out run: for every successful bootstrap refit b, the refit's
predicted log-loss plus one residual drawn from the training fit's log residuals (inflated by
sqrt(n / (n - p)) for the degrees of freedom the fit used); the interval is the percentile
interval of those draws. It so includes both the parameter uncertainty and the run-to-run noise
that the held-out run itself carries. The check passes when every held-out loss is inside its
interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import ConfigError, DataError
from multilens.lenses.scaling.chinchilla import bootstrap_chinchilla, fit_chinchilla, predict_chinchilla
from multilens.lenses.scaling.compute_law import bootstrap_compute_law, fit_compute_law, predict_compute
from multilens.lenses.scaling.data import MIN_POINTS_CHINCHILLA, MIN_POINTS_COMPUTE, ScalingData
from multilens.lenses.scaling.intervals import check_level
from multilens.results import SCHEMA_VERSION, Check
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int


@dataclass(frozen=True, eq=False)
class ExtrapolationResult:
    """Held-out prediction of the largest budgets. Arrays are per held-out run (input order)."""

    form: str
    train_max_compute: float
    holdout_compute: np.ndarray
    observed: np.ndarray
    predicted: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    relative_error: np.ndarray  # observed / predicted - 1
    check: Check
    n_train: int
    n_holdout: int
    n_boot: int
    n_failed: int
    level: float
    converged: bool
    n_iter: int
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "form": self.form,
            "train_max_compute": self.train_max_compute,
            "holdout_compute": self.holdout_compute.tolist(),
            "observed": self.observed.tolist(),
            "predicted": self.predicted.tolist(),
            "pi_low": self.pi_low.tolist(),
            "pi_high": self.pi_high.tolist(),
            "relative_error": self.relative_error.tolist(),
            "check": self.check.to_dict(),
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "n_boot": self.n_boot,
            "n_failed": self.n_failed,
            "level": self.level,
            "converged": self.converged,
            "n_iter": self.n_iter,
        }


def split_by_budget(compute: np.ndarray, holdout_budgets: int) -> np.ndarray:
    """Boolean mask of runs at the largest ``holdout_budgets`` distinct budgets."""
    key = np.round(np.log10(compute), 3)  # one budget = equal to 3 significant digits in log10 C
    levels = np.unique(key)
    if holdout_budgets >= len(levels):
        raise DataError(
            f"only {len(levels)} distinct compute budgets; cannot hold out {holdout_budgets} and still fit."
        )
    return key >= levels[-holdout_budgets]


def extrapolation_check(
    data: ScalingData,
    *,
    form: str = "chinchilla",
    holdout_budgets: int = 1,
    n_boot: int = 200,
    seed: SeedLike = 0,
    level: float = 0.95,
    n_jobs: int = 1,
) -> ExtrapolationResult:
    """Fit on all but the largest budgets, predict the held-out runs, check them against a PI.

    ``form`` is "chinchilla" (L(N, D), needs N and D of the held-out runs) or "compute" (L(C)
    with C = 6ND). Returns an :class:`ExtrapolationResult` whose ``check`` is a computed
    :class:`multilens.results.Check`.
    """
    if not isinstance(data, ScalingData):
        raise ConfigError(f"`data` must be a ScalingData; got {type(data).__name__}.")
    if form not in ("chinchilla", "compute"):
        raise ConfigError(f"`form` must be 'chinchilla' or 'compute'; got {form!r}.")
    check_int("holdout_budgets", holdout_budgets, 1)
    check_int("n_boot", n_boot, 2)
    level = check_level(level)
    rng = as_generator(seed)
    C = data.compute
    hold = split_by_budget(C, holdout_budgets)
    train, test = data.subset(np.flatnonzero(~hold)), data.subset(np.flatnonzero(hold))
    if form == "chinchilla" and train.n_points < MIN_POINTS_CHINCHILLA + 1:
        raise DataError(
            f"only {train.n_points} runs below the held-out budget; the chinchilla fit needs at least "
            f"{MIN_POINTS_CHINCHILLA + 1}; hold out fewer budgets or add runs."
        )
    n_levels = len(np.unique(np.round(np.log10(train.compute), 3)))
    if form == "compute" and n_levels < MIN_POINTS_COMPUTE + 1:
        raise DataError(
            f"only {n_levels} distinct budgets below the held-out budget; the compute fit needs at least "
            f"{MIN_POINTS_COMPUTE + 1}; hold out fewer budgets or add runs."
        )
    if form == "chinchilla":
        fit = fit_chinchilla(train)
        boot = bootstrap_chinchilla(train, fit, n_boot=n_boot, seed=rng, level=level, n_jobs=n_jobs)
        p_hat = np.log(predict_chinchilla(fit, test.N, test.D))
        preds = [
            np.log(predict_chinchilla({k: boot.column(k)[r] for k in ("E", "A", "B", "alpha", "beta")}, test.N, test.D))
            for r in range(n_boot)
        ]
        n_par = 5
    else:
        fit = fit_compute_law(train.compute, train.loss)
        boot = bootstrap_compute_law(train.compute, train.loss, fit, n_boot=n_boot, seed=rng, level=level)
        p_hat = np.log(predict_compute(fit.params, test.compute))
        preds = [
            np.log(predict_compute({k: boot.column(k)[r] for k in ("A", "alpha", "L_inf")}, test.compute))
            for r in range(n_boot)
        ]
        n_par = 3
    P = np.array(preds)  # (n_boot, n_holdout), NaN rows for failed refits
    P = P[np.all(np.isfinite(P), axis=1)]
    if len(P) < 2:
        raise DataError("fewer than 2 bootstrap refits succeeded on the training budgets; add runs or budgets.")
    resid = np.asarray(fit.residuals) * np.sqrt(train.n_points / max(train.n_points - n_par, 1))
    draws = P - resid[rng.integers(0, len(resid), size=P.shape)]  # residual = pred - obs, so obs = pred - resid
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    obs = test.loss
    pred = np.exp(p_hat)
    pi_low, pi_high = np.exp(lo), np.exp(hi)
    return ExtrapolationResult(
        form=form,
        train_max_compute=float(train.compute.max()),
        holdout_compute=test.compute,
        observed=obs,
        predicted=pred,
        pi_low=pi_low,
        pi_high=pi_high,
        relative_error=obs / pred - 1.0,
        check=_check(obs, pred, pi_low, pi_high, test.compute, level),
        n_train=train.n_points,
        n_holdout=test.n_points,
        n_boot=n_boot,
        n_failed=boot.n_failed,
        level=level,
        converged=fit.converged,
        n_iter=fit.n_iter,
    )


def _check(obs: np.ndarray, pred: np.ndarray, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, level: float) -> Check:
    """One Check for all held-out runs, reported at the run furthest outside (or nearest the edge)."""
    inside = (obs >= lo) & (obs <= hi)
    # how far each run is toward its interval edge: 1 = on the edge, > 1 = outside
    half = np.where(obs >= pred, hi - pred, pred - lo)
    score = np.abs(obs - pred) / np.maximum(half, 1e-300)
    j = int(np.argmax(score))
    ok = bool(inside.all())
    reason = (
        f"{int(inside.sum())}/{len(obs)} held-out runs inside their {level:.0%} prediction interval; "
        f"worst at C={C[j]:.3g}: observed L={obs[j]:.5g}, predicted {pred[j]:.5g} "
        f"({obs[j] / pred[j] - 1:+.2%}), interval [{lo[j]:.5g}, {hi[j]:.5g}]"
    )
    return Check(
        "extrapolation_within_interval",
        ok,
        float(obs[j]),
        float(pred[j]),
        float(half[j]),
        reason,
        kind="agreement",
        criterion=f"every held-out loss inside its {level:.0%} prediction interval from the smaller budgets' fit",
    )
