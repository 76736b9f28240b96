"""Hessian-vector and Gauss-Newton-vector products of a model's mean loss over fixed batches.

This is the only module that turns (model, loss, batches) into the matvec that
:mod:`multilens.linalg` consumes. Products are exact (no finite differences):

* Hessian: double backward (Pearlmutter 1994), ``H v = d/dtheta <grad L(theta), v>``, one batch
  at a time and accumulated with weights ``n_b / N``, so peak memory is that of one batch's
  double backward (about 2-3 training steps' worth), never of the whole data. With a single
  batch its gradient graph is kept between products (only the second backward is rerun).
* Gauss-Newton: ``G v = J^T H_out J v`` (Schraudolph 2002; Martens 2010), with ``J v`` by
  the double-vjp trick (reverse over reverse), ``H_out`` the Hessian of the loss in the model's
  *outputs* (itself a product, so any loss works: for mean-reduced MSE it is ``2/numel * I``,
  for cross-entropy ``(diag p - p p^T)/n`` per example), and ``J^T`` by reverse mode. ``G`` is
  positive semi-definite whenever the loss is convex in the outputs (MSE, cross-entropy); it is
  the Hessian minus the term weighted by the loss's output gradient.

The operator works in float64 by default (the model is called with float64 copies of its
parameters), so Lanczos residuals of 1e-8 relative are reachable; float32 saves time on models
where 1e-4 is enough.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import FlatModel, LossFn, Mode, ParamSpec

Kind = Literal["hessian", "gauss_newton"]


class CurvatureOperator:
    """A symmetric matvec ``v -> A v`` (NumPy float64 in and out) for A = Hessian or Gauss-Newton.

    ``dim`` is the number of selected parameters, flattened in ``flat.names`` order (the order of
    ``model.named_parameters()``). ``n_matvec`` counts the products computed. The caller's model is
    never modified (see :mod:`multilens.lenses.curvature.functional`).
    """

    def __init__(self, flat: FlatModel, kind: Kind = "hessian") -> None:
        if kind not in ("hessian", "gauss_newton"):
            raise ConfigError(f"`kind` must be 'hessian' or 'gauss_newton'; got {kind!r}.")
        self.flat = flat
        self.kind: Kind = kind
        self.dim = flat.dim
        self.n_matvec = 0
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, v: np.ndarray) -> np.ndarray:
        return self.matvec(v)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        t = self.flat.to_tensor(v)
        out = self._hvp(t) if self.kind == "hessian" else self._gnvp(t)
        self.n_matvec += 1
        return out.detach().numpy().astype(np.float64)

    def _hvp(self, v: torch.Tensor) -> torch.Tensor:
        flat = self.flat
        if len(flat.batches) == 1:
            return self._hvp_cached(v)
        out = torch.zeros(flat.dim, dtype=flat.dtype)
        for (x, y), w in zip(flat.batches, flat.weights):
            theta = flat.theta0.detach().clone().requires_grad_(True)
            loss = flat.batch_loss(theta, x, y)
            (g,) = torch.autograd.grad(loss, theta, create_graph=True)
            gv = g @ v
            if not gv.requires_grad:  # the loss is linear in the selected parameters: H = 0
                continue
            (hv,) = torch.autograd.grad(gv, theta, allow_unused=True)
            if hv is not None:
                out += w * hv
        return out

    def _hvp_cached(self, v: torch.Tensor) -> torch.Tensor:
        """One batch: keep its gradient graph and only run the second backward per product.

        About twice as fast as rebuilding the graph, and no more memory than one product needs
        at its peak anyway; with several batches the graphs are rebuilt so that memory stays
        that of one batch.
        """
        if self._graph is None:
            ((x, y),) = self.flat.batches
            theta = self.flat.theta0.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.flat.batch_loss(theta, x, y), theta, create_graph=True)
            self._graph = (theta, g)
        theta, g = self._graph
        if not g.requires_grad:  # the loss is linear in the selected parameters: H = 0
            return torch.zeros(self.flat.dim, dtype=self.flat.dtype)
        (hv,) = torch.autograd.grad(g, theta, grad_outputs=v, retain_graph=True)
        return hv

    def _gnvp(self, v: torch.Tensor) -> torch.Tensor:
        flat = self.flat
        out = torch.zeros(flat.dim, dtype=flat.dtype)
        for (x, y), w in zip(flat.batches, flat.weights):
            theta = flat.theta0.detach().clone().requires_grad_(True)
            z = flat.forward(theta, x)
            # J v by the double-vjp trick (reverse over reverse): J^T u is linear in u, and its
            # gradient in u along v is J v. Forward mode would do too, but torch's forward-AD
            # first use emits a DeprecationWarning from its own internals.
            u = torch.zeros_like(z, requires_grad=True)
            (jt_u,) = torch.autograd.grad(z, theta, grad_outputs=u, create_graph=True)
            (jv,) = torch.autograd.grad(jt_u @ v, u, retain_graph=True)
            # H_out (J v): the Hessian of the loss in the outputs, applied to J v.
            o = z.detach().requires_grad_(True)
            (g_o,) = torch.autograd.grad(flat.loss_fn(o, y), o, create_graph=True)
            if not g_o.requires_grad:  # the loss is linear in the outputs: G = 0
                continue
            (h_jv,) = torch.autograd.grad((g_o * jv).sum(), o)
            (gv,) = torch.autograd.grad(z, theta, grad_outputs=h_jv)
            out += w * gv
        return out

    def dense(self) -> np.ndarray:
        """The full (dim, dim) matrix from ``dim`` products (for small problems and tests)."""
        cols = [self.matvec(e) for e in np.eye(self.dim)]
        a = np.column_stack(cols)
        return 0.5 * (a + a.T)


def curvature_operator(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype = torch.float64,
    mode: Mode = "eval",
) -> CurvatureOperator:
    """The Hessian (or Gauss-Newton) operator of the mean of ``loss_fn(model(x), y)`` over ``data``.

    ``data`` is one ``(x, y)`` batch or an iterable of them; ``params`` selects a subset or a
    layer (a name or module prefix, or a list of them); ``mode`` is the train/eval mode the model
    is called in (eval by default: dropout off, normalization layers use running statistics).
    """
    flat = FlatModel(model, loss_fn, data, params=params, dtype=dtype, mode=mode)
    return CurvatureOperator(flat, kind)
