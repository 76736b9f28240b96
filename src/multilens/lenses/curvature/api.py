"""Public curvature functions on (model, loss_fn, data): eigenvalues, trace, density, per-layer tables.

Each function builds the operator of :mod:`multilens.lenses.curvature.hvp` (the Hessian of the
mean loss over all the data given, or its Gauss-Newton approximation) and hands it to a
model-free kernel of :mod:`multilens.linalg`, whose frozen result it returns. Eigenvectors are
flat vectors in the order of ``model.named_parameters()`` (restricted to ``params``).

The kernels reach the model through the operator's one block seam (``matmat``): trace probes,
SLQ's start vectors and the explicit Lanczos residuals go to the model ``block_size`` vectors
per pass (one graph per batch and block; vmapped on an accelerator, looped on the CPU).
``dtype`` is the precision of the products (float64 by default; None for the model's own,
e.g. float32, while the Krylov arithmetic stays float64). ``data`` may be a DataLoader;
``stream=True`` re-reads it on every product (the Hessian of the dataset's mean loss with the
memory of one batch). :func:`hessian_eigenvalues_minibatch` is the stochastic variant:
eigenvalues of mini-batch Hessians, with the batch-to-batch noise stated.
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
    deflation_check: bool | str = True,
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
    ncv: int | None = None,
    block_size: int = 16,
    stream: bool = False,
    method: str = "single",
    lanczos_block: int | None = None,
) -> EigenResult:
    """The ``k`` extreme eigenvalues of the Hessian of the mean loss, by Lanczos.

    ``which``: "LA" (largest), "SA" (smallest, e.g. the most negative) or "LM" (largest
    magnitude); ``eigenvalues`` come sorted that way. Converged means every explicit residual
    ``||H v - theta v|| <= tol * |theta|``; at ``max_iter`` a ConvergenceWarning is raised and
    ``converged`` is False. ``kind="gauss_newton"`` uses the Gauss-Newton matrix instead.
    ``n_matvec - n_matvec_check`` is the main thick-restart run (compare with ARPACK's count);
    ``n_matvec_check`` the explicit residuals and the missed-eigenvalue re-check.
    ``method="block"`` runs block Lanczos with ``lanczos_block`` start vectors (one block of
    Hessian-vector products per step; it finds a wanted eigenvalue of that multiplicity itself).

    Example::

        res = hessian_eigenvalues(model, torch.nn.functional.cross_entropy, (x, y), k=3)
        res.eigenvalues, res.converged, res.n_matvec, res.residuals
    """
    op = curvature_operator(
        model, loss_fn, data, params=params, kind=kind, dtype=dtype, mode=mode, block_size=block_size, stream=stream
    )
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
        ncv=ncv,
        method=method,
        block_size=lanczos_block,
    )


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    method: str = "auto",
    n_matvec: int = 99,
    seed: SeedLike = 0,
    *,
    level: float = 0.95,
    rtol: float | None = None,
    atol: float | None = None,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
    block_size: int = 16,
    stream: bool = False,
) -> TraceResult:
    """The Hessian's trace by XTrace, Hutch++ or Hutchinson, with a ``level`` interval.

    ``n_matvec`` is the budget of Hessian-vector products (XTrace uses an even number); with
    ``rtol``/``atol`` (Hutch++ or Hutchinson) the estimator stops as soon as the interval's
    half-width meets the target. The result has ``estimate``, ``stderr``, ``ci_low``,
    ``ci_high`` and ``n_matvec``. ``method="auto"`` is
    :data:`~multilens.linalg.trace.DEFAULT_TRACE_METHOD` (XTrace), the estimator with the smaller
    measured error at equal budget (``test_default_trace_method_is_the_measured_best``), or
    Hutch++ when ``rtol``/``atol`` is set.
    """
    op = curvature_operator(
        model, loss_fn, data, params=params, kind=kind, dtype=dtype, mode=mode, block_size=block_size, stream=stream
    )
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
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
    block_size: int | None = None,
    stream: bool = False,
) -> DensityResult:
    """The Hessian's spectral density by stochastic Lanczos quadrature.

    Returns ``grid``, ``density`` and the Gaussian smoothing width ``sigma`` (absolute, or
    ``sigma_rel`` times the measured spectral range), plus the extreme Ritz values and whether
    they converged (relative residual bound <= ``tol``). ``block_size`` Lanczos recurrences advance
    together, one block product per step (default: as many as keep their bases within 256 MB).
    """
    op = curvature_operator(
        model,
        loss_fn,
        data,
        params=params,
        kind=kind,
        dtype=dtype,
        mode=mode,
        block_size=block_size or 16,
        stream=stream,
    )
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
        block_size=block_size,
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
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
    block_size: int = 16,
) -> LayerTable:
    """Top eigenvalue and trace of each layer's diagonal Hessian block (PyHessian's most asked feature).

    A "layer" is a module owning parameters directly (each ``nn.Linear``: weight and bias).
    The trace's probes and the residual products go to the model as blocks of ``block_size``.
    """
    rng = as_generator(seed)
    groups = parameter_groups(model)
    if not groups:
        raise ConfigError("`model` has no parameter that requires grad; set requires_grad=True on the ones to study.")
    rows = []
    for layer, names in groups:
        op = curvature_operator(
            model, loss_fn, data, params=names, kind=kind, dtype=dtype, mode=mode, block_size=block_size
        )
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


@dataclass(frozen=True)
class MiniBatchEigenResult:
    """Extreme eigenvalues of mini-batch Hessians: their mean, and the batch noise across batches.

    ``per_batch[i]`` are the ``k`` eigenvalues of the Hessian of batch ``i`` (each by Lanczos to
    ``tol``); ``eigenvalues`` their mean, ``stderr`` the standard deviation across batches over
    ``sqrt(n_batches)``, ``batch_sd`` the standard deviation itself (the batch noise: what one
    mini-batch's value scatters by), and ``ci_low``/``ci_high`` a ``level`` Student-t interval for
    the mean over mini-batches of this size. That mean is not the full-data eigenvalue: the top
    eigenvalue is convex in the matrix, so ``E[lambda_max(H_B)] >= lambda_max(H)`` (Jensen), the
    gap shrinking as the batch grows. ``converged`` is True when every per-batch run converged.
    """

    eigenvalues: np.ndarray
    stderr: np.ndarray
    batch_sd: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float
    per_batch: np.ndarray
    batch_size: int
    n_batches: int
    n_matvec: int
    converged: bool
    n_iter: int
    which: str
    note: str = ""
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "method": "lanczos on independent mini-batch Hessians",
            "which": self.which,
            "eigenvalues": [float(v) for v in self.eigenvalues],
            "stderr": [float(v) for v in self.stderr],
            "batch_sd": [float(v) for v in self.batch_sd],
            "ci_low": [float(v) for v in self.ci_low],
            "ci_high": [float(v) for v in self.ci_high],
            "level": self.level,
            "batch_size": self.batch_size,
            "n_batches": self.n_batches,
            "n_matvec": self.n_matvec,
            "converged": bool(self.converged),
            "n_iter": self.n_iter,
            "note": self.note,
        }


def hessian_eigenvalues_minibatch(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    batch_size: int,
    n_batches: int = 8,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-6,
    seed: SeedLike = 0,
    *,
    level: float = 0.95,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
) -> MiniBatchEigenResult:
    """The ``k`` extreme eigenvalues of the Hessians of ``n_batches`` random mini-batches.

    Each mini-batch is ``batch_size`` examples drawn without replacement from all of ``data``
    (its batches concatenated), independently per mini-batch, from ``seed``. See
    :class:`MiniBatchEigenResult` for what the mean and the batch noise mean.
    """
    from scipy import stats as sps

    from multilens.lenses.curvature.functional import as_batches

    batches = as_batches(data)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    n = int(x.shape[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"`batch_size` must be an int in [1, {n}] (the number of examples); got {batch_size!r}.")
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 2:
        raise ConfigError(f"`n_batches` must be an int >= 2; got {n_batches!r}.")
    rng = as_generator(seed)
    per, n_mv, n_it, ok = [], 0, 0, True
    for _ in range(n_batches):
        idx = torch.as_tensor(np.sort(rng.choice(n, size=batch_size, replace=False)))
        op = curvature_operator(model, loss_fn, (x[idx], y[idx]), params=params, kind=kind, dtype=dtype, mode=mode)
        r = lanczos(op, op.dim, k, which, tol=tol, seed=rng, return_eigenvectors=False)
        per.append(r.eigenvalues)
        n_mv += r.n_matvec
        n_it += r.n_iter
        ok = ok and r.converged
    arr = np.array(per)
    mean = arr.mean(axis=0)
    sd = arr.std(axis=0, ddof=1)
    se = sd / math.sqrt(n_batches)
    q = float(sps.t.ppf(0.5 + level / 2.0, df=n_batches - 1))
    return MiniBatchEigenResult(
        eigenvalues=mean,
        stderr=se,
        batch_sd=sd,
        ci_low=mean - q * se,
        ci_high=mean + q * se,
        level=level,
        per_batch=arr,
        batch_size=batch_size,
        n_batches=n_batches,
        n_matvec=n_mv,
        converged=ok,
        n_iter=n_it,
        which=which,
        note=(
            f"batch noise: eigenvalues of {n_batches} Hessians of {batch_size}-example mini-batches scatter by "
            f"sd {np.array2string(sd, precision=3)}; their mean is biased upward for the top eigenvalue (Jensen)"
        ),
    )


def top_eigenvector_numpy(res: EigenResult) -> np.ndarray:
    """The first eigenvector of a result computed with ``return_eigenvectors=True``."""
    if res.eigenvectors is None:
        raise ConfigError("`res` has no eigenvectors; compute it with return_eigenvectors=True.")
    return res.eigenvectors[:, 0].copy()
