"""The scaling lens on a user's own table of runs: recovery of a known law, Approach 2, edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

import multilens.lenses.scaling.lens as lens
from multilens.errors import ConfigError
from multilens.lenses.scaling import Runs, Settings, TrainFn, measure
from multilens.lenses.scaling.allocation import allocation_constants
from multilens.lenses.scaling.chinchilla import predict_chinchilla
from multilens.lenses.scaling.settings import AllocationSettings, Approach2Settings

TRUE = {"E": 0.5, "A": 40.0, "B": 60.0, "alpha": 0.5, "beta": 0.4}
BUDGETS = np.geomspace(1e8, 1e11, 6)


def law_runs(noise: float = 0.0, seed: int = 0, n_sizes: int = 25) -> Runs:
    """Iso-FLOP runs from a known L(N, D), N on a grid around each budget's optimum, log-normal noise."""
    rng = np.random.default_rng(seed)
    N, D, C = [], [], []
    for c in BUDGETS:
        for n in np.geomspace(2e2, 2e5, n_sizes):
            N.append(n)
            D.append(c / (6 * n))
            C.append(c)
    N, D = np.array(N), np.array(D)
    loss = predict_chinchilla(TRUE, N, D) * np.exp(noise * rng.standard_normal(len(N)))
    return Runs(N, D, loss, budget=C, distinct=D, bayes_risk=0.4, source="synthetic law")


def only(**parts) -> Settings:
    off = dict.fromkeys(("compute_law", "chinchilla", "regimes", "allocation", "approach2"))
    return Settings(bootstrap=60, **(off | parts))


def test_approach2_recovers_the_closed_form_exponent():
    a_true = allocation_constants(TRUE)[0]
    assert a_true == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]))
    est = lens.approach2_slope(law_runs())
    assert est["n_budgets"] == 6
    # A parabola in log N is only a local model of the profile; its bias is bounded here.
    assert abs(est["slope"] - a_true) < 0.03


def test_floor_at_boundary_is_not_identified():
    assert lens.floor_identified(0.01, [0.05, 0.2])
    assert not lens.floor_identified(1e-30, [0.05, 0.2])


def test_measure_recovers_a_known_law_from_a_users_runs():
    """measure() on a hand-built table of runs (not the bundled sweep) recovers the law it came from."""
    runs = law_runs(noise=0.01, seed=1, n_sizes=12)
    r = measure(runs, only(chinchilla=lens.ChinchillaSettings(), approach2=Approach2Settings(tolerance=0.1)), seed=3)
    for k in ("E", "alpha", "beta"):
        e = r.estimate(f"scaling.{k}")
        assert e.ci_low <= TRUE[k] <= e.ci_high, (k, e)
        assert e.value == pytest.approx(TRUE[k], rel=0.1), k
    a_true = allocation_constants(TRUE)[0]
    assert r.metrics["scaling.a"] == pytest.approx(a_true, abs=0.02)
    # floor E = 0.5 >= the stated Bayes risk 0.4: the bound holds; examples are fresh (distinct = D)
    assert r.check("floor_above_bayes_risk").passed is True and r.check("floor_above_bayes_risk").kind == "bound"
    assert r.check("examples_fresh").passed is True
    c = r.check("approach2_vs_approach3")
    assert c.kind == "agreement" and c.passed is True, c.reason
    assert r.metrics["scaling.failed_fraction"] == 0.0
    json.dumps(r.to_dict(), allow_nan=False)


def test_repeated_examples_violate_the_fresh_data_assumption():
    runs = law_runs(n_sizes=6)
    repeated = Runs(runs.N, runs.D, runs.loss, budget=runs.budget, distinct=np.minimum(runs.D, 1797.0))
    r = measure(repeated, only(chinchilla=lens.ChinchillaSettings()), seed=0)
    c = r.check("examples_fresh")
    assert c.passed is False and c.observed == pytest.approx(runs.D.max() / 1797.0)
    (a,) = [a for a in r.assumptions if a.text.startswith("D counts distinct fresh examples")]
    assert a.status == "violated"
    unknown = measure(Runs(runs.N, runs.D, runs.loss), only(chinchilla=lens.ChinchillaSettings()), seed=0)
    assert unknown.check("examples_fresh").passed is None


def test_allocation_advice_rests_on_fit_quality_and_extrapolation():
    runs = law_runs(noise=0.01, seed=2, n_sizes=8)
    ok = measure(runs, only(allocation=AllocationSettings(extrapolation_bootstrap=40)), seed=0)
    assert ok.check("lnd_fit_quality").passed is True
    assert ok.check("extrapolation_within_interval").passed is True, ok.check("extrapolation_within_interval").reason
    assert ok.recommendations and not ok.dropped_recommendations
    (a,) = [a for a in ok.assumptions if a.text.startswith("Loss follows L(N, D)")]
    assert a.status == "holds" and set(a.checked_by) == {"lnd_fit_quality", "extrapolation_within_interval"}
    # A fit-quality threshold the runs cannot meet drops every piece of allocation advice.
    strict = measure(runs, only(allocation=AllocationSettings(extrapolation_bootstrap=40, min_r2=1.0)), seed=0)
    assert strict.check("lnd_fit_quality").passed is False
    assert not strict.recommendations and len(strict.dropped_recommendations) == len(ok.recommendations)


def test_no_optimum_is_reported_not_raised(monkeypatch):
    def no_optimum(*a, **k):
        raise ConfigError("allocation needs A, B, alpha, beta > 0; got alpha=-0.66.")

    monkeypatch.setattr(lens, "allocation_with_intervals", no_optimum)
    r = measure(
        law_runs(noise=0.01, n_sizes=6), only(allocation=AllocationSettings(extrapolation_bootstrap=20)), seed=0
    )
    c = r.check("allocation_optimum_exists")
    assert c.passed is False and "no compute-optimal allocation" in c.reason
    assert "scaling.allocation.N_opt_10x" not in {e.name for e in r.estimates}
    assert not r.recommendations
    assert any("cannot plan compute" in n for n in r.notes)
    json.dumps(r.to_dict(), allow_nan=False)


def test_train_fn_subject_runs_every_config_and_counts_failures():
    def train_fn(config: dict, seed: int) -> dict:
        if config["n"] == 999:
            raise RuntimeError("diverged")
        n, c = float(config["n"]), float(config["budget"])
        d = c / (6 * n)
        return {"N": n, "D": d, "loss": float(predict_chinchilla(TRUE, n, d)), "distinct": d}

    configs = [{"n": float(n), "budget": float(c)} for c in BUDGETS for n in np.geomspace(2e2, 2e5, 6)]
    runs = TrainFn(train_fn, configs + [{"n": 999, "budget": 1e8}], seeds=(0, 1)).run()
    assert runs.n_runs == 2 * len(configs) and runs.n_failed == 2
    r = measure(TrainFn(train_fn, configs, seeds=(0,)), only(chinchilla=lens.ChinchillaSettings()), seed=0)
    assert r.estimate("scaling.alpha").value == pytest.approx(TRUE["alpha"], rel=0.05)


def test_runs_from_csv_reads_optional_columns(tmp_path):
    runs = law_runs(n_sizes=6)
    p = tmp_path / "runs.csv"
    lines = ["N,D,loss,seed,budget,distinct"] + [
        f"{n:.17g},{d:.17g},{loss:.17g},0,{b:.17g},{d:.17g}"
        for n, d, loss, b in zip(runs.N, runs.D, runs.loss, runs.budget)
    ]
    p.write_text("\n".join(lines) + "\n")
    back = Runs.from_csv(p)
    np.testing.assert_allclose(back.budget, runs.budget)
    np.testing.assert_allclose(back.distinct, runs.D)
    with pytest.raises(ConfigError, match="Runs table"):
        measure([1, 2, 3], Settings(), seed=0)


def test_distinct_rows_counts_repeats_exactly():
    import torch

    from multilens.lenses.scaling.study import distinct_rows

    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert distinct_rows(x) == 500
    assert distinct_rows(torch.cat([x, x[:123]])) == 500


def test_six_nd_is_checked_against_counted_flops():
    runs = law_runs(n_sizes=6)
    c6 = 6 * runs.N * runs.D
    close = Runs(runs.N, runs.D, runs.loss, budget=runs.budget, flops=c6 / 1.02)
    c = lens.flops_check(close, 0.1)
    assert c.passed is True and c.kind == "agreement" and c.observed == pytest.approx(0.02)
    far = Runs(runs.N, runs.D, runs.loss, budget=runs.budget, flops=c6 / 2.0)
    assert lens.flops_check(far, 0.1).passed is False
    assert lens.flops_check(Runs(runs.N, runs.D, runs.loss), 0.1).passed is None
    # The bundled MLPs: 3 x exact forward FLOPs (multiply-adds 2, bias adds and ReLUs 1) is 6N per example to 1/N.
    from multilens.lenses.scaling.settings import Settings as S
    from multilens.models import forward_flops, n_params

    spec = S().model_spec(64, 16, 1)
    assert 3 * forward_flops(spec) == pytest.approx(6 * n_params(spec), rel=1e-3)


def test_default_subject_resumes_from_the_store(tmp_path):
    """The bundled sweep goes into runtime.store; a second call retrains nothing (every run done once)."""
    from dataclasses import replace

    from multilens.experiments.store import Store
    from multilens.lenses.contract import Runtime
    from multilens.lenses.scaling import default_subject

    settings = replace(Settings.for_profile("smoke"), task="teacher_student", seeds=1, budgets=(1e5, 3e5, 1e6),
                       widths=(2, 4, 8), lr_factors=(1.0,), lr_tuning=None, invariance=None)  # fmt: skip
    with Store(tmp_path / "results.sqlite") as store:
        first = default_subject(settings, seed=5, runtime=Runtime(store=store))
        again = default_subject(settings, seed=5, runtime=Runtime(store=store))
        records = store.runs(sweep="scaling")
    assert first.n_runs == again.n_runs == len(records) and first.n_failed == 0
    assert all(r.attempts == 1 and r.status == "done" for r in records)
    np.testing.assert_array_equal(first.loss, again.loss)
    np.testing.assert_array_equal(first.distinct, first.D)  # teacher-student draws are fresh: no repeats
    assert first.bayes_risk == pytest.approx(settings.noise_std**2)


def test_family_sweep_tunes_each_width_on_validation_loss(tmp_path):
    """The family task: CE loss, the family's Bayes risk, each width's lr = argmin of its validation losses."""
    from dataclasses import replace

    from multilens.data.family import FamilySpec
    from multilens.experiments.store import Store
    from multilens.lenses.contract import Runtime
    from multilens.lenses.scaling import default_subject

    settings = replace(Settings.for_profile("smoke"), seeds=1, budgets=(1e5, 3e5, 1e6), widths=(2, 4, 8),
                       lr_factors=(0.5, 1.0, 2.0), invariance=None)  # fmt: skip
    assert settings.task == "family"
    with Store(tmp_path / "results.sqlite") as store:
        runs = default_subject(settings, seed=5, runtime=Runtime(store=store))
        n_records = len(store.runs(sweep="scaling"))
    bayes = FamilySpec().bayes_risk()["ce"]
    assert runs.bayes_risk == pytest.approx(bayes[0]) and runs.bayes_risk_ci == pytest.approx(bayes[1:])
    assert runs.family == FamilySpec().to_dict() and runs.recipe["loss"] == "ce"
    assert np.all(runs.loss > 0) and np.all(np.isfinite(runs.train_loss)) and np.all(np.isfinite(runs.split_offset))
    rows = runs.lr_tuning
    assert len(rows) == 3 * 3  # 3 widths x 3 factors
    for w in (2, 4, 8):
        mine = [r for r in rows if r["width"] == w]
        best = min(mine, key=lambda r: r["val_loss"])
        assert [r["chosen"] for r in mine].count(True) == 1 and best["chosen"]
        assert np.all(runs.lr[runs.width == w] == best["lr"])  # the sweep trains that width at its tuned lr
    # The untuned comparison sweep: every run at the single lr.
    assert np.all(runs.untuned.lr == settings.lr) and runs.untuned.n_runs == runs.n_runs
    # Runs shared between the tuning, tuned and untuned designs are trained once (the store resumes).
    distinct = {(r["width"], r["lr"]) for r in rows} | {(int(w), float(lr)) for w, lr in zip(runs.width, runs.lr)}
    assert n_records < len(rows) + runs.n_runs + runs.untuned.n_runs
    assert len(distinct) >= len(rows)
