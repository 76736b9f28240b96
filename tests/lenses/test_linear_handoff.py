"""Consistency 6: the implicit-bias lens's linear classifier and its margins against the robustness lens's attack.

Exact answers: on a hand-built linear model the robust accuracy at l-inf eps is the fraction of
held-out points whose normalised margin y(w.x + b)/||w||_1 exceeds eps, computed here by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.lenses import implicit_bias as ib
from multilens.lenses.contract import Runtime
from multilens.lenses.implicit_bias.handoff import choose_eps, gd_logistic, newton_logistic, normalized_margins
from multilens.lenses.robustness.handoff import handoff_part
from multilens.lenses.robustness.settings import HandoffSettings


def _tiny() -> dict:
    # w = (1, -2), ||w||_1 = 3, b = 0.5; margins y(w.x+b)/3 by hand:
    # (1, 0) +1: 1.5/3 = 0.5; (0, 1) -1: 1.5/3 = 0.5; (0.2, 0) +1: 0.7/3 = 0.2333;
    # (1, 1) -1: 0.5/3 = 0.1667; (2, 0) -1: -2.5/3 < 0 (misclassified); (0, -1) +1: 2.5/3 = 0.8333
    return {
        "w": [1.0, -2.0],
        "b": 0.5,
        "x_test": [[1.0, 0.0], [0.0, 1.0], [0.2, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, -1.0]],
        "y_test": [1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        "norm": "linf",
        "eps": 0.3,
    }


def test_normalized_margins_by_hand() -> None:
    h = _tiny()
    m = normalized_margins(np.array(h["w"]), h["b"], np.array(h["x_test"]), np.array(h["y_test"]))
    np.testing.assert_allclose(m, [0.5, 0.5, 0.7 / 3, 0.5 / 3, -2.5 / 3, 2.5 / 3], rtol=0, atol=1e-15)
    assert choose_eps(m, 0.0) == pytest.approx(0.5)  # median of the five positive margins
    assert choose_eps(m, 0.25) == 0.25


@pytest.mark.parametrize(("eps", "expected"), [(0.3, 3 / 6), (0.2, 4 / 6), (0.1, 5 / 6), (0.6, 1 / 6)])
def test_robust_accuracy_equals_margin_fraction_on_hand_built_model(eps: float, expected: float) -> None:
    h = _tiny() | {"eps": eps}
    p = handoff_part({"implicit_bias.linear_classifier": h}, HandoffSettings(), seed=0)
    assert p.metrics["robustness.handoff_linear_robust_accuracy"] == pytest.approx(expected, abs=1e-12)
    est = {e.name: e for e in p.estimates}
    assert est["handoff_exact_robust_accuracy"].value == pytest.approx(expected, abs=1e-12)
    assert est["handoff_fgsm_robust_accuracy"].value == pytest.approx(expected, abs=1e-12)
    assert est["handoff_clean_accuracy"].value == pytest.approx(5 / 6)
    checks = {c.name: c for c in p.checks}
    assert checks["handoff_attack_matches_exact_reference"].passed is True
    assert checks["handoff_attack_not_below_exact"].passed is True
    lo, hi = (p.metrics[f"robustness.handoff_linear_robust_accuracy_ci_{s}"] for s in ("low", "high"))
    assert lo < expected < hi


def test_no_handoff_is_a_note_not_a_failure() -> None:
    p = handoff_part(None, HandoffSettings(), seed=0)
    assert not p.checks and not p.metrics
    assert p.notes[0].startswith("not evaluated: no hand-off")


def test_bad_handoff_names_the_key() -> None:
    with pytest.raises(ValueError, match="eps"):
        handoff_part({"implicit_bias.linear_classifier": _tiny() | {"eps": 0.0}}, HandoffSettings(), seed=0)
    with pytest.raises(ValueError, match="norm"):
        handoff_part({"implicit_bias.linear_classifier": _tiny() | {"norm": "l2"}}, HandoffSettings(), seed=0)


def test_gd_reaches_the_newton_minimiser() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (300, 5))
    y = np.where(rng.uniform(size=300) < 1 / (1 + np.exp(-(x @ np.array([1.0, -1, 0.5, 0, 2]) + 0.3))), 1.0, -1.0)
    fit = gd_logistic(x, y, steps=5000, lr_fraction=1.0)
    wn, bn, conv, _ = newton_logistic(x, y)
    assert conv
    np.testing.assert_allclose(np.r_[fit.w, fit.b], np.r_[wn, bn], atol=1e-6)
    # stationarity of Newton's answer, computed independently
    p = 1 / (1 + np.exp(y * (x @ wn + bn)))
    assert np.abs(x.T @ (-y * p) / 300).max() < 1e-10


def test_separable_data_newton_not_converged() -> None:
    x = np.array([[1.0, 0.0], [2.0, 1.0], [-1.0, 0.0], [-2.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    assert newton_logistic(x, y)[2] is False


def test_implicit_bias_handoff_agrees_with_robustness_attack() -> None:
    """The two lenses end to end on the bundled family: the numbers agree to 1/n_test (exact up to ties)."""
    s = ib.Settings.for_profile("smoke")
    s = dataclasses.replace(s, least_squares=None, logistic=None, optimizers=None)
    r = ib.measure(ib.default_subject(s, seed=0), s, seed=0)
    art = r.outputs["implicit_bias.linear_classifier"]
    assert set(art) == {"w", "b", "x_test", "y_test", "norm", "eps"} and art["norm"] == "linf"
    assert len(art["y_test"]) == s.handoff.n_test and art["eps"] > 0
    frac = r.metrics["implicit_bias.margin_fraction_above_eps"]
    assert 0.0 < frac < 1.0
    assert {c.name: c.passed for c in r.checks} == {
        "handoff_gd_decreased_loss": True,
        "handoff_gd_matches_newton": True,
    }
    p = handoff_part(Runtime(inputs={"implicit_bias.linear_classifier": art}).inputs, HandoffSettings(), seed=1)
    rob = p.metrics["robustness.handoff_linear_robust_accuracy"]
    assert abs(rob - frac) <= 1 / len(art["y_test"])


def test_user_classifier_subject() -> None:
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(60, 3)), rng.normal(size=(40, 3))
    lab, labt = np.sign(x[:, 0] + 0.1), np.sign(xt[:, 0] + 0.1)
    sub = ib.Subject(classifier=ib.Separable(x, lab, xt, labt))
    s = dataclasses.replace(ib.Settings.for_profile("smoke"), handoff=ib.HandoffSettings(eps=0.05, steps=200))
    r = ib.measure(sub, s, seed=0)
    assert r.outputs["implicit_bias.linear_classifier"]["eps"] == 0.05
    art = r.outputs["implicit_bias.linear_classifier"]
    m = normalized_margins(np.array(art["w"]), art["b"], xt, labt)
    assert r.metrics["implicit_bias.margin_fraction_above_eps"] == pytest.approx(float(np.mean(m > 0.05)))
    # separable data: Newton has no finite minimiser, the agreement check is not evaluated (never a pass)
    assert {c.name: c.passed for c in r.checks}["handoff_gd_matches_newton"] is None
