"""The implicit-bias lens end to end: config validation, the smoke run, the phase, the quick run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.implicit_bias import ImplicitBiasConfig, ImplicitBiasPhase, run_implicit_bias
from multilens.protocol.phase import Phase, PhaseContext
from multilens.results import LensResult

# A configuration small enough for a unit test (about a second), still exercising every part.
TINY = {
    "n_seeds": 2,
    "ls_n": 10,
    "ls_d": 30,
    "ls_n_test": 200,
    "log_steps": 2000,
    "log_n": 8,
    "log_n_points": 20,
    "opt_n": 10,
    "opt_d": 20,
    "opt_n_test": 200,
    "opt_epochs": 200,
    "opt_reseeds": 2,
    "opt_n_points": 5,
}


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    return run_implicit_bias(ImplicitBiasConfig.for_profile("smoke"), 7)


def test_profiles_and_overrides() -> None:
    for p in ("smoke", "quick", "full"):
        assert ImplicitBiasConfig.for_profile(p).schema_version == 1
    cfg = from_dict(
        ImplicitBiasConfig,
        {"log_steps": 1234, "opt_optimizers": ["gd", "sign"]},
        base=ImplicitBiasConfig.for_profile("smoke"),
    )
    assert cfg.log_steps == 1234 and cfg.opt_optimizers == ("gd", "sign")
    assert cfg.ls_n == ImplicitBiasConfig.for_profile("smoke").ls_n


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_seeds": 1}, "`n_seeds` must be an int >= 2; got 1."),
        ({"ls_d": 10, "ls_n": 20}, "`ls_d` must be > `ls_n`"),
        ({"ls_lr_fraction": 2.5}, "`ls_lr_fraction` must be < 2"),
        ({"log_lr_fraction": 1.0}, "`log_lr_fraction` must be < 1"),
        ({"opt_optimizers": ["gd", "lion"]}, "`opt_optimizers[1]` must be one of"),
        ({"opt_schedules": ["linear"]}, "`opt_schedules[0]` must be one of"),
        ({"ls_init_scales": [1.0, 2.0]}, "`ls_init_scales` must start with 0.0"),
        ({"opt_batch_size": 100}, "`opt_batch_size` must be <= `opt_n`"),
        ({"bogus": 1}, "unknown config key `bogus`"),
    ],
)
def test_bad_config_is_one_line_config_error(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(ImplicitBiasConfig, override, base=ImplicitBiasConfig.for_profile("smoke"))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="`profile` must be one of"):
        ImplicitBiasConfig.for_profile("huge")


def test_smoke_result_is_json_and_carries_the_curves(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)
    data = d["data"]
    ls = data["least_squares"]["curve_seed0"]
    assert len(ls["steps"]) == len(ls["distance_to_pinv"]) == len(ls["predicted"]) > 10
    lg = data["logistic"]
    assert len(lg["steps"]) == len(lg["gap_gd_mean"]) == len(lg["gap_predicted_mean"]) == len(lg["gap_ngd_mean"])
    assert {"slope", "intercept", "r2", "slope_predicted"} <= set(lg["per_seed"][0]["fit_inv_log"])
    assert {r["optimizer"] for r in data["optimizers"]["table"]} == set(ImplicitBiasConfig().opt_optimizers)
    for key in ("implicit_bias.svm_cosine", "implicit_bias.pinv_distance"):
        assert data["metrics"][key] is not None
    assert smoke.estimate("implicit_bias.svm_cosine").ci_low is not None


def test_smoke_checks_are_computed_and_exact_ones_pass(smoke: LensResult) -> None:
    checks = {c.name: c for c in smoke.checks}
    for c in checks.values():
        assert c.passed in (True, False, None) and c.reason
    # Checks against exact answers hold at any budget.
    for name in (
        "ls_exact_trajectory",
        "ls_null_component_kept",
        "ls_converges_to_pinv",
        "svm_kkt",
        "svm_planted_solution",
        "max_margin_references_solved",
    ):
        assert checks[name].passed is True, checks[name].reason
    for e in smoke.estimates:
        assert e.value is None or math.isfinite(e.value)
        assert e.n >= 1


def test_phase_contract(tmp_path: Path) -> None:
    phase = ImplicitBiasPhase()
    assert isinstance(phase, Phase)
    ctx = PhaseContext(profile="smoke", seed=3, out_dir=tmp_path, config=TINY, artifacts={})
    out = phase.run(ctx)
    assert out.artifacts["implicit_bias.metrics"] == out.metrics and json.dumps(out.artifacts)
    assert set(phase.produces) == set(out.artifacts)
    for key in ("implicit_bias.svm_cosine", "implicit_bias.pinv_distance"):
        assert math.isfinite(out.metrics[key])
    assert out.recommendations and all(isinstance(r, str) for r in out.recommendations)


@pytest.mark.slow
def test_quick_profile_passes_its_theory_checks() -> None:
    res = run_implicit_bias(ImplicitBiasConfig.for_profile("quick"), 0)
    failed = [c.reason for c in res.checks if c.severity == "error" and c.passed is not True]
    assert not failed, failed
    assert res.estimate("implicit_bias.svm_cosine").value > 0.999
