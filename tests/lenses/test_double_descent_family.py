"""Double descent on the shared data family: exact thresholds, SGD in the dual, the executor path."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from multilens.data.family import FamilySpec
from multilens.experiments.executors import LocalExecutor
from multilens.lenses.contract import Runtime
from multilens.lenses.double_descent import FamilySettings, PeakVsBatchSettings, Settings, Subject, measure
from multilens.lenses.double_descent.family import (
    _task_data,
    family_part,
    family_rf_task,
    family_sgd_task,
    peak_vs_batch_part,
)
from multilens.lenses.double_descent.neural import one_hot, relu_features

SMOKE = Settings.for_profile("smoke")
FAMILY_ONLY = dataclasses.replace(SMOKE, linear=None, random_features=None, mlp=None)
TINY_FAMILY = FamilySpec(n_test=64, n_val=16, n_bayes=1024)


def _spec(n: int, ps: list[int], **kw) -> dict:
    return {"family": TINY_FAMILY.to_dict(), "n": n, "train_seed": 3, "feature_seed": 4, "ps": ps} | kw


def test_min_norm_threshold_is_exactly_p_equals_n_and_fit_equals_lstsq() -> None:
    n = 12
    ps = [6, 10, 11, 12, 13, 30]
    spec = _spec(n, ps)
    out = family_rf_task(spec)
    _, x, lab, x_te, lab_te, w_all = _task_data(spec)
    y, y_te = one_hot(lab, 2), one_hot(lab_te, 2)
    for i, p in enumerate(ps):
        assert out["rank"][i] == min(n, p)
        if p < n:  # fewer features than examples: noisy labels cannot be fitted exactly
            assert out["train_mse"][i] > 1e-6
        else:
            assert out["train_mse"][i] <= 1e-8 * 0.5
        phi, phi_te = relu_features(x, w_all[:p]), relu_features(x_te, w_all[:p])
        a = np.linalg.lstsq(phi, y, rcond=None)[0]  # min-norm least squares
        assert out["test_mse"][i] == pytest.approx(np.mean((phi_te @ a - y_te) ** 2), rel=1e-7)
        assert out["test_err"][i] == np.mean((phi_te @ a).argmax(1) != lab_te)


def test_sgd_in_the_dual_equals_primal_minibatch_sgd() -> None:
    """The task's dual iteration (theta = Phi^T alpha) against plain primal SGD with the same permutations."""
    n, ps, b, lr, epochs = 10, [5, 15], 3, 0.7, 4
    spec = _spec(n, ps, batch=b, lr=lr, epochs=epochs, order_seed=9)
    out = family_sgd_task(spec)
    _, x, lab, x_te, lab_te, w_all = _task_data(spec)
    y, y_te = one_hot(lab, 2), one_hot(lab_te, 2)
    for i, p in enumerate(ps):
        phi, phi_te = relu_features(x, w_all[:p]), relu_features(x_te, w_all[:p])
        theta = np.zeros((p, 2))
        rng = np.random.default_rng(9)  # as_generator(9) draws from the same stream
        for _ in range(epochs):
            perm = rng.permutation(n)
            for s in range(0, n, b):
                idx = perm[s : s + b]  # the last batch has n % b = 1 example
                grad = phi[idx].T @ (phi[idx] @ theta - y[idx]) / idx.size
                theta -= lr * grad
        assert out["train_mse"][i] == pytest.approx(np.mean((phi @ theta - y) ** 2), rel=1e-10)
        assert out["test_mse"][i] == pytest.approx(np.mean((phi_te @ theta - y_te) ** 2), rel=1e-10)
        assert out["lam_max"][i] == pytest.approx(np.linalg.eigvalsh(phi @ phi.T / n)[-1], rel=1e-12)
    assert out["finite"] is True


def test_batch_of_m_b_is_the_average_of_m_workers_at_batch_b() -> None:
    """One step at batch 4b on 4 consecutive b-blocks = the average of the 4 workers' batch-b gradients."""
    rng = np.random.default_rng(0)
    phi, y, theta = rng.standard_normal((16, 7)), rng.standard_normal((16, 2)), rng.standard_normal((7, 2))
    b = 4
    big = phi.T @ (phi @ theta - y) / (4 * b)
    workers = [phi[k * b : (k + 1) * b].T @ (phi[k * b : (k + 1) * b] @ theta - y[k * b : (k + 1) * b]) / b
               for k in range(4)]  # fmt: skip
    np.testing.assert_allclose(big, np.mean(workers, axis=0), rtol=1e-12)


def test_threshold_check_fails_when_the_grid_misses_p_equals_n() -> None:
    ps = FamilySettings(n_train=40, ratios=(0.5, 0.8, 1.1, 2.0), around_n=(), seeds=2)
    part = family_part(TINY_FAMILY, ps, seed=1)
    chk = {c.name: c for c in part.checks}
    assert part.metrics["double_descent.interpolation_ratio"] == pytest.approx(44 / 40)
    assert chk["double_descent.family_threshold"].passed is False  # p* = 44: 0.1 away from the theory's 1
    assert chk["double_descent.family_rank"].passed is True
    # With p = n on the grid the same sweep interpolates exactly there.
    ok = family_part(TINY_FAMILY, dataclasses.replace(ps, around_n=(-1, 0)), seed=1)
    assert ok.outputs["double_descent.interpolation_ratio"] == 1.0
    assert {c.name: c.passed for c in ok.checks}["double_descent.family_threshold"] is True


def test_peak_invariance_check_fails_without_learning_rate_scaling() -> None:
    """Batch 4b at the same lr takes 4x fewer steps: the damped peak moves (the check is not vacuous)."""
    base = PeakVsBatchSettings(n_train=64, ratios=(0.5, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 4.0), batch=4, epochs=300)
    fam = FamilySpec(input_scale=1.0, teacher_decay=1.0)  # the mildly nonlinear teacher this case was built on
    scaled = peak_vs_batch_part(fam, base, seed=3)
    same_lr = peak_vs_batch_part(fam, dataclasses.replace(base, lr_scaling="none"), seed=3)
    c1 = {c.name: c for c in scaled.checks}
    c2 = {c.name: c for c in same_lr.checks}
    assert c1["double_descent.peak_batch_invariance"].passed is True
    assert c1["double_descent.sgd_step_stable"].passed is True
    assert scaled.metrics["double_descent.peak_ratio_batch_small"] == 1.0
    assert c2["double_descent.peak_batch_invariance"].passed is False
    assert same_lr.metrics["double_descent.peak_shift_batch_ci_high"] < 0  # the peak moved left / vanished


def test_unstable_step_is_flagged() -> None:
    ps = PeakVsBatchSettings(n_train=32, ratios=(0.5, 1.0, 2.0), batch=4, workers=2, lr=60.0, epochs=20, seeds=2)
    part = peak_vs_batch_part(TINY_FAMILY, ps, seed=0)
    chk = {c.name: c for c in part.checks}["double_descent.sgd_step_stable"]
    assert chk.passed is False and chk.observed > 2.0


def test_measure_on_a_user_family_and_through_a_local_executor() -> None:
    """A hand-built family (8 inputs, 3 classes); the numbers through LocalExecutor(workers=2) equal the serial ones."""
    fam = FamilySpec(d_in=8, n_classes=3, logit_scale=3.0, teacher_seed=5, n_test=256, n_val=16, n_bayes=1024)
    st = dataclasses.replace(
        FAMILY_ONLY,
        family=FamilySettings(n_train=30, ratios=(0.5, 0.9, 1.5, 3.0), seeds=3),
        peak_vs_batch=PeakVsBatchSettings(n_train=30, ratios=(0.5, 1.0, 2.0), seeds=2, batch=3, epochs=30),
    )
    serial = measure(fam, st, seed=4)
    assert serial.parts == ("family", "peak_vs_batch")
    assert serial.metrics["double_descent.interpolation_ratio"] == 1.0
    assert serial.check("double_descent.family_threshold").passed is True
    assert serial.data["family"]["family"]["d_in"] == 8
    ex = LocalExecutor(workers=2)
    try:
        pooled = measure(Subject(family=fam), st, seed=4, runtime=Runtime(executor=ex))
    finally:
        ex.close()
    assert [e.to_dict() for e in serial.estimates] == [e.to_dict() for e in pooled.estimates]
    assert [c.to_dict() for c in serial.checks] == [c.to_dict() for c in pooled.checks]
    assert serial.metrics == pooled.metrics and serial.outputs == pooled.outputs
    assert serial.data["family"] == pooled.data["family"]
    assert serial.data["peak_vs_batch"] == pooled.data["peak_vs_batch"]


def test_family_settings_validation_and_grid() -> None:
    fs = FamilySettings(n_train=100, ratios=(0.5, 1.0, 2.0), around_n=(-1, 0, 1))
    assert fs.widths() == (50, 99, 100, 101, 200)
    with pytest.raises(Exception, match="`batch` x `workers`"):
        PeakVsBatchSettings(n_train=16, batch=8, workers=4)
    with pytest.raises(Exception, match="`lr_scaling`"):
        PeakVsBatchSettings(lr_scaling="sqrt")
    assert PeakVsBatchSettings(lr=2.0, workers=4).lr_large == 8.0
    assert PeakVsBatchSettings(lr=2.0, workers=4, lr_scaling="none").lr_large == 2.0
    for profile in ("smoke", "quick", "full"):
        s = Settings.for_profile(profile)
        assert s.family is not None and s.peak_vs_batch is not None
    assert math.isclose(Settings.for_profile("quick").family.n_train, 256)
