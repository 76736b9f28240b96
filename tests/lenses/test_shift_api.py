"""Public functions of multilens.shift and multilens.calibration on users' arrays."""

from __future__ import annotations

import numpy as np
import pytest

from multilens import calibration, shift
from multilens.data.shift import gaussian_covariate_shift
from multilens.errors import DataError


def test_importance_weights_given_and_estimated() -> None:
    cs = gaussian_covariate_shift(2000, 2000, shift=0.5, sd_t=0.8, seed=0)
    given = shift.importance_weights(cs.x_s, ratio=cs.true_ratio)
    np.testing.assert_allclose(given.weights, cs.true_ratio(cs.x_s))
    assert given.ess.value == pytest.approx(shift.kish_ess(given.weights)) and given.ess.no_interval_reason
    est = shift.importance_weights(cs.x_s, cs.x_t, quadratic=True, seed=1, c=100.0)
    # log-ratio of two Gaussians is quadratic: the estimate tracks the truth in the bulk
    bulk = np.abs(cs.x_s[:, 0]) < 1.5
    err = np.median(np.abs(np.log(est.weights[bulk]) - cs.log_ratio(cs.x_s[bulk])))
    assert err < 0.15
    sn = shift.importance_weights(cs.x_s, ratio=cs.true_ratio, self_normalize=True, clip_quantile=0.99)
    assert sn.weights.mean() == pytest.approx(1.0) and "clipped" in sn.method
    r = shift.weighted_risk(np.ones(2000), given.weights)
    assert r.ci_low < r.value < r.ci_high
    with pytest.raises(DataError):
        shift.importance_weights(cs.x_s)


def test_bbse_and_em_public() -> None:
    rng = np.random.default_rng(0)
    yv = rng.integers(0, 2, 3000)
    xv = np.where(yv == 1, 1.0, -1.0) + rng.standard_normal(3000)
    yt = (rng.random(3000) < 0.25).astype(int)
    xt = np.where(yt == 1, 1.0, -1.0) + rng.standard_normal(3000)
    post = lambda x: np.column_stack([1 / (1 + np.exp(2 * x)), 1 / (1 + np.exp(-2 * x))])  # noqa: E731
    b = shift.bbse(yv, post(xv), post(xt), n_boot=100, seed=0)
    truth = yt.mean()
    assert b.priors[1].ci_low <= truth <= b.priors[1].ci_high and b.condition_number > 1
    e = shift.em_priors(post(xt), [0.5, 0.5], n_boot=50, seed=0)
    assert e.priors[1].ci_low <= truth <= e.priors[1].ci_high and e.converged


def test_calibration_public_names() -> None:
    y = np.array([1, 0])
    assert calibration.ece(y, probs=[0.95, 1.0], n_boot=20).value == pytest.approx(0.475)
    assert calibration.TemperatureScaler is not None and callable(calibration.temperature_scale)
