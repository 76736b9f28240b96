"""Estimators under distribution shift, on plain arrays (NumPy, scikit-learn), each testable exactly.

* Importance weights (covariate shift, Shimodaira 2000; B.8): ``w(x) = p_t(x) / p_s(x)`` either
  given (a known ratio) or estimated by a probabilistic domain classifier,
  ``w(x) = (n_s / n_t) P(target | x) / P(source | x)`` (Bickel et al. 2009), cross-fitted so no
  example's weight comes from a classifier that saw it. Weights may be clipped at a quantile or
  self-normalised (divided by their mean). Kish's effective sample size
  ``ESS = (sum w)^2 / sum w^2`` says how many unweighted examples the weighted sample is worth.
* Label shift: BBSE (Lipton, Wang & Smola 2018): with the source confusion matrix
  ``C_ij = P_s(yhat = i, y = j)`` and the target's predicted-class frequencies ``mu``, solve
  ``C w = mu`` for ``w_j = pi_t(j) / pi_s(j)``; the condition number of C says how well posed it
  is. EM prior adaptation (Saerens, Latinne & Decaestecker 2002): alternate the prior-corrected
  posteriors ``p_t(y|x) prop. p_s(y|x) pi(y) / pi_s(y)`` and ``pi = mean_x p_t(y|x)``.
* Shift detection: the unbiased MMD^2 with a Gaussian kernel (Gretton et al. 2012; bandwidth by
  the median heuristic on the pooled sample) and a permutation p-value; a domain-classifier test
  (held-out accuracy of telling the two samples apart, against 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from multilens.errors import ConfigError, DataError
from multilens.seeding import SeedLike, as_generator
from multilens.stats import Interval, clopper_pearson


def kish_ess(w: np.ndarray) -> float:
    """(sum w)^2 / sum w^2 (n for equal weights, 1 when one weight dominates)."""
    w = np.asarray(w, np.float64)
    s2 = float(np.sum(w**2))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def clip_weights(w: np.ndarray, quantile: float) -> np.ndarray:
    """Weights capped at their ``quantile`` (e.g. 0.99): lower variance, some bias."""
    w = np.asarray(w, np.float64)
    return np.minimum(w, np.quantile(w, quantile))


def self_normalize(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, np.float64)
    return w / w.mean()


def _features(x: np.ndarray, quadratic: bool) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return np.hstack([x, x**2]) if quadratic else x


def domain_classifier_ratio(
    x_source: np.ndarray, x_target: np.ndarray, *, quadratic: bool = False, c: float = 1.0, folds: int = 2,
    seed: SeedLike = 0,
) -> np.ndarray:  # fmt: skip
    """Cross-fitted estimate of w at the source points from a logistic domain classifier.

    ``quadratic`` adds squared features (then the log-ratio of two Gaussians is in the model
    class, so the classifier is well specified). ``c`` is scikit-learn's inverse L2 strength.
    """
    xs, xt = _features(x_source, quadratic), _features(x_target, quadratic)
    if xs.shape[1] != xt.shape[1]:
        raise DataError(f"source has {xs.shape[1]} features but target has {xt.shape[1]}; they must match.")
    ns, nt = xs.shape[0], xt.shape[0]
    mu, sd = np.vstack([xs, xt]).mean(0), np.vstack([xs, xt]).std(0)
    sd[sd == 0] = 1.0
    xs, xt = (xs - mu) / sd, (xt - mu) / sd
    rng = as_generator(seed)
    fs = rng.permutation(ns) % folds
    ft = rng.permutation(nt) % folds
    w = np.empty(ns)
    for k in range(folds):
        tr_s, tr_t = xs[fs != k], xt[ft != k]
        x = np.vstack([tr_s, tr_t])
        y = np.r_[np.zeros(tr_s.shape[0]), np.ones(tr_t.shape[0])]
        clf = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        logit = clf.decision_function(xs[fs == k])
        # P(t|x)/P(s|x) = exp(logit); correct for the class sizes the classifier was trained on.
        w[fs == k] = np.exp(logit) * tr_s.shape[0] / tr_t.shape[0]
    return w


@dataclass(frozen=True)
class WeightedRisk:
    estimate: float
    interval: Interval
    ess: float
    ess_fraction: float
    self_normalized: bool


def weighted_risk(losses: np.ndarray, weights: np.ndarray, *, self_normalized: bool = False,
                  level: float = 0.95) -> WeightedRisk:  # fmt: skip
    """mean(w l) (or sum(w l) / sum(w)) with a CLT interval over examples (delta method when normalised)."""
    from scipy import stats as sps

    l_ = np.asarray(losses, np.float64)
    w = np.asarray(weights, np.float64)
    if l_.shape != w.shape:
        raise DataError(f"`losses` has shape {l_.shape} but `weights` has {w.shape}; they must match.")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        i = int(np.argmax(~np.isfinite(w) | (w < 0)))
        raise DataError(f"`weights` row {i}: {w[i]} is not a finite non-negative weight.")
    n = l_.shape[0]
    q = float(sps.t.ppf(0.5 + level / 2, max(n - 1, 1)))
    if self_normalized:
        est = float(np.sum(w * l_) / np.sum(w))
        infl = w * (l_ - est) / w.mean()  # influence function of the ratio estimator
        se = float(infl.std(ddof=1) / math.sqrt(n))
        method = f"delta-method t interval over {n} examples (self-normalised weights)"
    else:
        v = w * l_
        est = float(v.mean())
        se = float(v.std(ddof=1) / math.sqrt(n))
        method = f"Student t over {n} examples"
    ess = kish_ess(w)
    return WeightedRisk(est, Interval(est, est - q * se, est + q * se, se, n, level, method), ess, ess / n,
                        self_normalized)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Label shift


def confusion_joint(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """C_ij = P(yhat = i, y = j) on labelled source data."""
    c = np.zeros((k, k))
    np.add.at(c, (preds, labels), 1.0)
    return c / labels.shape[0]


@dataclass(frozen=True)
class PriorEstimate:
    priors: np.ndarray  # estimated target priors (clipped at 0, renormalised)
    weights: np.ndarray  # pi_t / pi_s
    condition_number: float | None = None
    converged: bool | None = None
    n_iter: int | None = None


def bbse(val_labels: np.ndarray, val_preds: np.ndarray, target_preds: np.ndarray, k: int) -> PriorEstimate:
    """Black-box shift estimation from hard predictions (Lipton et al. 2018)."""
    c = confusion_joint(np.asarray(val_labels), np.asarray(val_preds), k)
    mu = np.bincount(np.asarray(target_preds), minlength=k) / len(target_preds)
    pi_s = c.sum(0)
    cond = float(np.linalg.cond(c))
    w, *_ = np.linalg.lstsq(c, mu, rcond=None)
    w = np.maximum(w, 0.0)
    pri = w * pi_s
    s = pri.sum()
    pri = pri / s if s > 0 else np.full(k, 1.0 / k)
    return PriorEstimate(pri, w, cond)


def correct_posteriors(probs: np.ndarray, source_priors: np.ndarray, target_priors: np.ndarray) -> np.ndarray:
    """p_t(y|x) prop. p_s(y|x) pi_t(y) / pi_s(y) (B.18)."""
    r = np.asarray(target_priors, np.float64) / np.asarray(source_priors, np.float64)
    q = np.asarray(probs, np.float64) * r
    return q / q.sum(1, keepdims=True)


def em_priors(
    target_probs: np.ndarray, source_priors: np.ndarray, *, tol: float = 1e-8, max_iter: int = 1000
) -> PriorEstimate:
    """Saerens et al. (2002): EM for the target priors from source-calibrated posteriors."""
    pi_s = np.asarray(source_priors, np.float64)
    pi = pi_s.copy()
    for it in range(1, max_iter + 1):
        new = correct_posteriors(target_probs, pi_s, pi).mean(0)
        done = float(np.abs(new - pi).sum()) < tol
        pi = new
        if done:
            return PriorEstimate(pi, pi / pi_s, None, True, it)
    return PriorEstimate(pi, pi / pi_s, None, False, max_iter)


# ----------------------------------------------------------------------------------------------
# Shift detection


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T, 0.0)


def mmd2_unbiased(kmat: np.ndarray, idx_x: np.ndarray, idx_y: np.ndarray) -> float:
    """Unbiased MMD^2 of the samples indexed by idx_x and idx_y in the pooled kernel matrix."""
    return float(_mmd2_masks(kmat, np.isin(np.arange(kmat.shape[0]), idx_x)[:, None])[0])


def _mmd2_masks(kmat: np.ndarray, is_x: np.ndarray) -> np.ndarray:
    """MMD^2_u for each column of the boolean (N, P) matrix ``is_x`` (True: first sample)."""
    u = is_x.astype(np.float64)
    v = 1.0 - u
    ku, kv = kmat @ u, kmat @ v  # (N, P)
    d = np.diag(kmat)[:, None]
    m, n = u.sum(0), v.sum(0)
    sxx = np.sum(u * ku, 0) - np.sum(u * d, 0)
    syy = np.sum(v * kv, 0) - np.sum(v * d, 0)
    sxy = np.sum(v * ku, 0)
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


@dataclass(frozen=True)
class TwoSampleTest:
    statistic: float
    p_value: float
    n_permutations: int
    bandwidth: float | None = None
    accuracy: Interval | None = None


def mmd_test(x: np.ndarray, y: np.ndarray, *, n_perm: int = 200, seed: SeedLike = 0) -> TwoSampleTest:
    """Unbiased MMD^2 (Gaussian kernel, median-heuristic bandwidth) and its permutation p-value."""
    if n_perm < 10:
        raise ConfigError(f"`n_perm` must be an int >= 10; got {n_perm}.")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    z = np.vstack([x, y])
    d2 = _sqdist(z, z)
    med = float(np.median(d2[np.triu_indices_from(d2, 1)]))
    bw = math.sqrt(med / 2) if med > 0 else 1.0
    kmat = np.exp(-d2 / (2 * bw**2))
    m, total = x.shape[0], z.shape[0]
    first = np.zeros((total, 1), bool)
    first[:m] = True
    stat = float(_mmd2_masks(kmat, first)[0])
    rng = as_generator(seed)
    perms = np.zeros((total, n_perm), bool)
    for j in range(n_perm):
        perms[rng.permutation(total)[:m], j] = True
    count = int(np.sum(_mmd2_masks(kmat, perms) >= stat))
    return TwoSampleTest(stat, (count + 1) / (n_perm + 1), n_perm, bw)


def domain_classifier_test(
    x: np.ndarray, y: np.ndarray, *, seed: SeedLike = 0, level: float = 0.95, c: float = 1.0
) -> TwoSampleTest:
    """Held-out accuracy of a logistic classifier telling x from y (balanced halves), vs 1/2.

    The p-value is the exact one-sided binomial tail of the held-out correct count under 1/2.
    """
    from scipy import stats as sps

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = min(x.shape[0], y.shape[0])
    rng = as_generator(seed)
    xi, yi = rng.permutation(x.shape[0])[:n], rng.permutation(y.shape[0])[:n]
    h = n // 2
    xtr = np.vstack([x[xi[:h]], y[yi[:h]]])
    ytr = np.r_[np.zeros(h), np.ones(h)]
    xte = np.vstack([x[xi[h:]], y[yi[h:]]])
    yte = np.r_[np.zeros(n - h), np.ones(n - h)]
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1.0
    clf = LogisticRegression(C=c, max_iter=2000).fit((xtr - mu) / sd, ytr)
    correct = int(np.sum(clf.predict((xte - mu) / sd) == yte))
    total = int(yte.size)
    p = float(sps.binom.sf(correct - 1, total, 0.5))
    return TwoSampleTest(correct / total, p, 0, None, clopper_pearson(correct, total, level))


# ----------------------------------------------------------------------------------------------
# Worst-group training


@dataclass(frozen=True)
class GroupDRO:
    """A binary logistic model fitted by online group DRO (Sagawa et al. 2020), full batch."""

    coef: np.ndarray
    intercept: float
    group_weights: np.ndarray  # q at the end (the adversary's mixture over groups)
    group_losses: np.ndarray  # per-group training loss at the end
    n_iter: int

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.int64)


def group_dro_logistic(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, *, steps: int = 2000, lr: float = 0.5, eta_q: float = 0.05,
    l2: float = 1e-3,
) -> GroupDRO:  # fmt: skip
    """Minimise max_q sum_g q_g L_g(theta) + l2/2 ||w||^2 by alternating q <- q exp(eta_q L_g), normalised,
    and a gradient step on theta for the q-weighted loss. A fixed budget of ``steps`` (no convergence
    claim: the saddle-point iteration is reported with ``n_iter`` only)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    g = np.asarray(g)
    groups = np.unique(g)
    masks = [g == h for h in groups]
    w = np.zeros(x.shape[1])
    b = 0.0
    q = np.full(groups.size, 1.0 / groups.size)
    for _ in range(steps):
        z = x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        losses = np.array([np.mean(np.logaddexp(0.0, z[m]) - y[m] * z[m]) for m in masks])
        q = q * np.exp(eta_q * losses)
        q /= q.sum()
        wts = np.zeros_like(z)
        for qi, m in zip(q, masks):
            wts[m] = qi / m.sum()
        r = wts * (p - y)
        w -= lr * (x.T @ r + l2 * w)
        b -= lr * float(r.sum())
    z = x @ w + b
    losses = np.array([np.mean(np.logaddexp(0.0, z[m]) - y[m] * z[m]) for m in masks])
    return GroupDRO(w, b, q, losses, steps)
