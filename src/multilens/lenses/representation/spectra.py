"""Spectral geometry of a representation matrix Z (n examples x d dimensions), pure NumPy.

Covariance spectrum. ``covariance_eigenvalues(Z)`` are the eigenvalues of the centred sample
covariance ``(Z - mean)^T (Z - mean) / (n - 1)``, from the singular values of the centred matrix
(squared, divided by n - 1), in descending order. Every summary below is scale invariant:

* participation ratio ``PR = (sum l)^2 / sum l^2`` (1 for one direction, d for isotropic);
* stable rank ``sum l / max l`` = ``||Zc||_F^2 / ||Zc||_2^2``;
* top-k explained variance ``sum_{j<=k} l_j / sum l``; tail mass: the share of the total variance
  in the bottom half of the eigenvalues (the bottom ``floor(m/2)`` of ``m = min(n - 1, d)``);
* numerical rank: eigenvalues above ``max(n, d) * machine_eps * max l`` (NumPy's ``matrix_rank``
  rule, applied to the squared singular values' scale); condition number over those nonzero
  eigenvalues ``l_max / l_min_nonzero``; rank deficit ``min(n - 1, d) - PR`` (nominal minus
  effective dimension).

RankMe (Garrido, Balestriero, Najman & LeCun, "RankMe: Assessing the downstream performance of
pretrained self-supervised representations by their rank", ICML 2023): with the singular values
``sigma_k`` of the embedding matrix Z itself (NOT centred in the paper),
``p_k = sigma_k / ||sigma||_1 + eps`` and ``RankMe = exp(-sum_k p_k log p_k)``. The paper leaves
eps as a small constant for numerical stability; we compute in float64 and use ``eps = 1e-12`` so
that an exact rank-1 input gives RankMe = 1 within ``(d - 1) eps |log eps| + O(eps)`` (< 1e-6 for
d up to 10^4). ``rankme(Z, centred=True)`` is the variant on the centred matrix, offered by name
and reported as ``rankme_centred``; it is never substituted silently.

Marchenko-Pastur null. For isotropic Gaussian Z with n rows and d columns (ratio gamma = d/n), the
sample covariance eigenvalues spread over [s2 (1 - sqrt(gamma))^2, s2 (1 + sqrt(gamma))^2]
(Marchenko & Pastur 1967) although the population spectrum is flat. ``mp_null`` draws Z of the
same (n, d) with the same total variance and returns the metric's null distribution, so a
finite-sample spread is not read as structure; ``mp_edge`` gives the upper edge and the number of
eigenvalues above it (spikes: directions with more variance than noise alone produces).

Principal angles (Bjorck & Golub 1973): for orthonormal bases Qa, Qb, the cosines of the angles
are the singular values of ``Qa^T Qb``. The subspace overlap ``mean cos^2`` is 1 for identical
and 0 for orthogonal subspaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from multilens.errors import ConfigError
from multilens.seeding import SeedLike, as_generator

RANKME_EPS = 1e-12


def _as_matrix(z: object, name: str = "Z") -> np.ndarray:
    a = np.asarray(z, dtype=np.float64)
    if a.ndim != 2:
        raise ConfigError(f"`{name}` must be a 2-D array (n examples x d dimensions); got shape {a.shape}.")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ConfigError(f"`{name}` must have at least 2 rows and 1 column; got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"`{name}` contains non-finite values; remove or impute them first.")
    return a


def covariance_eigenvalues(z: object) -> np.ndarray:
    """Eigenvalues of the centred sample covariance, descending, length min(n, d), clipped at 0."""
    a = _as_matrix(z)
    zc = a - a.mean(axis=0, keepdims=True)
    s = np.linalg.svd(zc, compute_uv=False)
    return np.maximum(s**2 / (a.shape[0] - 1), 0.0)


def numerical_rank(ev: np.ndarray, n: int, d: int) -> int:
    ev = np.asarray(ev, dtype=np.float64)
    if ev.size == 0 or ev[0] <= 0:
        return 0
    tol = max(n, d) * np.finfo(np.float64).eps * ev[0]
    return int(np.sum(ev > tol))


def participation_ratio(ev: np.ndarray) -> float:
    ev = np.asarray(ev, dtype=np.float64)
    s2 = float(np.sum(ev**2))
    return float(np.sum(ev) ** 2 / s2) if s2 > 0 else float("nan")


def stable_rank(ev: np.ndarray) -> float:
    ev = np.asarray(ev, dtype=np.float64)
    return float(np.sum(ev) / ev.max()) if ev.size and ev.max() > 0 else float("nan")


def explained_variance(ev: np.ndarray, k: int) -> float:
    ev = np.asarray(ev, dtype=np.float64)
    t = float(ev.sum())
    return float(ev[:k].sum() / t) if t > 0 else float("nan")


def tail_mass(ev: np.ndarray, nominal: int) -> float:
    """Share of the variance in the bottom floor(nominal/2) eigenvalues of the first ``nominal``."""
    ev = np.asarray(ev, dtype=np.float64)[:nominal]
    t = float(ev.sum())
    m = nominal // 2
    return float(ev[nominal - m :].sum() / t) if t > 0 and m > 0 else float("nan")


def condition_number(ev: np.ndarray, n: int, d: int) -> float:
    r = numerical_rank(ev, n, d)
    return float(ev[0] / ev[r - 1]) if r >= 1 else float("nan")


def rankme_from_singular_values(s: np.ndarray, eps: float = RANKME_EPS) -> float:
    s = np.asarray(s, dtype=np.float64)
    tot = float(np.sum(np.abs(s)))
    if tot <= 0:
        return float("nan")
    p = np.abs(s) / tot + eps
    return float(math.exp(-np.sum(p * np.log(p))))


def rankme_value(z: object, *, eps: float = RANKME_EPS, centred: bool = False) -> float:
    """RankMe of Garrido et al. (2023) on Z (``centred=False``, the paper) or on Z - mean."""
    a = _as_matrix(z)
    if centred:
        a = a - a.mean(axis=0, keepdims=True)
    return rankme_from_singular_values(np.linalg.svd(a, compute_uv=False), eps)


@dataclass(frozen=True)
class SpectrumSummary:
    """Every summary of one covariance spectrum (point values; intervals are added by callers)."""

    eigenvalues: np.ndarray
    n: int
    d: int
    participation_ratio: float
    stable_rank: float
    rankme: float
    rankme_centred: float
    top_k: int
    top_k_explained: float
    tail_mass: float
    numerical_rank: int
    condition_number: float
    rank_deficit: float

    @property
    def nominal(self) -> int:
        return min(self.n - 1, self.d)


def summarize(z: object, *, top_k: int = 5, eps: float = RANKME_EPS) -> SpectrumSummary:
    a = _as_matrix(z)
    n, d = a.shape
    ev = covariance_eigenvalues(a)
    nominal = min(n - 1, d)
    pr = participation_ratio(ev)
    return SpectrumSummary(
        eigenvalues=ev,
        n=n,
        d=d,
        participation_ratio=pr,
        stable_rank=stable_rank(ev),
        rankme=rankme_value(a, eps=eps),
        rankme_centred=rankme_value(a, eps=eps, centred=True),
        top_k=int(top_k),
        top_k_explained=explained_variance(ev, top_k),
        tail_mass=tail_mass(ev, nominal),
        numerical_rank=numerical_rank(ev, n, d),
        condition_number=condition_number(ev, n, d),
        rank_deficit=float(nominal - pr) if math.isfinite(pr) else float("nan"),
    )


METRICS = ("participation_ratio", "stable_rank", "rankme", "rankme_centred", "top_k_explained", "tail_mass",
           "condition_number", "rank_deficit")  # fmt: skip


def metric_fn(name: str, *, top_k: int = 5, eps: float = RANKME_EPS):
    """A statistic Z -> float for one of :data:`METRICS` (used by the bootstrap and the MP null)."""
    if name not in METRICS:
        raise ConfigError(f"`metric` must be one of {', '.join(METRICS)}; got {name!r}.")
    if name == "rankme":
        return lambda z: rankme_value(z, eps=eps)
    if name == "rankme_centred":
        return lambda z: rankme_value(z, eps=eps, centred=True)
    return lambda z: float(getattr(summarize(z, top_k=top_k, eps=eps), name))


def mp_edge(n: int, d: int, total_variance: float) -> float:
    """Upper Marchenko-Pastur edge s2 (1 + sqrt(d/n))^2 for noise of per-dimension variance s2."""
    s2 = total_variance / d
    return float(s2 * (1.0 + math.sqrt(d / n)) ** 2)


def n_spikes_above_mp_edge(ev: np.ndarray, n: int, d: int) -> int:
    """Eigenvalues above the MP edge of isotropic noise with the same total variance.

    The noise level is taken as the mean eigenvalue (trace / d): conservative, since spikes inflate
    it, so the count errs towards fewer spikes.
    """
    ev = np.asarray(ev, dtype=np.float64)
    return int(np.sum(ev > mp_edge(n, d, float(ev.sum()))))


def mp_null(n: int, d: int, statistic, *, n_draws: int, seed: SeedLike) -> np.ndarray:
    """``statistic`` on ``n_draws`` isotropic Gaussian matrices of shape (n, d)."""
    rng = as_generator(seed)
    return np.array([statistic(rng.standard_normal((n, d))) for _ in range(n_draws)])


def expected_isotropic_pr(n: int, d: int) -> float:
    """Ratio-of-expectations approximation of PR for isotropic Gaussian Z (n rows, d columns).

    With W = Zc^T Zc ~ Wishart_d(n - 1, s2 I): E tr W = (n - 1) d s2 and
    E tr W^2 = (n - 1) d (n - 1 + d + 1) s2^2, so (E tr W)^2 / E tr W^2 = (n - 1) d / (n + d).
    """
    m = n - 1
    return float(m * d / (m + d + 1))


def orthonormal_basis(z: object, k: int, *, centred: bool = True) -> np.ndarray:
    """d x k orthonormal basis of the top-k principal directions of Z's rows."""
    a = _as_matrix(z)
    if centred:
        a = a - a.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    k = min(k, vt.shape[0])
    return vt[:k].T


def principal_angle_cosines(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between span(qa) and span(qb) (orthonormal columns), descending."""
    qa = np.asarray(qa, dtype=np.float64)
    qb = np.asarray(qb, dtype=np.float64)
    if qa.shape[0] != qb.shape[0]:
        raise ConfigError(f"bases must live in the same space; got {qa.shape[0]} and {qb.shape[0]} rows.")
    c = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.clip(c, 0.0, 1.0)


def orthonormalize(b: object) -> np.ndarray:
    a = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    q, r = np.linalg.qr(a)
    keep = np.abs(np.diag(r)) > max(a.shape) * np.finfo(np.float64).eps * max(np.abs(np.diag(r)).max(), 1e-300)
    return q[:, keep]


def subspace_overlap(za: object, zb: object, k: int) -> float:
    """mean cos^2 of the principal angles between the top-k principal subspaces of two matrices."""
    c = principal_angle_cosines(orthonormal_basis(za, k), orthonormal_basis(zb, k))
    return float(np.mean(c**2))


def bootstrap_rows(stat, z: np.ndarray, name, *, n_boot: int, seed: SeedLike, level: float = 0.95):
    """Basic (reverse-percentile) bootstrap over rows of Z: [2 t - q_hi, 2 t - q_lo].

    Resampling rows with replacement duplicates about 37% of them, which shrinks every spectral
    effective-dimension statistic (a duplicated row adds no new direction): the percentile
    interval of such a statistic sits below the point estimate. The basic bootstrap reflects the
    resampling distribution around the point estimate, which removes that first-order shift
    (Davison & Hinkley 1997, sec. 5.2), so the interval is for the population value. Positive
    statistics are reflected on the log scale ([t^2 / q_hi, t^2 / q_lo]) so the interval stays positive.

    ``stat`` may return a vector; then ``name`` is a sequence of names and a list of estimates is
    returned (one resampling loop for all of them).
    """
    from multilens.results import Estimate

    a = np.asarray(z, dtype=np.float64)
    n = a.shape[0]
    names = [name] if isinstance(name, str) else list(name)
    t = np.atleast_1d(np.asarray(stat(a), dtype=np.float64))
    rng = as_generator(seed)
    reps = np.array([np.atleast_1d(stat(a[rng.integers(0, n, n)])) for _ in range(n_boot)], dtype=np.float64)
    out = []
    for j, nm in enumerate(names):
        r = reps[:, j]
        fin = r[np.isfinite(r)]
        dropped = int(r.size - fin.size)
        tj = float(t[j])
        method = f"basic bootstrap over {n} rows, {fin.size} resamples"
        if fin.size < 2 or not math.isfinite(tj):
            out.append(Estimate(nm, tj if math.isfinite(tj) else None, method=method, n=n, n_dropped=dropped,
                                no_interval_reason="bootstrap replicates not finite",
                                note="" if math.isfinite(tj) else "statistic undefined (zero variance)"))  # fmt: skip
            continue
        qlo, qhi = np.quantile(fin, [(1 - level) / 2, (1 + level) / 2])
        if tj > 0 and qlo > 0:  # positive statistic: basic bootstrap of log t, so the interval stays positive
            lo, hi = tj * tj / float(qhi), tj * tj / float(qlo)
            method += " (on the log scale)"
        else:
            lo, hi = 2 * tj - float(qhi), 2 * tj - float(qlo)
        note = f"{dropped} non-finite replicate(s) dropped" if dropped else ""
        out.append(Estimate(nm, tj, lo, hi, float(fin.std(ddof=1)), level, method, n, note=note, n_dropped=dropped))
    return out[0] if isinstance(name, str) else out


def summary_vector(z: object, *, top_k: int = 5, eps: float = RANKME_EPS) -> np.ndarray:
    """All of :data:`METRICS` for Z, in that order (one computation, for bootstraps and nulls)."""
    s = summarize(z, top_k=top_k, eps=eps)
    return np.array([float(getattr(s, m)) for m in METRICS])
