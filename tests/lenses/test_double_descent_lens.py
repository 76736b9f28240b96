"""The double-descent lens end to end (smoke profile), its checks, config, phase and neural parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.double_descent import DoubleDescentConfig, DoubleDescentPhase, run_double_descent
from multilens.lenses.double_descent.lens import _linear_checks, binomial_coverage_check
from multilens.lenses.double_descent.neural import _filter_fit, _spectral, noisy_labels, one_hot, relu_features
from multilens.protocol.phase import PhaseContext


@pytest.fixture(scope="module")
def smoke_result():
    return run_double_descent(DoubleDescentConfig.for_profile("smoke"), seed=12345)


def test_json_payload_has_the_documented_keys(smoke_result) -> None:
    d = smoke_result.to_dict()
    payload = {"lens": smoke_result.lens, **d["data"], "estimates": d["estimates"], "checks": d["checks"]}
    text = json.dumps(payload, allow_nan=False)  # what `multilens lens double-descent --json` prints
    back = json.loads(text)
    assert {"n", "sigma2", "r2", "points"} <= set(back)
    cfg = DoubleDescentConfig.for_profile("smoke")
    assert [p["d"] for p in back["points"]] == list(cfg.dims)
    for p in back["points"]:
        for k in (
            "gamma",
            "test_risk",
            "ci_low",
            "ci_high",
            "predicted_risk",
            "predicted_risk_asymptotic",
            "bias",
            "variance",
            "predicted_bias",
            "predicted_variance",
            "cond_median",
            "ridge_risk",
            "predicted_ridge_risk",
            "es_risk",
            "predicted_es_risk",
        ):
            assert k in p
        singular = cfg.n - 1 <= p["d"] <= cfg.n + 1
        assert (p["predicted_risk"] is None) == singular
        assert p["ci_low"] <= p["test_risk"] <= p["ci_high"]
        assert p["gamma"] == p["d"] / cfg.n
        if not p["evaluated"]:
            assert p["covered"] is None
        else:
            assert p["covered"] == (p["ci_low"] <= p["predicted_risk"] <= p["ci_high"])


def test_headline_checks_are_computed_and_pass_on_smoke(smoke_result) -> None:
    checks = {c.name: c for c in smoke_result.checks}
    for name in (
        "double_descent.peak_location",
        "double_descent.ridge_no_peak",
        "double_descent.coverage",
        "double_descent.ridge_exact_coverage",
        "double_descent.rf_threshold",
    ):
        assert checks[name].passed is True, checks[name].reason
    assert all(c.passed in (True, False, None) for c in smoke_result.checks)
    near = [c for c in smoke_result.checks if c.name.startswith("double_descent.risk_point") and c.passed is None]
    assert near and all("not evaluated" in c.reason for c in near)
    peak = smoke_result.estimate("double_descent.peak_gamma")
    assert peak.ci_low <= peak.value <= peak.ci_high
    assert abs(peak.value - 1.0) <= 0.1


def test_neural_parts_report_thresholds_and_peaks(smoke_result) -> None:
    rf = smoke_result.data["neural"]["random_features"]
    mn = [c for c in rf["curves"] if c["variant"] == "min-norm"]
    for c in mn:
        assert c["threshold_empirical_p"] == c["threshold_theoretical_p"] == rf["n_train"]
        assert c["df_over_n"][c["p"].index(rf["n_train"])] == pytest.approx(1.0)
    for c in rf["curves"]:
        if c["variant"] != "min-norm":
            assert max(c["df_over_n"]) < 1.0  # regularized fits never reach n degrees of freedom
    mlp = smoke_result.data["neural"]["mlp"]
    assert mlp["threshold_theoretical_params"] == mlp["n_train"] * 10
    assert len(mlp["curves"]) == 2 * 2  # label-noise levels x horizons (one weight decay)


def test_checks_can_fail() -> None:
    cfg = DoubleDescentConfig.for_profile("smoke")
    c = binomial_coverage_check("x", [False] * 10, 0.95, 0.01, "all intervals miss")
    assert c.passed is False
    # A sweep whose risk peaks far from gamma = 1 and whose ridge variant peaks too.
    points = []
    for g, risk in ((0.2, 5.0), (0.5, 50.0), (1.0, 3.0), (2.0, 1.0)):
        d = int(g * cfg.n)
        points.append(
            {
                "gamma": g,
                "d": d,
                "test_risk": risk,
                "ci_low": risk - 1,
                "ci_high": risk + 1,
                "predicted_risk": 1.0,
                "evaluated": True,
                "covered": False,
                "variance_covered": False,
                "bias_covered": True,
                "ridge_risk": 20.0,
                "ridge_ci_low": 19.0,
                "ridge_ci_high": 21.0,
                "predicted_ridge_risk": 0.5,
                "ridge_minus_bayes_ci_low": 1.0,
                "ridge_minus_bayes_ci_high": 2.0,
                "es_risk": 0.5,
                "es_ci_low": 0.4,
                "es_ci_high": 0.6,
                "predicted_es_risk": 0.5,
                "es_minus_bayes_ci_low": -1.0,
                "es_minus_bayes_ci_high": 1.0,
                "cond_median": 2.0,
            }
        )
    checks = {c.name: c for c in _linear_checks(cfg, points)[0]}
    assert checks["double_descent.peak_location"].passed is False
    assert checks["double_descent.ridge_no_peak"].passed is False
    assert checks["double_descent.coverage"].passed is False
    assert checks["double_descent.ridge_exact_coverage"].passed is False
    assert checks["double_descent.early_stopping_exact_coverage"].passed is True


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


def test_config_validation_and_overrides() -> None:
    with pytest.raises(ConfigError, match="`n_noise` must be an int >= 2; got 1"):
        DoubleDescentConfig(n_noise=1)
    with pytest.raises(ConfigError, match="`mlp_horizons\\[0\\]` must be an int <= mlp_steps"):
        DoubleDescentConfig(mlp_steps=10, mlp_horizons=(20,))
    with pytest.raises(ConfigError, match="`label_noise\\[0\\]`"):
        DoubleDescentConfig(label_noise=(0.95,))
    with pytest.raises(ConfigError, match="`profile`"):
        DoubleDescentConfig.for_profile("medium")
    cfg = from_dict(
        DoubleDescentConfig, {"gammas": [0.5, 1, 2], "neural": False}, base=DoubleDescentConfig.for_profile("smoke")
    )
    assert cfg.gammas == (0.5, 1.0, 2.0) and cfg.dims == (15, 30, 60) and cfg.neural is False
    for profile in ("smoke", "quick", "full"):
        assert DoubleDescentConfig.for_profile(profile).schema_version == 1


def test_phase_runs_and_returns_float_metrics(tmp_path: Path, seed: int) -> None:
    ph = DoubleDescentPhase()
    out = ph.run(PhaseContext("smoke", seed, tmp_path, {"neural": False}, {}))
    assert set(out.artifacts) == set(ph.produces)
    json.dumps(out.artifacts, allow_nan=False)
    assert all(isinstance(v, float) for v in out.metrics.values())
    assert {"double_descent.peak_gamma", "double_descent.coverage"} <= set(out.metrics)
    assert out.recommendations and "gamma" in out.recommendations[0]


def test_cli_lens_json_with_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """`multilens lens double-descent --profile smoke --set ... --json` prints the documented payload.

    The registry entry is added here (the lead owns the registry file), the way the CLI loads it.
    """
    from typer.testing import CliRunner

    from multilens.cli import app
    from multilens.lenses import registry

    entry = registry.LensEntry(
        "double-descent",
        "double_descent",
        "multilens.lenses.double_descent.config:DoubleDescentConfig",
        "multilens.lenses.double_descent.lens:run_double_descent",
        "multilens.lenses.double_descent.phase:DoubleDescentPhase",
        "double descent",
    )
    if all(e.name != "double-descent" for e in registry.LENSES):
        monkeypatch.setattr(registry, "LENSES", (*registry.LENSES, entry))
    r = CliRunner().invoke(
        app,
        ["lens", "double-descent", "--profile", "smoke", "--set", "neural=false", "--set", "n_designs=20", "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["n"] == 30 and out["sigma2"] == 0.25 and out["r2"] == 1.0
    assert all({"gamma", "test_risk", "ci_low", "ci_high", "predicted_risk"} <= set(p) for p in out["points"])
    assert out["points"][0]["n_designs"] == 20
    bad = CliRunner().invoke(app, ["lens", "double-descent", "--profile", "smoke", "--set", "n_noise=1"])
    assert bad.exit_code == 2
    assert "n_noise` must be an int >= 2; got 1." in bad.output
