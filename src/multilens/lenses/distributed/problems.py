"""The problems the distributed lens trains: a strongly convex quadratic, non-IID least squares, digits.

* :func:`make_quadratic`: F(theta) = 1/2 (theta - theta*)^T H (theta - theta*) with H = Q diag(lam) Q^T,
  lam evenly spaced in [mu, L] = [1/kappa, 1], so mu, L and theta* are known exactly (the
  hypotheses of the distributed-SGD theorem, seed chapter line 172).
* :func:`make_least_squares_shards`: rows of a misspecified linear regression split into m equal
  shards by :func:`heterogeneous_partition`. The global objective (mean of the shard objectives)
  is the same for every heterogeneity level; only who holds which rows changes, so local-SGD
  drift can be compared across levels at a fixed optimum.
* :func:`heterogeneous_partition`: the heterogeneity knob h in [0, 1]. Each row gets the key
  h * rank(score)/n + (1 - h) * u with u ~ U(0, 1); rows sorted by key are cut into m equal
  contiguous shards. h = 0 is an IID split, h = 1 sorts by score (labels for digits: the usual
  label-skew non-IID split).

Everything is a pure function of its arguments and a seed, so every worker process rebuilds the
same problem without it being shipped over the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilens.errors import ConfigError
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int


@dataclass(frozen=True)
class Quadratic:
    """F(theta) = 1/2 (theta - theta_star)^T H (theta - theta_star); eigenpairs of H are known."""

    hessian: np.ndarray  # (d, d) symmetric positive definite
    eigvals: np.ndarray  # (d,) ascending
    eigvecs: np.ndarray  # (d, d) columns are eigenvectors
    theta_star: np.ndarray  # (d,)
    theta0: np.ndarray  # (d,) common starting point of every replica

    @property
    def dim(self) -> int:
        return int(self.eigvals.shape[0])

    @property
    def mu(self) -> float:
        return float(self.eigvals[0])

    @property
    def lipschitz(self) -> float:
        return float(self.eigvals[-1])


def random_orthogonal(d: int, seed: SeedLike) -> np.ndarray:
    """A Haar-random d x d orthogonal matrix (QR of a Gaussian with the sign fix of Mezzadri 2007)."""
    g = as_generator(seed)
    q, r = np.linalg.qr(g.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def make_quadratic(dim: int, kappa: float, init_dist: float, seed: SeedLike) -> Quadratic:
    """A rotated quadratic with spectrum linspace(1/kappa, 1, dim) and ||theta0 - theta*|| = init_dist."""
    check_int("dim", dim, 2)
    if not kappa >= 1.0:
        raise ConfigError(f"`kappa` must be a number >= 1; got {kappa}.")
    g = as_generator(seed)
    lam = np.linspace(1.0 / kappa, 1.0, dim)
    q = random_orthogonal(dim, g)
    h = (q * lam[None, :]) @ q.T
    h = 0.5 * (h + h.T)  # exact symmetry despite rounding
    theta_star = g.standard_normal(dim)
    u = g.standard_normal(dim)
    theta0 = theta_star + init_dist * u / np.linalg.norm(u)
    return Quadratic(h, lam, q, theta_star, theta0)


def diagonal_quadratic(eigvals: np.ndarray, init_dist: float, seed: SeedLike) -> Quadratic:
    """An axis-aligned quadratic with the given spectrum, theta* = 0 and a random start of norm init_dist."""
    lam = np.sort(np.asarray(eigvals, dtype=np.float64))
    if lam.ndim != 1 or lam.size < 1 or not np.all(lam > 0):
        raise ConfigError("`eigvals` must be a non-empty 1-D array of positive numbers.")
    g = as_generator(seed)
    u = g.standard_normal(lam.size)
    return Quadratic(np.diag(lam), lam, np.eye(lam.size), np.zeros(lam.size), init_dist * u / np.linalg.norm(u))


def heterogeneous_partition(scores: np.ndarray, m: int, h: float, seed: SeedLike) -> list[np.ndarray]:
    """Split row indices into m equal shards; h in [0, 1] moves from IID (0) to sorted by score (1).

    ``n mod m`` rows, chosen at random, are left out so every shard has exactly n // m rows (equal
    shards make the mean of the shard objectives equal the objective on the kept rows).
    """
    check_int("m", m, 1)
    if not 0.0 <= h <= 1.0:
        raise ConfigError(f"`h` must be a number in [0, 1]; got {h}.")
    s = np.asarray(scores, dtype=np.float64)
    n = int(s.shape[0])
    if n < m:
        raise ConfigError(f"`scores` must have at least m = {m} rows; got {n}.")
    g = as_generator(seed)
    tie = g.random(n)  # random tie-breaking (digits labels have many ties)
    rank = np.lexsort((tie, s)).argsort() / n  # rank(score)/n in [0, 1)
    key = h * rank + (1.0 - h) * g.random(n)
    per = n // m
    keep = np.sort(g.permutation(n)[: per * m])
    order = keep[np.argsort(key[keep], kind="stable")]
    return [np.sort(order[r * per : (r + 1) * per]) for r in range(m)]


@dataclass(frozen=True)
class LeastSquaresShards:
    """Per-worker quadratics F_r(theta) = 1/(2 n_r) ||X_r theta - y_r||^2 for each heterogeneity level.

    ``hessians[h_index][r]`` = X_r^T X_r / n_r and ``linear[h_index][r]`` = X_r^T y_r / n_r, so
    grad F_r(theta) = H_r theta - b_r. The global H and b (means over shards) do not depend on
    the level, and theta* = H^{-1} b.
    """

    levels: tuple[float, ...]
    hessians: tuple[tuple[np.ndarray, ...], ...]
    linear: tuple[tuple[np.ndarray, ...], ...]
    theta_star: np.ndarray
    global_hessian: np.ndarray

    @property
    def max_local_curvature(self) -> float:
        return float(max(np.linalg.eigvalsh(hr)[-1] for hs in self.hessians for hr in hs))


def make_least_squares_shards(
    dim: int, m: int, rows_per_worker: int, levels: tuple[float, ...], seed: SeedLike
) -> LeastSquaresShards:
    """Misspecified regression y = x^T w + 0.5 x_0^2 + noise with x_0 ~ N(1, 1), sharded by x_0.

    Drift needs both different shard optima and different shard Hessians (with one common
    optimum, theta* is a fixed point of every local map). The quadratic term makes the best
    linear fit differ between low-x_0 and high-x_0 shards, and the mean shift of x_0 makes their
    second moments differ (a split of a centred Gaussian at its median would give two shards
    with the same E[x_0^2]).
    """
    g = as_generator(seed)
    n = m * rows_per_worker
    scale = np.linspace(1.0, 0.3, dim)  # anisotropic features: a spread spectrum
    x = g.standard_normal((n, dim)) * scale[None, :]
    x[:, 0] += 1.0
    w = g.standard_normal(dim) / np.sqrt(dim)
    y = x @ w + 0.5 * x[:, 0] ** 2 + 0.1 * g.standard_normal(n)
    hs_all, bs_all = [], []
    h_glob = b_glob = None
    for i, lev in enumerate(levels):
        parts = heterogeneous_partition(x[:, 0], m, float(lev), g.integers(0, 2**31 - 1) + i)
        hs = tuple(x[p].T @ x[p] / p.size for p in parts)
        bs = tuple(x[p].T @ y[p] / p.size for p in parts)
        hs_all.append(hs)
        bs_all.append(bs)
        if h_glob is None:
            h_glob = sum(hs) / m
            b_glob = sum(bs) / m
    assert h_glob is not None and b_glob is not None
    # Every level partitions the same kept rows only when n is a multiple of m (it is: n = m * rows).
    theta_star = np.linalg.solve(h_glob, b_glob)
    return LeastSquaresShards(tuple(float(v) for v in levels), tuple(hs_all), tuple(bs_all), theta_star, h_glob)


def global_batch_indices(n: int, batch: int, steps: int, seed: SeedLike) -> np.ndarray:
    """(steps, batch) indices: each step draws ``batch`` distinct rows (the same on every rank)."""
    g = as_generator(seed)
    return np.stack([g.permutation(n)[:batch] for _ in range(steps)])  # (steps, batch)
