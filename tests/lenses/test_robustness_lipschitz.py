"""Lipschitz bounds against exact answers: dense SVD, the dense matrix of a convolution, affine stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from multilens.errors import ConfigError
from multilens.lenses.robustness.lipschitz import jacobian_norms, layer_constant, split_stages
from multilens.robustness import lipschitz_bounds


def seeded_mlp(seed: int, dims=(5, 7, 6, 3), act=nn.ReLU) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g))
            lin.bias.copy_(torch.randn(b, generator=g))
        layers.append(lin)
        if i < len(dims) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def test_linear_layer_constant_is_the_spectral_norm() -> None:
    lin = seeded_mlp(0, (9, 4))[0]
    lb = layer_constant(lin, 0, (9,), seed=0, tol=1e-12, max_iter=5000, dense_max=10**6)
    exact = float(np.linalg.svd(lin.weight.detach().double().numpy(), compute_uv=False)[0])
    assert lb.converged is True
    assert lb.constant == pytest.approx(exact, rel=1e-9)


def test_conv_layer_constant_matches_its_dense_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
    shape = (2, 7, 7)
    lb = layer_constant(conv, 0, shape, seed=0, tol=1e-12, max_iter=5000, dense_max=0)
    # the conv without bias as a dense matrix: columns are the images of the unit vectors
    eye = torch.eye(int(math.prod(shape)), dtype=torch.float64).reshape(-1, *shape)
    cols = nn.functional.conv2d(eye, conv.weight.detach(), stride=2, padding=1).reshape(eye.shape[0], -1)
    exact = float(torch.linalg.matrix_norm(cols.T, 2))
    assert lb.constant == pytest.approx(exact, rel=1e-8)


def test_batchnorm_constant_is_exact() -> None:
    bn = nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 9.0]))
        bn.weight.copy_(torch.tensor([1.0, -3.0, 0.5, 1.0]))
    lb = layer_constant(bn, 0, (4,), seed=0, tol=1e-10, max_iter=10, dense_max=0)
    assert lb.constant == pytest.approx(max(abs(w) / math.sqrt(v + bn.eps) for w, v in
                                            [(1, 1), (-3, 4), (0.5, 0.25), (1, 9)]))  # fmt: skip


def test_layernorm_has_no_global_bound() -> None:
    with pytest.raises(ConfigError, match="LayerNorm"):
        layer_constant(nn.LayerNorm(4), 0, (4,), seed=0, tol=1e-10, max_iter=10, dense_max=0)


def test_linear_model_lower_equals_upper() -> None:
    lin = seeded_mlp(2, (6, 3))
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0))
    rep = lipschitz_bounds(lin, x, n_stages=3, seed=0)
    exact = float(torch.linalg.matrix_norm(lin[0].weight.detach().double(), 2))
    assert rep.end_to_end.upper == pytest.approx(exact, rel=1e-9)
    assert rep.end_to_end.lower == pytest.approx(exact, rel=1e-9)
    assert [s.upper for s in rep.stages[1:]] == [1.0, 1.0]  # empty stages are the identity


def test_lower_le_upper_on_every_stage_and_jacobian_exact() -> None:
    net = seeded_mlp(3)
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(1))
    rep = lipschitz_bounds(net, x, n_stages=3, seed=0, ascent_steps=20)
    for s in (*rep.stages, rep.end_to_end):
        assert s.lower <= s.upper * (1 + 1e-12)
    assert rep.end_to_end.upper == pytest.approx(math.prod(s.upper for s in rep.stages))
    # the Jacobian norm at a point against autograd's full Jacobian
    f = net.double()
    h = x[:1].double()
    jac = torch.autograd.functional.jacobian(lambda v: f(v), h)[0, :, 0, :]
    assert float(jacobian_norms(f, h)[0]) == pytest.approx(float(torch.linalg.matrix_norm(jac, 2)), rel=1e-10)


def test_split_stages() -> None:
    layers = list(seeded_mlp(0, (4, 4, 4, 4, 4)))  # L R L R L R L
    assert split_stages(layers, 2) == [[0, 1, 2, 3], [4, 5, 6]]
    assert split_stages(layers, 4) == [[0, 1], [2, 3], [4, 5], [6]]
    assert split_stages(layers[:1], 3) == [[0], [], []]


def test_model_untouched() -> None:
    net = seeded_mlp(4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lipschitz_bounds(net, torch.randn(10, 5, generator=torch.Generator().manual_seed(0)), seed=0, ascent_steps=2)
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in net.state_dict().items())
