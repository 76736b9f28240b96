"""Scaling-law fits against exact answers: Chinchilla Approach 3 and the compute law L(C)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.lenses.scaling import (
    bootstrap_chinchilla,
    bootstrap_compute_law,
    fit_chinchilla,
    fit_chinchilla_exhaustive,
    fit_compute_law,
    hoffmann_grid,
    naive_loglog_slope,
)
from multilens.lenses.scaling.chinchilla import HUBER_DELTA, objective_batch, theta_to_params
from multilens.lenses.scaling.synthetic import CHINCHILLA_PARAMS, chinchilla_grid_data, compute_law_data

TRUTH = CHINCHILLA_PARAMS
SMALL_N = np.geomspace(1e7, 1e10, 6)
SMALL_D = np.geomspace(1e8, 1e11, 6)

# Exhaustive reference on small_set(): scipy L-BFGS-B (analytic gradient) from every one of the
# 4500 grid starts, best converged start (all 4500 converged), computed with
# fit_chinchilla_exhaustive (142 s on the shared 2-core box: too slow for the fast suite, so
# test_exhaustive_reference_live, marked slow, recomputes it and checks these numbers).
EXHAUSTIVE_OBJECTIVE = 1.6765281604155287e-04
EXHAUSTIVE_PARAMS = {
    "E": 1.7558768305044061,
    "A": 528.2050199431296,
    "B": 540.856197316608,
    "alpha": 0.35698711365721436,
    "beta": 0.2952817715178069,
}


def small_set(seed: int = 0, noise: float = 0.01):
    return chinchilla_grid_data(N=SMALL_N, D=SMALL_D, noise=noise, seed=seed)


@pytest.fixture(scope="module")
def small_fit():
    d = small_set()
    return d, fit_chinchilla(d)


# ----------------------------------------------------------------------------- objective


def test_grid_is_hoffmann_4500_starts():
    g = hoffmann_grid()
    assert g.shape == (4500, 5)
    assert len({tuple(r) for r in g}) == 4500
    a, b, e, al, be = g.T
    assert set(np.unique(a)) == set(np.unique(b)) == {0.0, 5.0, 10.0, 15.0, 20.0, 25.0}
    assert set(np.unique(e)) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert set(np.unique(al)) == set(np.unique(be)) == {0.0, 0.5, 1.0, 1.5, 2.0}


def test_objective_is_summed_huber_and_gradient_is_exact():
    d = small_set()
    lN, lD, lL = np.log(d.N), np.log(d.D), np.log(d.loss)
    theta = np.array([[6.0, 6.1, 0.5, 0.33, 0.29], [5.5, 7.0, 0.4, 0.2, 0.35]])
    f, g = objective_batch(theta, lN, lD, lL, np.ones(d.n_points))
    # direct formula, summed (not averaged) over runs
    for k in range(2):
        p = theta_to_params(theta[k])
        r = np.log(p["E"] + p["A"] * d.N ** -p["alpha"] + p["B"] * d.D ** -p["beta"]) - lL
        hub = np.where(np.abs(r) <= HUBER_DELTA, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA))
        assert f[k] == pytest.approx(hub.sum(), rel=1e-12)
        num = approx_fprime(theta[k], lambda x: objective_batch(x[None], lN, lD, lL, np.ones(d.n_points))[0][0], 1e-8)
        np.testing.assert_allclose(g[k], num, rtol=1e-4, atol=1e-9)


def test_integer_weights_equal_repeated_rows():
    d = small_set()
    lN, lD, lL = np.log(d.N), np.log(d.D), np.log(d.loss)
    w = np.random.default_rng(1).integers(0, 3, d.n_points).astype(float)
    rows = np.repeat(np.arange(d.n_points), w.astype(int))
    theta = np.array([[6.0, 6.1, 0.5, 0.33, 0.29]])
    f1, g1 = objective_batch(theta, lN, lD, lL, w)
    f2, g2 = objective_batch(theta, lN[rows], lD[rows], lL[rows], np.ones(len(rows)))
    np.testing.assert_allclose(f1, f2, rtol=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10)


# ----------------------------------------------------------------------------- Chinchilla fit


def test_chinchilla_recovers_exact_law_without_noise():
    d = chinchilla_grid_data(N=np.geomspace(1e7, 1e10, 5), D=np.geomspace(1e8, 1e11, 5), noise=0.0)
    fit = fit_chinchilla(d)
    assert fit.converged
    assert fit.n_starts == 4500
    assert fit.n_iter > 0
    for k, v in TRUTH.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-4), k
    assert fit.objective < 1e-12
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


def test_chinchilla_recovers_known_parameters_with_noise(small_fit):
    d, fit = small_fit
    assert fit.converged
    assert fit.alpha == pytest.approx(TRUTH["alpha"], abs=0.04)
    assert fit.beta == pytest.approx(TRUTH["beta"], abs=0.04)
    assert fit.E == pytest.approx(TRUTH["E"], rel=0.05)
    assert fit.r2 > 0.99
    # residuals are log-loss residuals at 1% noise
    assert 0.004 < fit.rmse < 0.02
    assert len(fit.residuals) == d.n_points


def test_screened_fit_matches_exhaustive_reference(small_fit):
    _, fit = small_fit
    assert abs(fit.objective - EXHAUSTIVE_OBJECTIVE) <= 1e-9 * EXHAUSTIVE_OBJECTIVE
    for k, v in EXHAUSTIVE_PARAMS.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-5), k


def test_screened_fit_matches_exhaustive_on_subset_of_starts_live():
    """Same starts through both paths (a random 150-start subset of the grid, fast enough live)."""
    d = small_set(seed=3)
    starts = hoffmann_grid()[np.random.default_rng(7).choice(4500, 150, replace=False)]
    fast = fit_chinchilla(d, starts=starts)
    ref = fit_chinchilla_exhaustive(d, starts=starts)
    assert ref.converged and fast.converged
    assert abs(fast.objective - ref.objective) <= 1e-9 * ref.objective


@pytest.mark.slow
def test_exhaustive_reference_live(small_fit):
    d, fit = small_fit
    ref = fit_chinchilla_exhaustive(d)
    assert ref.converged
    assert abs(fit.objective - ref.objective) <= 1e-9 * ref.objective
    assert abs(ref.objective - EXHAUSTIVE_OBJECTIVE) <= 1e-9 * EXHAUSTIVE_OBJECTIVE


def test_fit_is_invariant_to_row_order(small_fit):
    d, fit = small_fit
    perm = np.random.default_rng(5).permutation(d.n_points)
    fit2 = fit_chinchilla(d.subset(perm))
    assert fit2.objective == pytest.approx(fit.objective, rel=1e-9)
    for k in TRUTH:
        assert fit2.params[k] == pytest.approx(fit.params[k], rel=1e-5), k
    np.testing.assert_allclose(np.asarray(fit2.residuals), np.asarray(fit.residuals)[perm], atol=1e-7)


def test_nonconvergence_warns_and_is_reported():
    d = small_set()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = fit_chinchilla(d, starts=hoffmann_grid()[:5], screen_iter=0, max_iter=1)
    assert fit.converged is False


def test_fit_validates_arguments():
    d = small_set()
    with pytest.raises(ConfigError, match="`screen_iter` must be an int >= 0"):
        fit_chinchilla(d, screen_iter=-1)
    with pytest.raises(ConfigError, match="`starts` must be"):
        fit_chinchilla(d, starts=np.zeros((3, 4)))
    with pytest.raises(ConfigError, match="at least 5 runs"):
        fit_chinchilla(d.subset(np.arange(4)))
    with pytest.raises(ConfigError, match="`data` must be a ScalingData"):
        fit_chinchilla({"N": [1]})


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_same_seed_identical_and_intervals_sane(small_fit):
    d, fit = small_fit
    b1 = bootstrap_chinchilla(d, fit, n_boot=30, seed=11)
    b2 = bootstrap_chinchilla(d, fit, n_boot=30, seed=np.random.default_rng(11))
    b3 = bootstrap_chinchilla(d, fit, n_boot=30, seed=12)
    np.testing.assert_array_equal(b1.samples, b2.samples)
    assert b1.to_dict() == b2.to_dict()
    assert not np.array_equal(b1.samples, b3.samples)
    assert b1.n_failed == 0 and b1.n_ok == 30
    assert set(b1.intervals) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    for k, iv in b1.intervals.items():
        assert iv.ci_low <= iv.ci_high and iv.stderr > 0, k
    # allocation exponents of every refit sum to 1
    np.testing.assert_allclose(b1.column("a") + b1.column("b"), 1.0)
    a_hat = fit.beta / (fit.alpha + fit.beta)
    assert b1.intervals["a"].estimate == pytest.approx(a_hat)


def test_bootstrap_process_pool_gives_identical_result(small_fit):
    d, fit = small_fit
    b1 = bootstrap_chinchilla(d, fit, n_boot=8, seed=3, chunk=4)
    b2 = bootstrap_chinchilla(d, fit, n_boot=8, seed=3, chunk=4, n_jobs=2)
    np.testing.assert_array_equal(b1.samples, b2.samples)


def _coverage(n_reps: int, n_boot: int, seed0: int, refit_starts: int = 0) -> dict[str, int]:
    """How often the 95% interval covers the true parameter over independent data sets."""
    # A small start set keeps each repetition fast; the full-grid fit is tested above.
    starts = np.array([[a, b, 0.5, 0.5, 0.5] for a in (5.0, 10.0) for b in (5.0, 10.0)])
    hits = dict.fromkeys(TRUTH, 0)
    for rep in range(n_reps):
        d = chinchilla_grid_data(N=SMALL_N, D=SMALL_D, noise=0.01, seed=seed0 + rep)
        fit = fit_chinchilla(d, starts=starts, n_polish=4, screen_iter=20)
        b = bootstrap_chinchilla(d, fit, n_boot=n_boot, seed=seed0 + 10_000 + rep, refit_starts=refit_starts)
        for k, v in TRUTH.items():
            iv = b.intervals[k]
            hits[k] += int(iv.ci_low <= v <= iv.ci_high)
    return hits


def _binomial_floor(n: int, p: float = 0.95, z: float = 3.0) -> float:
    return n * p - z * np.sqrt(n * p * (1 - p))


def test_bootstrap_coverage_fast():
    n = 40
    hits = _coverage(n, n_boot=30, seed0=100)
    # 3-sigma binomial lower bound around 95% (an interval that is far too narrow fails)
    for k, h in hits.items():
        assert h >= _binomial_floor(n), (k, h)


@pytest.mark.slow
def test_bootstrap_coverage_slow():
    n = 200
    hits = _coverage(n, n_boot=200, seed0=5000, refit_starts=2)
    for k, h in hits.items():
        assert _binomial_floor(n) <= h <= n - 1, (k, h)


# ----------------------------------------------------------------------------- compute law


C_GRID = np.repeat(np.geomspace(1e15, 1e21, 12), 2)


def test_compute_law_exact_without_noise():
    C, L = compute_law_data(2e3, 0.2, 1.8, C_GRID, noise=0.0)
    fit = fit_compute_law(C, L)
    assert fit.converged and fit.n_iter > 0 and fit.n_starts > 1
    assert fit.A == pytest.approx(2e3, rel=1e-6)
    assert fit.alpha == pytest.approx(0.2, rel=1e-8)
    assert fit.L_inf == pytest.approx(1.8, rel=1e-8)
    assert fit.rmse < 1e-10 and fit.r2 == pytest.approx(1.0)


def test_compute_law_recovers_alpha_where_naive_loglog_is_biased():
    C, L = compute_law_data(2e3, 0.2, 1.8, C_GRID, noise=0.01, seed=4)
    fit = fit_compute_law(C, L)
    boot = bootstrap_compute_law(C, L, fit, n_boot=100, seed=1)
    iv = boot.intervals["alpha"]
    assert iv.ci_low <= 0.2 <= iv.ci_high
    assert fit.alpha == pytest.approx(0.2, abs=3 * iv.stderr)
    assert fit.L_inf == pytest.approx(1.8, rel=0.03)
    # contrast: the straight line through log-loss puts the exponent far toward zero
    naive = -naive_loglog_slope(C, L)
    assert fit.naive_alpha == pytest.approx(naive)
    assert naive < 0.5 * 0.2
    assert naive < iv.ci_low


def test_compute_law_bootstrap_deterministic_and_warm_started():
    C, L = compute_law_data(2e3, 0.2, 1.8, C_GRID, noise=0.01, seed=4)
    fit = fit_compute_law(C, L)
    b1 = bootstrap_compute_law(C, L, fit, n_boot=20, seed=9)
    b2 = bootstrap_compute_law(C, L, fit, n_boot=20, seed=9)
    np.testing.assert_array_equal(b1.samples, b2.samples)
    assert b1.n_failed == 0
    assert set(b1.intervals) == {"A", "alpha", "L_inf"}


def test_compute_law_invariant_to_row_order():
    C, L = compute_law_data(2e3, 0.2, 1.8, C_GRID, noise=0.01, seed=4)
    perm = np.random.default_rng(0).permutation(len(C))
    f1, f2 = fit_compute_law(C, L), fit_compute_law(C[perm], L[perm])
    for k in ("A", "alpha", "L_inf"):
        assert f2.params[k] == pytest.approx(f1.params[k], rel=1e-6)


def test_compute_law_cap_warns():
    C, L = compute_law_data(2e3, 0.2, 1.8, C_GRID, noise=0.01, seed=4)
    with pytest.warns(ConvergenceWarning):
        fit = fit_compute_law(C, L, max_nfev=1)
    assert not fit.converged


def test_compute_law_input_errors():
    with pytest.raises(DataError, match="at least 3 distinct compute budgets"):
        fit_compute_law([1e18, 1e18, 1e19], [2.0, 2.1, 1.9])
    with pytest.raises(DataError, match=r"`loss`\[1\]"):
        fit_compute_law([1e18, 1e19, 1e20], [2.0, -1.0, 1.9])
    with pytest.raises(DataError, match="same length"):
        fit_compute_law([1e18, 1e19, 1e20], [2.0, 1.9])
