"""Consistency 7: the rank correlation of lambda_max(t) and test ECE(t) past interpolation (exact cases)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.lenses.calibration import CalibrationSubject, Checkpoint, Predictions, Settings, measure
from multilens.lenses.calibration.curvature_drift import (
    curvature_drift_interval,
    past_interpolation,
    spearman,
)


def _probs(labels: np.ndarray, confs: list[float]) -> np.ndarray:
    """Every example predicts class 0 with confidence c_k at checkpoint k: ECE_k = |c_k - accuracy| exactly."""
    out = np.empty((labels.size, len(confs), 2))
    for k, c in enumerate(confs):
        out[:, k] = [c, 1 - c]
    return out


def test_spearman_known_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))


@pytest.mark.parametrize(("lam", "expected"), [([1.0, 2.0, 3.0, 5.0], 1.0), ([9.0, 4.0, 2.0, 1.0], -1.0)])
def test_monotone_case_is_exact_in_every_resample(lam: list[float], expected: float) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.7).astype(np.int64)  # accuracy of "class 0" about 0.3 < every confidence
    ci = curvature_drift_interval(lam, labels, _probs(labels, [0.6, 0.7, 0.8, 0.9]), 15, n_boot=50, level=0.95, seed=1)
    assert ci.estimate == pytest.approx(expected)
    assert ci.low == pytest.approx(expected) and ci.high == pytest.approx(expected)
    assert ci.n_dropped == 0


def _ckpt(step: int, err: float, lam: float | None, labels: np.ndarray, conf: float) -> Checkpoint:
    p = Predictions(labels, logits=np.log(np.tile([conf, 1 - conf], (labels.size, 1))))
    return Checkpoint(step, None, "test", 0.1, err, p, p, p, None, lam, True)


def test_trajectory_part_on_a_hand_built_trajectory() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.7).astype(np.int64)
    traj = (
        _ckpt(1, 0.2, 0.5, y, 0.55),  # before interpolation: not used
        _ckpt(2, 0.0, 1.0, y, 0.6),
        _ckpt(2, 0.0, 1.0, y, 0.6),  # the same step matched two risk levels: one checkpoint
        _ckpt(3, 0.0, 2.0, y, 0.7),
        _ckpt(4, 0.0, 4.0, y, 0.8),
    )
    assert past_interpolation(traj) == [1, 3, 4]
    subj = CalibrationSubject(traj[-1].val, traj[-1].test, None, traj)
    s = Settings.for_profile("smoke")
    s = dataclasses.replace(s, metrics=None, temperature=None, selective=None, subgroups=None)
    r = measure(subj, s, seed=0)
    assert r.metrics["calibration.curvature_drift_spearman"] == pytest.approx(1.0)
    assert r.metrics["calibration.curvature_drift_spearman_ci_low"] == pytest.approx(1.0)
    table = next(t for t in r.tables if t.key == "curvature_drift")
    assert [row[0] for row in table.rows] == [2, 3, 4]
    assert [row[2] for row in table.rows] == [1.0, 2.0, 4.0]
    acc = float(np.mean(y == 0))
    np.testing.assert_allclose([row[4] for row in table.rows], [0.6 - acc, 0.7 - acc, 0.8 - acc], atol=1e-12)
    assert {c.name: c.passed for c in r.checks}["curvature_lanczos_converged_past_interpolation"] is True

    # without curvature at the checkpoints: not evaluated, said in a note
    bare = tuple(dataclasses.replace(c, top_hessian=None, top_hessian_converged=None) for c in traj)
    r2 = measure(CalibrationSubject(traj[-1].val, traj[-1].test, None, bare), s, seed=0)
    assert "calibration.curvature_drift_spearman" not in r2.metrics
    assert any("no top Hessian eigenvalue" in n for n in r2.notes)
