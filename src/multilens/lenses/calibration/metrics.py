"""Calibration metrics on arrays of labels and predicted probabilities (or logits), in float64.

Definitions (K classes, n examples, ``p`` the (n, K) probabilities, ``y`` the labels):

* confidence ``c_i = max_k p_ik``, prediction ``argmax_k p_ik`` (ties: the lowest class index),
  correctness ``a_i = 1[prediction == y_i]``.
* **Binning convention** (one for every binned metric here): B equal-width bins
  ``[0, 1/B), [1/B, 2/B), ..., [(B-1)/B, 1]``: left-closed, and the last bin is closed, so a
  confidence of exactly 1.0 falls in the last bin (bin index ``min(floor(c B), B - 1)``).
  torchmetrics (issue 3510) puts c = 1.0 in a hidden extra bin and reports 0.525 for preds
  [0.95, 1.0], labels [1, 0]; the definition gives 0.475. Equal-mass ("adaptive") bins split the
  examples sorted by confidence (stable sort) into B groups of sizes differing by at most one.
* top-label ECE (Guo et al. 2017): ``sum_b (n_b / n) |mean_b(a) - mean_b(c)|``; MCE: the largest
  ``|mean_b(a) - mean_b(c)|`` over non-empty bins.
* classwise ECE (Kull et al. 2019): the mean over classes k of the equal-width ECE of ``p_k``
  against ``1[y = k]``.
* debiased calibration error (Kumar, Liang & Ma 2019, "Verified uncertainty calibration"): the
  squared (L2) top-label calibration error over equal-mass bins, each bin's plug-in
  ``(mean a - mean c)^2`` minus the unbiased estimate ``abar (1 - abar) / (n_b - 1)`` of its
  sampling bias. Its expectation is about 0 for a calibrated model (the plug-in ECE's is not);
  it can be negative. ``ece_debiased`` reports ``sqrt(max(., 0))`` on the RMS scale.
* NLL: ``mean -log p_iy`` (probabilities are clipped below at 1e-15 so a zero gives 34.5, not
  inf; with logits the log-softmax is exact). Brier: ``mean sum_k (p_ik - 1[y_i = k])^2`` (the
  multiclass sum; scikit-learn's binary ``brier_score_loss`` is half of it for K = 2).
* selective prediction (Geifman & El-Yaniv 2017; AURC of Geifman et al. 2019): examples ranked
  by decreasing confidence (stable sort); the selective risk at coverage k/n is the error rate of
  the k most confident; AURC is the mean of the n selective risks. The optimal AURC (errors
  ranked last) gives the excess AURC ``e_aurc = aurc - aurc_optimal``.

Inputs are validated once (:func:`as_probs`): a malformed row or label raises
:class:`~multilens.errors.DataError` naming the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilens.errors import DataError

PROB_SUM_TOL = 1e-4  # rows of probabilities must sum to 1 within this (float32 softmax outputs do)
NLL_CLIP = 1e-15


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def check_labels(labels: Any, n_classes: int | None = None, what: str = "labels") -> np.ndarray:
    """Integer labels in [0, n_classes); a bad entry raises DataError naming its row."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"`{what}` must be 1-D; got shape {y.shape}.")
    if y.size == 0:
        raise DataError(f"`{what}` is empty; need at least one example.")
    yf = y.astype(np.float64, copy=False) if y.dtype.kind in "biuf" else None
    if yf is None:
        raise DataError(f"`{what}` must be integers; got dtype {y.dtype}.")
    bad = ~np.isfinite(yf) | (yf != np.round(yf))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"`{what}` row {i}: {y[i]!r} is not an integer class label.")
    yi = yf.astype(np.int64)
    hi = n_classes if n_classes is not None else None
    out = (yi < 0) | (yi >= hi) if hi is not None else yi < 0
    if out.any():
        i = int(np.argmax(out))
        rng = f"[0, {hi - 1}]" if hi is not None else ">= 0"
        raise DataError(f"`{what}` row {i}: label {yi[i]} is out of range {rng}.")
    return yi


def as_probs(
    labels: Any, probs: Any = None, logits: Any = None, *, tol: float = PROB_SUM_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels int64 (n,), probabilities float64 (n, K)) from probs or logits.

    1-D ``probs`` are binary probabilities of class 1 (turned into two columns [1 - p, p]).
    Exactly one of ``probs``/``logits`` must be given.
    """
    if (probs is None) == (logits is None):
        raise DataError("give exactly one of `probs` or `logits`.")
    what = "probs" if probs is not None else "logits"
    a = np.asarray(probs if probs is not None else logits, dtype=np.float64)
    if a.ndim == 1 and probs is not None:
        a = np.stack([1.0 - a, a], axis=1)
    if a.ndim != 2 or a.shape[1] < 2:
        raise DataError(f"`{what}` must be (n, K) with K >= 2 classes; got shape {a.shape}.")
    nonfin = ~np.isfinite(a)
    if nonfin.any():
        i, k = map(int, np.argwhere(nonfin)[0])
        raise DataError(f"`{what}` row {i}, class {k}: {a[i, k]} is not finite.")
    y = check_labels(labels, a.shape[1])
    if y.shape[0] != a.shape[0]:
        raise DataError(f"`labels` has {y.shape[0]} rows but `{what}` has {a.shape[0]}; they must match.")
    if probs is not None:
        neg = (a < 0) | (a > 1)
        if neg.any():
            i, k = map(int, np.argwhere(neg)[0])
            raise DataError(f"`probs` row {i}, class {k}: {a[i, k]} is not a probability in [0, 1].")
        s = a.sum(axis=1)
        off = np.abs(s - 1.0) > tol
        if off.any():
            i = int(np.argmax(off))
            raise DataError(f"`probs` row {i} sums to {s[i]:.6g}, not 1 (tolerance {tol:g}).")
        return y, a
    return y, softmax(a)


def bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: [k/B, (k+1)/B), the last bin closed (1.0 is in it)."""
    return np.minimum(np.floor(np.asarray(conf, np.float64) * n_bins).astype(np.int64), n_bins - 1)


def mass_bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bins: the stable ranking by confidence split into groups of near-equal size."""
    n = conf.shape[0]
    order = np.argsort(conf, kind="stable")
    idx = np.empty(n, np.int64)
    b = min(n_bins, n)
    for k, chunk in enumerate(np.array_split(order, b)):
        idx[chunk] = k
    return idx


def top_label(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correctness) of the top-label prediction."""
    pred = np.argmax(probs, axis=1)
    return probs[np.arange(probs.shape[0]), pred], (pred == labels).astype(np.float64)


def _binned_gaps(conf: np.ndarray, correct: np.ndarray, idx: np.ndarray, n_bins: int):
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sc = np.bincount(idx, weights=conf, minlength=n_bins)
    sa = np.bincount(idx, weights=correct, minlength=n_bins)
    nz = counts > 0
    mc = np.where(nz, sc / np.maximum(counts, 1), np.nan)
    ma = np.where(nz, sa / np.maximum(counts, 1), np.nan)
    return counts, mc, ma, nz


def ece_from_conf(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15, binning: str = "width") -> float:
    idx = bin_index(conf, n_bins) if binning == "width" else mass_bin_index(conf, n_bins)
    counts, mc, ma, nz = _binned_gaps(conf, correct, idx, n_bins)
    return float(np.sum(counts[nz] * np.abs(ma[nz] - mc[nz])) / conf.shape[0])


def ece(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins (inputs already validated by :func:`as_probs`)."""
    return ece_from_conf(*top_label(labels, probs), n_bins, "width")


def ece_adaptive(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins."""
    return ece_from_conf(*top_label(labels, probs), n_bins, "mass")


def mce(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    conf, correct = top_label(labels, probs)
    counts, mc, ma, nz = _binned_gaps(conf, correct, bin_index(conf, n_bins), n_bins)
    return float(np.max(np.abs(ma[nz] - mc[nz])))


def classwise_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    k = probs.shape[1]
    onehot = np.eye(k)[labels]
    return float(np.mean([ece_from_conf(probs[:, j], onehot[:, j], n_bins, "width") for j in range(k)]))


def debiased_sq_ce(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Debiased squared top-label calibration error over equal-mass bins (may be negative)."""
    conf, correct = top_label(labels, probs)
    idx = mass_bin_index(conf, n_bins)
    counts, mc, ma, nz = _binned_gaps(conf, correct, idx, n_bins)
    use = counts >= 2
    plug = (ma[use] - mc[use]) ** 2
    bias = ma[use] * (1.0 - ma[use]) / (counts[use] - 1.0)
    return float(np.sum(counts[use] * (plug - bias)) / conf.shape[0])


def ece_debiased(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """RMS scale of :func:`debiased_sq_ce`: sqrt(max(debiased squared error, 0))."""
    return math.sqrt(max(debiased_sq_ce(labels, probs, n_bins), 0.0))


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    p = probs[np.arange(probs.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(p, NLL_CLIP))))


def nll_logits(labels: np.ndarray, logits: np.ndarray) -> float:
    ls = log_softmax(logits)
    return float(-np.mean(ls[np.arange(ls.shape[0]), labels]))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == labels))


@dataclass(frozen=True)
class Reliability:
    """Per-bin reliability: edges, counts, mean confidence and accuracy (NaN in empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> Reliability:
    conf, correct = top_label(labels, probs)
    counts, mc, ma, _ = _binned_gaps(conf, correct, bin_index(conf, n_bins), n_bins)
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), counts.astype(np.int64), mc, ma)


@dataclass(frozen=True)
class RiskCoverage:
    coverage: np.ndarray  # k / n, k = 1..n
    risk: np.ndarray  # error rate of the k most confident
    aurc: float
    aurc_optimal: float

    @property
    def e_aurc(self) -> float:
        return self.aurc - self.aurc_optimal


def _aurc_of_errors(errors_in_order: np.ndarray) -> tuple[np.ndarray, float]:
    k = np.arange(1, errors_in_order.shape[0] + 1)
    risk = np.cumsum(errors_in_order) / k
    return risk, float(risk.mean())


def risk_coverage_from_conf(conf: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    order = np.argsort(-conf, kind="stable")
    err = 1.0 - correct[order]
    risk, aurc = _aurc_of_errors(err)
    _, opt = _aurc_of_errors(np.sort(1.0 - correct))  # every correct example first
    n = conf.shape[0]
    return RiskCoverage(np.arange(1, n + 1) / n, risk, aurc, opt)


def risk_coverage(labels: np.ndarray, probs: np.ndarray) -> RiskCoverage:
    return risk_coverage_from_conf(*top_label(labels, probs))


def aurc(labels: np.ndarray, probs: np.ndarray) -> float:
    return risk_coverage(labels, probs).aurc


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logit margin z_y - max_{k != y} z_k of each example (negative: misclassified)."""
    z = np.asarray(logits, np.float64)
    n = z.shape[0]
    zy = z[np.arange(n), labels]
    other = z.copy()
    other[np.arange(n), labels] = -np.inf
    return zy - other.max(axis=1)
