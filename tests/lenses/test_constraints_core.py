"""Constraints lens estimators against exact answers: QP KKT, duality, shadow prices, rates, Pareto tools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from multilens.data.groups import exact_base_rate_gap, make_group_task
from multilens.lenses.constraints import pareto as pf
from multilens.lenses.constraints.core import (
    QP,
    InfeasibleConstraints,
    TrainSettings,
    binned_ece,
    dp_gap_constraint,
    ece_constraint,
    fnr_constraint,
    infeasible_qp,
    param_budget_constraint,
    qp_dual_value,
    qp_primal_dual,
    soft_binned_ece,
    solve_qp_exact,
    train_constrained,
)
from multilens.lenses.constraints.lens import bce, logistic_model, prune_units
from multilens.subject import model_fingerprint, same_fingerprint

# min 1/2 |x|^2 - 2 (x0 + x1)  s.t.  x0 + x1 <= 1,  -x0 <= 5: x* = (1/2, 1/2), lambda* = (3/2, 0), p* = -7/4.
QP1 = QP(np.eye(2), np.array([-2.0, -2.0]), np.array([[1.0, 1.0], [-1.0, 0.0]]), np.array([1.0, 5.0]))


def test_exact_qp_solution_and_dual_value() -> None:
    s = solve_qp_exact(QP1)
    np.testing.assert_allclose(s.x, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(s.lambdas, [1.5, 0.0], atol=1e-12)
    assert s.value == pytest.approx(-1.75, abs=1e-12)
    assert qp_dual_value(QP1, s.lambdas) == pytest.approx(-1.75, abs=1e-12)
    # weak duality at any other lambda >= 0
    assert qp_dual_value(QP1, np.array([1.0, 0.3])) < -1.75


def test_primal_dual_reaches_the_saddle_point() -> None:
    r = qp_primal_dual(QP1, 5000, 0.1, 0.1)
    np.testing.assert_allclose(r.x_last, [0.5, 0.5], atol=1e-8)
    np.testing.assert_allclose(r.lam_last, [1.5, 0.0], atol=1e-8)
    assert QP1.objective(r.x_last) - qp_dual_value(QP1, r.lam_last) == pytest.approx(0.0, abs=1e-8)
    assert r.alarm is None


def test_shadow_price_is_minus_lambda() -> None:
    # p*(b) = b^2/4 - 2b for the first bound: dp*/db = b/2 - 2 = -3/2 = -lambda_1
    h = 1e-5
    fd = (solve_qp_exact(QP1.with_bound(0, h)).value - solve_qp_exact(QP1.with_bound(0, -h)).value) / (2 * h)
    assert fd == pytest.approx(-1.5, abs=1e-8)


def test_infeasible_qp_alarm_and_no_solution() -> None:
    assert not solve_qp_exact(infeasible_qp(3)).feasible
    r = qp_primal_dual(infeasible_qp(3), 2000, 0.05, 0.05, alarm_violation=0.05)
    assert r.alarm is not None and "infeasible" in r.alarm


def test_rate_definitions_on_small_arrays() -> None:
    pred = np.array([1, 0, 1, 1, 0, 0.0])
    y = np.array([1, 1, 0, 1, 1, 0.0])
    g = np.array([1, 1, 1, 0, 0, 0])
    assert dp_gap_constraint(0.1).true_from_predictions(pred, y, g) == pytest.approx(abs(2 / 3 - 1 / 3))
    # group 1 positives: rows 0, 1 -> predictions 1, 0 -> FNR 1/2
    assert fnr_constraint(0.1, group=1).true_from_predictions(pred, y, g) == pytest.approx(0.5)
    lin = nn.Linear(3, 2, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0.5, 1e-4], [2.0, 0.0, -0.3]]))
    assert param_budget_constraint(10, tau=1e-2).true(lin, None, None, None) == 3.0


def test_generated_task_disparity_is_exact() -> None:
    t = make_group_task(n_train=60000, n_test=4, d=4, disparity=1.0, seed=3)
    y, g = t.y_train.numpy(), t.g_train.numpy()
    emp = y[g == 1].mean() - y[g == 0].mean()
    se = math.sqrt(y[g == 1].var() / (g == 1).sum() + y[g == 0].var() / (g == 0).sum())
    assert abs(emp - exact_base_rate_gap(4, 1.0, 0.5)) < 4 * se
    assert torch.equal(t.x_train[:, -1].long(), t.g_train)


def test_constrained_training_meets_the_bound_and_leaves_the_input() -> None:
    t = make_group_task(n_train=1500, n_test=1500, seed=1)
    model = logistic_model(t.d_in, 0)
    before = model_fingerprint(model)
    cons = (dp_gap_constraint(0.05),)
    free = train_constrained(model, bce, t.train(), cons, TrainSettings(method="unconstrained", steps=300), seed=0)
    fit = train_constrained(model, bce, t.train(), cons, TrainSettings(steps=800), seed=0, holdout=t.test())
    assert same_fingerprint(before, model_fingerprint(model))
    dp_free = cons[0].true(free.model, *t.train())
    dp_fit = cons[0].true(fit.model, *t.train())
    assert dp_free > 0.2  # the generated disparity shows up unconstrained
    assert dp_fit <= 0.05 + 0.03 and fit.lambdas[0] > 0
    assert {"holdout.true.dp_gap", "train.proxy.dp_gap", "train.true.dp_gap"} <= set(fit.history[-1])


def test_infeasible_rate_constraint_raises_instead_of_returning_a_model() -> None:
    t = make_group_task(n_train=800, n_test=100, seed=2)
    with pytest.raises(InfeasibleConstraints, match="infeasible"):
        train_constrained(
            logistic_model(t.d_in, 0),
            bce,
            t.train(),
            (dp_gap_constraint(-0.05),),
            TrainSettings(steps=400, eval_every=20),
            seed=0,
        )


def test_pareto_tools_exact() -> None:
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4], [0.2, 0.1]])
    assert pf.non_dominated(p).tolist() == [True, True, True, False]
    # union of [0,1]x[0,0], [0,0]x[0,1], [0,.4]x[0,.4]: area 0.16
    assert pf.hypervolume(p, np.zeros(2)) == pytest.approx(0.16)
    assert pf.hypervolume(np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]]), np.zeros(3)) == pytest.approx(3.0)
    # (0.4, 0.4) is non-dominated but no weight selects it (0.4 w1 + 0.4 w2 < max(w1, w2)): A.18
    assert [pf.lp_supported(p, i) for i in range(3)] == [True, True, False]
    assert 2 not in pf.scalarization_selects(p, pf.weight_grid(2, 50))
    assert pf.epsilon_constraint(p) == {0, 1, 2}


def test_unit_pruning_keeps_the_function_of_kept_units() -> None:
    from multilens.models.mlp import MLPSpec, build_mlp

    m = build_mlp(MLPSpec(5, (6,), 3), 0)
    with torch.no_grad():
        m[0].weight[2:].zero_()
        m[0].bias[2:].fill_(-10.0)  # units 2..5 are dead (ReLU of a negative)
    small = prune_units(m, 2 / 6)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert small[0].out_features == 2
    torch.testing.assert_close(small(x), m(x))


def test_random_qp_has_its_designed_kkt_point() -> None:
    from multilens.lenses.constraints.core import random_qp

    qp = random_qp(6, 5, seed=7)
    s = solve_qp_exact(qp)
    assert int(np.sum(s.lambdas > 1e-9)) == 3
    assert np.all(s.lambdas[:3] >= 0.5) and np.all(s.lambdas[3:] == 0.0)
    np.testing.assert_allclose(qp.a[:3] @ s.x, qp.b[:3], atol=1e-10)
    assert qp_dual_value(qp, s.lambdas) == pytest.approx(s.value, abs=1e-9)


# p and y of six rows; 10 equal-width bins: bin 0 {0.05}, bin 1 {0.15, 0.12}, bin 5 {0.55}, bin 9 {0.95, 0.91}.
# ECE = (|0 - 0.05| + |(1 - 0.15) + (0 - 0.12)| + |1 - 0.55| + |(1 - 0.95) + (0 - 0.91)|) / 6 = 2.09 / 6.
ECE_P = np.array([0.05, 0.15, 0.12, 0.55, 0.95, 0.91])
ECE_Y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])


def test_binned_ece_against_a_hand_computation() -> None:
    assert binned_ece(ECE_P, ECE_Y, 10) == pytest.approx(2.09 / 6, abs=1e-12)
    # two bins: [0, 0.5) holds rows 0-2 (residual sum 0.68), [0.5, 1] rows 3-5 (residual sum -0.41)
    assert binned_ece(ECE_P, ECE_Y, 2) == pytest.approx((0.68 + 0.41) / 6, abs=1e-12)
    assert binned_ece(np.array([1.0, 0.0]), np.array([1.0, 0.0]), 10) == 0.0  # p = 1 falls in the last bin


def test_ece_constraint_true_value_proxy_limit_and_gradient() -> None:
    logits = torch.logit(torch.tensor(ECE_P, dtype=torch.float64))
    model = nn.Linear(1, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    x, y, g = logits.reshape(-1, 1), torch.tensor(ECE_Y), torch.zeros(6, dtype=torch.long)
    c = ece_constraint(0.05, n_bins=10, smoothing=0.5)
    assert c.true(model, x, y, g) == pytest.approx(2.09 / 6, abs=1e-12)
    assert c.true_from_predictions(ECE_P, ECE_Y, None) == pytest.approx(2.09 / 6, abs=1e-12)
    # the soft bins sharpen into the hard ones as the smoothing goes to 0 (no row sits on a bin edge)
    sharp = soft_binned_ece(torch.tensor(ECE_P), torch.tensor(ECE_Y), 10, smoothing=0.02)
    assert float(sharp) == pytest.approx(2.09 / 6, abs=1e-9)
    # soft bins with one sign of residual in every bin give |mean(y - p)| exactly
    same_sign = soft_binned_ece(
        torch.tensor([0.2, 0.4, 0.7], dtype=torch.float64), torch.ones(3, dtype=torch.float64), 10, 0.5
    )
    assert float(same_sign) == pytest.approx((0.8 + 0.6 + 0.3) / 3, abs=1e-12)
    loss = c.proxy(model, x, y, g)
    loss.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    assert float(model.weight.grad.abs().sum()) > 0


def test_every_evaluation_carries_intervals_and_leaves_the_trajectory_alone() -> None:
    t = make_group_task(n_train=600, n_test=600, seed=4)
    cons = (dp_gap_constraint(0.05, 0.3), ece_constraint(0.05))
    base = TrainSettings(steps=120, eval_every=30)
    plain = train_constrained(logistic_model(t.d_in, 0), bce, t.train(), cons, base, seed=0, holdout=t.test())
    boot = TrainSettings(steps=120, eval_every=30, eval_n_boot=40)
    fit = train_constrained(logistic_model(t.d_in, 0), bce, t.train(), cons, boot, seed=0, holdout=t.test())
    assert [h["step"] for h in fit.history] == [30, 60, 90, 120]
    np.testing.assert_array_equal(plain.lambdas, fit.lambdas)  # the resamples draw from their own streams
    for h, h0 in zip(fit.history, plain.history):
        for split in ("train", "holdout"):
            for kind in ("proxy", "true"):
                for c in cons:
                    key = f"{split}.{kind}.{c.name}"
                    assert h[key] == h0[key]
                    lo, hi = h[f"{key}_ci"]
                    assert lo <= hi and lo >= 0.0
    # the true DP gap on held-out data at the last evaluation equals the rate recomputed from the model
    assert fit.history[-1]["holdout.true.dp_gap"] == pytest.approx(cons[0].true(fit.model, *t.test()), abs=1e-12)
