"""Hessian spectra, traces and densities of a model's loss: the public face of the curvature lens.

Every function takes ``(model, loss_fn, data)``: ``data`` is one ``(x, y)`` batch or an
iterable of them, ``loss_fn(model(x), y)`` returns the scalar *mean* loss of a batch, and the
curvature is that of the mean loss over all the data given (batches weighted by their size).
Products are exact Hessian-vector products in float64 by default; the caller's model is never
modified. Results are frozen and carry their own evidence (``converged``, ``n_matvec``,
residuals, standard errors, intervals).

    >>> from multilens.curvature import hessian_eigenvalues, hessian_trace, hessian_density
    >>> eig = hessian_eigenvalues(model, torch.nn.functional.cross_entropy, (x, y), k=3)
    >>> eig.eigenvalues, eig.converged, eig.n_matvec, eig.residuals
    >>> tr = hessian_trace(model, torch.nn.functional.cross_entropy, (x, y), method="hutch++", n_matvec=99)
    >>> tr.estimate, tr.stderr, tr.ci_low, tr.ci_high, tr.n_matvec

Signatures:

* ``hessian_eigenvalues(model, loss_fn, data, k=3, which="LA", tol=1e-8, seed=0, *, params=None,
  kind="hessian", max_iter=None, return_eigenvectors=False, deflation_check=True, dtype=float64,
  mode="eval") -> EigenResult`` (``eigenvalues`` sorted as ``which`` says, ``eigenvectors``,
  ``converged``, ``n_iter``, ``n_matvec``, ``residuals``);
* ``hessian_trace(model, loss_fn, data, method="hutch++", n_matvec=99, seed=0, *, level=0.95,
  rtol=None, atol=None, ...) -> TraceResult`` (``estimate``, ``stderr``, ``ci_low``, ``ci_high``,
  ``n_matvec``);
* ``hessian_density(model, loss_fn, data, *, n_vectors=4, n_iter=80, sigma=None, sigma_rel=0.01,
  n_grid=400, tol=1e-6, seed=0, ...) -> DensityResult`` (``grid``, ``density``, ``sigma``);
* ``per_layer_table(model, loss_fn, data, *, tol=1e-8, n_matvec=60, level=0.95, seed=0, ...)
  -> LayerTable``: top eigenvalue and trace of each layer's diagonal Hessian block;
* ``hessian_eigenvalues_minibatch(model, loss_fn, loader, k=1, ...) -> MiniBatchEigenResult``: the
  per-batch top eigenvalues, their spread and mean with an interval (the stochastic mini-batch
  variant; biased upward relative to the full-data Hessian, by Jensen's inequality);
* ``stream=True`` on the functions above re-reads a (non-shuffling) DataLoader on every product, so
  the Hessian is that of the whole training loss without holding its graph in memory;
  ``dtype=None`` computes products in the model's own dtype with the Krylov work in float64;
* ``curvature_operator(model, loss_fn, data, *, params=None, kind="hessian"|"gauss_newton", ...)``:
  the matvec itself, for :mod:`multilens.linalg`;
* ``worst_case_sharpness(model, loss_fn, data, rho, *, adaptive=False, ...)``: SAM/ASAM sharpness.

The whole lens (every part with its checks against dense references and theory) runs on a model
of your own through :func:`multilens.lenses.curvature.measure`:

    >>> from multilens.lenses.curvature import Settings, Subject, measure
    >>> result = measure(Subject(model, loss_fn, loader), Settings.for_profile("quick"), seed=0)
"""

from multilens.lenses.curvature.api import (
    LayerRow,
    LayerTable,
    MiniBatchEigenResult,
    hessian_density,
    hessian_eigenvalues,
    hessian_eigenvalues_minibatch,
    hessian_trace,
    per_layer_table,
)
from multilens.lenses.curvature.hvp import CurvatureOperator, curvature_operator
from multilens.lenses.curvature.sharpness import SharpnessResult, worst_case_sharpness
from multilens.linalg import DensityResult, EigenResult, TraceResult

__all__ = [
    "MiniBatchEigenResult",
    "hessian_eigenvalues_minibatch",
    "CurvatureOperator",
    "DensityResult",
    "EigenResult",
    "LayerRow",
    "LayerTable",
    "SharpnessResult",
    "TraceResult",
    "curvature_operator",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "per_layer_table",
    "worst_case_sharpness",
]
