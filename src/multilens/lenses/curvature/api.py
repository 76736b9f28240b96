"""Public curvature functions on (model, loss_fn, data): eigenvalues, trace, density, per-layer tables.

Each function builds the operator of :mod:`multilens.lenses.curvature.hvp` (the Hessian of the
mean loss over all the data given, or its Gauss-Newton approximation) and hands it to a
model-free kernel of :mod:`multilens.linalg`, whose frozen result it returns. Eigenvectors are
flat vectors in the order of ``model.named_parameters()`` (restricted to ``params``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import LossFn, Mode, ParamSpec, parameter_groups
from multilens.lenses.curvature.hvp import Kind, curvature_operator
from multilens.linalg import DensityResult, EigenResult, TraceResult, lanczos, slq_density, trace_estimate
from multilens.results import Table
from multilens.seeding import SeedLike, as_generator


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    k: int = 3,
    which: str = "LA",
    tol: float = 1e-8,
    seed: SeedLike = 0,
    *,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    max_iter: int | None = None,
    return_eigenvectors: bool = False,
    deflation_check: bool = True,
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> EigenResult:
    """The ``k`` extreme eigenvalues of the Hessian of the mean loss, by Lanczos.

    ``which``: "LA" (largest), "SA" (smallest, e.g. the most negative) or "LM" (largest
    magnitude); ``eigenvalues`` come sorted that way. Converged means every explicit residual
    ``||H v - theta v|| <= tol * |theta|``; at ``max_iter`` a ConvergenceWarning is raised and
    ``converged`` is False. ``kind="gauss_newton"`` uses the Gauss-Newton matrix instead.

    Example::

        res = hessian_eigenvalues(model, torch.nn.functional.cross_entropy, (x, y), k=3)
        res.eigenvalues, res.converged, res.n_matvec, res.residuals
    """
    op = curvature_operator(model, loss_fn, data, params=params, kind=kind, dtype=dtype, mode=mode)
    return lanczos(
        op,
        op.dim,
        k,
        which,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        return_eigenvectors=return_eigenvectors,
        deflation_check=deflation_check,
    )


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    method: str = "hutch++",
    n_matvec: int = 99,
    seed: SeedLike = 0,
    *,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> TraceResult:
    """The Hessian's trace by Hutch++ (default) or Hutchinson, with a ``level`` Student-t interval.

    ``n_matvec`` is the budget of Hessian-vector products; with ``rtol``/``atol`` the estimator
    stops as soon as the interval's half-width meets the target. The result has ``estimate``,
    ``stderr``, ``ci_low``, ``ci_high`` and ``n_matvec``.
    """
    op = curvature_operator(model, loss_fn, data, params=params, kind=kind, dtype=dtype, mode=mode)
    return trace_estimate(op, op.dim, method, n_matvec, seed=seed, level=level, rtol=rtol, atol=atol)


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    n_vectors: int = 4,
    n_iter: int = 80,
    sigma: float | None = None,
    sigma_rel: float = 0.01,
    n_grid: int = 400,
    tol: float = 1e-6,
    seed: SeedLike = 0,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> DensityResult:
    """The Hessian's spectral density by stochastic Lanczos quadrature.

    Returns ``grid``, ``density`` and the Gaussian smoothing width ``sigma`` (absolute, or
    ``sigma_rel`` times the measured spectral range), plus the extreme Ritz values and whether
    they converged (relative residual bound <= ``tol``).
    """
    op = curvature_operator(model, loss_fn, data, params=params, kind=kind, dtype=dtype, mode=mode)
    return slq_density(
        op,
        op.dim,
        n_vectors=n_vectors,
        n_iter=n_iter,
        sigma=sigma,
        sigma_rel=sigma_rel,
        n_grid=n_grid,
        tol=tol,
        seed=seed,
    )


@dataclass(frozen=True)
class LayerRow:
    """Top eigenvalue and trace of one layer's diagonal Hessian block."""

    layer: str
    params: tuple[str, ...]
    n_params: int
    top_eigenvalue: float
    residual: float
    converged: bool
    eig_n_matvec: int
    trace: float
    trace_stderr: float
    trace_ci_low: float
    trace_ci_high: float
    trace_n_matvec: int
    trace_exact: bool


@dataclass(frozen=True)
class LayerTable:
    """Per-layer curvature: one row per module owning parameters (the Hessian's diagonal blocks)."""

    rows: tuple[LayerRow, ...]
    level: float
    kind: str
    schema_version: int = 1

    def to_table(self, key: str = "per_layer", title: str = "Per-layer curvature") -> Table:
        cols = [
            "layer",
            "n_params",
            "top eigenvalue",
            "converged",
            "rel. residual",
            "trace",
            "trace CI low",
            "trace CI high",
            "HVPs",
        ]
        rows = []
        for r in self.rows:
            rel = r.residual / max(abs(r.top_eigenvalue), 1e-300)
            rows.append(
                [
                    r.layer,
                    r.n_params,
                    _json(r.top_eigenvalue),
                    r.converged,
                    _json(rel),
                    _json(r.trace),
                    _json(r.trace_ci_low),
                    _json(r.trace_ci_high),
                    r.eig_n_matvec + r.trace_n_matvec,
                ]
            )
        cap = (
            f"Diagonal blocks of the {self.kind} of the mean loss: top eigenvalue by Lanczos "
            f"(explicit residual), trace by Hutch++ with a {self.level:.0%} Student-t interval "
            "(exact when the sketch spans the layer)."
        )
        return Table(key=key, title=title, columns=cols, rows=rows, caption=cap)

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": r.layer,
                "params": list(r.params),
                "n_params": r.n_params,
                "top_eigenvalue": _json(r.top_eigenvalue),
                "residual": _json(r.residual),
                "converged": r.converged,
                "trace": _json(r.trace),
                "trace_stderr": _json(r.trace_stderr),
                "trace_ci_low": _json(r.trace_ci_low),
                "trace_ci_high": _json(r.trace_ci_high),
                "trace_exact": r.trace_exact,
                "n_matvec": r.eig_n_matvec + r.trace_n_matvec,
            }
            for r in self.rows
        ]


def _json(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def per_layer_table(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    tol: float = 1e-8,
    n_matvec: int = 60,
    level: float = 0.95,
    seed: SeedLike = 0,
    kind: Kind = "hessian",
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> LayerTable:
    """Top eigenvalue and trace of each layer's diagonal Hessian block (PyHessian's most asked feature).

    A "layer" is a module owning parameters directly (each ``nn.Linear``: weight and bias).
    """
    rng = as_generator(seed)
    groups = parameter_groups(model)
    if not groups:
        raise ConfigError("`model` has no parameter that requires grad; set requires_grad=True on the ones to study.")
    rows = []
    for layer, names in groups:
        op = curvature_operator(model, loss_fn, data, params=names, kind=kind, dtype=dtype, mode=mode)
        eig = lanczos(op, op.dim, 1, "LA", tol=tol, seed=rng, return_eigenvectors=False, deflation_check=False)
        budget = max(4, min(int(n_matvec), 3 * op.dim))
        tr = trace_estimate(op, op.dim, "hutch++", budget, seed=rng, level=level)
        rows.append(
            LayerRow(
                layer=layer,
                params=tuple(names),
                n_params=op.dim,
                top_eigenvalue=float(eig.eigenvalues[0]),
                residual=float(eig.residuals[0]),
                converged=eig.converged,
                eig_n_matvec=eig.n_matvec,
                trace=tr.estimate,
                trace_stderr=tr.stderr,
                trace_ci_low=tr.ci_low,
                trace_ci_high=tr.ci_high,
                trace_n_matvec=tr.n_matvec,
                trace_exact=tr.exact,
            )
        )
    return LayerTable(rows=tuple(rows), level=level, kind=kind)


def top_eigenvector_numpy(res: EigenResult) -> np.ndarray:
    """The first eigenvector of a result computed with ``return_eigenvectors=True``."""
    if res.eigenvectors is None:
        raise ConfigError("`res` has no eigenvectors; compute it with return_eigenvectors=True.")
    return res.eigenvectors[:, 0].copy()
