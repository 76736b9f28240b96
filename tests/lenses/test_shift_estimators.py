"""Shift estimators against exact answers on small problems (tolerances fixed in advance)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multilens.data.shift import (
    digits_feature_shift,
    gaussian_covariate_shift,
    regression_target,
    resample_to_priors,
    spurious_groups,
)
from multilens.errors import DataError
from multilens.lenses.shift import estimators as E
from multilens.lenses.shift import theory as TH


def test_kish_ess_exact() -> None:
    assert E.kish_ess(np.ones(7)) == pytest.approx(7.0)
    assert E.kish_ess(np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    assert E.kish_ess(np.array([1.0, 2.0, 3.0])) == pytest.approx(36 / 14)
    np.testing.assert_allclose(E.self_normalize(np.array([1.0, 3.0])), [0.5, 1.5])
    np.testing.assert_allclose(E.clip_weights(np.arange(101.0), 0.5), np.minimum(np.arange(101.0), 50.0))


def test_weighted_risk_exact_and_validation() -> None:
    loss = np.array([1.0, 2.0, 3.0, 4.0])
    w = np.array([0.5, 1.0, 1.5, 1.0])
    r = E.weighted_risk(loss, w)
    assert r.estimate == pytest.approx(np.mean(w * loss))
    se = np.std(w * loss, ddof=1) / 2
    assert r.interval.stderr == pytest.approx(se)
    sn = E.weighted_risk(loss, w, self_normalized=True)
    assert sn.estimate == pytest.approx(np.sum(w * loss) / np.sum(w))
    assert r.ess == pytest.approx(16 / 4.5)
    with pytest.raises(DataError, match="row 1"):
        E.weighted_risk(loss, np.array([1.0, -1.0, 1.0, 1.0]))


def test_bbse_recovers_priors_exactly_from_an_exact_confusion_matrix() -> None:
    # C = [[.4, .1], [.1, .4]] (rows: prediction, columns: label); pi_t = [.8, .2] -> w = [1.6, .4],
    # mu = C w = [.68, .32].
    yv = np.array([0] * 4 + [1] * 1 + [0] * 1 + [1] * 4)
    hv = np.array([0] * 4 + [0] * 1 + [1] * 1 + [1] * 4)
    ht = np.array([0] * 68 + [1] * 32)
    b = E.bbse(yv, hv, ht, 2)
    np.testing.assert_allclose(b.priors, [0.8, 0.2], atol=1e-12)
    np.testing.assert_allclose(b.weights, [1.6, 0.4], atol=1e-12)
    assert b.condition_number == pytest.approx(5 / 3)


def test_em_on_one_hot_posteriors_is_the_predicted_frequency() -> None:
    p = np.eye(3)[np.array([0, 0, 0, 1, 2, 2])]
    e = E.em_priors(p, np.array([1 / 3] * 3))
    np.testing.assert_allclose(e.priors, [0.5, 1 / 6, 1 / 3], atol=1e-12)
    assert e.converged and e.n_iter == 2


def test_em_recovers_known_target_priors_from_exact_posteriors() -> None:
    # Two Gaussian classes N(-1, 1), N(1, 1); source priors .5/.5 give exact posteriors sigmoid(2x).
    rng = np.random.default_rng(0)
    n = 40000
    y = (rng.random(n) < 0.2).astype(int)  # target prior of class 1 is 0.2
    x = np.where(y == 1, 1.0, -1.0) + rng.standard_normal(n)
    p1 = 1 / (1 + np.exp(-2 * x))
    e = E.em_priors(np.column_stack([1 - p1, p1]), np.array([0.5, 0.5]))
    se = math.sqrt(0.2 * 0.8 / n)
    assert abs(e.priors[1] - y.mean()) < 6 * se  # the MLE is efficient: a few binomial SEs


def test_correct_posteriors_by_hand() -> None:
    q = E.correct_posteriors(np.array([[0.5, 0.5]]), np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    np.testing.assert_allclose(q, [[0.9, 0.1]])


def test_mmd_matches_brute_force_and_permutation_behaviour() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((5, 2)) + 0.5
    t = E.mmd_test(x, y, n_perm=20, seed=0)
    k = lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * t.bandwidth**2))  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
    kyy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    kxy = sum(k(a, b) for a in x for b in y) / 30
    assert t.statistic == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)
    far = E.mmd_test(rng.standard_normal((60, 2)), rng.standard_normal((60, 2)) + 3, n_perm=50, seed=0)
    assert far.p_value == pytest.approx(1 / 51)


def test_domain_classifier_test_and_ratio() -> None:
    rng = np.random.default_rng(2)
    sep = E.domain_classifier_test(rng.standard_normal((200, 2)), rng.standard_normal((200, 2)) + 5, seed=0)
    assert sep.statistic == 1.0 and sep.p_value < 1e-20
    # N(0, 1) vs N(1, 1): log w(x) = x - 1/2, linear; the cross-fitted classifier recovers it.
    xs, xt = rng.standard_normal(8000), 1.0 + rng.standard_normal(8000)
    w = E.domain_classifier_ratio(xs, xt, seed=0, c=100.0)
    central = np.abs(xs) < 1.5
    assert np.median(np.abs(np.log(w[central]) - (xs[central] - 0.5))) < 0.1


def test_misspecified_projection_and_excess_against_monte_carlo() -> None:
    rng = np.random.default_rng(3)
    mu, s = 1.0, 0.7
    x = mu + s * rng.standard_normal(2_000_000)
    phi = np.column_stack([np.ones_like(x), x])
    th_mc = np.linalg.lstsq(phi, regression_target(x[:, None]), rcond=None)[0]
    th = TH.misspecified_projection(mu, s)
    np.testing.assert_allclose(th, th_mc, atol=5e-3)
    other = th + np.array([0.3, -0.2])
    g = regression_target(x[:, None])
    mc = np.mean((g - phi @ other) ** 2) - np.mean((g - phi @ th) ** 2)
    assert TH.excess_risk(other, th, TH.second_moment(mu, s)) == pytest.approx(mc, rel=1e-2)


def test_gaussian_shift_ratio_and_second_moment() -> None:
    cs = gaussian_covariate_shift(400_000, 10, dim=2, shift=0.8, sd_t=0.8, seed=4)
    w = cs.true_ratio(cs.x_s)
    assert np.mean(w) == pytest.approx(1.0, abs=4 * np.std(w) / math.sqrt(w.size))
    m2 = cs.second_moment()
    assert np.mean(w**2) == pytest.approx(m2, abs=4 * np.std(w**2) / math.sqrt(w.size))


def test_resampling_and_feature_shift_generators() -> None:
    y = np.repeat(np.arange(3), 50)
    idx = resample_to_priors(y, np.array([0.5, 0.3, 0.2]), 100, seed=0)
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=3), [50, 30, 20])
    f = np.linspace(-1, 1, 11)
    fs = digits_feature_shift(f, 50, beta=2.0, seed=0)
    assert fs.ratio.mean() == pytest.approx(1.0) and fs.target_idx.shape == (50,)
    sp = spurious_groups(1000, 1000, rho=0.9, seed=0)
    agree = np.mean((sp.g_train % 2) == sp.y_train)
    assert abs(agree - 0.9) < 4 * math.sqrt(0.09 / 1000)


def test_group_dro_with_one_group_is_l2_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(300) > 0).astype(int)
    l2 = 1e-2
    dro = E.group_dro_logistic(x, y, np.zeros(300, int), steps=6000, lr=1.0, l2=l2)
    # sklearn: C sum(loss) + ||w||^2 / 2  <=>  mean(loss) + ||w||^2 / (2 C n)
    ref = LogisticRegression(C=1 / (l2 * 300), tol=1e-10, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(dro.coef, ref.coef_[0], atol=1e-4)
    assert dro.intercept == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert dro.group_weights.tolist() == [1.0] and dro.n_iter == 6000


def test_group_dro_weights_the_worse_group() -> None:
    sp = spurious_groups(2000, 10, rho=0.95, seed=1)
    dro = E.group_dro_logistic(sp.x_train, sp.y_train, sp.g_train, steps=1000)
    counts = np.bincount(sp.g_train, minlength=4)
    # the minority groups (spurious attribute != label: 1, 2) carry more weight than their share
    assert dro.group_weights[[1, 2]].sum() > counts[[1, 2]].sum() / counts.sum()
