"""Calibration metrics against exact answers on small problems (tolerances fixed in advance)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.errors import DataError
from multilens.lenses.calibration import metrics as M
from multilens.lenses.calibration.api import calibration_metrics, ece, metric_interval


def test_torchmetrics_issue_3510_confidence_one_in_last_bin() -> None:
    # preds [0.95, 1.0], labels [1, 0]: both in the last of 15 bins; |mean conf 0.975 - acc 0.5| = 0.475.
    y, p = M.as_probs([1, 0], probs=[0.95, 1.0])
    assert M.ece(y, p, 15) == pytest.approx(0.475, abs=1e-12)
    assert M.bin_index(np.array([1.0, 0.95, 0.0, 14 / 15]), 15).tolist() == [14, 14, 0, 14]


def test_equal_width_ece_and_mce_by_hand() -> None:
    # 4 examples, 2 bins [0, .5), [.5, 1]; top-label conf of a 2-class row = max(p, 1 - p) >= 0.5,
    # so use 3 classes to populate the low bin.
    probs = np.array([[0.4, 0.3, 0.3], [0.45, 0.35, 0.2], [0.9, 0.05, 0.05], [0.7, 0.2, 0.1]])
    labels = np.array([0, 1, 0, 1])
    y, p = M.as_probs(labels, probs)
    # bin 0: conf .4, .45 (mean .425), correct 1, 0 (acc .5) -> gap .075; bin 1: conf .9, .7 (.8), acc .5 -> .3
    assert M.ece(y, p, 2) == pytest.approx(0.5 * 0.075 + 0.5 * 0.3, abs=1e-12)
    assert M.mce(y, p, 2) == pytest.approx(0.3, abs=1e-12)
    # equal-mass with 2 bins: sorted conf .4, .45 | .7, .9 -> same groups here
    assert M.ece_adaptive(y, p, 2) == pytest.approx(0.5 * 0.075 + 0.5 * 0.3, abs=1e-12)
    # equal-mass with 4 bins: each example alone: mean |a - c| = (.6 + .45 + .1 + .7) / 4
    assert M.ece_adaptive(y, p, 4) == pytest.approx((0.6 + 0.45 + 0.1 + 0.7) / 4, abs=1e-12)


def test_classwise_ece_by_hand() -> None:
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])
    y, p = M.as_probs(labels, probs)
    # 2 bins. class 0: p0 = .8, .6 (bin 1, freq of y=0: 1/2, mean .7 -> .2), .3 (bin 0, y!=0 -> .3)
    c0 = (2 * 0.2 + 1 * 0.3) / 3
    # class 1: p1 = .2, .4 (bin 0, mean .3, freq 1/2 -> .2), .7 (bin 1, y=1 -> .3)
    c1 = (2 * 0.2 + 1 * 0.3) / 3
    assert M.classwise_ece(y, p, 2) == pytest.approx((c0 + c1) / 2, abs=1e-12)


def test_nll_brier_accuracy_closed_form() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1])
    y, p = M.as_probs(labels, probs)
    assert M.nll(y, p) == pytest.approx(-(math.log(0.7) + math.log(0.1)) / 2, abs=1e-12)
    b = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert M.brier(y, p) == pytest.approx(b, abs=1e-12)
    assert M.accuracy(y, p) == 0.5
    z = np.log(probs)
    assert M.nll_logits(y, z) == pytest.approx(M.nll(y, p), abs=1e-12)


def test_debiased_squared_error_one_bin_by_hand() -> None:
    # one equal-mass bin of 4: conf .6 .7 .8 .9 (mean .75), correct 1 1 0 1 (abar .75): plug-in 0,
    # minus abar (1 - abar) / (n - 1) = .1875 / 3.
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    y, p = M.as_probs([0, 0, 1, 0], probs)
    assert M.debiased_sq_ce(y, p, 1) == pytest.approx(-0.1875 / 3, abs=1e-12)
    assert M.ece_debiased(y, p, 1) == 0.0


def test_debiased_error_is_unbiased_for_a_calibrated_model_and_plugin_is_not() -> None:
    # Labels drawn from the model's own probabilities: the true calibration error is 0.
    deb, plug = [], []
    for s in range(40):
        rng = np.random.default_rng(s)
        z = rng.normal(size=(400, 5)) * 2
        p = M.softmax(z)
        y = (rng.random(400)[:, None] > np.cumsum(p, 1)).sum(1)
        deb.append(M.debiased_sq_ce(y, p, 10))
        conf, cor = M.top_label(y, p)
        plug.append(M.ece_from_conf(conf, cor, 10, "mass") ** 2)
    d = np.asarray(deb)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert abs(d.mean()) <= 3 * se  # unbiased within 3 standard errors
    assert np.mean(plug) > 3 * se + abs(d.mean())  # the plug-in squared ECE is biased upward


def test_risk_coverage_and_aurc_by_hand() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    rc = M.risk_coverage_from_conf(conf, correct)
    np.testing.assert_allclose(rc.risk, [0, 1 / 2, 1 / 3, 1 / 4], atol=1e-15)
    assert rc.aurc == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=1e-15)
    assert rc.aurc_optimal == pytest.approx(0.25 / 4, abs=1e-15)
    np.testing.assert_allclose(rc.coverage, [0.25, 0.5, 0.75, 1.0])


def test_margins() -> None:
    z = np.array([[3.0, 1.0, 2.0], [0.0, 1.0, -1.0]])
    np.testing.assert_allclose(M.margins(z, np.array([0, 0])), [1.0, -1.0])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"labels": [0, 1], "probs": [[0.5, 0.6], [0.5, 0.5]]}, r"row 0 sums to 1\.1"),
        ({"labels": [0, 1], "probs": [[0.5, 0.5], [np.nan, 0.5]]}, r"row 1, class 0"),
        ({"labels": [0, 2], "probs": [[0.5, 0.5], [0.5, 0.5]]}, r"row 1: label 2 is out of range"),
        ({"labels": [0, 1.5], "probs": [[0.5, 0.5], [0.5, 0.5]]}, r"row 1"),
        ({"labels": [0, 1], "logits": [[0.0, np.inf], [1.0, 2.0]]}, r"row 0, class 1"),
        ({"labels": [0], "probs": [[0.5, 0.5], [0.5, 0.5]]}, r"1 rows"),
    ],
)
def test_malformed_inputs_name_the_row(kw: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        M.as_probs(**kw)


def test_intervals_cover_the_estimate_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 4)) * 3
    y = rng.integers(0, 4, 300)
    a = calibration_metrics(y, logits=z, n_boot=200, seed=3)
    b = calibration_metrics(y, logits=z, n_boot=200, seed=3)
    assert a == b
    for name, e in a.items():
        assert e.ci_low <= e.value <= e.ci_high or name == "ece_debiased", name
    assert a["nll"].value == pytest.approx(M.nll_logits(y, z), abs=1e-12)
    e = ece(y, logits=z, n_boot=200, seed=3)
    assert e.value == pytest.approx(M.ece(y, M.softmax(z), 15), abs=1e-15) and e.ci_low < e.value < e.ci_high
    sq = metric_interval("sq_ce_debiased", y, M.softmax(z), n_boot=200, seed=3)
    assert sq.low < sq.estimate < sq.high and "normal interval" in sq.method
