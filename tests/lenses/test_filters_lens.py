"""The spectral-filters lens: measured filters equal the closed forms, on the bundled and on a user's problem."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.filters import InverseProblem, Settings, default_subject, measure
from multilens.lenses.filters.lens import (
    _closed_form_checks,
    _continuum_bound_check,
    _no_single_lambda_check,
    expected_squared_error,
    gaussian_blur,
    measured_filters,
    narrow_operator,
    ridge_solve,
    run_gd,
)
from multilens.theory.filters import best_matching_lambda, gd_filter, ridge_filter

SMOKE = Settings.for_profile("smoke")


def test_measured_filters_equal_closed_forms_on_a_small_problem(seed: int) -> None:
    a = narrow_operator(8, 20.0, seed)
    u, s, vt = np.linalg.svd(a)
    eta = 1.0 / s[0] ** 2
    run = run_gd(a, u, eta, [1, 3, 40, 300])
    for t, x in zip(run.steps, run.iterates):
        phi, leak = measured_filters(x, s, vt.T)
        np.testing.assert_allclose(phi, gd_filter(s, eta, t), rtol=0, atol=1e-10)
        assert leak < 1e-10  # GD on A^T A never mixes singular modes
    for lam in (1e-3, 0.05, 2.0):
        phi, leak = measured_filters(ridge_solve(a, u, lam), s, vt.T)
        np.testing.assert_allclose(phi, ridge_filter(s, lam), rtol=0, atol=1e-10)
        assert leak < 1e-10


def test_blur_operator_has_a_wide_spectrum() -> None:
    a = gaussian_blur(64, 2.0)
    np.testing.assert_array_equal(a, a.T)
    assert a[32].sum() == pytest.approx(1.0, abs=1e-6)  # interior rows sum to the kernel's mass, 1
    s = np.linalg.svd(a, compute_uv=False)
    assert s[0] == pytest.approx(1.0, abs=0.05)
    assert s[0] / s[-1] > 1e6


@pytest.fixture(scope="module")
def smoke_result():
    return measure(default_subject(SMOKE, seed=3), SMOKE, seed=3)


def test_smoke_run_is_complete_json_safe_and_passes_its_exact_checks(smoke_result) -> None:
    res = smoke_result
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert res.parts == ("matching", "reconstruction")
    for c in res.checks:
        if c.severity == "error":
            assert c.passed is True, c.reason
    kinds = {c.name: c.kind for c in res.checks}
    assert kinds["filters.gd_closed_form.operator"] == "sanity"
    assert kinds["filters.gap_within_continuum_bound.operator"] == "bound"
    assert kinds["filters.no_single_lambda.operator"] == "agreement"
    rows = d["data"]["matching"]["operator"]["rows"]
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    for r in rows:
        assert 0.0 < r["gap"] <= r["continuum_gap"] + 1e-6
    est = res.estimate("filters.best_gd_error")
    assert est.ci_low <= est.value <= est.ci_high and est.n == 8
    assert res.metrics["filters.max_filter_gap"] == max(r["gap"] for r in rows)
    assert res.estimate("filters.max_filter_gap").no_interval_reason
    assert res.estimate("filters.continuum_gap").converged is None  # a fixed grid, not a stopping rule
    assert len(res.outputs["filters.matching"]["rows"]) == len(rows)
    assert all(a.status == "holds" for a in res.assumptions)
    assert len(res.recommendations) == 3


def test_max_filter_gap_matches_an_exhaustive_search_over_lambda(smoke_result) -> None:
    """The measured minimax gap equals a brute-force min over a fine lambda grid of the closed-form gap."""
    a = gaussian_blur(SMOKE.m, SMOKE.blur_width)
    s = np.linalg.svd(a, compute_uv=False)
    keep = s > s[0] * SMOKE.m * np.finfo(float).eps
    eta = SMOKE.step_scale / s[0] ** 2
    worst = smoke_result.data["matching"]["worst"]
    target = gd_filter(s[keep], eta, worst["t"])
    lams = np.geomspace(worst["lambda"] / 1.5, worst["lambda"] * 1.5, 20001)
    brute = np.min(np.max(np.abs(ridge_filter(s[keep][None, :], lams[:, None]) - target[None, :]), axis=1))
    assert worst["gap"] == pytest.approx(brute, abs=1e-5)
    assert worst["gap"] <= brute + 1e-10  # bisection is at least as good as the grid


def test_expected_squared_error_equals_dense_formula(rng: np.random.Generator) -> None:
    """E||R y - x*||^2 = ||R A x* - x*||^2 + sigma^2 ||R||_F^2 for the dense ridge and GD operators R."""
    a = rng.standard_normal((12, 9))
    x = rng.standard_normal(9)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    sigma, lam, eta, t = 0.3, 0.7, 1.0 / s[0] ** 2, 25
    r_ridge = np.linalg.solve(a.T @ a + lam * np.eye(9), a.T)
    r_gd = np.zeros((9, 12))
    for _ in range(t):  # x_{k+1} = x_k - eta A^T (A x_k - y) is linear in y: iterate the operator
        r_gd = r_gd - eta * a.T @ (a @ r_gd - np.eye(12))
    for r, phi in ((r_ridge, ridge_filter(s, lam)), (r_gd, gd_filter(s, eta, t))):
        exact = np.sum((r @ a @ x - x) ** 2) + sigma**2 * np.sum(r**2)
        assert expected_squared_error(s, vt.T, x, phi, sigma) == pytest.approx(exact, rel=1e-10)


def test_measure_on_a_user_built_rectangular_problem(rng: np.random.Generator) -> None:
    """A user's own operator (40 x 30, spectrum spread over 4 decades), signal and noise."""
    u, _ = np.linalg.qr(rng.standard_normal((40, 30)))
    v, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    s = np.geomspace(1.0, 1e-4, 30)
    a = (u * s) @ v.T
    x_true = v @ (1.0 / (1.0 + np.arange(30)))
    sigma = 1e-3
    y = (a @ x_true)[:, None] + sigma * rng.standard_normal((40, 30))
    st = dataclasses.replace(SMOKE, t_max=3000)
    res = measure(InverseProblem(a, y, x_true, sigma), st, seed=1)
    assert res.check("filters.gd_closed_form.operator").passed is True
    assert res.check("filters.ridge_closed_form.operator").passed is True
    assert res.check("filters.gap_within_continuum_bound.operator").passed is True
    assert res.check("filters.gd_risk_exact").passed is not None
    op = res.data["matching"]["operator"]
    np.testing.assert_allclose(op["s"], s, rtol=1e-10)
    # the reconstruction error at the best checkpoint, recomputed directly
    t = int(res.estimate("filters.best_gd_error").note.split("t=")[1].split(" ")[0])
    eta = 1.0 / s[0] ** 2
    x = np.zeros((30, 30))
    for _ in range(t):
        x = x - eta * a.T @ (a @ x - y)
    direct = np.mean(np.linalg.norm(x - x_true[:, None], axis=0)) / np.linalg.norm(x_true)
    assert res.estimate("filters.best_gd_error").value == pytest.approx(direct, rel=1e-9)


def test_without_the_true_signal_only_matching_is_measured(rng: np.random.Generator) -> None:
    a = narrow_operator(10, 50.0, 4)
    res = measure(InverseProblem(a, rng.standard_normal(10)), SMOKE, seed=0)
    assert res.parts == ("matching", "reconstruction")
    assert not [c for c in res.checks if "risk_exact" in c.name]
    assert any("no true signal x_true" in n for n in res.notes)
    with pytest.raises(ConfigError, match="`y` must be finite with 10 rows"):
        InverseProblem(a, np.ones(7))
    with pytest.raises(ConfigError, match="InverseProblem"):
        measure(a, SMOKE, seed=0)


def test_filter_checks_can_fail() -> None:
    """Wrong closed-form errors, a gap above the continuum bound and unconverged matching all fail."""
    st = {
        "steps": [1, 10],
        "size": 8,
        "n_modes_used": 8,
        "condition": 1e3,
        "gd_closed_form_max_error": 0.3,
        "ridge_closed_form_max_error": 0.0,
        "max_leakage": 1e-3,
        "ridge_cond_max": 10.0,
        "rows": [
            {"t": 1, "gap": 0.5, "continuum_gap": 0.2, "converged": True},
            {"t": 10, "gap": 0.01, "continuum_gap": 0.11, "converged": False},
        ],
    }
    checks = {c.name: c for c in _closed_form_checks("x", st)}
    assert checks["filters.gd_closed_form.x"].passed is False
    assert checks["filters.ridge_closed_form.x"].passed is True
    assert checks["filters.no_mode_mixing.x"].passed is False
    assert checks["filters.matching_converged.x"].passed is False
    assert _continuum_bound_check("x", st).passed is False
    assert _no_single_lambda_check(st, 0.5).passed is False


def test_matched_lambda_is_the_minimax_of_the_closed_forms() -> None:
    s = np.geomspace(1.0, 1e-3, 40)
    m = best_matching_lambda(s, gd_filter(s, 1.0, 50))
    assert 0.3 < m.lam * 50 < 1.0 and m.converged


def test_settings_parts_and_validation() -> None:
    with pytest.raises(ConfigError, match="`m` must be an int >= 4; got 2"):
        Settings(m=2)
    with pytest.raises(ConfigError, match="`step_scale`"):
        Settings(step_scale=1.5)
    with pytest.raises(ConfigError, match="`profile`"):
        Settings.for_profile("huge")
    cfg = from_dict(Settings, {"t_max": 500, "reconstruction": False}, base=SMOKE)
    assert cfg.t_max == 500 and cfg.m == 32 and cfg.reconstruction is None
    cfg = from_dict(Settings, {"matching": {"narrow_condition": 5}}, base=SMOKE)
    assert cfg.matching.narrow_condition == 5.0
    with pytest.raises(ConfigError, match="narrow_condition"):
        from_dict(Settings, {"matching": {"narrow_condition": 0.5}}, base=SMOKE)
