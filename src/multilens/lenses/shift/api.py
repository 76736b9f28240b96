"""Shift functions for anyone's arrays, each returning estimates with intervals (or a stated reason).

>>> from multilens import shift
>>> iw = shift.importance_weights(x_source, x_target, seed=0)        # domain-classifier ratio
>>> iw.weights, iw.ess.value, iw.ess_fraction
>>> shift.weighted_risk(losses, iw.weights, self_normalized=True)    # Estimate with a t interval
>>> b = shift.bbse(val_labels, val_probs, target_probs, n_boot=200, seed=0)
>>> b.priors[0].value, b.priors[0].ci_low, b.condition_number
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import DataError
from multilens.lenses.calibration.metrics import check_labels
from multilens.lenses.shift import estimators as E
from multilens.results import Estimate
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int, check_open_unit

ESS_REASON = "a property of the weights at hand (Kish ESS)"


@dataclass(frozen=True)
class ImportanceWeights:
    weights: np.ndarray  # at the source points
    ess: Estimate
    ess_fraction: float
    method: str


def importance_weights(
    x_source: Any, x_target: Any = None, *, ratio: Any = None, clip_quantile: float | None = None,
    self_normalize: bool = False, quadratic: bool = False, c: float = 1.0, seed: SeedLike = 0,
) -> ImportanceWeights:  # fmt: skip
    """Weights w = p_t / p_s at the source points: the given ``ratio`` (values at the source points or a
    callable of x), or a cross-fitted logistic domain classifier of source vs ``x_target``."""
    xs = np.asarray(x_source, np.float64)
    if ratio is not None:
        w = np.asarray(ratio(xs) if callable(ratio) else ratio, np.float64)
        method = "given ratio"
    else:
        if x_target is None:
            raise DataError("give `x_target` (to estimate the ratio) or `ratio`.")
        w = E.domain_classifier_ratio(xs, np.asarray(x_target, np.float64), quadratic=quadratic, c=c, seed=seed)
        method = "cross-fitted logistic domain classifier"
    if w.shape != (xs.shape[0],):
        raise DataError(f"`ratio` must give one weight per source row ({xs.shape[0]}); got shape {w.shape}.")
    if clip_quantile is not None:
        check_open_unit("clip_quantile", clip_quantile)
        w = E.clip_weights(w, clip_quantile)
        method += f", clipped at the {clip_quantile:g} quantile"
    if self_normalize:
        w = E.self_normalize(w)
        method += ", self-normalised"
    ess = E.kish_ess(w)
    return ImportanceWeights(w, Estimate("kish_ess", ess, n=int(w.size), no_interval_reason=ESS_REASON), ess / w.size,
                             method)  # fmt: skip


def weighted_risk(losses: Any, weights: Any, *, self_normalized: bool = False, level: float = 0.95) -> Estimate:
    """The importance-weighted mean loss with its interval over examples (Kish ESS in the note)."""
    r = E.weighted_risk(np.asarray(losses, np.float64), np.asarray(weights, np.float64),
                        self_normalized=self_normalized, level=level)  # fmt: skip
    return r.interval.to_estimate("weighted_risk", note=f"Kish ESS {r.ess:.1f} ({r.ess_fraction:.1%} of n)")


@dataclass(frozen=True)
class PriorShift:
    priors: tuple[Estimate, ...]  # one per class, simultaneous (Bonferroni) bootstrap intervals
    weights: np.ndarray  # pi_t / pi_s
    condition_number: float | None
    converged: bool | None
    n_iter: int | None


def _hard(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p)
    return p.argmax(1) if p.ndim == 2 else p.astype(np.int64)


def bbse(
    val_labels: Any, val_preds: Any, target_preds: Any, *, n_classes: int | None = None, n_boot: int = 200,
    level: float = 0.95, seed: SeedLike = 0,
) -> PriorShift:  # fmt: skip
    """BBSE target priors (Lipton et al. 2018). Predictions are class ids or (n, K) probabilities."""
    check_int("n_boot", n_boot, 10)
    yv = check_labels(val_labels, n_classes, "val_labels")
    hv, ht = _hard(val_preds), _hard(target_preds)
    k = n_classes or int(max(yv.max(), hv.max(), ht.max()) + 1)
    est = E.bbse(yv, hv, ht, k)
    rng = as_generator(seed)
    boot = np.array([E.bbse(yv[iv], hv[iv], ht[it], k).priors
                     for iv, it in ((rng.integers(0, yv.size, yv.size), rng.integers(0, ht.size, ht.size))
                                    for _ in range(n_boot))])  # fmt: skip
    return PriorShift(_prior_estimates(est.priors, boot, level, "BBSE"), est.weights, est.condition_number, None, None)


def em_priors(
    target_probs: Any, source_priors: Any, *, n_boot: int = 200, level: float = 0.95, tol: float = 1e-8,
    max_iter: int = 1000, seed: SeedLike = 0,
) -> PriorShift:  # fmt: skip
    """EM prior adaptation (Saerens et al. 2002) from source-calibrated target probabilities."""
    check_int("n_boot", n_boot, 10)
    p = np.asarray(target_probs, np.float64)
    pi_s = np.asarray(source_priors, np.float64)
    est = E.em_priors(p, pi_s, tol=tol, max_iter=max_iter)
    rng = as_generator(seed)
    boot = np.array([E.em_priors(p[rng.integers(0, p.shape[0], p.shape[0])], pi_s, tol=tol, max_iter=max_iter).priors
                     for _ in range(n_boot)])  # fmt: skip
    pri = _prior_estimates(est.priors, boot, level, "EM", converged=est.converged, n_iter=est.n_iter)
    return PriorShift(pri, est.weights, None, est.converged, est.n_iter)


def _prior_estimates(pri: np.ndarray, boot: np.ndarray, level: float, what: str, **kw: Any) -> tuple[Estimate, ...]:
    k = pri.size
    a = (1 - level) / k
    lo, hi = np.quantile(boot, a / 2, axis=0), np.quantile(boot, 1 - a / 2, axis=0)
    method = f"{what}: percentile bootstrap, {boot.shape[0]} resamples, Bonferroni over {k} classes"
    return tuple(Estimate(f"prior_{j}", float(pri[j]), float(lo[j]), float(hi[j]), level=1 - a, method=method,
                          n=boot.shape[0], **kw) for j in range(k))  # fmt: skip


mmd_test = E.mmd_test
domain_classifier_test = E.domain_classifier_test
correct_posteriors = E.correct_posteriors
kish_ess = E.kish_ess
