"""Hessian-vector and Gauss-Newton-vector products of a model's mean loss, one vector or a block at once.

This is the only module that turns (model, loss, batches) into the operator that
:mod:`multilens.linalg` consumes, and it has one seam: :meth:`CurvatureOperator.matmat` applies
the Hessian or the Gauss-Newton matrix to a block of ``b`` vectors with one graph per batch:
either one vectorized pass (``torch.func.vmap`` over the tangent; the default on an
accelerator) or a loop over the block on the kept graph (the default on the CPU, where it
measured faster); ``matvec`` is the block of one. Products are exact (no
finite differences):

* Hessian: reverse over reverse (Pearlmutter 1994), ``H v = vjp(grad L, theta)(v)``: the
  gradient's graph is built once per batch and block, and its vector-Jacobian product is
  applied to every vector of the block. Batches are accumulated with weights ``n_b / N``, so
  peak memory is that of one batch (times the block when vmapped), never of the whole data.
  With a single batch the autograd graph is kept between calls.
* Gauss-Newton: ``G v = J^T H_out J v`` (Schraudolph 2002; Martens 2010), with ``J v`` by the
  double-vjp trick (the vjp of the linear map ``u -> J^T u``), ``H_out`` the Hessian of the loss
  in the model's *outputs* (itself a product, so any loss works: for mean-reduced MSE it is
  ``2/numel * I``, for cross-entropy ``(diag p - p p^T)/n`` per example), and ``J^T`` by reverse
  mode. ``G`` is positive semi-definite whenever the loss is convex in the outputs (MSE,
  cross-entropy); it is the Hessian minus the term weighted by the loss's output gradient.

Precision: the products are computed in ``dtype`` (float64 by default, so Lanczos residuals of
1e-8 relative are reachable; ``dtype=None`` is the model's own, float32 for a float32 model);
whatever it is, the operator hands float64 NumPy arrays to :mod:`multilens.linalg`, whose Krylov
recurrences, orthogonalization and Ritz values are float64. Everything runs on the model's device.

Memory (measured by ``bench_curvature.py --tasks hvpmem``: torch allocator bytes from the
profiler's memory events plus NumPy's from tracemalloc, one HVP against one SGD step of the same
model, data and dtype): reverse over reverse keeps the first backward's graph for the second, so
one product holds the forward activations, the gradient with its graph, the result, and the double
backward's temporaries (for a weight used twice, its two contributions and their sum). The
products here add nothing parameter-sized of their own: the graph is built on leaves that are views
of the operator's parameter vector, the result is added piece by piece into the returned float64
array (on the CPU), and a graph that is not kept is freed during the last product.
``max_batch`` splits the batch so the activation-sized part shrinks with the piece.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.curvature.functional import FlatModel, LossFn, Mode, ParamSpec

Kind = Literal["hessian", "gauss_newton"]


class CurvatureOperator:
    """A symmetric operator ``v -> A v`` (NumPy float64 in and out) for A = Hessian or Gauss-Newton.

    ``dim`` is the number of selected parameters, flattened in ``flat.names`` order (the order of
    ``model.named_parameters()``). ``matmat(V)`` applies A to the columns of a (dim, b) block in
    passes of at most ``block_size`` columns (``vectorize``: one vmapped pass, else a loop on one
    kept graph); ``matvec(v)`` is the block of one.
    ``n_matvec`` counts the products computed (columns), ``n_passes`` the vectorized passes. The
    caller's model is never modified (see :mod:`multilens.lenses.curvature.functional`).
    """

    def __init__(
        self,
        flat: FlatModel,
        kind: Kind = "hessian",
        *,
        block_size: int = 16,
        vectorize: bool | None = None,
        keep_graph: bool = True,
        max_batch: int | None = None,
    ) -> None:
        if kind not in ("hessian", "gauss_newton"):
            raise ConfigError(f"`kind` must be 'hessian' or 'gauss_newton'; got {kind!r}.")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"`block_size` must be an int >= 1; got {block_size!r}.")
        if vectorize not in (None, True, False):
            raise ConfigError(f"`vectorize` must be None (auto), True or False; got {vectorize!r}.")
        self.flat = flat
        self.kind: Kind = kind
        self.dim = flat.dim
        self.block_size = int(block_size)
        # vmap a block on an accelerator; on the CPU loop over the block on one kept graph, which
        # measured faster (1M-parameter MLP, one thread: 8 HVPs 2.4 s looped vs 4.6 s vmapped;
        # bench_curvature.py). The graph of a batch is built once per block either way.
        self.vectorize = (flat.device.type != "cpu") if vectorize is None else bool(vectorize)
        if keep_graph not in (True, False):
            raise ConfigError(f"`keep_graph` must be True or False; got {keep_graph!r}.")
        self.keep_graph = bool(keep_graph)
        if max_batch is not None:
            if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
                raise ConfigError(f"`max_batch` must be None or an int >= 1; got {max_batch!r}.")
            if flat.mode == "train":
                raise ConfigError(
                    "`max_batch` splits batches, which changes a train-mode model (batch statistics); "
                    "use mode='eval' or leave max_batch None."
                )
        self.max_batch = max_batch
        self.n_matvec = 0
        self.n_passes = 0
        self._cached: Any = None  # one batch: its product function, kept between calls
        self._cached_vmap: Any = None  # the same for vectorized blocks

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.dtype

    @property
    def device(self) -> torch.device:
        return self.flat.device

    def __call__(self, v: np.ndarray) -> np.ndarray:
        return self.matvec(v)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        if v.shape != (self.dim,):
            raise ConfigError(f"`v` must have shape ({self.dim},); got {tuple(v.shape)}.")
        return self.matmat(v[:, None])[:, 0]

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """``A V`` for a (dim, b) block, float64 NumPy in and out (computed in ``dtype``).

        On the CPU the products are added straight into the returned array's memory (converted
        from ``dtype`` piece by piece: no parameter-sized copy beyond the result itself).
        """
        v = np.asarray(v)
        if v.ndim != 2 or v.shape[0] != self.dim:
            raise ConfigError(f"`V` must have shape ({self.dim}, b); got {tuple(v.shape)}.")
        out = np.empty((v.shape[1], self.dim), dtype=np.float64)  # rows: A v_j; returned transposed
        direct = self.device.type == "cpu"
        for j in range(0, v.shape[1], self.block_size):
            t = torch.as_tensor(np.ascontiguousarray(v[:, j : j + self.block_size].T), dtype=self.dtype)
            if direct:  # the products are added straight into the returned float64 array
                self.apply(t, out=torch.from_numpy(out[j : j + t.shape[0]]))
            else:
                out[j : j + t.shape[0]] = self.apply(t.to(self.device)).detach().cpu().numpy()
        return out.T

    def apply(self, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The seam: A applied to the rows of a (b, dim) tensor, one graph per batch and block.

        With ``vectorize`` the block is one ``torch.vmap`` pass over the rows (with a single batch
        and ``keep_graph`` its functional graph is kept between calls, else built for the call).
        Otherwise the rows are looped over on one autograd graph per batch (reverse over reverse);
        with a single batch that graph is kept between calls (``keep_graph``). ``out`` (b, dim),
        any float dtype, when given, receives the result (it is overwritten).

        Memory (Hessian, loop): the graph is built on per-parameter leaves that are views of the
        operator's parameter vector (no copy of the parameters), each product's pieces are added
        into the rows of ``out`` as autograd returns them, and a graph that is not kept is freed
        during the last product of a batch; with several batches the batch weight ``n_b / N``
        scales the loss, not the products.
        """
        flat = self.flat
        single = len(flat.batches) == 1 and not flat.streamed
        if single and self.max_batch is not None:
            single = int(flat.batches[0][0].shape[0]) <= self.max_batch
        if out is None:
            out = torch.zeros_like(t)
        else:
            out.zero_()
        if self.vectorize and t.shape[0] > 1:
            if single and self.keep_graph:
                if self._cached_vmap is None:  # the functional graph of the one batch, kept
                    ((x, y),) = flat.batches
                    self._cached_vmap = torch.vmap(self._product_fn(x, y))
                out += self._cached_vmap(t)
            else:
                for x, y, w in self._chunks():
                    out += w * torch.vmap(self._product_fn(x, y))(t)
        elif self.kind == "hessian":
            if single and self.keep_graph:
                if self._cached is None:
                    ((x, y),) = flat.batches
                    self._cached = self._graph(x, y, 1.0)
                self._products(self._cached, t, out, keep=True)
            else:
                for x, y, w in self._chunks():
                    self._products(self._graph(x, y, w), t, out, keep=False)
        else:
            for x, y, w in self._chunks():
                if single and self.keep_graph:
                    if self._cached is None:
                        self._cached = self._product_fn(x, y)
                    fn = self._cached
                else:
                    fn = self._product_fn(x, y)
                for i in range(t.shape[0]):
                    out[i] += w * fn(t[i])
        self.n_matvec += int(t.shape[0])
        self.n_passes += 1
        return out

    def _chunks(self) -> Any:
        """(x, y, weight) over the batches, each split into pieces of at most ``max_batch`` rows."""
        for (x, y), w in zip(self.flat.batches, self.flat.weights):
            n = int(x.shape[0])
            step = n if self.max_batch is None else self.max_batch
            for i in range(0, n, step):
                xc, yc = x[i : i + step], y[i : i + step]
                yield xc, yc, w * int(xc.shape[0]) / n

    def _graph(self, x: torch.Tensor, y: torch.Tensor, weight: float) -> Any:
        """The gradient of ``weight * loss`` on one batch with its graph (create_graph), on leaf views of theta0."""
        leaves = self.flat.leaves()
        loss = self.flat.batch_loss_params(dict(zip(self.flat.names, leaves)), x, y)
        if weight != 1.0:
            loss = loss * weight
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        return leaves, [grads[i] for i in used], used

    def _products(self, graph: Any, t: torch.Tensor, out: torch.Tensor, *, keep: bool) -> None:
        """Add ``H_batch t_i`` to ``out[i]`` for every row, one parameter's piece at a time.

        Each piece is written (converted to ``out``'s dtype) as soon as autograd returns it, so no
        parameter-sized buffer of the products' dtype is held besides autograd's own.
        """
        leaves, gs, used = graph
        if not gs:  # the loss is linear in the selected parameters: H = 0 on this batch
            return
        flat = self.flat
        sl = [flat.slices[n] for n in flat.names]
        inputs = [leaves[j] for j in used]
        for i in range(t.shape[0]):
            grad_outputs = [t[i, sl[j]].view(leaves[j].shape) for j in used]
            pieces = torch.autograd.grad(
                gs, inputs, grad_outputs=grad_outputs, retain_graph=keep or i < t.shape[0] - 1, allow_unused=True
            )
            for j, piece in zip(used, pieces):
                if piece is not None:
                    out[i, sl[j]] += piece.reshape(-1)
            del pieces

    def _product_fn(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        """``v -> A_batch v`` for one batch by torch.func, its graph built once (reverse over reverse)."""
        flat = self.flat
        theta = flat.theta0.detach()
        if self.kind == "hessian":
            _, vjp_fn = torch.func.vjp(torch.func.grad(lambda t: flat.batch_loss(t, x, y)), theta)
            return lambda v: vjp_fn(v)[0]
        z, vjp_z = torch.func.vjp(lambda t: flat.forward(t, x), theta)

        def jt(u: torch.Tensor) -> torch.Tensor:  # J^T u
            return vjp_z(u)[0]

        _, vjp_jt = torch.func.vjp(jt, torch.zeros_like(z))  # its vjp: v -> J v
        _, vjp_h = torch.func.vjp(torch.func.grad(lambda o: flat.loss_fn(o, y)), z.detach())  # H_out
        return lambda v: jt(vjp_h(vjp_jt(v)[0])[0])

    def dense(self) -> np.ndarray:
        """The full (dim, dim) matrix from ``dim`` products (for small problems and tests)."""
        a = self.matmat(np.eye(self.dim))
        return 0.5 * (a + a.T)


def curvature_operator(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    params: ParamSpec = None,
    kind: Kind = "hessian",
    dtype: torch.dtype | None = torch.float64,
    mode: Mode = "eval",
    block_size: int = 16,
    stream: bool = False,
    progress: Callable[[int, int], None] | None = None,
    vectorize: bool | None = None,
    keep_graph: bool = True,
    max_batch: int | None = None,
) -> CurvatureOperator:
    """The Hessian (or Gauss-Newton) operator of the mean of ``loss_fn(model(x), y)`` over ``data``.

    ``data`` is one ``(x, y)`` batch or an iterable of them (e.g. a DataLoader; with
    ``stream=True`` it is re-read on every product instead of held in memory, and
    ``progress(i, n)`` is called after each batch); ``params`` selects a subset or a layer (a
    name or module prefix, or a list of them); ``mode`` is the train/eval mode the model is
    called in (eval by default: dropout off, normalization layers use running statistics);
    ``dtype`` the precision of the products (None: the model's); ``block_size`` the most
    vectors per pass; ``vectorize`` whether a block is one ``torch.vmap`` pass (default: on an
    accelerator) or a loop on one kept graph (default on the CPU, measured faster there).
    Memory: ``keep_graph`` keeps a single batch's double-backward graph between products (one
    forward and backward saved per product, at the graph's memory held between calls);
    ``max_batch`` splits every batch into pieces of at most that many examples, each weighted by
    its size (the same mean loss; eval mode only), so one product's peak working memory holds the
    graph of one piece instead of the whole batch, at the cost of rebuilding the graphs on every
    product (bench_curvature.py --tasks hvpmem measures both against a training step).
    """
    flat = FlatModel(model, loss_fn, data, params=params, dtype=dtype, mode=mode, stream=stream, progress=progress)
    return CurvatureOperator(
        flat, kind, block_size=block_size, vectorize=vectorize, keep_graph=keep_graph, max_batch=max_batch
    )
