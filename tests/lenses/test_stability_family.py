"""Stability on the shared data family: the fit task, the gap interval, the bound, the executor path."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from multilens.data.family import FamilySpec
from multilens.experiments.executors import LocalExecutor
from multilens.lenses.contract import Runtime
from multilens.lenses.stability import FamilySettings, LogisticRidge, Settings, StabilitySubject, Task, measure
from multilens.lenses.stability.family import _gap_interval, _training_set, family_part, fit_task
from multilens.lenses.stability.logistic import losses

SMALL = FamilySpec(n_test=512, n_val=16, n_bayes=1024)
FAMILY_ONLY = dataclasses.replace(
    Settings.for_profile("smoke"), replace_one=None, scaling=None, gap=None, sgd=None, integrity=None
)


def test_fit_task_is_the_newton_fit_on_the_named_training_set() -> None:
    base = {"family": SMALL.to_dict(), "n": 50, "lam": 0.2, "tol": 1e-11, "train_seed": 7}
    x, y = SMALL.binary(50, 7)
    out = fit_task(base)
    ref = LogisticRidge(tol=1e-11).fit(x, y, 0.2)
    np.testing.assert_array_equal(out["theta"], ref.theta)
    assert out["converged"] and out["train_loss"] == pytest.approx(losses(ref.theta, x, y).mean(), rel=1e-14)
    assert out["radius"] == pytest.approx(np.max(np.linalg.norm(x, axis=1)), rel=1e-15)
    # Replacing position 3 by the 2nd example of another stream of the family changes exactly that row.
    rep = base | {"replace": {"m": 5, "seed": 99, "position": 3, "index": 1}}
    x2, y2 = _training_set(rep)
    xr, yr = SMALL.binary(5, 99)
    np.testing.assert_array_equal(np.delete(x2, 3, axis=0), np.delete(x, 3, axis=0))
    np.testing.assert_array_equal(x2[3], xr[1])
    assert y2[3] == yr[1]
    assert not any(np.array_equal(r, xr[1]) for r in x)  # a disjoint stream: not a row of S
    warm = fit_task(rep | {"theta0": out["theta"]})
    np.testing.assert_allclose(warm["theta"], LogisticRidge(tol=1e-11).fit(x2, y2, 0.2).theta, atol=1e-10)


def test_gap_interval_adds_the_test_split_error_in_quadrature() -> None:
    rng = np.random.default_rng(0)
    gaps = rng.normal(0.01, 0.005, 20)
    test_losses = rng.exponential(0.6, (20, 300))
    ci = _gap_interval(gaps, test_losses, 0.95)
    se_d = gaps.std(ddof=1) / math.sqrt(20)
    se_t = test_losses.mean(axis=0).std(ddof=1) / math.sqrt(300)
    q = stats.t.ppf(0.975, 19)
    assert ci.estimate == pytest.approx(gaps.mean(), rel=1e-14)
    assert ci.high - ci.estimate == pytest.approx(q * math.sqrt(se_d**2 + se_t**2), rel=1e-12)
    assert not _gap_interval(gaps[:1], test_losses[:1], 0.95).ok


def test_family_part_bound_holds_with_the_stated_constant() -> None:
    ps = FamilySettings(n=60, lam=0.5, n_replacements=6, gap_draws=6, n_boot=50)
    part = family_part(SMALL, ps, tol=1e-10, seed=2)
    chk = {c.name: c for c in part.checks}
    L = part.data["L"]
    assert L <= math.sqrt(SMALL.d_in)  # the box [-1, 1]^d
    assert part.metrics["stability.family_bound"] == pytest.approx(2 * L * L / (0.5 * 60), rel=1e-14)
    assert chk["family_solver_converged"].passed is True
    assert chk["family_loss_stability_bound"].passed is True
    assert chk["family_loss_stability_bound"].bound_ratio > 1
    assert chk["family_param_stability_bound"].passed is True
    assert max(part.data["betas"]) == part.metrics["stability.family_beta_hat"]
    assert max(part.data["param_distances"]) <= 2 * L / (0.5 * 60)
    lo, hi = part.metrics["stability.family_gap_ci_low"], part.metrics["stability.family_gap_ci_high"]
    assert lo <= np.mean(part.data["gaps"]) <= hi


def test_measure_on_a_user_family_serially_and_through_a_local_executor() -> None:
    """A hand-built family (6 inputs, sharper labels) passed as the subject; LocalExecutor(workers=2) agrees exactly."""
    fam = FamilySpec(d_in=6, logit_scale=6.0, teacher_seed=3, n_test=512, n_val=16, n_bayes=1024)
    st = dataclasses.replace(FAMILY_ONLY, family=FamilySettings(n=80, lam=0.2, n_replacements=6, gap_draws=6))
    serial = measure(fam, st, seed=1)
    assert serial.parts == ("family",)
    assert serial.check("family_loss_stability_bound").passed is True
    assert serial.metrics["stability.family_bound"] <= 2 * 6 / (0.2 * 80)  # L^2 <= d on the box
    ex = LocalExecutor(workers=2)
    try:
        pooled = measure(StabilitySubject((), family=fam), st, seed=1, runtime=Runtime(executor=ex))
    finally:
        ex.close()
    assert [e.to_dict() for e in serial.estimates] == [e.to_dict() for e in pooled.estimates]
    assert [c.to_dict() for c in serial.checks] == [c.to_dict() for c in pooled.checks]
    assert serial.metrics == pooled.metrics and serial.data["family"] == pooled.data["family"]
    # The task-based parts say they had nothing to measure on a family-only subject.
    both = measure(fam, dataclasses.replace(st, replace_one=Settings.for_profile("smoke").replace_one), seed=1)
    assert "replace_one: not measured: the subject has no tasks" in both.notes


def test_family_settings_validation() -> None:
    with pytest.raises(Exception, match="family.n_replacements"):
        FamilySettings(n=10, n_replacements=20)
    with pytest.raises(Exception, match="family.lam"):
        FamilySettings(lam=0.0)
    for profile in ("smoke", "quick", "full"):
        assert Settings.for_profile(profile).family is not None


class JsonSerialExecutor:
    """Runs tasks in process on a JSON round trip of each spec, out of order (what a process pool would get)."""

    name, workers = "json-serial", 1

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def map_unordered(self, task, specs):
        from multilens.experiments.executors import execute_task

        for i in reversed(range(len(specs))):
            self.calls[task] = self.calls.get(task, 0) + 1
            yield i, execute_task(task, json.loads(json.dumps(specs[i])))


def test_task_parts_replace_one_retrainings_go_through_the_executor() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(rng.random(300) < 1 / (1 + np.exp(-3 * x[:, 0])), 1.0, -1.0)
    task = Task("sphere", x, y, 0.5, 80)
    smoke = Settings.for_profile("smoke")
    st = dataclasses.replace(smoke, gap=None, sgd=None, integrity=None, family=None)
    serial = measure(StabilitySubject((task,)), st, seed=0)
    ex = JsonSerialExecutor()
    pooled = measure(StabilitySubject((task,)), st, seed=0, runtime=Runtime(executor=ex))
    assert ex.calls["multilens.lenses.stability.lens:logistic_fit_task"] == (
        smoke.replace_one.n_replacements
        + (len(smoke.scaling.n_values) + len(smoke.scaling.lambdas))
        * smoke.scaling.n_sets
        * (smoke.scaling.n_replacements // smoke.scaling.n_sets)
    )
    assert [e.to_dict() for e in serial.estimates] == [e.to_dict() for e in pooled.estimates]
    assert [c.to_dict() for c in serial.checks] == [c.to_dict() for c in pooled.checks]
    assert serial.check("sphere_loss_stability_bound").passed is True
