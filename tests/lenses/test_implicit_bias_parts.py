"""The implicit-bias experiments' parts against exact answers (pinv, planted SVM, torch's Adam)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from multilens.errors import ConvergenceWarning
from multilens.lenses.implicit_bias import least_squares as ls
from multilens.lenses.implicit_bias import logistic as lg
from multilens.lenses.implicit_bias import optimizers as op
from multilens.theory.implicit_bias import hard_margin_svm, row_space

# ---------------------------------------------------------------------------------------- least squares


def test_gd_from_zero_reaches_the_pseudoinverse_at_the_predicted_rate(seed: int) -> None:
    prob = ls.make_problem(15, 50, 0.1, 100, seed)
    run = ls.run_gd(prob, np.zeros(50), 1.0, 5000, 1e-12)
    assert run.converged
    pinv = np.linalg.pinv(prob.x) @ prob.y
    assert np.linalg.norm(run.theta_final - pinv) <= 1e-11 * np.linalg.norm(pinv)
    np.testing.assert_allclose(run.dist_limit, run.dist_limit_pred, rtol=0, atol=1e-12 * run.dist_limit[0])
    assert run.mode_dev <= 1e-12  # every row-space mode decays as (1 - eta s_i^2)^t
    rates = ls.decay_rates(run.dist_limit, run.dist_limit_pred)
    assert rates is not None
    assert np.log(rates[0]) == pytest.approx(np.log(rates[1]), rel=1e-6)
    # Late in the run the slowest mode dominates: the rate approaches max_i |1 - eta s_i^2| from below.
    assert np.log(rates[1]) <= np.log(run.rate_pred) * (1 - 1e-12)
    assert np.log(rates[1]) == pytest.approx(np.log(run.rate_pred), rel=0.1)
    s = np.linalg.svd(prob.x, compute_uv=False)
    assert run.rate_pred == pytest.approx(1.0 - s.min() ** 2 / s.max() ** 2, rel=1e-12)


def test_null_space_component_is_kept_exactly(seed: int) -> None:
    prob = ls.make_problem(10, 40, 0.0, 100, seed)
    theta0 = ls.init_with_null_component(40, 3.0, seed + 1)
    run = ls.run_gd(prob, theta0, 1.5, 5000, 1e-12)
    rs = row_space(prob.x)
    assert run.null_norm > 1.0
    assert run.null_drift <= 1e-10 * run.null_norm
    pinv = np.linalg.pinv(prob.x) @ prob.y
    np.testing.assert_allclose(run.theta_final, pinv + rs.project_null(theta0), atol=1e-10)
    # Distance to X^+ y stalls at exactly ||P_ker theta_0||.
    assert run.dist_pinv[-1] == pytest.approx(run.null_norm, rel=1e-9)


def test_iteration_cap_warns_and_reports_not_converged(seed: int) -> None:
    prob = ls.make_problem(10, 40, 0.1, 100, seed)
    with pytest.warns(ConvergenceWarning, match="cap of 5 steps"):
        run = ls.run_gd(prob, np.zeros(40), 1.0, 5, 1e-12)
    assert not run.converged and run.n_iter == 5


def test_expected_risk_cost_of_the_null_component(seed: int) -> None:
    # E over theta_0 ~ N(0, s^2/d I) of ||P_ker theta_0||^2 - 2 theta_0^T P_ker beta* is s^2 (d-n)/d:
    # a Monte Carlo mean over 400 draws must sit within 4 standard errors of it.
    n, d, s = 12, 48, 1.5
    prob = ls.make_problem(n, d, 0.1, 10, seed)
    rs = row_space(prob.x)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(400):
        th = s * rng.standard_normal(d) / np.sqrt(d)
        p = rs.project_null(th)
        draws.append(p @ p - 2.0 * th @ rs.project_null(prob.beta))
    draws = np.array(draws)
    se = draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(draws.mean() - s * s * (d - n) / d) <= 4 * se


# ---------------------------------------------------------------------------------------- logistic


def test_planted_problem_has_the_planted_svm(seed: int) -> None:
    p = lg.planted_separable(20, 4, 0.5, seed)
    s = hard_margin_svm(p.x, p.y)
    np.testing.assert_allclose(s.w, p.w_hat, atol=1e-12)
    np.testing.assert_allclose(s.alpha, p.alpha, atol=1e-12)
    assert s.margin == pytest.approx(0.5)
    assert sorted(s.support.tolist()) == [0, 1, 2, 3]


def test_log_space_weights_agree_with_the_direct_form_where_it_works() -> None:
    m = np.array([[-3.0, 0.0, 0.7, 5.0, 30.0]])
    np.testing.assert_allclose(lg.normalized_weights(m), lg.naive_normalized_weights(m), rtol=1e-12)
    a = np.array([-40.0, -20.0, 0.0, 3.0])
    np.testing.assert_allclose(lg.log_softplus(a), np.log(np.log1p(np.exp(a))), rtol=1e-13)
    np.testing.assert_allclose(np.exp(lg.log_loss(m)), np.log1p(np.exp(-m)).sum(), rtol=1e-13)


def test_naive_form_underflows_where_the_log_space_form_does_not() -> None:
    m = np.array([[800.0, 805.0, 1200.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = lg.naive_normalized_weights(m)
    assert not np.all(np.isfinite(naive))  # 0/0: the loss itself underflowed to 0
    ours = lg.normalized_weights(m)
    assert np.all(np.isfinite(ours))
    # Deep in the tail -l'(m)/L is softmax(-m): e^{-m_n} / sum_k e^{-m_k}.
    soft = np.exp(-(m - m.min()))
    np.testing.assert_allclose(ours, soft / soft.sum(), rtol=1e-12)
    assert lg.log_loss(m)[0] == pytest.approx(-800.0 + np.log1p(np.exp(-5.0)), rel=1e-14)


def test_gd_direction_approaches_the_svm_and_normalized_gd_is_faster(seed: int) -> None:
    probs = [lg.planted_separable(12, 3, 0.5, seed + i) for i in range(2)]
    tr = lg.run_logistic(probs, 3000, 0.5, 20)
    assert tr.steps[-1] == 3000 and tr.finite_ngd
    assert np.all(tr.gap_gd[:, -1] < tr.gap_gd[:, 5])
    assert np.all(tr.gap_ngd[:, -1] < 0.5 * tr.gap_gd[:, -1])
    assert np.all(np.isfinite(tr.gap_pred[:, -1]))
    np.testing.assert_allclose(tr.gap_gd[:, -1] / tr.gap_pred[:, -1], 1.0, atol=0.1)


def test_gap_fits_recover_exact_laws() -> None:
    t = np.unique(np.round(np.logspace(0.5, 6, 60)))
    f = lg.fit_gap(t, 1.0 / (0.7 + 2.5 * np.log(t)), 100.0)
    assert f.inv_slope == pytest.approx(2.5, rel=1e-10)
    assert f.inv_intercept == pytest.approx(0.7, rel=1e-10)
    g = lg.fit_gap(t, 3.0 * t**-0.5, 100.0)
    assert g.power_exponent == pytest.approx(-0.5, rel=1e-10)
    h = lg.fit_gap(t, 0.4 / np.log(t), 100.0)
    assert h.origin_coef == pytest.approx(0.4, rel=1e-10) and h.origin_r2 == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- optimizers


def _one_problem(seed: int) -> tuple[op.TeacherProblem, np.ndarray]:
    p = op.make_teacher_problem(12, 6, 0.2, 50, seed)
    return p, (p.x * p.y[:, None])[None]


def test_adam_matches_torch(seed: int) -> None:
    p, z = _one_problem(seed)
    w0 = np.random.default_rng(seed).standard_normal((1, 6)) * 0.1
    w, _ = op.train("adam", z, w0, 25, 0.05, "constant", 4, np.random.default_rng(0), np.array([25]))
    wt = torch.tensor(w0[0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([wt], lr=0.05)
    zt = torch.tensor(z[0])
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.softplus(-(zt @ wt)).mean().backward()
        opt.step()
    np.testing.assert_allclose(w[0], wt.detach().numpy(), rtol=0, atol=1e-12)


def test_sign_and_coordinate_steps_are_steepest_descent_steps(seed: int) -> None:
    p, z = _one_problem(seed)
    w0 = np.zeros((1, 6))
    g = -(z[0].T @ (1.0 / (1.0 + np.exp(z[0] @ w0[0])))) / z.shape[1]  # gradient of the mean loss at w0
    w, _ = op.train("sign", z, w0, 1, 0.1, "constant", 4, np.random.default_rng(0), np.array([1]))
    np.testing.assert_allclose(w[0], -0.1 * np.sign(g), atol=1e-15)
    w, _ = op.train("coordinate", z, w0, 1, 0.1, "constant", 4, np.random.default_rng(0), np.array([1]))
    j = int(np.argmax(np.abs(g)))
    expect = np.zeros(6)
    expect[j] = -0.1 * np.sign(g[j])
    np.testing.assert_allclose(w[0], expect, atol=1e-15)


def test_sgd_with_full_batches_is_gd(seed: int) -> None:
    p, z = _one_problem(seed)
    w0 = np.zeros((1, 6))
    a, _ = op.train("sgd", z, w0, 30, 0.5, "cosine", 12, np.random.default_rng(0), np.array([30]))
    b, _ = op.train("gd", z, w0, 30, 0.5, "cosine", 12, np.random.default_rng(0), np.array([30]))
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_metrics_of_the_reference_directions(seed: int) -> None:
    p = op.make_teacher_problem(20, 8, 0.2, 200, seed)
    refs = op.references(p)
    assert refs.converged
    for norm in op.NORMS:
        m = op.metrics(p, refs, refs.direction(norm))
        assert m.margin_ratio[norm] == pytest.approx(1.0, abs=1e-8)
        assert m.cosine[norm] == pytest.approx(1.0)
        assert m.disagree_ref[norm] == 0.0
        assert m.train_error == 0.0
        for other in op.NORMS:
            assert m.margin_ratio[other] <= 1.0 + 1e-8
    assert op.disagreement(p, refs.direction("l2"), -refs.direction("l2")) == 1.0


def test_conditions_vary_one_mechanism_at_a_time() -> None:
    conds = op.conditions((0.0, 1.0, 3.0), ("constant", "cosine"))
    assert [c.varies for c in conds] == ["base", "init scale", "init scale", "schedule"]
    assert all(c.schedule == "constant" for c in conds if c.varies == "init scale")
    assert all(c.init_scale == 0.0 for c in conds if c.varies == "schedule")


def test_gradient_stopping_rule_knows_nothing_of_the_limit(seed: int) -> None:
    prob = ls.make_problem(15, 50, 0.1, 10, seed)
    run = ls.run_gd(prob, np.zeros(50), 1.0, 5000, 1e-12, stop="gradient")
    assert run.converged
    grad = prob.x.T @ (prob.x @ run.theta_final - prob.y)
    assert np.linalg.norm(grad) <= 1e-12 * np.linalg.norm(prob.x.T @ prob.y)
    # ... and the limit it stopped at is X^+ y: ||theta - X^+ y|| <= ||grad|| / s_min^2 (row space).
    pinv = np.linalg.pinv(prob.x) @ prob.y
    s_min = np.linalg.svd(prob.x, compute_uv=False).min()
    assert np.linalg.norm(run.theta_final - pinv) <= np.linalg.norm(grad) / s_min**2 * (1 + 1e-6) + 1e-15
    with pytest.raises(ValueError, match="`stop`"):
        ls.run_gd(prob, np.zeros(50), 1.0, 10, 1e-12, stop="never")
