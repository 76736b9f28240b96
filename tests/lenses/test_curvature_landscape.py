"""Loss slices (filter normalization, centred grids), curvature fits, preconditioning and theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _curvature_helpers import assert_unchanged, snapshot, tiny_classifier, tiny_data
from torch import nn

from multilens.errors import ConfigError, ConvergenceWarning
from multilens.lenses.curvature.functional import FlatModel
from multilens.lenses.curvature.hvp import CurvatureOperator
from multilens.lenses.curvature.landscape import (
    centred_grid,
    directions_for,
    filter_normalize,
    fit_curvature,
    slice_1d,
    slice_2d,
)
from multilens.lenses.curvature.preconditioning import (
    condition_sweep,
    gd_to_tolerance,
    preconditioning_sweep,
    with_spectrum,
)
from multilens.linalg import lanczos
from multilens.theory.curvature import eos_threshold, gd_iterations, gd_rate, optimal_step

CE = nn.functional.cross_entropy


@pytest.mark.parametrize("n", [3, 7, 21, 41])
def test_centred_grid_contains_zero_exactly(n):
    g = centred_grid(0.3, n)
    assert g[n // 2] == 0.0 and g[0] == -0.3 and g[-1] == 0.3
    np.testing.assert_allclose(g, -g[::-1], atol=0)


def test_even_grid_is_refused():
    with pytest.raises(ConfigError, match="`n` must be odd"):
        centred_grid(1.0, 20)


def test_filter_normalization_matches_li_et_al():
    model = tiny_classifier()
    x, y = tiny_data()
    flat = FlatModel(model, CE, (x, y))
    d = filter_normalize(flat, np.random.default_rng(0).standard_normal(flat.dim))
    theta = flat.theta0_numpy()
    for name, shape in zip(flat.names, flat.shapes):
        sl = flat.slices[name]
        if len(shape) == 1:
            assert np.all(d[sl] == 0.0)  # biases are not perturbed (ignore='biasbn')
        else:
            dn = np.linalg.norm(d[sl].reshape(shape[0], -1), axis=1)
            wn = np.linalg.norm(theta[sl].reshape(shape[0], -1), axis=1)
            np.testing.assert_allclose(dn, wn, rtol=1e-12)  # every filter has its weight's norm


def test_slices_are_centred_on_the_trained_point_and_do_not_touch_the_model():
    model = tiny_classifier()
    x, y = tiny_data()
    before = snapshot(model)
    flat = FlatModel(model, CE, (x, y))
    rng = np.random.default_rng(1)
    u, v, labels, norm = directions_for(flat, "random", rng, None)
    s2 = slice_2d(flat, u, v, 1.0, 9, labels=labels, normalization=norm)
    assert s2.losses[4][4] == flat.loss0 == s2.center_loss
    s1 = slice_1d(flat, u, 1.0, 11, label="u", normalization=norm)
    assert s1.losses[5] == flat.loss0 and s1.mode == "eval"
    assert s2.to_dict()["losses"][4][4] == flat.loss0
    assert_unchanged(model, before)


def test_slice_curvature_along_top_eigenvector_is_the_eigenvalue():
    """Worked example 7's check on a smooth (tanh) net: d^2/da^2 L(theta + a v1) at 0 = lambda_1."""
    model = tiny_classifier("tanh")
    x, y = tiny_data()
    flat = FlatModel(model, CE, (x, y))
    eig = lanczos(CurvatureOperator(flat), flat.dim, 2, "LA", seed=0)
    u, v, labels, _ = directions_for(flat, "eigen+random", np.random.default_rng(0), eig.eigenvectors)
    assert abs(u @ v) < 1e-12 and np.linalg.norm(v) == pytest.approx(1.0)
    s = slice_1d(flat, u, 1e-3, 21, label=labels[0], normalization="unit")
    fit = fit_curvature(s.alphas, s.losses)
    assert fit.curvature == pytest.approx(eig.eigenvalues[0], rel=1e-6)


def test_fit_curvature_on_an_exact_polynomial():
    a = centred_grid(0.5, 15)
    f = 1.0 + 0.3 * a + 2.0 * a**2 - 0.7 * a**3 + 0.1 * a**4
    fit = fit_curvature(a, f)
    assert fit.curvature == pytest.approx(4.0, rel=1e-10)
    with pytest.raises(ConfigError, match="`alphas`"):
        fit_curvature(a[:4], f[:4])


def test_gd_iterations_on_constructed_quadratics_match_theory():
    rows = condition_sweep(40, (10.0, 100.0), 1e-6, seed=0)
    for r in rows:
        assert r.lanczos_converged and r.lanczos_rel_err < 1e-10
        assert abs(r.worst_iterations - r.theory_iterations) <= 1  # the bound is attained
        assert r.random_iterations <= r.theory_iterations + 1


def test_jacobi_preconditioning_removes_diagonal_scaling():
    with pytest.warns(ConvergenceWarning, match="did not reach"):  # the bad control is censored at its cap
        rows = preconditioning_sweep(30, 5.0, (1.0, 30.0), 1e-6, seed=0)
    for p in rows:
        assert p.kappa_jacobi == pytest.approx(rows[0].kappa_jacobi, rel=1e-8)  # kappa(M)'s, whatever S is
        assert abs(p.measured_jacobi - p.theory_jacobi) <= 1
    big = rows[1]
    assert big.kappa > 100 * big.kappa_jacobi
    assert big.gain_measured == pytest.approx(big.gain_theory, rel=0.02)
    assert big.kappa_bad > big.kappa  # the control makes things worse
    assert not big.bad_converged and big.measured_bad > big.measured_plain


def test_gd_warns_when_capped():
    h, _ = with_spectrum(np.geomspace(1.0, 1e3, 20), np.random.default_rng(0))
    with pytest.warns(ConvergenceWarning, match="did not reach"):
        r = gd_to_tolerance(h, np.ones(20), optimal_step(1.0, 1e3), 1e-8, 10)
    assert not r.converged and r.iterations == 10


def test_theory_closed_forms():
    assert gd_rate(1.0) == 0.0 and gd_rate(3.0) == 0.5
    assert gd_iterations(3.0, 1e-3) == math.ceil(math.log(1e-3) / math.log(0.5))
    assert eos_threshold(0.5) == 4.0 and eos_threshold(0.5, momentum=0.9) == pytest.approx(7.6)
    with pytest.raises(ConfigError, match="`lr`"):
        eos_threshold(0.0)
    with pytest.raises(ConfigError, match="`kappa`"):
        gd_rate(0.5)


def test_eval_and_train_mode_are_both_restored():
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    x, y = tiny_data()
    flat = FlatModel(model, CE, (x, y), mode="eval")
    a = flat.loss()
    b = flat.loss()
    assert a == b  # dropout is off in eval mode: deterministic
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(flat.outputs(None, x), flat.outputs(None, x))
