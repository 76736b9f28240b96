"""The spectral-bias lens end to end: config validation, the smoke run, the phase, the quick run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.spectral_bias import SpectralBiasConfig, SpectralBiasPhase, run_spectral_bias
from multilens.protocol.phase import Phase, PhaseContext
from multilens.results import LensResult

TINY = {
    "n_seeds": 2,
    "n_points": 32,
    "frequencies": [1, 4],
    "kf_features": 64,
    "kf_steps": 200,
    "mlp_width": 16,
    "mlp_steps": 150,
    "ntk_modes": 5,
    "ff_features": 6,
}


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    return run_spectral_bias(SpectralBiasConfig.for_profile("smoke"), 5)


def test_profiles_and_overrides() -> None:
    for p in ("smoke", "quick", "full"):
        assert SpectralBiasConfig.for_profile(p).schema_version == 1
    cfg = from_dict(
        SpectralBiasConfig,
        {"frequencies": [2, 7], "mlp_activation": "tanh"},
        base=SpectralBiasConfig.for_profile("smoke"),
    )
    assert cfg.frequencies == (2, 7) and cfg.mlp_activation == "tanh"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_seeds": 0}, "`n_seeds` must be an int >= 2; got 0."),
        ({"frequencies": [1, 40]}, "`frequencies[1]` must be below the Nyquist frequency"),
        ({"amplitudes": [1.0]}, "`amplitudes` must have one entry per frequency (2); got 1."),
        ({"fit_threshold": 1.5}, "`fit_threshold` must be in (0, 1)"),
        ({"kf_lr_fraction": 1.0}, "`kf_lr_fraction` must be in (0, 1)"),
        ({"mlp_activation": "sigmoid"}, "`mlp_activation` must be one of"),
        ({"ntk_modes": 1000}, "`ntk_modes` must be <= n_points"),
        ({"mlp_lr_fraction": 2.0}, "`mlp_lr_fraction` must be < 2"),
    ],
)
def test_bad_config_is_one_line_config_error(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(SpectralBiasConfig, override, base=SpectralBiasConfig.for_profile("smoke"))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_smoke_result_is_json_and_carries_the_curves(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)
    data = d["data"]
    modes = data["kernel_flow"]["modal_trajectories_seed0"]["modes"]
    assert modes and all(len(m["measured"]) == len(m["predicted_continuous"]) for m in modes)
    for kind in ("plain", "fourier"):
        rows = data["mlp"][kind]["frequencies"]
        assert [r["frequency"] for r in rows] == [1, 10]
        assert all(len(r["measured_steps"]) == 2 and len(r["predicted_steps"]) == 2 for r in rows)
    assert data["metrics"]["spectral_bias.order_spearman"] is not None
    assert smoke.estimate("spectral_bias.order_spearman").n == 2


def test_smoke_exact_checks_pass(smoke: LensResult) -> None:
    checks = {c.name: c for c in smoke.checks}
    for c in checks.values():
        assert c.passed in (True, False, None) and c.reason
    for name in ("kernel_discrete_exact", "kernel_continuous_within_bound", "kernel_fit_steps_exact"):
        assert checks[name].passed is True, checks[name].reason


def test_phase_contract(tmp_path: Path) -> None:
    phase = SpectralBiasPhase()
    assert isinstance(phase, Phase)
    out = phase.run(PhaseContext(profile="smoke", seed=1, out_dir=tmp_path, config=TINY, artifacts={}))
    assert out.artifacts["spectral_bias.metrics"] == out.metrics and json.dumps(out.artifacts)
    assert math.isfinite(out.metrics["spectral_bias.kernel_exact_deviation"])
    assert out.recommendations


@pytest.mark.slow
def test_quick_profile_passes_its_theory_checks() -> None:
    res = run_spectral_bias(SpectralBiasConfig.for_profile("quick"), 0)
    failed = [c.reason for c in res.checks if c.severity == "error" and c.passed is not True]
    assert not failed, failed
