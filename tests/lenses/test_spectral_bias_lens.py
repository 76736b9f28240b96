"""The spectral-bias lens end to end: settings, the smoke run, check kinds, user-built subjects, quick."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses import spectral_bias as sb
from multilens.lenses.contract import run_lens
from multilens.lenses.registry import get_lens
from multilens.lenses.spectral_bias import mlp_fourier as mf
from multilens.protocol.phase import LensPhase, Phase, PhaseContext
from multilens.results import LensResult


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    return run_lens(get_lens("spectral-bias"), sb.Settings.for_profile("smoke"), 5)


def test_profiles_and_nested_overrides() -> None:
    for p in ("smoke", "quick", "full"):
        assert sb.Settings.for_profile(p).schema_version == 1
    base = sb.Settings.for_profile("smoke")
    s = from_dict(sb.Settings, {"frequencies": [2, 7], "mlp": {"activation": "tanh"}}, base=base)
    assert s.frequencies == (2, 7) and s.mlp.activation == "tanh" and s.mlp.width == base.mlp.width
    assert from_dict(sb.Settings, {"kernel_flow": False}, base=base).kernel_flow is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_seeds": 0}, "`n_seeds` must be an int >= 1; got 0."),
        ({"frequencies": [1, 40]}, "`frequencies[1]` must be below the Nyquist frequency"),
        ({"amplitudes": [1.0]}, "`amplitudes` must have one entry per frequency (2); got 1."),
        ({"fit_threshold": 1.5}, "`fit_threshold` must be in (0, 1)"),
        ({"kernel_flow": {"lr_fraction": 1.0}}, "`kernel_flow.lr_fraction` must be in (0, 1)"),
        ({"mlp": {"activation": "sigmoid"}}, "`mlp.activation` must be one of"),
        ({"mlp": {"ntk_modes": 1000}}, "`mlp.ntk_modes` must be <= n_points"),
        ({"mlp": {"lr_fraction": 2.0}}, "`mlp.lr_fraction` must be < 2"),
        ({"mlp": {"bogus": 1}}, "unknown config key `spectral_bias.mlp.bogus`"),
    ],
)
def test_bad_settings_are_one_line_config_errors(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(sb.Settings, override, where="spectral_bias", base=sb.Settings.for_profile("smoke"))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_smoke_result_is_json_and_carries_the_curves(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)
    assert smoke.parts == ("kernel_flow", "mlp")
    modes = d["data"]["kernel_flow"]["modal_trajectories_seed0"]["modes"]
    assert modes and all(len(m["measured"]) == len(m["predicted_continuous"]) for m in modes)
    for kind in ("plain", "fourier"):
        rows = d["data"]["mlp"][kind]["frequencies"]
        assert [r["frequency"] for r in rows] == [1, 10]
        assert all(len(r["measured_steps"]) == 2 and len(r["predicted_steps"]) == 2 for r in rows)
    assert math.isfinite(smoke.metrics["spectral_bias.order_spearman"])
    assert smoke.estimate("spectral_bias.order_spearman").n == 2


def test_smoke_check_kinds_and_exact_checks(smoke: LensResult) -> None:
    kinds = {c.name: c.kind for c in smoke.checks}
    assert kinds["kernel_discrete_exact"] == "sanity" and kinds["kernel_fit_steps_exact"] == "sanity"
    assert kinds["kernel_continuous_within_bound"] == "bound"
    for name in ("kernel_first_order_in_eta", "mlp_low_frequency_first", "fourier_features_rebalance",
                 "ntk_predicts_frequency_order", "ntk_fit_time_plain", "ntk_mode_order_plain"):  # fmt: skip
        assert kinds[name] == "agreement", name
    for name in ("kernel_discrete_exact", "kernel_continuous_within_bound", "kernel_fit_steps_exact"):
        assert smoke.check(name).passed is True, smoke.check(name).reason
    bound = smoke.check("kernel_continuous_within_bound")
    assert bound.bound_ratio is not None and bound.bound_ratio >= 1.0  # the bound is never below the exact gap
    assert all(c.criterion for c in smoke.checks)
    # GD runs have fixed budgets: converged is None, never True.
    assert all(e.converged is None for e in smoke.estimates)
    for rec in smoke.recommendations:
        assert all(smoke.check(n).passed is True for n in rec.rests_on)


def _builder(d_in: int, seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, 24), nn.Tanh(), nn.Linear(24, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(p.shape[-1], 1)))
    return model


def test_measure_on_user_arrays_and_model_builder(seed: int) -> None:
    n = 48
    x = np.linspace(-3.0, 5.0, n, endpoint=False)  # any equispaced range: mapped to [0, 1)
    u = (x + 3.0) / 8.0
    y = np.cos(2 * np.pi * 2 * u) + 0.3 * np.sin(2 * np.pi * 7 * u)
    subj = sb.Subject(x, y, model_builder=_builder)
    assert subj.frequencies == (2, 7)  # the target's components, found from its spectrum
    np.testing.assert_allclose(subj.unit_x, np.arange(n) / n, atol=1e-12)
    s = sb.Settings.for_profile("smoke")
    r = sb.measure(subj, s, seed=seed)
    assert r.parts == ("kernel_flow", "mlp")
    for name in ("kernel_discrete_exact", "kernel_continuous_within_bound", "kernel_fit_steps_exact"):
        assert r.check(name).passed is True, r.check(name).reason
    assert r.data["frequencies"] == [2, 7]
    plain = r.data["mlp"]["plain"]
    assert plain["n_params"] == 24 + 24 + 24 + 1  # the builder's network, not the settings' MLP
    assert r.data["mlp"]["activation"] == "from model_builder"
    assert [row["frequency"] for row in plain["frequencies"]] == [2, 7]
    json.dumps(r.to_dict(), allow_nan=False)


def test_user_subject_validation() -> None:
    x = np.arange(16) / 16
    with pytest.raises(ValueError, match="equispaced"):
        sb.Subject(x**2, np.sin(2 * np.pi * x))
    with pytest.raises(ValueError, match="no component at frequency 3"):
        sb.Subject(x, np.sin(2 * np.pi * x), frequencies=(1, 3))
    assert sb.Subject(x, np.sin(2 * np.pi * 3 * x)).frequencies == (3,)  # a pure tone: one frequency
    with pytest.raises(ValueError, match="model_builder"):
        mf.activation_of(nn.Sequential(nn.Linear(1, 4), nn.Sigmoid(), nn.Linear(4, 1)))
    assert mf.activation_of(nn.Sequential(nn.Linear(1, 4), nn.GELU(), nn.Linear(4, 1))) == "gelu"


def test_generic_phase_runs_the_lens(tmp_path: Path) -> None:
    phase = LensPhase(get_lens("spectral-bias"))
    assert isinstance(phase, Phase) and phase.key_checks
    out = phase.run(PhaseContext(profile="smoke", seed=3, out_dir=tmp_path, config={"mlp": False}, artifacts={}))
    assert math.isfinite(out.metrics["spectral_bias.kernel_exact_deviation"])
    assert set(phase.key_checks) - {c.name for c in out.result.checks} == {"mlp_low_frequency_first"}  # mlp off


@pytest.mark.slow
def test_quick_profile_passes_its_theory_checks() -> None:
    res = run_lens(get_lens("spectral-bias"), sb.Settings.for_profile("quick"), 0)
    failed = [c.reason for c in res.checks if c.severity == "error" and c.passed is not True]
    assert not failed, failed
