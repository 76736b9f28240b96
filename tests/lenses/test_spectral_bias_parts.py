"""The spectral-bias experiments' parts against exact answers (closed-form kernels, linear models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multilens.lenses.spectral_bias import kernel_flow as kf
from multilens.lenses.spectral_bias import mlp_fourier as mf
from multilens.models import MLPSpec, build_mlp


def test_rff_kernel_approximates_the_gaussian_kernel(seed: int) -> None:
    x = np.linspace(0.0, 1.0, 9)
    ell = 0.2
    exact = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * ell**2))
    # Each entry of Phi Phi^T is a mean of D iid terms with variance <= 2: check within 5 standard errors.
    d = 20_000
    phi = kf.random_fourier_features(x, d, ell, seed)
    assert np.max(np.abs(phi @ phi.T - exact)) <= 5 * math.sqrt(2.0 / d)


def test_kernel_gd_follows_the_discrete_law_exactly(seed: int) -> None:
    x = mf.grid(32)
    y = mf.fourier_target(x, (1, 5), (1.0, 0.3))
    phi = kf.random_fourier_features(x, 64, 0.05, seed)
    run = kf.run_kernel_gd(phi, y, 0.5, 300)
    assert run.dev_discrete <= 1e-10
    live = np.abs(run.c) >= 1e-6 * np.abs(run.c).max()
    assert np.all(run.dev_continuous[live] <= run.bound[live] * (1 + 1e-9) + 1e-12)
    tau_m = kf.fit_steps_measured(run, 0.1)
    tau_p = kf.fit_steps_predicted(run, 0.1)
    within = live & (tau_p <= 300)
    assert within.sum() >= 3
    assert np.all(np.abs(tau_m[within] - tau_p[within]) <= 1)
    # The basis returned is the eigenbasis of K/n the projections were measured in.
    np.testing.assert_allclose(phi @ (phi.T @ run.u) / 32, run.u * run.lam[None, :], atol=1e-12)
    np.testing.assert_allclose(run.u.T @ run.u, np.eye(32), atol=1e-12)


def test_batched_mlp_is_the_same_function_as_each_model(seed: int) -> None:
    for act in ("relu", "tanh", "gelu"):
        models = [build_mlp(MLPSpec(3, (7, 5), 1, act), seed + s) for s in range(3)]  # type: ignore[arg-type]
        x = np.random.default_rng(seed).standard_normal((11, 3))
        assert mf.batched_matches_models(models, act, x) <= 1e-12


def test_empirical_ntk_of_a_linear_model_is_the_feature_gram(seed: int) -> None:
    # f(x) = w^T x + b: the Jacobian row is [x, 1], so Theta = X X^T + 1 exactly.
    model = build_mlp(MLPSpec(4, (), 1), seed)
    x = np.random.default_rng(seed).standard_normal((6, 4))
    theta = mf.empirical_ntk(model, torch.as_tensor(x))
    np.testing.assert_allclose(theta, x @ x.T + 1.0, atol=1e-12)


def test_empirical_ntk_matches_finite_differences(seed: int) -> None:
    model = build_mlp(MLPSpec(1, (5,), 1, "tanh"), seed).double()
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)[:, None]
    theta = mf.empirical_ntk(model, x)
    params = list(model.parameters())
    flat = torch.cat([p.detach().ravel() for p in params])
    h = 1e-6
    cols = []
    for i in range(flat.numel()):
        outs = []
        for sgn in (1.0, -1.0):
            v = flat.clone()
            v[i] += sgn * h
            torch.nn.utils.vector_to_parameters(v, params)
            with torch.no_grad():
                outs.append(model(x)[:, 0])
        cols.append((outs[0] - outs[1]) / (2 * h))
    torch.nn.utils.vector_to_parameters(flat, params)
    j = torch.stack(cols, dim=1).numpy()
    np.testing.assert_allclose(theta, j @ j.T, rtol=1e-6, atol=1e-8)


def test_linear_model_on_fourier_features_follows_its_ntk_prediction(seed: int) -> None:
    # With no hidden layer the network is linear in its parameters: the NTK prediction is exact
    # (up to float32 training), so the measured per-frequency error curve must follow it.
    x = mf.grid(32)
    y = mf.fourier_target(x, (1, 4), (1.0, 0.5))
    run = mf.run_architecture("fourier", x, y, (1, 4), [seed, seed + 1], 8, 0, "relu", 0.5, 300, 0.1, 6, 8, 3.0)
    assert not run.diverged.any()
    np.testing.assert_allclose(run.err, run.err_pred, atol=2e-4)
    fitted = np.isfinite(run.tau)
    assert fitted.any()
    assert np.all(np.abs(run.tau[fitted] - run.tau_pred[fitted]) <= 2)


def test_rank_correlation_of_constant_rankings_is_undefined() -> None:
    assert math.isnan(mf.rank_correlation(np.array([3.0, 3.0, 3.0]), np.array([1.0, 2.0, 3.0])))
    assert mf.rank_correlation(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)


def test_fourier_inputs_and_target() -> None:
    x = mf.grid(16)
    y = mf.fourier_target(x, (2,), (0.5,))
    spec = np.fft.rfft(y)
    assert np.argmax(np.abs(spec)) == 2
    assert abs(spec[2]) == pytest.approx(0.5 * 16 / 2)
    feats = mf.fourier_feature_inputs(x, 5, 3.0, 0)
    assert feats.shape == (16, 10)
    np.testing.assert_allclose(feats[:, :5] ** 2 + feats[:, 5:] ** 2, 1.0)
    assert mf.first_crossing(np.array([1.0, 0.5, 0.05, 0.2]), 0.1) == 2.0
    assert math.isinf(mf.first_crossing(np.array([1.0, 0.5]), 0.1))
