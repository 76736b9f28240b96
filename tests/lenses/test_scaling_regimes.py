"""Regime detection: a broken power law has one breakpoint where it was put; a pure one has none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multilens.errors import ConfigError, DataError
from multilens.lenses.scaling import detect_regimes
from multilens.lenses.scaling.regimes import fit_piecewise

C = np.geomspace(1e15, 1e21, 40)
LOG10_BREAK = 18.0


def broken_power_law(seed: int, noise: float = 0.01) -> np.ndarray:
    """ln L slope -0.05 below C = 1e18 and -0.15 above, continuous at the break."""
    x = np.log(C) - LOG10_BREAK * np.log(10)
    y = 1.0 + np.where(x < 0, -0.05 * x, -0.15 * x)
    return np.exp(y + noise * np.random.default_rng(seed).standard_normal(C.size))


def test_piecewise_least_squares_is_exact_on_noise_free_data():
    L = broken_power_law(0, noise=0.0)
    fit = fit_piecewise(np.log(C), np.log(L), 1, n_grid=61)  # grid contains the true break
    assert fit is not None
    assert fit.breakpoints[0] / np.log(10) == pytest.approx(LOG10_BREAK, abs=1e-9)
    np.testing.assert_allclose(fit.slopes, [-0.05, -0.15], atol=1e-9)
    assert fit.sse < 1e-20


def test_one_breakpoint_found_at_the_right_place():
    r = detect_regimes(C, broken_power_law(1), n_boot=40, seed=0)
    assert r.n_breaks == 1
    assert r.breakpoints[0] == pytest.approx(LOG10_BREAK, abs=0.15)
    iv = r.breakpoint_intervals[0]
    assert iv.ci_low <= LOG10_BREAK <= iv.ci_high
    assert r.breakpoints_C[0] == pytest.approx(10 ** r.breakpoints[0])
    assert r.slopes[0] == pytest.approx(-0.05, abs=0.01)
    assert r.slopes[1] == pytest.approx(-0.15, abs=0.01)
    assert r.slope_intervals[1].ci_low <= -0.15 <= r.slope_intervals[1].ci_high
    assert r.cv_error[1] < r.cv_error[0]
    assert r.selection_frequency[1] >= 0.8
    assert sum(r.selection_frequency) == pytest.approx(1.0)
    assert r.converged is None and r.n_iter > 0  # a fixed grid: no stopping rule
    assert r.response == "ln L vs ln C"


def test_no_breakpoint_on_a_pure_power_law():
    L = np.exp(5.0 - 0.1 * np.log(C) + 0.01 * np.random.default_rng(2).standard_normal(C.size))
    r = detect_regimes(C, L, n_boot=40, seed=0)
    assert r.n_breaks == 0
    assert r.breakpoints == ()
    assert r.slopes[0] == pytest.approx(-0.1, abs=0.005)
    assert r.selection_frequency[0] >= 0.8


def test_reducible_loss_response_removes_the_floor_curvature():
    # L = 2 + 5e3 C^-0.2 is a single power law in L - 2; in ln L it curves (no single line)
    L = (2.0 + 5e3 * C**-0.2) * np.exp(0.002 * np.random.default_rng(3).standard_normal(C.size))
    r = detect_regimes(C, L, l_inf=2.0, n_boot=0, seed=0)
    assert r.n_breaks == 0
    assert r.slopes[0] == pytest.approx(-0.2, abs=0.01)
    assert r.response.startswith("ln(L - 2)")
    json.dumps(r.to_dict(), allow_nan=False)  # no bootstrap: frequencies are None, not NaN


def test_same_seed_same_result_and_row_order_invariance():
    L = broken_power_law(4)
    r1 = detect_regimes(C, L, n_boot=20, seed=7)
    r2 = detect_regimes(C, L, n_boot=20, seed=7)
    assert r1.to_dict() == r2.to_dict()
    perm = np.random.default_rng(0).permutation(C.size)
    r3 = detect_regimes(C[perm], L[perm], n_boot=0, seed=7)
    assert r3.n_breaks == r1.n_breaks
    assert r3.breakpoints == pytest.approx(r1.breakpoints)


def test_regime_argument_errors():
    L = broken_power_law(0)
    with pytest.raises(ConfigError, match="`rule` must be"):
        detect_regimes(C, L, rule="aic")
    with pytest.raises(DataError, match="`l_inf`"):
        detect_regimes(C, L, l_inf=100.0)
    with pytest.raises(DataError, match="at least"):
        detect_regimes(C[:6], L[:6])
    with pytest.raises(ConfigError, match="`n_folds` must be an int >= 2"):
        detect_regimes(C, L, n_folds=1)
