"""Extrapolation check: a law fitted on small budgets predicts the largest held-out budget."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError, DataError
from multilens.lenses.scaling import ScalingData, extrapolation_check
from multilens.lenses.scaling.extrapolation import split_by_budget
from multilens.lenses.scaling.synthetic import chinchilla_grid_data, compute_law_data
from multilens.results import Check


def compute_data(scale_last: float = 1.0, seed: int = 0) -> ScalingData:
    """Runs at 10 budgets x 3 seeds from L(C) = 2e3 C^-0.2 + 1.8, 1% noise; N chosen arbitrarily."""
    C = np.repeat(np.geomspace(1e15, 1e21, 10), 3)
    C, L = compute_law_data(2e3, 0.2, 1.8, C, noise=0.01, seed=seed)
    L = np.where(C == C.max(), L * scale_last, L)
    N = np.sqrt(C / 6 / 20)  # D = 20 N
    return ScalingData(N, C / (6 * N), L)


def test_split_holds_out_the_largest_budgets():
    C = np.array([1e18, 1e20, 1e19, 1e20 * (1 + 1e-5), 1e17])
    np.testing.assert_array_equal(split_by_budget(C, 1), [False, True, False, True, False])
    np.testing.assert_array_equal(split_by_budget(C, 2), [False, True, True, True, False])
    with pytest.raises(DataError, match="cannot hold out"):
        split_by_budget(C, 4)


def test_compute_law_extrapolation_passes_on_data_from_the_law():
    res = extrapolation_check(compute_data(), form="compute", n_boot=100, seed=0)
    assert isinstance(res.check, Check)
    assert res.check.passed is True, res.check.reason
    assert res.n_holdout == 3 and res.n_train == 27
    assert res.train_max_compute < res.holdout_compute.min()
    assert np.all(res.pi_low < res.predicted) and np.all(res.predicted < res.pi_high)
    assert np.all(np.abs(res.relative_error) < 0.05)
    assert res.converged and res.n_iter > 0
    d = res.to_dict()
    assert d["check"]["verdict"] == "pass"


def test_compute_law_extrapolation_fails_when_the_largest_budget_breaks_the_law():
    res = extrapolation_check(compute_data(scale_last=1.15), form="compute", n_boot=100, seed=0)
    assert res.check.passed is False, res.check.reason
    assert res.check.observed > res.check.expected
    assert "held-out runs inside" in res.check.reason
    assert np.all(res.relative_error > 0.1)


def test_chinchilla_extrapolation_passes_on_data_from_the_law():
    # budgets 6ND on an N x D grid are mostly distinct: the single largest run is held out
    d = chinchilla_grid_data(N=np.geomspace(1e7, 1e10, 6), D=np.geomspace(1e8, 1e11, 6), noise=0.01, seed=0)
    r1 = extrapolation_check(d, form="chinchilla", n_boot=30, seed=4)
    assert r1.n_holdout == 1 and r1.holdout_compute[0] == pytest.approx(d.compute.max())
    assert r1.check.passed is True, r1.check.reason
    assert r1.n_failed == 0


def test_extrapolation_argument_errors():
    with pytest.raises(ConfigError, match="`form` must be"):
        extrapolation_check(compute_data(), form="kaplan")
    with pytest.raises(ConfigError, match="`n_boot` must be an int >= 2"):
        extrapolation_check(compute_data(), form="compute", n_boot=1)
    with pytest.raises(DataError, match="only 2 distinct budgets below the held-out budget"):
        extrapolation_check(compute_data(), form="compute", holdout_budgets=8)
