"""Temperature, vector and matrix scaling against closed forms and planted temperatures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.lenses.calibration import metrics as M
from multilens.lenses.calibration.api import temperature_scale
from multilens.lenses.calibration.temperature import AffineScaler, TemperatureScaler, fit_temperature


def test_temperature_closed_form_binary() -> None:
    # Every example has logits [2, 0]; 8 of 10 have label 0. NLL is minimised where
    # sigmoid(2 / T) = 0.8, i.e. T = 2 / log 4.
    z = np.tile([2.0, 0.0], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    f = fit_temperature(y, z)
    assert f.temperature == pytest.approx(2 / math.log(4), rel=1e-7)
    assert f.converged and not f.at_bound and f.n_iter > 0
    assert f.nll_after <= f.nll_before


def test_gradient_in_log_t_matches_finite_difference() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 3)) * 2
    y = rng.integers(0, 3, 50)
    from multilens.lenses.calibration.temperature import nll_and_grad_log_t

    h = 1e-6
    _, g = nll_and_grad_log_t(y, z, 0.3)
    fd = (nll_and_grad_log_t(y, z, 0.3 + h)[0] - nll_and_grad_log_t(y, z, 0.3 - h)[0]) / (2 * h)
    assert g == pytest.approx(fd, abs=1e-7)


@pytest.mark.parametrize("t0", [0.5, 2.5])
def test_planted_temperature_recovered_within_its_interval(t0: float) -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=(4000, 6)) * 2.0
    p = M.softmax(base)
    y = (rng.random(4000)[:, None] > np.cumsum(p, 1)).sum(1)
    z = base * t0  # calibrated logits are z / t0
    ts = temperature_scale(y[:2000], z[:2000], test_labels=y[2000:], test_logits=z[2000:], n_boot=100, seed=0)
    assert ts.temperature.ci_low <= t0 <= ts.temperature.ci_high
    assert ts.temperature.value == pytest.approx(t0, rel=0.1)
    assert ts.val_nll_after <= ts.val_nll_before
    assert ts.test["nll"].value < ts.test_before["nll"].value


def test_fit_never_increases_validation_nll_on_random_logits() -> None:
    for s in range(20):
        rng = np.random.default_rng(s)
        z = rng.normal(size=(60, 4)) * rng.uniform(0.1, 5)
        y = rng.integers(0, 4, 60)
        f = fit_temperature(y, z)
        assert f.nll_after <= f.nll_before + 1e-12


def test_bound_hit_is_not_converged() -> None:
    # Labels opposite to confident logits: the NLL keeps falling as T grows to the bound.
    z = np.tile([5.0, 0.0], (10, 1))
    y = np.array([1] * 6 + [0] * 4)
    f = fit_temperature(y, z, t_max=3.0)
    assert f.at_bound and not f.converged


def test_scaler_estimators_and_affine_variants() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1500, 4)) * 2
    p = M.softmax(base)
    y = (rng.random(1500)[:, None] > np.cumsum(p, 1)).sum(1)
    z = base * 3.0 + np.array([0.5, 0.0, -0.5, 0.0])
    ts = TemperatureScaler().fit(y, z)
    assert ts.converged_ and ts.temperature_ == pytest.approx(3.0, rel=0.15)
    for kind in ("vector", "matrix"):
        a = AffineScaler(kind).fit(y, z)
        assert a.converged_ and a.nll_after_ <= a.nll_before_
        # the affine family contains temperature scaling: at least as good on the fit data (small l2)
        assert a.nll_after_ <= ts.fit_.nll_after + 1e-3
    with pytest.raises(ConfigError):
        AffineScaler("diag")


@pytest.mark.parametrize("kind", ["vector", "matrix"])
def test_affine_scaling_gradient_matches_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40)
    a = AffineScaler(kind, l2=0.01)
    k = 3
    theta = rng.normal(size=(2 * k if kind == "vector" else k * k + k))
    _, g = a._objective(theta, z, y)
    h = 1e-6
    fd = np.array([(a._objective(theta + h * e, z, y)[0] - a._objective(theta - h * e, z, y)[0]) / (2 * h)
                   for e in np.eye(theta.size)])  # fmt: skip
    np.testing.assert_allclose(g, fd, atol=1e-7)


def test_vector_scaling_recovers_a_planted_per_class_scale() -> None:
    # Labels drawn from softmax(a * z + b) with known (a, b); vector scaling of z must recover them.
    rng = np.random.default_rng(6)
    z = rng.normal(size=(20000, 3)) * 2
    a0, b0 = np.array([0.5, 1.0, 1.5]), np.array([0.3, 0.0, -0.3])
    p = M.softmax(z * a0 + b0)
    y = (rng.random(20000)[:, None] > np.cumsum(p, 1)).sum(1)
    fit = AffineScaler("vector", l2=0.0).fit(y, z)
    # softmax is invariant to a common shift of b: compare b up to its mean
    np.testing.assert_allclose(np.diag(fit.w_), a0, atol=0.05)
    np.testing.assert_allclose(fit.b_ - fit.b_.mean(), b0 - b0.mean(), atol=0.05)


def test_reliability_counts_by_hand() -> None:
    probs = np.array([[0.95, 0.05], [0.55, 0.45], [1.0, 0.0], [0.6, 0.4]])
    y, p = M.as_probs([0, 1, 0, 0], probs)
    rel = M.reliability(y, p, 2)
    assert rel.counts.tolist() == [0, 4]
    assert rel.confidence[1] == pytest.approx((0.95 + 0.55 + 1.0 + 0.6) / 4)
    assert rel.accuracy[1] == pytest.approx(0.75) and np.isnan(rel.accuracy[0])
