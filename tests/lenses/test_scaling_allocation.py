"""Compute-optimal allocation against exhaustive search, and the regret of exponent errors."""

from __future__ import annotations

import numpy as np
import pytest

from multilens.errors import ConfigError
from multilens.lenses.scaling import (
    allocation_constants,
    allocation_regret,
    allocation_with_intervals,
    bootstrap_chinchilla,
    fit_chinchilla,
    optimal_allocation,
    predict_chinchilla,
)
from multilens.lenses.scaling.synthetic import CHINCHILLA_PARAMS, chinchilla_grid_data

BUDGETS = np.array([1e18, 1e20, 1e22, 1e24])
PARAM_SETS = [
    CHINCHILLA_PARAMS,
    {"E": 1.2, "A": 50.0, "B": 3000.0, "alpha": 0.5, "beta": 0.2},  # far from alpha = beta
]


def brute_force(p: dict[str, float], C: float, n_grid: int = 400_001) -> tuple[float, float, float]:
    """Minimise L(N, C/(6N)) over N on a fine log grid: exhaustive search, no calculus."""
    logN = np.linspace(np.log(1e2), np.log(C / 6 / 1e2), n_grid)
    N = np.exp(logN)
    D = C / (6 * N)
    L = predict_chinchilla(p, N, D)
    k = int(np.argmin(L))
    assert 0 < k < n_grid - 1  # interior minimum
    return float(N[k]), float(D[k]), float(L[k])


@pytest.mark.parametrize("p", PARAM_SETS)
def test_closed_form_matches_exhaustive_search(p):
    N, D, L = optimal_allocation(p, BUDGETS)
    for j, C in enumerate(BUDGETS):
        Nb, Db, Lb = brute_force(p, C)
        step = (np.log(C / 6 / 1e2) - np.log(1e2)) / 400_000  # grid spacing in log N
        assert abs(np.log(N[j] / Nb)) <= step
        assert abs(np.log(D[j] / Db)) <= step
        assert L[j] <= Lb + 1e-12  # the closed form is at least as good as any grid point
        assert 6 * N[j] * D[j] == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("p", PARAM_SETS)
def test_exponents_are_beta_over_sum_not_swapped(p):
    a, b, G = allocation_constants(p)
    s = p["alpha"] + p["beta"]
    assert a == pytest.approx(p["beta"] / s) and b == pytest.approx(p["alpha"] / s)
    assert G == pytest.approx((p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s))
    # slopes of the brute-force optimum in log-log match a and b ...
    logC = np.log(BUDGETS)
    bf = np.array([brute_force(p, C)[:2] for C in BUDGETS])
    slope_N = np.polyfit(logC, np.log(bf[:, 0]), 1)[0]
    slope_D = np.polyfit(logC, np.log(bf[:, 1]), 1)[0]
    assert slope_N == pytest.approx(a, abs=1e-4)
    assert slope_D == pytest.approx(b, abs=1e-4)
    # ... and not the chapter's C.10 (swapped) exponents
    assert abs(slope_N - p["alpha"] / s) > 0.05


def test_regret_definition():
    p = CHINCHILLA_PARAMS
    C_ref = 1e20
    zero = allocation_regret(p, BUDGETS, reference_compute=C_ref, delta=0.0)
    np.testing.assert_allclose(zero.regret, 0.0, atol=1e-12)
    for delta in (-0.05, 0.05):
        r = allocation_regret(p, BUDGETS, reference_compute=C_ref, delta=delta)
        at_ref = int(np.flatnonzero(BUDGETS == C_ref)[0])
        assert r.regret[at_ref] == pytest.approx(0.0, abs=1e-12)
        away = np.arange(len(BUDGETS)) != at_ref
        assert np.all(r.regret[away] > 0)
        # recomputed by hand from the definition
        a = allocation_constants(p)[0]
        N_ref = optimal_allocation(p, C_ref)[0][0]
        N_used = N_ref * (BUDGETS / C_ref) ** (a + delta)
        L_used = predict_chinchilla(p, N_used, BUDGETS / (6 * N_used))
        L_best = np.array([brute_force(p, C)[2] for C in BUDGETS])
        np.testing.assert_allclose(r.regret, L_used - L_best, atol=1e-9)
        np.testing.assert_allclose(r.relative_regret, r.regret / r.L_opt)
        # further from the anchor, the wrong exponent costs more
        assert r.regret[-1] > r.regret[-2] > 0


def test_allocation_intervals_from_bootstrap():
    d = chinchilla_grid_data(N=np.geomspace(1e7, 1e10, 6), D=np.geomspace(1e8, 1e11, 6), noise=0.01, seed=0)
    fit = fit_chinchilla(d, starts=np.array([[6.0, 6.0, 0.5, 0.3, 0.3]]), n_polish=1)
    boot = bootstrap_chinchilla(d, fit, n_boot=40, seed=2, refit_starts=0)
    res = allocation_with_intervals(fit, boot, [1e21, 1e23])
    a, b, _ = allocation_constants(fit)
    assert res.a.estimate == pytest.approx(a) and res.b.estimate == pytest.approx(b)
    assert res.a.ci_low < a < res.a.ci_high
    # a + b = 1 on every refit: the intervals mirror each other
    assert res.a.ci_low == pytest.approx(1 - res.b.ci_high) and res.a.ci_high == pytest.approx(1 - res.b.ci_low)
    N, D, L = optimal_allocation(fit, [1e21, 1e23])
    for j in range(2):
        assert res.N_opt[j].estimate == pytest.approx(N[j])
        assert res.N_opt[j].ci_low < N[j] < res.N_opt[j].ci_high
        assert res.D_opt[j].ci_low < D[j] < res.D_opt[j].ci_high
        assert res.L_opt[j].ci_low < L[j] < res.L_opt[j].ci_high
    assert set(res.regret) == {-0.05, 0.05}
    assert res.n_boot == 40
    assert res.to_dict()["regret"]["+0.05"]["delta"] == 0.05


def test_allocation_argument_errors():
    with pytest.raises(ConfigError, match="`budgets` must be"):
        optimal_allocation(CHINCHILLA_PARAMS, [1e20, -1.0])
    with pytest.raises(ConfigError, match="missing beta"):
        optimal_allocation({k: v for k, v in CHINCHILLA_PARAMS.items() if k != "beta"}, 1e20)
    with pytest.raises(ConfigError, match="alpha, beta > 0"):
        optimal_allocation({**CHINCHILLA_PARAMS, "alpha": -0.1}, 1e20)
    with pytest.raises(ConfigError, match="`delta` must be"):
        allocation_regret(CHINCHILLA_PARAMS, 1e20, reference_compute=1e19, delta=float("nan"))
