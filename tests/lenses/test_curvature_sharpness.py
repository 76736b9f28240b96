"""Sharpness (SAM, ASAM) and reparameterization invariance against closed forms and exact Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _curvature_helpers import (
    TORCH_FWD_AD_FILTER,
    assert_unchanged,
    dense_hessian,
    snapshot,
    tiny_classifier,
    tiny_data,
)
from torch import nn

from multilens.curvature import worst_case_sharpness
from multilens.errors import ConfigError, ConvergenceWarning
from multilens.lenses.curvature.functional import FlatModel
from multilens.lenses.curvature.invariance import (
    build_layernorm_mlp,
    max_output_difference,
    rescale_before_norm,
    rescale_relu_layers,
)
from multilens.lenses.curvature.sharpness import ascent_sharpness, quadratic_bounds

pytestmark = pytest.mark.filterwarnings(TORCH_FWD_AD_FILTER)
CE = nn.functional.cross_entropy
MSE = nn.functional.mse_loss


def least_squares_at_minimum(seed: int = 0):
    """A linear model at its exact least-squares solution: L(theta + d) - L(theta) = d^T H d / 2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 1, generator=g, dtype=torch.float64)
    x1 = torch.cat([x, torch.ones(50, 1, dtype=torch.float64)], dim=1)
    sol = torch.linalg.lstsq(x1, y).solution  # (5, 1)
    model = nn.Linear(4, 1, device="meta").to_empty(device="cpu").double()
    with torch.no_grad():
        model.weight.copy_(sol[:4].T)
        model.bias.copy_(sol[4])
    h = 2.0 / 50.0 * (x1.T @ x1).numpy()  # Hessian of the mean squared error, in (w, b) order
    return model, x, y, h


def test_sam_at_a_minimum_of_a_quadratic_is_half_rho_squared_lambda_max():
    model, x, y, h = least_squares_at_minimum()
    lam = np.linalg.eigvalsh(h)[-1]
    before = snapshot(model)
    for rho in (0.01, 0.1, 1.0):
        r = worst_case_sharpness(model, MSE, (x, y), rho, n_steps=200, rtol=1e-9)
        exact = 0.5 * rho**2 * lam
        assert r.converged
        # A lower bound on the maximum (it is the loss at a feasible point), and close to it.
        assert exact * (1 - 1e-3) <= r.value <= exact * (1 + 1e-9)
        assert r.value >= r.first_step_value - 1e-15
        assert r.delta_norm <= rho * (1 + 1e-12)
    assert_unchanged(model, before)


def test_quadratic_bounds_contain_the_exact_trust_region_value():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    lam = np.array([3.0, 1.0, 0.5, -0.2, -0.5, 0.1])
    h = (q * lam) @ q.T
    g = rng.standard_normal(6)
    rho = 0.3
    # Exhaustive search on the sphere (the max of g.d + d.H d/2 over the ball is on the sphere here).
    d = rng.standard_normal((200000, 6))
    d = rho * d / np.linalg.norm(d, axis=1, keepdims=True)
    best = float(np.max(d @ g + 0.5 * np.einsum("ij,jk,ik->i", d, h, d)))
    gn = np.linalg.norm(g)
    v1 = q[:, 0]
    b = quadratic_bounds(rho, gn, float(g @ h @ g) / gn**2, float(g @ v1), 3.0)
    assert b.lower <= best + 1e-9 and best <= b.upper + 1e-9


def test_asam_is_invariant_and_sam_is_not_under_relu_rescaling():
    model = tiny_classifier("relu")
    x, y = tiny_data()
    c = 3.0
    other = rescale_relu_layers(model, "0", "2", c)
    diff, scale = max_output_difference(model, other, x)
    assert diff <= 1e-12 * scale
    kw = dict(n_steps=60, seed=0)
    a0 = worst_case_sharpness(model, CE, (x, y), 0.05, adaptive=True, **kw)
    a1 = worst_case_sharpness(other, CE, (x, y), 0.05, adaptive=True, **kw)
    assert a1.value == pytest.approx(a0.value, rel=1e-9)
    s0 = worst_case_sharpness(model, CE, (x, y), 0.05, **kw)
    s1 = worst_case_sharpness(other, CE, (x, y), 0.05, **kw)
    assert abs(s1.value - s0.value) > 1e-3 * abs(s0.value)


def test_relu_rescaling_transforms_the_hessian_exactly():
    """H_phi = D^{-1} H_theta D^{-1} with D = diag(c on layer 0, 1/c on layer 2's weight, 1 on its bias)."""
    model = tiny_classifier("relu")
    x, y = tiny_data()
    c = 2.5
    other = rescale_relu_layers(model, "0", "2", c)
    h0 = dense_hessian(model, CE, x, y)
    h1 = dense_hessian(other, CE, x, y)
    sizes = [p.numel() for p in model.parameters()]  # 0.weight, 0.bias, 2.weight, 2.bias
    dvec = np.concatenate([np.full(sizes[0] + sizes[1], c), np.full(sizes[2], 1.0 / c), np.ones(sizes[3])])
    np.testing.assert_allclose(h1, h0 / np.outer(dvec, dvec), atol=1e-12 * np.abs(h0).max() * c**2)
    assert abs(np.linalg.eigvalsh(h1)[-1] - np.linalg.eigvalsh(h0)[-1]) > 1e-3


def test_layernorm_scale_invariance():
    model = build_layernorm_mlp(6, 8, 3, seed=0)
    x, y = tiny_data()
    for c in (0.1, 7.0):
        other = rescale_before_norm(model, "0", c)
        diff, scale = max_output_difference(model, other, x)
        # Exact but for LayerNorm's eps = 1e-12: relative deviation ~ eps |1 - 1/c^2| / (2 Var) <~ 1e-8.
        assert diff <= 1e-8 * scale
        # The gradient w.r.t. the scale-invariant layer scales by 1/c.
        _, g0 = FlatModel(model, CE, (x, y), params="0").loss_and_grad()
        _, g1 = FlatModel(other, CE, (x, y), params="0").loss_and_grad()
        np.testing.assert_allclose(g1, g0 / c, atol=1e-9 * np.abs(g0).max())


def test_rescaling_refuses_non_homogeneous_layers():
    model = tiny_classifier("tanh")
    with pytest.raises(ConfigError, match="separated only by ReLU"):
        rescale_relu_layers(model, "0", "2", 2.0)
    with pytest.raises(ConfigError, match="`c`"):
        rescale_relu_layers(tiny_classifier("relu"), "0", "2", -1.0)
    with pytest.raises(ConfigError, match="`first`"):
        rescale_relu_layers(tiny_classifier("relu"), "1", "2", 2.0)


def test_ascent_warns_at_its_cap():
    model = tiny_classifier("relu")
    x, y = tiny_data()
    flat = FlatModel(model, CE, (x, y))
    with pytest.warns(ConvergenceWarning, match="sharpness ascent"):
        r = ascent_sharpness(flat, 0.5, n_steps=1, rtol=1e-15, seed=0)
    assert not r.converged and r.n_iter == 1
    with pytest.raises(ConfigError, match="`rho`"):
        ascent_sharpness(flat, 0.0)
