"""Representation geometry on arrays, for users: spectra, RankMe, effective rank, principal angles.

Each function takes a representation matrix Z (n examples x d dimensions, any array-like) and
returns estimates with a basic-bootstrap interval over examples (rows), seeded. The
definitions (centring, RankMe's epsilon, the Marchenko-Pastur null) are documented in
:mod:`multilens.lenses.representation.spectra`; the representation lens
(``multilens lens representation``) applies them to trained models, per class, per domain and
over checkpoints.

>>> import numpy as np
>>> from multilens.representation import rankme
>>> z = np.outer(np.arange(1.0, 101.0), np.ones(8))  # an exactly rank-1 embedding
>>> round(rankme(z, n_boot=50).value, 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilens.lenses.representation.spectra import (
    METRICS,
    RANKME_EPS,
    SpectrumSummary,
    _as_matrix,
    bootstrap_rows,
    covariance_eigenvalues,
    metric_fn,
    mp_edge,
    mp_null,
    orthonormal_basis,
    orthonormalize,
    principal_angle_cosines,
    rankme_value,
    summarize,
    summary_vector,
)
from multilens.results import Estimate
from multilens.seeding import SeedLike, as_generator
from multilens.stats import DETERMINISTIC
from multilens.validation import check_choice, check_int, check_open_unit

__all__ = ["Spectrum", "PrincipalAngles", "spectrum", "rankme", "effective_rank", "principal_angles"]


def _boot(stat, z: np.ndarray, name: str, *, n_boot: int, seed: SeedLike, level: float) -> Estimate:
    check_int("n_boot", n_boot, 2)
    check_open_unit("level", level)
    return bootstrap_rows(stat, z, name, n_boot=n_boot, seed=seed, level=level)


@dataclass(frozen=True)
class Spectrum:
    """The centred covariance spectrum of Z with every summary as an estimate.

    ``estimates`` maps each name of :data:`~multilens.lenses.representation.spectra.METRICS` to an
    :class:`~multilens.results.Estimate` (bootstrap over rows); ``null`` maps the same names to the
    (2.5%, 50%, 97.5%) quantiles of the metric under isotropic Gaussian Z of the same shape
    (Marchenko-Pastur null); ``n_spikes`` counts eigenvalues above ``mp_edge``: the larger of the
    asymptotic MP edge and the 99% quantile of the null's largest eigenvalue (finite-n spread).
    """

    summary: SpectrumSummary
    estimates: dict[str, Estimate]
    null: dict[str, tuple[float, float, float]]
    mp_edge: float
    n_spikes: int

    @property
    def eigenvalues(self) -> np.ndarray:
        return self.summary.eigenvalues


def spectrum(
    z: object,
    *,
    top_k: int = 5,
    n_boot: int = 200,
    n_null: int = 50,
    level: float = 0.95,
    seed: SeedLike = 0,
    metrics: tuple[str, ...] = METRICS,
) -> Spectrum:
    """Centred covariance spectrum of Z with bootstrap intervals and a Marchenko-Pastur null."""
    a = _as_matrix(z)
    check_int("top_k", top_k, 1)
    check_int("n_null", n_null, 2)
    check_int("n_boot", n_boot, 2)
    check_open_unit("level", level)
    for m in metrics:
        check_choice("metrics", m, METRICS)
    rng = as_generator(seed)
    s = summarize(a, top_k=top_k)
    n, d = a.shape
    stat = lambda x: summary_vector(x, top_k=top_k)  # noqa: E731
    ests = bootstrap_rows(stat, a, METRICS, n_boot=n_boot, seed=rng, level=level)
    draws = mp_null(n, d, stat, n_draws=n_null, seed=rng)
    est, nulls = {}, {}
    for j, m in enumerate(METRICS):
        if m not in metrics:
            continue
        est[m] = ests[j]
        col = draws[:, j][np.isfinite(draws[:, j])]
        nulls[m] = tuple(float(q) for q in np.quantile(col, [0.025, 0.5, 0.975])) if col.size else (np.nan,) * 3
    # Spikes: eigenvalues above the 99% quantile of the null's largest eigenvalue (isotropic noise with
    # the same total variance), which adds the finite-n Tracy-Widom spread to the asymptotic MP edge.
    tot = float(s.eigenvalues.sum())
    top = mp_null(n, d, lambda x: covariance_eigenvalues(x)[0], n_draws=n_null, seed=rng)
    edge = max(mp_edge(n, d, tot), float(np.quantile(top, 0.99)) * tot / d)
    return Spectrum(s, est, nulls, edge, int(np.sum(s.eigenvalues > edge)))


def rankme(
    z: object,
    *,
    eps: float = RANKME_EPS,
    centred: bool = False,
    n_boot: int = 200,
    level: float = 0.95,
    seed: SeedLike = 0,
) -> Estimate:
    """RankMe (Garrido et al. 2023) of Z: uncentred by default, as in the paper; ``centred=True`` by name."""
    a = _as_matrix(z)
    name = "rankme_centred" if centred else "rankme"
    return _boot(lambda x: rankme_value(x, eps=eps, centred=centred), a, name, n_boot=n_boot, seed=seed, level=level)


def effective_rank(
    z: object,
    *,
    measure: str = "participation_ratio",
    n_boot: int = 200,
    level: float = 0.95,
    seed: SeedLike = 0,
) -> Estimate:
    """Effective dimension of Z's centred covariance: participation ratio (default), stable rank or RankMe."""
    check_choice("measure", measure, ("participation_ratio", "stable_rank", "rankme", "rankme_centred"))
    a = _as_matrix(z)
    return _boot(metric_fn(measure), a, measure, n_boot=n_boot, seed=seed, level=level)


@dataclass(frozen=True)
class PrincipalAngles:
    """Principal angles (degrees, ascending) and the subspace overlap mean cos^2 as an estimate."""

    angles_deg: np.ndarray
    overlap: Estimate


def principal_angles(
    a: object,
    b: object,
    *,
    k: int | None = None,
    bases: bool = False,
    n_boot: int = 200,
    level: float = 0.95,
    seed: SeedLike = 0,
) -> PrincipalAngles:
    """Principal angles between two subspaces of R^d.

    With ``bases=True``, ``a`` and ``b`` are d x k matrices whose columns span the subspaces (exact;
    no sampling). Otherwise they are data matrices (n_a x d, n_b x d) and each subspace is the span
    of its top-``k`` principal directions; the overlap's interval resamples rows of both.
    """
    if bases:
        qa, qb = orthonormalize(a), orthonormalize(b)
        c = principal_angle_cosines(qa, qb)
        ov = Estimate("subspace_overlap", float(np.mean(c**2)) if c.size else float("nan"),
                      method="exact (SVD of Qa^T Qb)", n=int(c.size), no_interval_reason=DETERMINISTIC)  # fmt: skip
        return PrincipalAngles(np.degrees(np.arccos(c)), ov)
    za, zb = _as_matrix(a, "A"), _as_matrix(b, "B")
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"`A` and `B` must have the same number of columns; got {za.shape[1]} and {zb.shape[1]}.")
    kk = check_int("k", k, 1) if k is not None else min(za.shape[0] - 1, zb.shape[0] - 1, za.shape[1])
    c = principal_angle_cosines(orthonormal_basis(za, kk), orthonormal_basis(zb, kk))
    rng = as_generator(seed)
    reps = []
    check_int("n_boot", n_boot, 2)
    for _ in range(n_boot):
        ia = rng.integers(0, za.shape[0], za.shape[0])
        ib = rng.integers(0, zb.shape[0], zb.shape[0])
        cc = principal_angle_cosines(orthonormal_basis(za[ia], kk), orthonormal_basis(zb[ib], kk))
        reps.append(float(np.mean(cc**2)))
    reps_a = np.asarray(reps)
    lo, hi = np.quantile(reps_a, [(1 - level) / 2, (1 + level) / 2])
    method = f"percentile bootstrap over rows of A and B, {n_boot} resamples"
    n_rows = int(za.shape[0] + zb.shape[0])
    ov = Estimate("subspace_overlap", float(np.mean(c**2)), float(lo), float(hi), float(reps_a.std(ddof=1)), level,
                  method, n_rows)  # fmt: skip
    return PrincipalAngles(np.degrees(np.arccos(c)), ov)
