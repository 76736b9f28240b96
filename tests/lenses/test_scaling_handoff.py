"""The scaling hand-offs on tables with known answers: runs generated from an exact L(N, D) law.

Allocation (Approach 3 and the Approach 2 fallback), budget contraction, perturbations, peak
exclusion, the recipe width and the log-interpolated tuned learning rate. Tolerances are fixed here.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from multilens.errors import ConfigError, DataError
from multilens.lenses.contract import Runtime
from multilens.lenses.scaling import (
    Runs,
    Settings,
    allocation_from_runs,
    contracted_runs,
    measure,
    perturbed_allocations,
    width_for_params,
)
from multilens.lenses.scaling.handoff import approach2_fit, lr_for_width, peak_mask

LAW = {"E": 0.2, "A": 5.0, "B": 20.0, "alpha": 0.5, "beta": 0.4}
BUDGETS = (1e6, 3e6, 1e7, 3e7, 1e8)


def exact_runs(seeds: tuple[int, ...] = (0, 1), budgets: tuple[float, ...] = BUDGETS) -> Runs:
    """Every budget x 13 log-spaced N, D = C / (6N), loss exactly on LAW; one row per seed (identical)."""
    N, D, L, S, B = [], [], [], [], []
    for c in budgets:
        for n in np.logspace(1, 4, 13):
            d = c / (6 * n)
            for s in seeds:
                N.append(n), D.append(d), S.append(s), B.append(c)
                L.append(LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"])
    return Runs(N, D, L, seed=S, budget=B)


def true_n_star(c: float) -> float:
    a = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
    g = (LAW["alpha"] * LAW["A"] / (LAW["beta"] * LAW["B"])) ** (1 / (LAW["alpha"] + LAW["beta"]))
    return g * (c / 6) ** a


def law(n: float, d: float) -> float:
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


SETTINGS = replace(Settings.for_profile("smoke"), bootstrap=20)


@pytest.fixture(scope="module")
def runs() -> Runs:
    return exact_runs()


@pytest.fixture(scope="module")
def alloc(runs: Runs) -> dict:
    return allocation_from_runs(runs, SETTINGS, seed=3)


def test_allocation_recovers_the_exact_optimum(alloc):
    c = max(BUDGETS)
    assert alloc["ok"] and alloc["method"] == "approach3" and alloc["budget"] == c
    for k, v in LAW.items():
        assert alloc["law"][k] == pytest.approx(v, rel=1e-3)
    n_star = true_n_star(c)
    assert alloc["n_star"] == pytest.approx(n_star, rel=1e-3)
    assert alloc["d_star"] == pytest.approx(c / (6 * n_star), rel=1e-3)
    lo, hi = alloc["n_star_ci"]
    assert lo <= alloc["n_star"] <= hi and hi / lo < 1.01  # exact data: the bootstrap interval is a point
    assert alloc["predicted_loss"] == pytest.approx(law(n_star, c / (6 * n_star)), rel=1e-4)
    plo, phi = alloc["predicted_loss_ci"]
    assert plo <= alloc["predicted_loss"] <= phi
    assert alloc["d"] == round(alloc["d_star"])
    # Family recipe (16 inputs, 2 classes, depth 1): N(w) = 19 w + 2, the width whose count is closest to N*.
    w = alloc["width"]
    assert abs(19 * w + 2 - n_star) <= min(abs(19 * (w + 1) + 2 - n_star), abs(19 * (w - 1) + 2 - n_star))
    assert alloc["recipe"] == {"optimizer": "adam", "batch_size": 128, "schedule": "cosine", "depth": 1,
                               "activation": "relu"}  # fmt: skip
    a = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
    assert alloc["plus10"]["n_star"] == pytest.approx(n_star * 1.1**a, rel=1e-3)
    assert alloc["minus10"]["n_star"] == pytest.approx(n_star * 0.9**a, rel=1e-3)
    assert alloc["plus10"]["budget"] == pytest.approx(1.1 * c)
    assert alloc["plus10"]["predicted_loss"] < alloc["predicted_loss"] < alloc["minus10"]["predicted_loss"]


def test_allocation_at_a_given_target_and_reproducible(runs, alloc):
    again = allocation_from_runs(runs, SETTINGS, seed=3)
    assert again["n_star_ci"] == alloc["n_star_ci"]
    other = allocation_from_runs(runs, SETTINGS, seed=3, target_budget=1e7)
    assert other["n_star"] == pytest.approx(true_n_star(1e7), rel=1e-3)


def test_width_for_params_is_the_closest_count():
    recipe = {"d_in": 16, "d_out": 2, "depth": 1}
    assert width_for_params(1000.0, recipe) == 53  # 19*53+2 = 1009 is closer to 1000 than 19*52+2 = 990
    assert width_for_params(990.0, recipe) == 52
    assert width_for_params(1.0, recipe) == 1
    deep = {"d_in": 4, "d_out": 1, "depth": 2}  # N(w) = 4w + w + w^2 + w + w + 1 = w^2 + 7w + 1
    assert width_for_params(10**2 + 70 + 1, deep) == 10
    with pytest.raises(ConfigError):
        width_for_params(float("nan"), recipe)


def test_lr_is_log_interpolated_between_tuned_widths():
    r = Runs([10, 20, 30, 40, 50], [100, 100, 100, 100, 100], [1, 1, 1, 1, 1], width=[4, 4, 16, 16, 16],
             lr=[0.01, 0.01, 0.04, 0.04, 0.04])  # fmt: skip
    assert lr_for_width(8, r, 1.0) == pytest.approx(0.02, rel=1e-12)  # halfway in log width: geometric mean
    assert lr_for_width(2, r, 1.0) == pytest.approx(0.01)  # outside: the nearest tuned width
    assert lr_for_width(64, r, 1.0) == pytest.approx(0.04)
    assert lr_for_width(8, Runs([1, 2, 3, 4, 5], [9, 9, 9, 9, 9], [1, 1, 1, 1, 1]), 0.5) == 0.5


def test_contracted_runs_keeps_the_budgets_that_fit(runs):
    # Per budget the runs spend 13 x 2 x C: cumulative shares of the total 2 x 13 x sum(C).
    total = sum(BUDGETS)
    half = contracted_runs(runs, 0.5)
    kept = sorted(set(half.budget.tolist()))
    expect, spent = [], 0.0
    for c in BUDGETS:
        if spent + c > 0.5 * total:
            break
        spent += c
        expect.append(c)
    assert kept == pytest.approx(expect) and expect == [1e6, 3e6, 1e7, 3e7]
    assert half.n_runs == 26 * len(expect)
    assert contracted_runs(runs, 1.0).n_runs == runs.n_runs
    assert sorted(set(contracted_runs(runs, 0.05).budget.tolist())) == pytest.approx([1e6, 3e6])  # 4e6 <= 7.05e6
    with pytest.raises(ConfigError):
        contracted_runs(runs, 0.0)
    with pytest.raises(DataError):
        contracted_runs(runs, 1e-4)  # not even the smallest budget fits


def test_perturbed_allocations_on_the_exact_law(runs, alloc):
    items = perturbed_allocations(runs, SETTINGS, seed=3, n_subsample=2, frac=0.8)
    names = [it["perturbation"] for it in items]
    assert names == ["bootstrap_seed", "subsample_0_frac_0.8", "subsample_1_frac_0.8", "leave_out_seed_0",
                     "leave_out_seed_1", "budget_x1.1", "budget_x0.9"]  # fmt: skip
    c = max(BUDGETS)
    a = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
    for it in items:
        assert it["original_n_star"] == pytest.approx(alloc["n_star"], rel=1e-9)
        if it["perturbation"].startswith("budget"):
            m = 1.1 if it["perturbation"].endswith("1.1") else 0.9
            assert it["n_star"] == pytest.approx(true_n_star(m * c), rel=1e-3)
            # Exact data: the original interval is a point, and N* moves by 1.1^a or 0.9^a: outside it.
            assert it["inside"] is False and abs(it["n_star"] / alloc["n_star"] - m**a) < 1e-3
        else:  # the data still lie exactly on the law: the same optimum
            assert it["n_star"] == pytest.approx(true_n_star(c), rel=1e-3)


def test_peak_mask_is_the_band_around_the_ratio(runs):
    nd = runs.N / runs.D
    r = float(np.median(nd))
    m = peak_mask(runs, r, 2.0)
    np.testing.assert_array_equal(m, (nd >= r / 2) & (nd <= r * 2))
    assert 0 < m.sum() < runs.n_runs
    assert not peak_mask(runs, None, 2.0).any()
    with pytest.raises(ConfigError):
        peak_mask(runs, -1.0, 2.0)


def test_approach2_fit_recovers_parabola_minima_exactly():
    """ln L exactly a parabola in ln N with its minimum at ln N_opt = 0.45 ln C - 2: slope 0.45, intercept -2."""
    N, D, L, B = [], [], [], []
    for c in BUDGETS:
        m = 0.45 * math.log(c) - 2.0
        for x in np.linspace(m - 1.5, m + 1.0, 9):
            N.append(math.exp(x)), D.append(c / (6 * math.exp(x))), B.append(c)
            L.append(math.exp(0.1 * (x - m) ** 2 - 1.0))
    slope, icpt, nb = approach2_fit(Runs(N, D, L, budget=B))
    assert nb == len(BUDGETS)
    assert slope == pytest.approx(0.45, abs=1e-9) and icpt == pytest.approx(-2.0, abs=1e-8)


def test_measure_on_exact_runs_with_and_without_the_interpolation_ratio(runs):
    """A user's table: the hand-offs are produced; the peak band drops exactly the runs inside it."""
    s = replace(SETTINGS, compute_law=None, regimes=None, allocation=replace(SETTINGS.allocation,
                extrapolation_bootstrap=10))  # fmt: skip
    plain = measure(runs, s, seed=0)
    a3 = plain.outputs["scaling.allocation"]
    assert a3["n_star"] == pytest.approx(true_n_star(max(BUDGETS)), rel=1e-3)
    a2 = plain.outputs["scaling.allocation_approach2"]
    slope, icpt, _ = approach2_fit(runs)
    assert a2["ok"] and a2["method"] == "approach2" and a2["a"] == pytest.approx(slope)
    assert a2["n_star"] == pytest.approx(math.exp(icpt + slope * math.log(max(BUDGETS))), rel=1e-12)
    assert a2["predicted_loss"] == pytest.approx(law(a2["n_star"], a2["d_star"]), rel=1e-4)  # the L(N, D) law
    assert len(plain.outputs["scaling.runs"]) == runs.n_runs
    assert plain.metrics["scaling.predicted_loss_at_opt"] == pytest.approx(a3["predicted_loss"])
    tbl = next(t for t in plain.to_dict()["tables"] if t["key"] == "scaling.peak_excluded")
    assert tbl["rows"] == [] and "not given" in tbl["caption"]
    assert plain.check("lr_tuning_fits_converged").passed is None  # no untuned sweep in a user's table
    assert plain.check("invariance_fits_converged").passed is None
    nd = runs.N / runs.D
    r = float(np.quantile(nd, 0.9))
    cut = measure(runs, s, seed=0, runtime=Runtime(inputs={"double_descent.interpolation_ratio": r}))
    tbl = next(t for t in cut.to_dict()["tables"] if t["key"] == "scaling.peak_excluded")
    inside = (nd >= r / 2) & (nd <= 2 * r)
    assert len(tbl["rows"]) == int(inside.sum()) > 0
    assert sorted(row[2] for row in tbl["rows"]) == pytest.approx(sorted(nd[inside]))
    assert len(cut.outputs["scaling.runs"]) == runs.n_runs  # the hand-off lists every run, dropped or not
    # The law is exact on every run, so dropping some leaves the optimum where it was.
    assert cut.outputs["scaling.allocation"]["n_star"] == pytest.approx(a3["n_star"], rel=1e-3)
    assert math.isfinite(cut.metrics["scaling.alpha"])


def law_table(alpha: float, beta: float, budgets: tuple[float, ...] = BUDGETS) -> Runs:
    """Runs exactly on E + A/N^alpha + B/D^beta (LAW's E, A, B), one seed."""
    N, D, L, B = [], [], [], []
    for c in budgets:
        for n in np.logspace(1, 4, 9):
            d = c / (6 * n)
            N.append(n), D.append(d), B.append(c)
            L.append(LAW["E"] + LAW["A"] / n**alpha + LAW["B"] / d**beta)
    return Runs(N, D, L, budget=B, seed=[0] * len(N), width=[1] * len(N), lr=[0.01] * len(N))


def test_tuning_and_invariance_parts_recover_each_sweeps_exponents():
    """The lr_tuning and invariance parts fit each table separately: exact tables give back their own alpha."""
    variants = {"main": law_table(0.5, 0.4), "sgd": law_table(0.35, 0.4), "large_batch": law_table(0.6, 0.4)}
    main = replace(law_table(0.5, 0.4), untuned=law_table(0.3, 0.4), variants=variants)
    off = dict.fromkeys(("compute_law", "chinchilla", "regimes", "allocation", "approach2", "variables"))
    s = replace(SETTINGS, **off)
    r = measure(main, s, seed=0)
    assert r.metrics["scaling.alpha_tuned"] == pytest.approx(0.5, rel=1e-3)
    assert r.metrics["scaling.alpha_untuned"] == pytest.approx(0.3, rel=1e-3)
    assert r.metrics["scaling.a_tuned"] == pytest.approx(0.4 / 0.9, rel=1e-3)
    assert r.metrics["scaling.alpha_main"] == pytest.approx(0.5, rel=1e-3)
    assert r.metrics["scaling.alpha_sgd"] == pytest.approx(0.35, rel=1e-3)
    assert r.metrics["scaling.alpha_large_batch"] == pytest.approx(0.6, rel=1e-3)
    for k in ("alpha_main", "alpha_sgd", "alpha_large_batch", "alpha_tuned", "alpha_untuned"):
        v = r.metrics[f"scaling.{k}"]  # exact data: the interval is the point, up to the optimizer's rounding
        assert r.metrics[f"scaling.{k}_ci_low"] <= v * (1 + 1e-6) and v <= r.metrics[f"scaling.{k}_ci_high"] * (
            1 + 1e-6
        )
    assert r.check("invariance_fits_converged").passed is True
    assert r.check("lr_tuning_fits_converged").passed is True
    broken = replace(main, variants={"main": law_table(0.5, 0.4), "sgd": "only 3 sweep runs finished"})
    rb = measure(broken, replace(s, lr_tuning=None), seed=0)
    assert rb.check("invariance_fits_converged").passed is False and "scaling.alpha_sgd" not in rb.metrics


def test_variables_table_reports_measured_ranges():
    runs = replace(law_table(0.5, 0.4), n_diverged=1, n_failed=1)
    off = dict.fromkeys(("compute_law", "chinchilla", "regimes", "allocation", "approach2", "lr_tuning", "invariance"))
    r = measure(runs, replace(SETTINGS, **off), seed=0)
    rows = next(t for t in r.to_dict()["tables"] if t["key"] == "scaling.variables")["rows"]
    by = {row[1]: row for row in rows}
    assert by["N (parameters)"][0] == "swept" and by["N (parameters)"][2] == "[10, 1e+04]"
    assert by["diverged runs"][2] == f"1 of {runs.n_runs + 1}"
    assert by["per-width learning rate"][2] == "[0.01, 0.01] (1 distinct)"
    c = r.check("runs_not_diverged")
    assert c.passed is False and c.observed == pytest.approx(1 / (runs.n_runs + 1))


def test_mechanistic_boundary_where_the_frontier_crosses_the_ratio():
    runs = law_table(0.5, 0.4, tuple(np.geomspace(1e6, 1e9, 10)))
    s = replace(SETTINGS, chinchilla=None, allocation=None, approach2=None, lr_tuning=None, variables=None,
                invariance=None)  # fmt: skip
    from multilens.lenses.scaling.lens import frontier_mask

    f = frontier_mask(runs)
    lc, nd = np.log10(runs.compute[f]), runs.N[f] / runs.D[f]
    o = np.argsort(lc)
    lc, nd = lc[o], nd[o]
    ratio = float(np.sqrt(nd[0] * nd[1]))  # between the two smallest frontier budgets: the first crossing
    assert min(nd[0], nd[1]) < ratio < max(nd[0], nd[1])
    r = measure(runs, s, seed=0, runtime=Runtime(inputs={"double_descent.interpolation_ratio": ratio}))
    rows = next(t for t in r.to_dict()["tables"] if t["key"] == "scaling.regime_boundaries")["rows"]
    mech = [row for row in rows if row[0] == "mechanistic"]
    t = (math.log10(ratio) - math.log10(nd[0])) / (math.log10(nd[1]) - math.log10(nd[0]))
    assert len(mech) == 1 and mech[0][2] == pytest.approx(lc[0] + t * (lc[1] - lc[0]), rel=1e-12)
    assert r.check("regimes_single_power_law").passed is not None  # 10 frontier budgets: the regimes were fitted
    if r.metrics["scaling.regimes_n_breaks"] == 0:
        assert "scaling.breakpoint_n_over_d" not in r.metrics and any("not emitted" in n for n in r.notes)


def test_runs_hand_off_rows_round_trip():
    r = law_table(0.5, 0.4)
    rows = r.handoff_rows()
    assert set(rows[0]) == {"N", "D", "loss", "train_loss", "seed", "budget", "width", "lr"}
    back = Runs.from_rows(rows)
    np.testing.assert_array_equal(back.N, r.N)
    np.testing.assert_array_equal(back.loss, r.loss)
    np.testing.assert_array_equal(back.budget, r.budget)
    np.testing.assert_array_equal(back.lr, r.lr)
    assert back.train_loss is None  # not recorded in that table
    sub = r.subset(r.budget == BUDGETS[0])
    assert sub.n_runs == 9 and np.all(sub.budget == BUDGETS[0]) and np.all(sub.width == 1)


def test_gen_gap_and_its_split_adjusted_version_are_exact_means():
    from multilens.lenses.scaling.lens import gen_gap, gen_gap_split_adjusted

    base = law_table(0.5, 0.4)
    n = base.n_runs
    train = base.loss - 0.01 * (1 + np.arange(n) % 3)  # gaps 0.01, 0.02, 0.03 repeating
    offset = np.full(n, -0.005)
    runs = replace(base, train_loss=train, split_offset=offset)
    top = runs.budget == runs.budget.max()
    est, notes = gen_gap(runs, 0.95)
    gaps = (runs.loss - train)[top]
    assert est.value == pytest.approx(gaps.mean(), rel=1e-12) and not notes
    assert est.ci_low < est.value < est.ci_high and est.n == int(top.sum())
    adj = gen_gap_split_adjusted(runs, 0.95)
    assert adj.value == pytest.approx(gaps.mean() + 0.005, rel=1e-12)
    assert gen_gap_split_adjusted(base, 0.95) is None and gen_gap(base, 0.95)[0] is None
