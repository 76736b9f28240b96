"""Downstream readouts of a representation: linear probe, kNN, and matched-rank controls.

* Linear probe: multinomial logistic regression (scikit-learn, L-BFGS, L2 with ``C``) on
  standardized features (mean and scale of the training rows; zero-variance columns kept at scale
  1), accuracy on the held-out rows with a Clopper-Pearson interval. Standardizing makes the probe
  blind to the overall scale of Z, as a BatchNorm before a linear evaluation head is: a collapse it
  detects is a loss of directions, not of scale.
* kNN: majority vote of the k nearest training rows in Euclidean distance on Z as is.
* Clustering: adjusted Rand index of k-means (k = number of classes) against the labels.
* Controls at matched rank r (C.4): the reference features (the subject's inputs when given)
  compressed to r dimensions by PCA (top-r principal directions of the training rows) and by a
  Gaussian random projection (seeded), each read out by the same probe. They calibrate how much
  accuracy r directions of the input support.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from multilens.seeding import SeedLike, as_generator
from multilens.stats import Interval, clopper_pearson


@dataclass(frozen=True)
class ProbeResult:
    accuracy: Interval  # Clopper-Pearson over held-out rows
    converged: bool
    n_iter: int


def _standardize(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = a.mean(axis=0)
    sd = a.std(axis=0)
    sd[sd <= 1e-12 * max(float(sd.max(initial=0.0)), 1e-300)] = 1.0
    return (a - mu) / sd, (b - mu) / sd


def linear_probe(z_tr, y_tr, z_te, y_te, *, c: float = 1.0, max_iter: int = 2000) -> ProbeResult:
    a, b = _standardize(np.asarray(z_tr, np.float64), np.asarray(z_te, np.float64))
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)  # reported through `converged`
        clf.fit(a, y_tr)
    n_iter = int(np.max(clf.n_iter_))
    k = int(np.sum(clf.predict(b) == np.asarray(y_te)))
    return ProbeResult(clopper_pearson(k, len(y_te)), n_iter < max_iter, n_iter)


def knn_accuracy(z_tr, y_tr, z_te, y_te, *, k: int = 5) -> Interval:
    clf = KNeighborsClassifier(n_neighbors=min(k, len(y_tr)))
    clf.fit(np.asarray(z_tr, np.float64), y_tr)
    hits = int(np.sum(clf.predict(np.asarray(z_te, np.float64)) == np.asarray(y_te)))
    return clopper_pearson(hits, len(y_te))


def kmeans_ari(z, y, *, seed: int) -> float:
    """Adjusted Rand index between k-means clusters (k = number of labels, 4 restarts) and the labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    k = len(np.unique(y))
    km = KMeans(n_clusters=k, n_init=4, random_state=int(seed) % (2**31 - 1)).fit(np.asarray(z, np.float64))
    return float(adjusted_rand_score(np.asarray(y), km.labels_))


def pca_project(x_tr, x_te, r: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x_tr, np.float64)
    mu = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    v = vt[:r].T
    return (a - mu) @ v, (np.asarray(x_te, np.float64) - mu) @ v


def random_project(x_tr, x_te, r: int, *, seed: SeedLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x_tr, np.float64)
    p = as_generator(seed).standard_normal((a.shape[1], r)) / np.sqrt(r)
    return a @ p, np.asarray(x_te, np.float64) @ p


def top_direction_projection(z_tr, z_te) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 collapse made exact: both splits projected on the top principal direction of z_tr."""
    return pca_project(z_tr, z_te, 1)
