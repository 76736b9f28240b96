"""Loss-landscape slices: 1-D and 2-D, filter-normalized directions, grids centred on the trained point.

Follows Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets"
(NeurIPS 2018), section 4: a random Gaussian direction ``d`` is *filter-normalized* by
rescaling, for every filter (a row of a linear layer's weight, an output channel of a
convolution), ``d_f <- d_f / ||d_f|| * ||theta_f||``; one-dimensional parameters (biases,
normalization scales) get a zero direction, as in the paper's released code
(``ignore='biasbn'``). Directions can also be the top Hessian eigenvectors (unit vectors in
parameter space, not filter-normalized: then the slice's curvature at 0 is the eigenvalue, the
check of worked example 7), or the top eigenvector plus a random direction orthogonalized to it.

The grid is ``r * (i - n//2) / (n//2)`` for odd ``n``: its centre is exactly 0, so the trained
point is a grid point and the plotted centre is the model itself, not an interpolation (the
loss-landscapes package's 2-D grid misses it). The train/eval mode the loss is evaluated in is
part of the result. The caller's model is never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import FlatModel
from multilens.seeding import SeedLike, as_generator
from multilens.validation import check_int, check_positive

Normalization = Literal["filter", "unit", "none"]


def centred_grid(radius: float, n: int) -> np.ndarray:
    """``n`` (odd) points from -radius to radius whose middle one is exactly 0.0."""
    radius = check_positive("radius", radius)
    n = check_int("n", n, 3)
    if n % 2 == 0:
        raise ConfigError(f"`n` must be odd so the trained point is on the grid; got {n}.")
    half = n // 2
    return radius * (np.arange(n) - half) / half


def filter_normalize(flat: FlatModel, direction: np.ndarray, bias_mode: str = "zero") -> np.ndarray:
    """Li et al.'s filter normalization of a flat ``direction`` against the model's parameters.

    ``bias_mode``: "zero" (1-D parameters get no perturbation, the paper's default) or "weight"
    (1-D parameters take the parameter itself as direction, the paper's other option).
    """
    if bias_mode not in ("zero", "weight"):
        raise ConfigError(f"`bias_mode` must be 'zero' or 'weight'; got {bias_mode!r}.")
    theta = flat.theta0_numpy()
    out = np.zeros_like(theta)
    for name, shape in zip(flat.names, flat.shapes):
        sl = flat.slices[name]
        if len(shape) <= 1:
            if bias_mode == "weight":
                out[sl] = theta[sl]
            continue
        d = direction[sl].reshape(shape[0], -1)  # (n_filters, fan_in)
        w = theta[sl].reshape(shape[0], -1)
        dn = np.linalg.norm(d, axis=1, keepdims=True)
        wn = np.linalg.norm(w, axis=1, keepdims=True)
        out[sl] = (d / np.where(dn > 0, dn, 1.0) * wn).reshape(-1)
    return out


def random_direction(flat: FlatModel, seed: SeedLike, normalization: Normalization) -> np.ndarray:
    """A Gaussian direction, filter-normalized (Li et al.), unit-norm, or raw."""
    d = as_generator(seed).standard_normal(flat.dim)
    if normalization == "filter":
        return filter_normalize(flat, d)
    if normalization == "unit":
        return d / np.linalg.norm(d)
    return d


@dataclass(frozen=True)
class Slice1D:
    alphas: np.ndarray
    losses: np.ndarray
    direction: str
    normalization: str
    mode: str
    center_loss: float  # the model's own loss: equals losses[n//2] exactly
    direction_norm: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": [float(a) for a in self.alphas],
            "losses": [_f(v) for v in self.losses],
            "direction": self.direction,
            "normalization": self.normalization,
            "mode": self.mode,
            "center_loss": _f(self.center_loss),
            "direction_norm": _f(self.direction_norm),
        }


@dataclass(frozen=True)
class Slice2D:
    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray  # (len(betas), len(alphas)): rows follow beta, columns alpha (plotly's z)
    directions: tuple[str, str]
    normalization: str
    mode: str
    center_loss: float
    cosine: float  # cosine between the two directions

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": [float(a) for a in self.alphas],
            "betas": [float(b) for b in self.betas],
            "losses": [[_f(v) for v in row] for row in self.losses],
            "directions": list(self.directions),
            "normalization": self.normalization,
            "mode": self.mode,
            "center_loss": _f(self.center_loss),
            "cosine_between_directions": _f(self.cosine),
        }


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def slice_1d(
    flat: FlatModel, direction: np.ndarray, radius: float, n: int, *, label: str, normalization: str
) -> Slice1D:
    """``L(theta + a d)`` for ``a`` on the centred grid."""
    alphas = centred_grid(radius, n)
    theta = flat.theta0_numpy()
    losses = np.array([flat.loss(theta + a * direction) for a in alphas])
    return Slice1D(alphas, losses, label, normalization, flat.mode, flat.loss0, float(np.linalg.norm(direction)))


def slice_2d(
    flat: FlatModel, u: np.ndarray, v: np.ndarray, radius: float, n: int, *, labels: tuple[str, str], normalization: str
) -> Slice2D:
    """``L(theta + a u + b v)`` on the centred ``n x n`` grid (rows: b, columns: a)."""
    grid = centred_grid(radius, n)
    theta = flat.theta0_numpy()
    z = np.array([[flat.loss(theta + a * u + b * v) for a in grid] for b in grid])
    cos = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-300))
    return Slice2D(grid, grid.copy(), z, labels, normalization, flat.mode, flat.loss0, cos)


def orthogonal_random(u: np.ndarray, seed: SeedLike) -> np.ndarray:
    """A random unit vector orthogonal to ``u`` (Gram-Schmidt, twice)."""
    uh = u / np.linalg.norm(u)
    v = as_generator(seed).standard_normal(u.shape)
    for _ in range(2):
        v = v - (v @ uh) * uh
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class CurvatureFit:
    """Second derivative at 0 of a 1-D slice from a least-squares polynomial fit."""

    curvature: float
    stderr: float
    degree: int
    radius: float
    n_points: int


def fit_curvature(alphas: np.ndarray, losses: np.ndarray, degree: int = 4) -> CurvatureFit:
    """Fit ``sum_k c_k a^k`` (degree 4 absorbs the cubic and quartic terms) and return 2 c_2.

    The standard error is the least-squares one from the residual variance; with float64
    losses on a smooth slice it is tiny, and it grows when the slice is not polynomial (e.g. a
    ReLU kink inside the fit window).
    """
    check_int("degree", degree, 2)
    if alphas.size <= degree + 1:
        raise ConfigError(f"`alphas` must have more than degree+1 = {degree + 1} points; got {alphas.size}.")
    scale = float(np.max(np.abs(alphas)))
    t = alphas / scale  # conditioned Vandermonde on [-1, 1]
    vander = np.vander(t, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(vander, losses, rcond=None)
    resid = losses - vander @ coef
    dof = max(alphas.size - degree - 1, 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(vander.T @ vander)
    curv = 2.0 * coef[2] / scale**2
    se = 2.0 * math.sqrt(max(cov[2, 2], 0.0)) / scale**2
    return CurvatureFit(float(curv), float(se), degree, scale, int(alphas.size))


def directions_for(
    flat: FlatModel, kind: str, seed: SeedLike, eigvecs: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, str], str]:
    """Two slice directions of the requested ``kind`` with their labels and normalization."""
    rng = as_generator(seed)
    if kind == "random":
        return (
            random_direction(flat, rng, "filter"),
            random_direction(flat, rng, "filter"),
            ("random (filter-normalized)", "random (filter-normalized)"),
            "filter",
        )
    if eigvecs is None:
        raise ConfigError(f"`directions` = {kind!r} needs the top Hessian eigenvectors; pass `eigvecs`.")
    u = eigvecs[:, 0] / np.linalg.norm(eigvecs[:, 0])
    if kind == "eigen":
        if eigvecs.shape[1] < 2:
            raise ConfigError("`directions` = 'eigen' needs two eigenvectors; compute k >= 2.")
        v = eigvecs[:, 1] / np.linalg.norm(eigvecs[:, 1])
        return u, v, ("Hessian eigenvector 1", "Hessian eigenvector 2"), "unit"
    if kind == "eigen+random":
        return u, orthogonal_random(u, rng), ("Hessian eigenvector 1", "random, orthogonal to it"), "unit"
    raise ConfigError(f"`directions` must be 'random', 'eigen' or 'eigen+random'; got {kind!r}.")
