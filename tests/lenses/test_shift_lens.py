"""The shift lens on users' own arrays (hand-built subjects) and its checks' ability to fail."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.data.shift import gaussian_covariate_shift, spurious_groups
from multilens.errors import ConfigError
from multilens.lenses.shift import (
    CovariateData,
    GroupData,
    LabelShiftData,
    Settings,
    ShiftSubject,
    VarianceSettings,
    measure,
)


def _user_subject(label_shift: bool = True) -> ShiftSubject:
    # Covariate shift with a known ratio; the "model" is a fixed line, the loss its squared error.
    cs = gaussian_covariate_shift(3000, 3000, shift=0.7, seed=0)
    loss_s = (cs.y_s - 0.9 * cs.x_s[:, 0]) ** 2
    big = gaussian_covariate_shift(10, 400_000, shift=0.7, seed=11)
    target_risk = float(np.mean((big.y_t - 0.9 * big.x_t[:, 0]) ** 2))
    cov = CovariateData(loss_s, cs.x_s, cs.x_t, cs.true_ratio(cs.x_s), target_risk, "Monte Carlo, 400000 draws")
    # Label shift: two Gaussian classes, exact source posteriors at priors .5/.5; target prior of class 1 = .2.
    rng = np.random.default_rng(12)
    yv = rng.integers(0, 2, 3000)
    xv = np.where(yv == 1, 1.0, -1.0) + rng.standard_normal(3000)
    yt = (rng.random(3000) < (0.2 if label_shift else 0.5)).astype(int)
    xt = np.where(yt == 1, 1.0, -1.0) + rng.standard_normal(3000)
    post = lambda x: np.column_stack([1 / (1 + np.exp(2 * x)), 1 / (1 + np.exp(-2 * x))])  # noqa: E731
    lab = LabelShiftData(yv, post(xv), post(xt), yt, np.bincount(yt, minlength=2) / yt.size, np.array([0.5, 0.5]))
    sp = spurious_groups(1500, 2000, seed=13)
    grp = GroupData(sp.x_train, sp.y_train, sp.g_train, sp.x_test, sp.y_test, sp.g_test)
    return ShiftSubject(cov, lab, grp, (cs.x_s[:500], cs.x_t[:500]))


def _settings() -> Settings:
    s = Settings.for_profile("smoke")
    return dataclasses.replace(s, variance=None, misspecification=None, prevalence=None)


def test_measure_on_user_arrays() -> None:
    r = measure(_user_subject(), _settings(), seed=0)
    assert r.parts == ("covariate", "label", "groups", "detection")
    assert r.check("iw_risk_true_covers_target_risk").passed is True
    assert r.check("target_priors_covered").passed is True
    assert r.check("em_target_priors_covered").passed is True
    assert r.estimate("em_prior_1").value == pytest.approx(0.2, abs=0.03)
    assert r.check("mmd_detects_shift").passed is True
    assert r.check("reweighting_improves_worst_group").passed is True
    assert 0 < r.metrics["shift.ess_fraction_true"] < 1


def test_priors_check_fails_when_the_truth_is_wrong() -> None:
    subj = _user_subject()
    lab = dataclasses.replace(subj.label, true_priors=np.array([0.5, 0.5]))  # not the realised priors
    r = measure(dataclasses.replace(subj, label=lab), _settings(), seed=0)
    assert r.check("target_priors_covered").passed is False


def test_coverage_check_fails_with_the_wrong_ratio() -> None:
    subj = _user_subject()
    cov = dataclasses.replace(subj.covariate, ratio_source=2.0 * subj.covariate.ratio_source)  # a mis-scaled ratio
    r = measure(dataclasses.replace(subj, covariate=cov), _settings(), seed=0)
    assert r.check("iw_risk_true_covers_target_risk").passed is False


def test_subject_without_parts_skips_them() -> None:
    r = measure(ShiftSubject(), _settings(), seed=0)
    assert r.parts == ("covariate", "label", "groups", "detection")
    assert not r.checks and len([n for n in r.notes if "skipped" in n]) == 4


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="variance.shifts"):
        VarianceSettings(shifts=(0.0, 1.0))
    with pytest.raises(ConfigError, match="rho"):
        Settings(rho=1.0)
