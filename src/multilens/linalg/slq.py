"""Stochastic Lanczos quadrature (SLQ) for the spectral density of a symmetric operator.

Follows Lin, Saad & Yang, "Approximating spectral densities of large matrices" (SIAM Review
2016, section 3.2) and Ghorbani, Krishnan & Xiao (ICML 2019): for each of ``n_vectors``
normalized Rademacher start vectors ``v``, ``n_iter`` Lanczos steps give Gauss quadrature nodes
``theta_j`` (Ritz values) and weights ``tau_j = (e_1^T s_j)^2`` for the spectral measure
``mu_v = sum_i (v^T q_i)^2 delta(lambda_i)``, whose expectation is the eigenvalue
density ``(1/dim) sum_i delta(lambda_i)``. The smooth density is the quadrature measure convolved
with a Gaussian of standard deviation ``sigma`` (the smoothing width, always reported): a
density is only defined up to that width.

The extreme Ritz values converge to the extreme eigenvalues first; their Lanczos residual
bounds ``|beta_m * s_{m,j}|`` are reported so a reader can see whether the plotted support is
the true support. ``dim * sum_j tau_j theta_j`` is Hutchinson's estimate of the trace for that
vector, so SLQ also gives a trace estimate with a standard error across vectors.

The ``n_vectors`` recurrences are the one Lanczos recurrence of :mod:`multilens.linalg.krylov`,
advanced ``block_size`` at a time so each step is one block product (on the model side, one
vectorized pass of Hessian-vector products). SLQ is a fixed budget (``n_vectors`` x ``n_iter``
products): ``converged`` is None; whether the extreme Ritz values converged is reported apart
(``extremes_converged``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import eigh

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.linalg.krylov import LanczosProcess
from multilens.linalg.operator import CountingMatvec, Matmat, check_dim, check_tol, rademacher
from multilens.seeding import SeedLike, as_generator

_BLOCK_MEMORY = 256 * 2**20  # bytes of Lanczos bases the default block may hold


@dataclass(frozen=True)
class DensityResult:
    """A smoothed spectral density on a grid, its quadrature nodes and the evidence behind it.

    ``density`` integrates to about 1 over ``grid`` (the Gaussian tails beyond the grid are
    cut). ``nodes``/``weights`` have one row per start vector. ``lambda_min``/``lambda_max``
    are the extreme Ritz values over all vectors with residual bounds ``residual_min/max``;
    ``extremes_converged`` says both bounds are within ``tol`` relative.
    """

    grid: np.ndarray
    density: np.ndarray
    sigma: float
    nodes: np.ndarray  # (n_vectors, n_iter)
    weights: np.ndarray  # (n_vectors, n_iter)
    lambda_min: float
    lambda_max: float
    residual_min: float
    residual_max: float
    extremes_converged: bool
    trace_estimate: float
    trace_stderr: float
    n_vectors: int
    n_iter: int
    n_matvec: int
    dim: int
    tol: float
    note: str = ""
    schema_version: int = 1

    n_blocks: int = 0

    @property
    def converged(self) -> None:
        """None: SLQ spends a fixed budget (see ``extremes_converged`` for the support's convergence)."""
        return None

    def mass_below(self, t: float) -> tuple[float, float]:
        """Fraction of the spectrum below ``t`` (quadrature, unsmoothed) and its stderr across vectors."""
        per = np.array([float(w[n < t].sum()) for n, w in zip(self.nodes, self.weights)])
        se = float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else math.inf
        return float(per.mean()), se

    def to_dict(self, max_points: int = 200) -> dict[str, Any]:
        step = max(1, int(math.ceil(self.grid.size / max_points)))
        neg, neg_se = self.mass_below(0.0)

        def f(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "schema_version": self.schema_version,
            "method": "stochastic Lanczos quadrature, Gaussian smoothing",
            "sigma": f(self.sigma),
            "grid": [float(x) for x in self.grid[::step]],
            "density": [float(x) for x in self.density[::step]],
            "lambda_min": f(self.lambda_min),
            "lambda_max": f(self.lambda_max),
            "residual_min": f(self.residual_min),
            "residual_max": f(self.residual_max),
            "extremes_converged": bool(self.extremes_converged),
            "converged": None,
            "budget": "fixed budget: n_vectors x n_iter products",
            "negative_mass": f(neg),
            "negative_mass_stderr": f(neg_se),
            "trace_estimate": f(self.trace_estimate),
            "trace_stderr": f(self.trace_stderr),
            "n_vectors": self.n_vectors,
            "n_iter": self.n_iter,
            "n_matvec": self.n_matvec,
            "note": self.note,
        }


def gaussian_density(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Average over rows of sum_j w_j N(grid; node_j, sigma^2)."""
    z = (grid[None, None, :] - nodes[:, :, None]) / sigma  # (n_vectors, n_nodes, n_grid)
    kern = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2.0 * math.pi))
    return np.einsum("vj,vjg->g", weights, kern) / nodes.shape[0]


def slq_density(
    matvec: Any,
    dim: int,
    *,
    n_vectors: int = 4,
    n_iter: int = 80,
    sigma: float | None = None,
    sigma_rel: float = 0.01,
    n_grid: int = 400,
    tol: float = 1e-6,
    seed: SeedLike = 0,
    block_size: int | None = None,
    matmat: Matmat | None = None,
) -> DensityResult:
    """Spectral density of ``matvec`` by SLQ with ``n_vectors`` runs of ``n_iter`` Lanczos steps.

    ``sigma`` (absolute) or ``sigma_rel`` (a fraction of the measured spectral range
    ``lambda_max - lambda_min``) sets the Gaussian smoothing width. The grid spans
    ``[lambda_min - 4 sigma, lambda_max + 4 sigma]``. ``block_size`` recurrences advance together
    with one block product per step; their bases take ``block_size * n_iter * dim`` float64
    numbers (default: as many as fit in 256 MB, at least 1, at most ``min(n_vectors, 16)``).
    ``matmat`` is the block product (default ``matvec.matmat`` when it exists, else column by
    column).
    """
    dim = check_dim(dim)
    for name, value, lo in (("n_vectors", n_vectors, 2), ("n_iter", n_iter, 2), ("n_grid", n_grid, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < lo:
            raise ConfigError(f"`{name}` must be an int >= {lo}; got {value!r}.")
    tol = check_tol("tol", tol)
    sigma_rel = check_tol("sigma_rel", sigma_rel)
    if sigma is not None:
        sigma = check_tol("sigma", sigma)
    m = min(int(n_iter), dim)
    if block_size is None:
        # As many recurrences at once as keep their bases within 256 MB (at least one, at most 16).
        block_size = max(1, min(int(n_vectors), 16, _BLOCK_MEMORY // (8 * (m + 1) * dim)))
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or int(block_size) < 1:
        raise ConfigError(f"`block_size` must be an int >= 1; got {block_size!r}.")
    rng = as_generator(seed)
    op = CountingMatvec(matvec, dim, matmat)
    nodes = np.zeros((n_vectors, m))
    weights = np.zeros((n_vectors, m))
    bounds = np.full((n_vectors, m), np.inf)
    traces = np.zeros(n_vectors)
    shortest = m
    starts = rademacher(rng, (n_vectors, dim)) / math.sqrt(dim)
    for b0 in range(0, n_vectors, int(block_size)):
        rows = range(b0, min(n_vectors, b0 + int(block_size)))
        proc = LanczosProcess(op, starts[b0 : rows.stop], m, rng, on_breakdown="stop")
        while proc.active.any():
            proc.step()
        for r, i in enumerate(rows):
            theta, s = eigh(proc.projected(r))
            j = theta.size
            shortest = min(shortest, j)
            # An invariant Krylov space gives fewer nodes, exactly: pad with zero-weight copies.
            nodes[i, :j], weights[i, :j] = theta, s[0, :] ** 2
            nodes[i, j:], weights[i, j:] = theta[-1], 0.0
            bounds[i, :j] = np.abs(proc.beta[r] * s[-1, :])
            traces[i] = dim * float(weights[i] @ nodes[i])
    n_mv = op.count
    hi_i = np.unravel_index(np.argmax(np.where(weights > 0, nodes, -np.inf)), nodes.shape)
    lo_i = np.unravel_index(np.argmin(np.where(weights > 0, nodes, np.inf)), nodes.shape)
    lam_max, lam_min = float(nodes[hi_i]), float(nodes[lo_i])
    r_max, r_min = float(bounds[hi_i]), float(bounds[lo_i])
    scale = max(abs(lam_max), abs(lam_min), np.finfo(np.float64).tiny)
    ok = (
        r_max <= tol * max(abs(lam_max), 1e-300) + 1e-12 * scale
        and r_min <= tol * max(abs(lam_min), 1e-300) + 1e-12 * scale
    )
    width = sigma if sigma is not None else sigma_rel * max(lam_max - lam_min, 1e-12 * scale)
    grid = np.linspace(lam_min - 4 * width, lam_max + 4 * width, int(n_grid))
    density = gaussian_density(grid, nodes, weights, width)
    notes = [f"Gaussian smoothing with sigma = {width:.4g}"]
    if shortest < m:
        notes.append("a Krylov space became invariant: its quadrature is exact with fewer nodes")
    if not ok:
        notes.append("the extreme Ritz values have not converged: the true support may be wider")
        warnings.warn(
            f"SLQ extremes not converged after {m} Lanczos steps (residual bounds {r_min:.2g}, {r_max:.2g}); "
            "raise `n_iter` for a trustworthy support.",
            ConvergenceWarning,
            stacklevel=2,
        )
    t_se = float(traces.std(ddof=1) / math.sqrt(n_vectors))
    return DensityResult(
        grid=grid,
        density=density,
        sigma=float(width),
        nodes=nodes,
        weights=weights,
        lambda_min=lam_min,
        lambda_max=lam_max,
        residual_min=r_min,
        residual_max=r_max,
        extremes_converged=bool(ok),
        trace_estimate=float(traces.mean()),
        trace_stderr=t_se,
        n_vectors=int(n_vectors),
        n_iter=m,
        n_matvec=n_mv,
        dim=dim,
        tol=tol,
        note="; ".join(notes),
        n_blocks=op.n_blocks,
    )
