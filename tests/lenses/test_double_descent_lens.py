"""The double-descent lens: smoke run, checks that can fail, user-built subjects and the executor path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.experiments.executors import execute_task
from multilens.lenses.contract import Runtime
from multilens.lenses.double_descent import (
    Classification,
    LinearSettings,
    RandomFeaturesSettings,
    Regression,
    Settings,
    Subject,
    default_subject,
    measure,
)
from multilens.lenses.double_descent.lens import _linear_checks, _rf_checks, binomial_coverage_check
from multilens.lenses.double_descent.minnorm import resample_point
from multilens.lenses.double_descent.neural import _filter_fit, _spectral, noisy_labels, one_hot, relu_features
from multilens.theory import double_descent as th

SMOKE = Settings.for_profile("smoke")


@pytest.fixture(scope="module")
def smoke_result():
    return measure(default_subject(SMOKE, seed=12345), SMOKE, seed=12345)


def test_linear_points_have_the_documented_keys(smoke_result) -> None:
    d = smoke_result.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    lin = back["data"]["linear"]
    assert [p["d"] for p in lin["points"]] == list(SMOKE.linear.dims(SMOKE.n))
    for p in lin["points"]:
        singular = SMOKE.n - 1 <= p["d"] <= SMOKE.n + 1
        assert (p["predicted_risk"] is None) == singular
        assert p["ci_low"] <= p["test_risk"] <= p["ci_high"]
        assert p["gamma"] == p["d"] / SMOKE.n
        assert p["n_dropped"] == 0
        if not p["evaluated"]:
            assert p["covered"] is None
        else:
            assert p["covered"] == (p["ci_low"] <= p["predicted_risk"] <= p["ci_high"])
    assert set(back["outputs"]) == {"double_descent.curve", "double_descent.interpolation_ratio"}


def test_headline_checks_pass_and_have_kinds(smoke_result) -> None:
    r = smoke_result
    for name, kind in (
        ("double_descent.peak_location", "agreement"),
        ("double_descent.ridge_no_peak", "agreement"),
        ("double_descent.ridge_below_null_risk", "bound"),
        ("double_descent.coverage", "agreement"),
        ("double_descent.ridge_exact_coverage", "agreement"),
        ("double_descent.rf_threshold", "agreement"),
        ("double_descent.rf_rank", "sanity"),
        ("double_descent.rf_peak_location.noise=0.2", "agreement"),
    ):
        assert r.check(name).passed is True, r.check(name).reason
        assert r.check(name).kind == kind
    assert r.check("double_descent.early_stopping_vs_ridge").kind == "bound"
    near = [c for c in r.checks if c.name.startswith("double_descent.risk_point") and c.passed is None]
    assert near and all("not evaluated" in c.reason for c in near)
    peak = r.estimate("double_descent.peak_gamma")
    assert peak.ci_low <= peak.value <= peak.ci_high and abs(peak.value - 1.0) <= 0.1
    assert peak.converged is None  # a grid search
    assert {a.status for a in r.assumptions} <= {"holds", "violated", "unchecked"}
    assert next(a for a in r.assumptions if "n-1 <= d <= n+1" in a.text).status == "holds"
    peak_assumption = next(a for a in r.assumptions if "peak sits at p = n" in a.text)
    assert "rf_peak_location.noise=0" in peak_assumption.how  # tied to the peak checks


def test_neural_parts_report_thresholds_and_peaks(smoke_result) -> None:
    rf = smoke_result.data["random_features"]
    n = rf["n_train"]
    for c in rf["curves"]:
        if c["variant"] == "min-norm":
            assert c["threshold_empirical_p"] == n
            assert c["df_over_n"][c["p"].index(n)] == pytest.approx(1.0)
        else:
            assert max(c["df_over_n"]) < 1.0  # regularized fits never reach n degrees of freedom
    assert rf["rank_min"] == [min(n, p) for p in rf["p"]]
    mlp = smoke_result.data["mlp"]
    assert mlp["threshold_theoretical_params"] == mlp["n_train"] * 10
    assert len(mlp["curves"]) == 2 * 2  # label-noise levels x horizons (one weight decay)


def _points(n: int) -> list[dict]:
    pts = []
    for g, risk in ((0.2, 5.0), (0.5, 50.0), (1.0, 3.0), (2.0, 1.0)):
        pts.append(
            {
                "gamma": g, "d": int(g * n), "test_risk": risk, "ci_low": risk - 1, "ci_high": risk + 1,
                "predicted_risk": 1.0, "evaluated": True, "covered": False, "variance_covered": False,
                "bias_covered": True, "ridge_risk": 20.0, "ridge_ci_low": 19.0, "ridge_ci_high": 21.0,
                "predicted_ridge_risk": 0.5, "ridge_minus_bayes_ci_low": 1.0, "ridge_minus_bayes_ci_high": 2.0,
                "es_risk": 0.5, "es_ci_low": 0.4, "es_ci_high": 0.6, "predicted_es_risk": 0.5,
                "es_minus_bayes_ci_low": -1.0, "es_minus_bayes_ci_high": 1.0, "cond_median": 2.0, "n_dropped": 1,
            }
        )  # fmt: skip
    return pts


def test_linear_checks_can_fail() -> None:
    assert binomial_coverage_check("x", [False] * 10, 0.95, 0.01, "all miss").passed is False
    checks = {c.name: c for c in _linear_checks(SMOKE.linear, SMOKE.n, 1.0, _points(SMOKE.n))[0]}
    assert checks["double_descent.peak_location"].passed is False
    assert checks["double_descent.ridge_no_peak"].passed is False
    assert checks["double_descent.ridge_below_null_risk"].passed is False  # ridge CI low 19 > r2 = 1
    assert checks["double_descent.coverage"].passed is False
    assert checks["double_descent.ridge_exact_coverage"].passed is False
    assert checks["double_descent.early_stopping_exact_coverage"].passed is True
    assert "4 non-finite replicate(s) dropped" in checks["double_descent.coverage"].reason
    assert "dropped" in checks["double_descent.peak_location"].reason


def test_rf_threshold_compares_with_the_theory_not_with_the_rank() -> None:
    """Interpolation first at p = 90 while n = 60 fails, even though that is where the fit reached full rank."""
    curve = {"label_noise": 0.0, "variant": "min-norm", "threshold_empirical_p": 90,
             "peak": {"x": 1.5, "height": 2.0, "significant": True, "index": 2},
             "test_mse_per_seed": [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]}  # fmt: skip
    rf = {"n_train": 60, "p": [30, 60, 90], "p_over_n": [0.5, 1.0, 1.5], "rank_min": [30, 59, 60],
          "rank_max": [30, 59, 60], "interpolation_rtol": 1e-8, "curves": [curve]}  # fmt: skip
    checks = {c.name: c for c in _rf_checks(RandomFeaturesSettings(), rf)}
    assert checks["double_descent.rf_threshold"].passed is False
    assert checks["double_descent.rf_threshold"].expected == 1.0  # the theory's p = n
    assert checks["double_descent.rf_rank"].passed is False  # rank 59 at p = n = 60
    assert checks["double_descent.rf_peak_location.noise=0"].passed is True
    assert checks["double_descent.rf_peak_grows_with_noise"].passed is None  # one noise level


def test_random_features_min_norm_fit_equals_lstsq(rng: np.random.Generator) -> None:
    x_tr, x_te = rng.standard_normal((40, 64)), rng.standard_normal((15, 64))
    labels, labels_te = rng.integers(0, 10, 40), rng.integers(0, 10, 15)
    for p in (25, 40, 90):
        w = rng.standard_normal((p, 64)) / 8.0
        phi, phi_te = relu_features(x_tr, w), relu_features(x_te, w)
        u, s, vt, keep = _spectral(phi)
        np.testing.assert_allclose(s[keep], np.linalg.svd(phi, compute_uv=False)[: keep.sum()], rtol=1e-8)
        fs = _filter_fit(
            u, s, phi @ vt.T, phi_te @ vt.T, keep.astype(float), one_hot(labels), labels, one_hot(labels_te), labels_te
        )
        a = np.linalg.lstsq(phi, one_hot(labels), rcond=None)[0]
        assert fs.test_mse == pytest.approx(np.mean((phi_te @ a - one_hot(labels_te)) ** 2), rel=1e-6)
        assert fs.train_mse == pytest.approx(np.mean((phi @ a - one_hot(labels)) ** 2), rel=1e-6, abs=1e-20)
        assert fs.df == min(p, 40)


def test_noisy_labels_flip_exactly_the_requested_fraction(rng: np.random.Generator) -> None:
    y = rng.integers(0, 10, 200)
    z = noisy_labels(y, 0.2, 10, rng)
    assert int((z != y).sum()) == 40  # every chosen label moves to a different class
    np.testing.assert_array_equal(noisy_labels(y, 0.0, 10, rng), y)


def test_resample_point_equals_lstsq_and_ridge_solve(rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((50, 8)), rng.standard_normal(50)
    for n in (5, 8, 20):
        mn, rd = resample_point(x, y, n, 30, 2, 0.3, seed=7)
        idx = np.random.default_rng(7).permutation(50)  # the same stream as_generator(7) draws
        tr, te = idx[:n], idx[n : n + 30]
        b = np.linalg.lstsq(x[tr], y[tr], rcond=None)[0]
        br = np.linalg.solve(x[tr].T @ x[tr] + n * 0.3 * np.eye(8), x[tr].T @ y[tr])
        assert mn[0] == pytest.approx(np.mean((x[te] @ b - y[te]) ** 2), rel=1e-9)
        assert rd[0] == pytest.approx(np.mean((x[te] @ br - y[te]) ** 2), rel=1e-9)


LINEAR_ONLY = dataclasses.replace(
    SMOKE,
    linear=LinearSettings(gammas=(0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0), n_designs=60, n_test=300),
    random_features=None,
    mlp=None,
    family=None,
    peak_vs_batch=None,
)


def test_measure_on_user_regression_arrays_applies_the_exact_theory(rng: np.random.Generator) -> None:
    """An isotropic Gaussian (X, y) the user built: held-out min-norm risk against sigma2 + exact risk."""
    n_rows, d, sigma2 = 3000, 40, 0.25
    beta = rng.standard_normal(d)
    beta /= np.linalg.norm(beta)
    x = rng.standard_normal((n_rows, d))
    y = x @ beta + np.sqrt(sigma2) * rng.standard_normal(n_rows)
    r = measure(Subject(regression=Regression(x, y)), LINEAR_ONLY, seed=0)
    assert r.parts == ("linear",)
    assert r.check("double_descent.design_isotropic").passed is True
    assert r.check("double_descent.peak_location").passed is True
    assert r.check("double_descent.coverage").passed is True, r.check("double_descent.coverage").reason
    assert r.estimate("double_descent.sigma2_used").value == pytest.approx(sigma2, rel=0.1)
    s2, r2 = r.estimate("double_descent.sigma2_used").value, r.estimate("double_descent.r2_used").value
    assert r2 == pytest.approx(1.0, rel=0.15)
    pts = {round(p["gamma"], 3): p for p in r.data["linear"]["points"]}
    assert pts[0.5]["n"] == 80
    assert pts[0.5]["predicted_test_mse"] == pytest.approx(s2 + th.minnorm_risk(80, d, s2, r2), rel=1e-12)
    assert pts[1.0]["test_mse"] > 10 * pts[4.0]["test_mse"]  # the interpolation peak
    # sigma2 and r2 the user knows are used as given
    known = measure(Regression(x, y, sigma2=sigma2, r2=1.0), LINEAR_ONLY, seed=0)
    assert known.estimate("double_descent.sigma2_used").value == sigma2
    assert known.data["linear"]["sigma2_r2_source"] == "given by the subject"
    assert known.check("double_descent.coverage").passed is True


def test_non_isotropic_user_design_is_not_compared_with_gaussian_theory(rng: np.random.Generator) -> None:
    n_rows, d = 3000, 40
    x = rng.standard_normal((n_rows, d)) * np.linspace(0.2, 3.0, d)  # anisotropic columns
    y = x @ (np.ones(d) / np.sqrt(d)) + 0.5 * rng.standard_normal(n_rows)
    r = measure(Regression(x, y), LINEAR_ONLY, seed=0)
    assert r.check("double_descent.design_isotropic").passed is False
    assert r.check("double_descent.coverage").passed is None
    assert "isotropy" in r.check("double_descent.coverage").reason
    assert r.check("double_descent.peak_location").passed is True  # the peak at n = D needs no Gaussianity
    gauss = next(a for a in r.assumptions if "isotropic Gaussian" in a.text)
    assert gauss.status == "violated"


class JsonSerialExecutor:
    """Runs tasks in process, but only on a JSON round trip of each spec (what a process pool would get)."""

    name, workers = "json-serial", 1

    def __init__(self) -> None:
        self.calls = 0

    def map_unordered(self, task, specs):
        for i in reversed(range(len(specs))):  # out of order, as a pool may finish them
            self.calls += 1
            yield i, execute_task(task, json.loads(json.dumps(specs[i])))


def test_measure_on_user_classification_arrays_serial_and_through_an_executor(rng: np.random.Generator) -> None:
    """A user's own data (Gaussian inputs, labels of a random linear teacher); serially and via runtime.executor."""
    teacher = rng.standard_normal((40, 3))
    x_tr, x_te = rng.standard_normal((50, 40)), rng.standard_normal((80, 40))
    lab_tr, lab_te = np.argmax(x_tr @ teacher, axis=1), np.argmax(x_te @ teacher, axis=1)
    st = dataclasses.replace(
        SMOKE,
        linear=None,
        random_features=RandomFeaturesSettings(ratios=(0.4, 0.8, 1.0, 1.4, 3.0), seeds=3, ridge=(1e-2,), gd_steps=()),
        mlp=dataclasses.replace(SMOKE.mlp, n_train=None, widths=(2, 16), steps=30, horizons=(30,)),
    )
    subject = Subject(classification=Classification(x_tr, lab_tr, x_te, lab_te))
    serial = measure(subject, st, seed=5)
    assert serial.check("double_descent.rf_rank").passed is True
    assert serial.check("double_descent.rf_threshold").passed is True, serial.check(
        "double_descent.rf_threshold"
    ).reason
    assert serial.data["random_features"]["n_classes"] == 3
    assert serial.data["mlp"]["threshold_theoretical_params"] == 50 * 3
    ex = JsonSerialExecutor()
    pooled = measure(subject, st, seed=5, runtime=Runtime(executor=ex))
    assert ex.calls == 3 + 2 * 1 * 2 * 2  # feature draws + noise x wd x widths x seeds
    for a, b in zip(serial.estimates, pooled.estimates):
        assert a.to_dict() == b.to_dict()
    assert serial.data["mlp"]["curves"] == pooled.data["mlp"]["curves"]
    # Two identical training inputs with different labels: Phi loses rank, nothing interpolates at p = n.
    x_dup = x_tr.copy()
    x_dup[1] = x_dup[0]
    lab_dup = lab_tr.copy()
    lab_dup[1] = (lab_dup[0] + 1) % 3
    dup = measure(Classification(x_dup, lab_dup, x_te, lab_te), dataclasses.replace(st, mlp=None), seed=5)
    assert dup.check("double_descent.rf_rank").passed is False
    assert dup.check("double_descent.rf_threshold").passed is False


def test_settings_parts_and_validation() -> None:
    with pytest.raises(ConfigError, match="`n_noise` must be an int >= 2; got 1"):
        LinearSettings(n_noise=1)
    with pytest.raises(ConfigError, match="`horizons\\[0\\]` must be an int <= steps"):
        dataclasses.replace(SMOKE.mlp, steps=10, horizons=(20,))
    with pytest.raises(ConfigError, match="`label_noise\\[0\\]`"):
        RandomFeaturesSettings(label_noise=(0.95,))
    with pytest.raises(ConfigError, match="`profile`"):
        Settings.for_profile("medium")
    cfg = from_dict(Settings, {"linear": {"gammas": [0.5, 1, 2]}, "random_features": False}, base=SMOKE)
    assert cfg.linear.gammas == (0.5, 1.0, 2.0) and cfg.linear.dims(cfg.n) == (15, 30, 60)
    assert cfg.random_features is None and cfg.mlp == SMOKE.mlp
    with pytest.raises(ConfigError, match="double_descent.linear.no_such"):
        from_dict(Settings, {"linear": {"no_such": 1}}, where="double_descent", base=SMOKE)
    for profile in ("smoke", "quick", "full"):
        assert Settings.for_profile(profile).schema_version == 1
    with pytest.raises(ConfigError, match="Subject"):
        measure(np.zeros(3), SMOKE, seed=0)
