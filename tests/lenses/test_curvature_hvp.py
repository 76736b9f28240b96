"""Hessian- and Gauss-Newton-vector products against dense torch.func.hessian / J^T H J (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _curvature_helpers import (
    TORCH_FWD_AD_FILTER,
    assert_unchanged,
    dense_hessian,
    flat_params,
    snapshot,
    tiny_classifier,
    tiny_data,
)
from torch import nn
from torch.func import functional_call, jacrev

from multilens.errors import ConfigError, DataError
from multilens.lenses.curvature.functional import FlatModel, parameter_groups
from multilens.lenses.curvature.hvp import curvature_operator

pytestmark = pytest.mark.filterwarnings(TORCH_FWD_AD_FILTER)

CE = nn.functional.cross_entropy
MSE = nn.functional.mse_loss


def test_hvp_matches_dense_hessian():
    model = tiny_classifier()
    x, y = tiny_data()
    exact = dense_hessian(model, CE, x, y)
    op = curvature_operator(model, CE, (x, y))
    got = op.dense()
    assert op.dim == exact.shape[0]
    np.testing.assert_allclose(got, exact, atol=1e-13 * np.abs(exact).max() * 100)


def test_mean_over_batches_weights_by_size():
    """Batches of 7, 13 and 20 examples: the operator is the Hessian of the mean over all 40."""
    model = tiny_classifier()
    x, y = tiny_data()
    exact = dense_hessian(model, CE, x, y)
    batches = [(x[:7], y[:7]), (x[7:20], y[7:20]), (x[20:], y[20:])]
    got = curvature_operator(model, CE, batches).dense()
    np.testing.assert_allclose(got, exact, atol=1e-12 * np.abs(exact).max())
    # An unweighted mean of per-batch Hessians would differ: the weighting matters here.
    naive = np.mean([dense_hessian(model, CE, bx, by) for bx, by in batches], axis=0)
    assert np.abs(naive - exact).max() > 1e-6


def test_parameter_subset_is_the_diagonal_block():
    model = tiny_classifier()
    x, y = tiny_data()
    names, _ = flat_params(model)
    full = dense_hessian(model, CE, x, y)
    op = curvature_operator(model, CE, (x, y), params="2")  # the second Linear: "2.weight", "2.bias"
    assert op.flat.names == ["2.weight", "2.bias"]
    start = sum(dict(model.named_parameters())[n].numel() for n in names if n.startswith("0."))
    block = full[start:, start:]
    np.testing.assert_allclose(op.dense(), block, atol=1e-12 * np.abs(full).max())
    groups = parameter_groups(model)
    assert [g for g, _ in groups] == ["0", "2"]


def test_gauss_newton_matches_jt_h_j_for_cross_entropy():
    model = tiny_classifier()
    x, y = tiny_data(n=25)
    names, theta = flat_params(model)
    named = dict(model.named_parameters())
    shapes, sizes = [named[n].shape for n in names], [named[n].numel() for n in names]

    def f(t):
        ps = {n: c.view(s) for n, c, s in zip(names, torch.split(t, sizes), shapes)}
        return functional_call(model, ps, (x.double(),))

    jac = jacrev(f)(theta).reshape(25 * 3, -1).numpy()  # (n*c, p)
    p = torch.softmax(f(theta), dim=1).detach().numpy()
    h_out = np.zeros((75, 75))
    for i in range(25):  # mean cross-entropy: (diag p - p p^T) / n per example
        h_out[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] = (np.diag(p[i]) - np.outer(p[i], p[i])) / 25
    exact = jac.T @ h_out @ jac
    got = curvature_operator(model, CE, (x, y), kind="gauss_newton").dense()
    np.testing.assert_allclose(got, exact, atol=1e-14 + 1e-12 * np.abs(exact).max())
    assert np.linalg.eigvalsh(got).min() > -1e-12  # PSD: CE is convex in the logits


def test_gauss_newton_equals_hessian_for_linear_least_squares():
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(5, 2, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        model.weight.normal_(generator=g)
        model.bias.normal_(generator=g)
    x = torch.randn(30, 5, generator=g)
    y = torch.randn(30, 2, generator=g)
    h = curvature_operator(model, MSE, (x, y)).dense()
    gn = curvature_operator(model, MSE, (x, y), kind="gauss_newton").dense()
    np.testing.assert_allclose(gn, h, atol=1e-14)
    # Closed form: mean MSE over 60 entries -> H = (2/60) * blockdiag(X1^T X1) per output (X1 = [x, 1]).
    x1 = np.hstack([x.double().numpy(), np.ones((30, 1))])
    xtx = 2.0 / 60.0 * x1.T @ x1
    # Flat order: W[0, :], W[1, :], b[0], b[1]; block order: (W[0, :], b[0]), (W[1, :], b[1]).
    perm = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 5, 11]
    block = np.zeros((12, 12))
    block[:6, :6] = xtx
    block[6:, 6:] = xtx
    np.testing.assert_allclose(h, block[np.ix_(perm, perm)], atol=1e-13)


def test_caller_model_is_never_modified():
    model = tiny_classifier()
    model.train()  # the caller's mode must survive the operator's eval-mode calls
    x, y = tiny_data()
    before = snapshot(model)
    op = curvature_operator(model, CE, (x, y))
    op(np.ones(op.dim))
    op.flat.loss_and_grad(op.flat.theta0_numpy() + 0.1)
    curvature_operator(model, CE, (x, y), kind="gauss_newton")(np.ones(op.dim))
    assert_unchanged(model, before)
    assert model.training


def test_float32_operator_is_close():
    model = tiny_classifier()
    x, y = tiny_data()
    h64 = curvature_operator(model, CE, (x, y)).dense()
    h32 = curvature_operator(model, CE, (x, y), dtype=torch.float32).dense()
    assert np.abs(h32 - h64).max() <= 1e-4 * np.abs(h64).max()


def test_bad_inputs_raise_naming_the_argument():
    model = tiny_classifier()
    x, y = tiny_data()
    with pytest.raises(DataError, match="`data` is empty"):
        curvature_operator(model, CE, [])
    with pytest.raises(DataError, match="`data\\[0\\]`"):
        curvature_operator(model, CE, [(x[:0], y[:0])])
    with pytest.raises(DataError, match="`loss_fn` returned a non-finite loss"):
        xn = x.clone()
        xn[0, 0] = math.nan
        curvature_operator(model, CE, (xn, y))
    frozen = tiny_classifier()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="`model` has no parameter that requires grad"):
        curvature_operator(frozen, CE, (x, y))
    with pytest.raises(ConfigError, match="`params`"):
        curvature_operator(model, CE, (x, y), params="9")
    with pytest.raises(ConfigError, match="`kind`"):
        curvature_operator(model, CE, (x, y), kind="fisher")
    with pytest.raises(ConfigError, match="`loss_fn` must return a scalar"):
        curvature_operator(model, lambda o, t: CE(o, t, reduction="none"), (x, y))
    with pytest.raises(ConfigError, match="`mode`"):
        FlatModel(model, CE, (x, y), mode="inference")


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
@pytest.mark.parametrize("n_batches", [1, 3])
def test_block_product_equals_column_by_column(kind, n_batches, vectorize):
    """Issue 15: a block of 7 vectors (one vmapped pass, or a loop on one graph per batch) gives the
    same columns as 7 products (float64, to 1e-12 of the largest entry), and the exact Hessian."""
    model = tiny_classifier()
    x, y = tiny_data()
    data = (x, y) if n_batches == 1 else [(x[:9], y[:9]), (x[9:25], y[9:25]), (x[25:], y[25:])]
    op = curvature_operator(model, CE, data, kind=kind, block_size=4, vectorize=vectorize)
    assert op.vectorize is vectorize
    v = np.random.default_rng(0).standard_normal((op.dim, 7))
    block = op.matmat(v)
    assert op.n_passes == 2 and op.n_matvec == 7  # blocks of 4 and 3
    cols = np.column_stack([op(v[:, i]) for i in range(7)])
    np.testing.assert_allclose(block, cols, rtol=0, atol=1e-12 * np.abs(cols).max())
    if kind == "hessian":
        exact = dense_hessian(model, CE, x, y)
        np.testing.assert_allclose(block, exact @ v, rtol=0, atol=1e-12 * np.abs(exact @ v).max())


def test_streamed_dataloader_is_the_dataset_hessian():
    """A DataLoader read anew on every product (stream=True): the Hessian of the mean loss over the
    whole dataset, equal to the dense Hessian of all 40 examples; a shuffling loader is refused."""
    from torch.utils.data import DataLoader, TensorDataset

    model = tiny_classifier()
    x, y = tiny_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=12, shuffle=False)  # 12, 12, 12, 4
    seen = []
    op = curvature_operator(model, CE, loader, stream=True, progress=lambda i, n: seen.append((i, n)))
    assert op.flat.streamed and len(op.flat.batches) == 4
    exact = dense_hessian(model, CE, x, y)
    got = op.dense()
    np.testing.assert_allclose(got, exact, atol=1e-12 * np.abs(exact).max())
    assert seen[-1] == (4, 4)
    # The same loader, materialized (stream=False), gives the same operator bit for bit.
    held = curvature_operator(model, CE, loader).dense()
    np.testing.assert_array_equal(held, got)
    with pytest.raises(ConfigError, match="shuffle=False"):
        curvature_operator(model, CE, DataLoader(TensorDataset(x, y), batch_size=12, shuffle=True), stream=True)
    with pytest.raises(ConfigError, match="one-shot"):
        curvature_operator(model, CE, iter([(x, y)]), stream=True)


def test_operator_runs_in_the_model_dtype_and_device():
    """dtype=None: products in the model's own precision (float32 here), float64 out."""
    model = tiny_classifier()  # float32 parameters
    x, y = tiny_data()
    op = curvature_operator(model, CE, (x, y), dtype=None)
    assert op.dtype == torch.float32 and op.device == next(model.parameters()).device
    assert op.vectorize is False  # on the CPU a block is looped on one kept graph (measured faster)
    out = op.matmat(np.eye(op.dim)[:, :3])
    assert out.dtype == np.float64
    exact = dense_hessian(model, CE, x, y)[:, :3]
    assert np.abs(out - exact).max() <= 1e-5 * np.abs(exact).max()


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
@pytest.mark.parametrize("max_batch,keep_graph", [(7, True), (None, False), (40, False)])
def test_split_batches_and_unkept_graph_are_the_same_operator(kind, max_batch, keep_graph):
    """Issue 15, memory: ``max_batch`` (pieces of at most that many examples, weighted by size) and
    ``keep_graph=False`` give the dense Hessian / the kept-graph operator to 1e-12; train mode refuses
    ``max_batch``."""
    model = tiny_classifier()
    x, y = tiny_data()
    ref = curvature_operator(model, CE, (x, y), kind=kind).dense()
    op = curvature_operator(model, CE, (x, y), kind=kind, max_batch=max_batch, keep_graph=keep_graph)
    got = op.dense()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    if kind == "hessian":
        exact = dense_hessian(model, CE, x, y)
        np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12 * np.abs(exact).max())
    with pytest.raises(ConfigError, match="`max_batch`"):
        curvature_operator(model, CE, (x, y), max_batch=0)
    with pytest.raises(ConfigError, match="`max_batch`"):
        curvature_operator(model, CE, (x, y), max_batch=8, mode="train")
    with pytest.raises(ConfigError, match="`keep_graph`"):
        curvature_operator(model, CE, (x, y), keep_graph=None)


def _allocated_peak(fn) -> int:
    """Peak bytes the torch CPU allocator holds during fn() above its state before (profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    ev = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    return max(0, int(np.cumsum([n for _, n in ev]).max())) if ev else 0


@pytest.mark.filterwarnings("ignore:Memory block")
def test_hvp_accumulates_in_place_and_pieces_lower_the_peak():
    """A float64 MLP (64-128-10, 9610 parameters, 512 examples): the product is accumulated straight
    into the returned array (a view of it, no copy), and splitting the batch into 4 pieces brings the
    first product's peak (torch allocator accounting) below half the full batch's."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10)).double()
    x = torch.randn(512, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (512,), generator=g)
    v = np.random.default_rng(0).standard_normal(9610)
    full = curvature_operator(model, CE, (x, y))
    first_full = _allocated_peak(lambda: full.matvec(v))
    out = full.matvec(v)
    assert out.base is not None  # a view of the array the products were accumulated into
    split = curvature_operator(model, CE, (x, y), max_batch=128)
    first_split = _allocated_peak(lambda: split.matvec(v))
    np.testing.assert_allclose(split.matvec(v), out, rtol=0, atol=1e-12 * np.abs(out).max())
    assert first_split < 0.5 * first_full, (first_split, first_full)
