"""The calibration lens on users' own predictions (hand-built subjects) and on its bundled subject."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.lenses.calibration import (
    CalibrationSubject,
    Predictions,
    Settings,
    TemperatureSettings,
    measure,
    subject_from_arrays,
)
from multilens.lenses.calibration import metrics as M


def _overconfident(n: int, k: int, t0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, k)) * 1.5
    p = M.softmax(base)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return y, base * t0  # calibrated at T = t0


def _settings() -> Settings:
    s = Settings.for_profile("smoke")
    return dataclasses.replace(s, trajectory=None)


def test_measure_on_user_arrays_recovers_the_planted_temperature() -> None:
    yv, zv = _overconfident(1500, 4, 3.0, 1)
    yt, zt = _overconfident(1500, 4, 3.0, 2)
    groups = np.arange(1500) % 3
    subj = subject_from_arrays(yv, zv, yt, zt, test_groups=groups)
    s = dataclasses.replace(_settings(), temperature=TemperatureSettings(n_boot=60, variants=("vector", "matrix")))
    r = measure(subj, s, seed=0)
    assert r.parts == ("metrics", "temperature", "selective", "subgroups")
    t = r.estimate("temperature")
    assert t.ci_low <= 3.0 <= t.ci_high and t.converged is True
    assert r.check("temperature_transfers_to_test").passed is True
    assert r.check("planted_temperature_recovered").passed is True
    # temperature scaling must repair the overconfidence on the test split
    assert r.metrics["calibration.ece_after_temperature"] < 0.5 * r.metrics["calibration.ece"]
    assert r.estimate("test_ece_change_after_temperature").ci_high < 0
    assert r.check("debiased_error_zero_when_calibrated").passed is True
    assert r.check("subgroup_calibration_uniform").kind == "agreement"
    assert {e.name for e in r.estimates} >= {"group_0_ece", "group_2_ece", "class_3_ece", "aurc"}
    assert "trajectory" in " ".join(r.notes)


def test_transfer_check_fails_when_validation_and_test_differ() -> None:
    yv, zv = _overconfident(1500, 4, 1.0, 1)  # calibrated validation
    yt, zt = _overconfident(1500, 4, 3.0, 2)  # overconfident test: the temperature does not transfer
    r = measure(subject_from_arrays(yv, zv, yt, zt), _settings(), seed=0)
    assert r.check("temperature_transfers_to_test").passed is False
    assert not r.recommendations and r.dropped_recommendations


def test_probabilities_only_subject_skips_temperature() -> None:
    yt, zt = _overconfident(400, 3, 1.0, 3)
    subj = CalibrationSubject(Predictions(yt, probs=M.softmax(zt)), Predictions(yt, probs=M.softmax(zt)))
    r = measure(subj, _settings(), seed=0)
    assert r.estimate("test_ece").value == pytest.approx(M.ece(yt, M.softmax(zt), 15), abs=1e-12)
    assert any("no logits" in n for n in r.notes)
    assert not any(c.name.startswith("temperature") for c in r.checks)


def test_bundled_subject_trajectory_smoke() -> None:
    from multilens.lenses.calibration import default_subject

    s = Settings.for_profile("smoke")
    subj = default_subject(s, seed=0)
    steps = [c.step for c in subj.trajectory]
    assert steps == sorted(steps) and len(steps) >= 3
    # checkpoints at matched training risk: each level's checkpoint is the first evaluation below it
    for c in subj.trajectory:
        if c.target_risk is not None:
            assert c.train_loss <= c.target_risk
    assert all(c.top_hessian is not None and c.top_hessian > 0 for c in subj.trajectory)
    only = dataclasses.replace(s, metrics=None, temperature=None, selective=None, subgroups=None)
    r = measure(subj, only, seed=0)
    assert r.parts == ("trajectory",)
    assert r.check("margin_grows_past_interpolation").passed is True
    rules = next(t for t in r.tables if t.key == "stopping_rules")
    assert [row[0] for row in rules.rows] == ["last iterate", "best validation NLL", "best validation ECE"]
    # optimizers compared at matched training risk: same levels, from the same initialisation
    opt = next(t for t in r.tables if t.key == "optimizers_matched_risk")
    assert {row[0] for row in opt.rows} == {"adam", "sgd"}
    for c in subj.alternatives["sgd"]:
        if c.target_risk is not None:
            assert c.train_loss <= c.target_risk
    assert any(e.name.startswith("ece_sgd_minus_adam_at_risk_") and e.ci_low is not None for e in r.estimates)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="temperature.variants"):
        TemperatureSettings(variants=("diagonal",))
    with pytest.raises(ConfigError, match="n_val"):
        Settings(n_val=5)
    with pytest.raises(ConfigError, match="optimizers"):
        Settings(optimizers=("adam", "adam"))
    with pytest.raises(ConfigError, match=r"optimizers\[1\]"):
        Settings(optimizers=("adam", "lbfgs"))
