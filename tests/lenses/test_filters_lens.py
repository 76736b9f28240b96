"""The spectral-filters lens: measured filters equal the closed forms, its result is complete and JSON-safe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.filters import FiltersConfig, FiltersPhase, run_filters
from multilens.lenses.filters.lens import gaussian_blur, measured_filters, narrow_operator, ridge_solve, run_gd
from multilens.protocol.phase import PhaseContext
from multilens.theory.filters import gd_filter, ridge_filter


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


def test_smoke_run_is_complete_json_safe_and_passes_its_exact_checks(seed: int) -> None:
    res = run_filters(FiltersConfig.for_profile("smoke"), seed)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    checks = {c.name: c for c in res.checks}
    for name in (
        "filters.gd_closed_form[wide]",
        "filters.ridge_closed_form[wide]",
        "filters.gap_within_continuum_bound[wide]",
        "filters.matching_converged[wide]",
    ):
        assert checks[name].passed is True, checks[name].reason
    assert all(c.passed in (True, False, None) for c in res.checks)
    rows = d["data"]["wide"]["rows"]
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    for r in rows:
        assert 0.0 < r["gap"] <= r["continuum_gap"] + 1e-6
        assert r["err_gd_ci_low"] <= r["err_gd"] <= r["err_gd_ci_high"]
    est = res.estimate("filters.best_gd_error")
    assert est.ci_low <= est.value <= est.ci_high and est.n == 8
    assert d["data"]["metrics"]["filters.max_filter_gap"] == max(r["gap"] for r in rows)


def test_a_filter_check_can_fail() -> None:
    """Feeding GD's filter at the wrong t makes the closed-form comparison fail (the check is computed)."""
    from multilens.lenses.filters.lens import _checks

    cfg = FiltersConfig.for_profile("smoke")
    st = {
        "steps": [1, 10],
        "n_modes": 8,
        "n_modes_used": 8,
        "gd_closed_form_max_error": 0.3,
        "ridge_closed_form_max_error": 0.0,
        "ridge_cond_max": 10.0,
        "rows": [
            {"t": 1, "gap": 0.5, "continuum_gap": 0.2, "converged": True},
            {"t": 10, "gap": 0.01, "continuum_gap": 0.11, "converged": False},
        ],
    }
    checks = {c.name: c for c in _checks(cfg, st, st)}
    assert checks["filters.gd_closed_form[wide]"].passed is False
    assert checks["filters.gap_within_continuum_bound[wide]"].passed is False
    assert checks["filters.matching_converged[wide]"].passed is False
    assert checks["filters.no_single_lambda[wide]"].passed is False


def test_config_validation_and_overrides() -> None:
    with pytest.raises(ConfigError, match="`m` must be an int >= 4; got 2"):
        FiltersConfig(m=2)
    with pytest.raises(ConfigError, match="`step_scale`"):
        FiltersConfig(step_scale=1.5)
    with pytest.raises(ConfigError, match="`profile`"):
        FiltersConfig.for_profile("huge")
    cfg = from_dict(FiltersConfig, {"t_max": 500}, base=FiltersConfig.for_profile("smoke"))
    assert cfg.t_max == 500 and cfg.m == 32


def test_phase_produces_metrics_and_artifact(tmp_path: Path, seed: int) -> None:
    ph = FiltersPhase()
    out = ph.run(PhaseContext("smoke", seed, tmp_path, {"n_noise": 4}, {}))
    assert set(out.artifacts) == set(ph.produces)
    assert isinstance(out.artifacts["filters.matching"], dict)
    json.dumps(out.artifacts, allow_nan=False)
    assert all(isinstance(v, float) for v in out.metrics.values())
    assert "filters.max_filter_gap" in out.metrics and out.recommendations


def test_cli_lens_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """`multilens lens filters --profile smoke --json` prints the measured matching (registry entry added here)."""
    from typer.testing import CliRunner

    from multilens.cli import app
    from multilens.lenses import registry

    entry = registry.LensEntry(
        "filters",
        "filters",
        "multilens.lenses.filters.config:FiltersConfig",
        "multilens.lenses.filters.lens:run_filters",
        "multilens.lenses.filters.phase:FiltersPhase",
        "spectral filters",
    )
    if all(e.name != "filters" for e in registry.LENSES):
        monkeypatch.setattr(registry, "LENSES", (*registry.LENSES, entry))
    r = CliRunner().invoke(app, ["lens", "filters", "--profile", "smoke", "--set", "t_max=200", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert max(row["t"] for row in out["wide"]["rows"]) == 200
    assert {c["name"] for c in out["checks"]} >= {"filters.gd_closed_form[wide]", "filters.ridge_closed_form[wide]"}
