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
