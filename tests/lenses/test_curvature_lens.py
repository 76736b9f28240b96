"""The curvature lens end to end (smoke profile), its config, its phase and its margin."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.curvature.config import CurvatureConfig
from multilens.lenses.curvature.lens import run_curvature
from multilens.lenses.curvature.margin import per_example_margins
from multilens.lenses.curvature.phase import CurvaturePhase, metrics_of, recommendations_of
from multilens.protocol.phase import Phase, PhaseContext


@pytest.fixture(scope="module")
def smoke():
    t0 = time.perf_counter()
    res = run_curvature(CurvatureConfig.for_profile("smoke"), seed=0)
    return res, time.perf_counter() - t0


def test_smoke_runs_fast_and_is_json(smoke):
    res, wall = smoke
    assert wall < 60  # budget ~20 s on an idle 2-core box; generous for a loaded one
    payload = json.dumps(res.to_dict(), allow_nan=False)  # no NaN/inf anywhere
    assert len(payload) > 1000
    for key in (
        "eigenvalues",
        "trace",
        "density",
        "sharpness",
        "invariance",
        "slices",
        "geometry_gate",
        "along_training",
        "preconditioning",
        "per_layer",
        "model",
        "hessian",
    ):
        assert key in res.data, key


def test_smoke_measurements_agree_with_the_dense_hessian(smoke):
    res, _ = smoke
    by = {c.name: c for c in res.checks}
    assert by["lanczos_eigenvalue_1_vs_dense"].passed
    assert by["lanczos_eigenvalue_2_vs_dense"].passed
    assert by["slq_lambda_max_vs_dense"].passed
    assert by["slice_grid_contains_trained_point"].passed
    exact = res.data["exact"]["eigenvalues_top"]
    got = res.data["eigenvalues"]["eigenvalues"]
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    # Every check's verdict was computed (True/False) or explicitly not evaluated with a reason.
    for c in res.checks:
        assert c.passed in (True, False, None) and c.reason


def test_smoke_invariance_checks(smoke):
    res, _ = smoke
    by = {c.name: c for c in res.checks}
    assert by["invariance_relu_c2_outputs_unchanged"].passed
    assert by["invariance_relu_c2_asam_invariant"].passed
    assert by["invariance_relu_top_eigenvalue_changes"].passed
    assert by["invariance_layernorm_c2_outputs_unchanged"].passed
    rows = res.data["invariance"]["rows"]
    loss_rows = [r for r in rows if r["metric"] == "train loss"]
    assert all(r["measured"] == "invariant" for r in loss_rows)


def test_figures_show_the_slices_and_training(smoke):
    res, _ = smoke
    figs = {f.key: f for f in res.figures}
    for key in (
        "curvature.slice_1d",
        "curvature.slice_2d",
        "curvature.along_training",
        "curvature.density",
        "curvature.preconditioning",
    ):
        assert key in figs, key
    s2 = figs["curvature.slice_2d"]
    contour = [t for t in s2.data if t["type"] == "contour"][0]
    marker = [t for t in s2.data if t.get("name") == "trained point"][0]
    n = len(contour["x"])
    assert contour["x"][n // 2] == 0.0 and contour["y"][n // 2] == 0.0
    assert marker["x"] == [0.0] and marker["y"] == [0.0]
    assert contour["z"][n // 2][n // 2] == res.data["slices"]["slice_2d"]["center_loss"]
    at = figs["curvature.along_training"]
    assert at.layout["yaxis"]["type"] == "log"


def test_estimates_carry_uncertainty(smoke):
    res, _ = smoke
    tr = res.estimate("trace")
    assert tr.ci_low < tr.value < tr.ci_high and tr.stderr > 0 and tr.n > 0
    m = res.estimate("margin")
    assert m.ci_low <= m.value <= m.ci_high
    k = res.estimate("kappa")
    assert k.converged and k.value == res.data["eigenvalues"]["eigenvalues"][0]
    assert "top Hessian eigenvalue" in res.notes[0]


def test_phase_metrics_and_recommendations(smoke, tmp_path: Path):
    res, _ = smoke
    metrics = metrics_of(res)
    for name in ("curvature.margin", "curvature.kappa", "curvature.top_eigenvalue", "curvature.trace"):
        assert name in metrics and math.isfinite(metrics[name])
    assert metrics["curvature.kappa"] == metrics["curvature.top_eigenvalue"]
    recs = recommendations_of(res)
    assert recs and any("kappa" in r for r in recs)
    phase = CurvaturePhase()
    assert isinstance(phase, Phase)
    assert set(phase.produces) == {"curvature.margin", "curvature.kappa"}


@pytest.mark.slow
def test_phase_runs_in_the_protocol(tmp_path: Path):
    ctx = PhaseContext("smoke", 0, tmp_path, {"at_schedules": ["constant"]}, {})
    out = CurvaturePhase().run(ctx)
    assert isinstance(out.artifacts["curvature.kappa"], float)
    assert out.metrics["curvature.kappa"] == out.artifacts["curvature.kappa"]


def test_config_profiles_and_overrides():
    for p in ("smoke", "quick", "full"):
        cfg = CurvatureConfig.for_profile(p)
        assert cfg.schema_version == 1
    cfg = from_dict(
        CurvatureConfig,
        {"k": 5, "rhos": [0.02, 0.2], "at_schedules": ["cosine"]},
        base=CurvatureConfig.for_profile("smoke"),
    )
    assert cfg.k == 5 and cfg.rhos == (0.02, 0.2) and cfg.at_schedules == ("cosine",)
    assert cfg.widths == CurvatureConfig.for_profile("smoke").widths
    with pytest.raises(ConfigError, match="`k` must be an int >= 1"):
        CurvatureConfig(k=0)
    with pytest.raises(ConfigError, match="`slice_points_2d` must be an odd int"):
        CurvatureConfig(slice_points_2d=20)
    with pytest.raises(ConfigError, match="`at_schedules`"):
        CurvatureConfig(at_schedules=("linear",))
    with pytest.raises(ConfigError, match="unknown config key `kk`"):
        from_dict(CurvatureConfig, {"kk": 1})
    with pytest.raises(ConfigError, match="`profile`"):
        CurvatureConfig.for_profile("huge")


def test_margin_definition_on_a_hand_example():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 4.0]])
    y = torch.tensor([0, 2, 2])
    m = per_example_margins(logits, y)
    norms = logits.double().norm(dim=1).numpy()
    np.testing.assert_allclose(m, [2.0 / norms[0], -1.0 / norms[1], 3.0 / norms[2]])
    # Invariant to a positive rescaling of the logits.
    np.testing.assert_allclose(per_example_margins(7.0 * logits, y), m)


def test_eos_ratio_ignores_the_initialization():
    """Step 0 is not a GD iterate: a sharp initialization (catapult) must not fail the stability bound."""
    from multilens.lenses.curvature.along_training import Checkpoint, ScheduleRun, init_ratio, max_ratio

    def cp(step: int, lam: float) -> Checkpoint:
        return Checkpoint(step, 2.5, 0.8, 0.1, (lam,), (0.0,), True, 10, 1.0, 0.1, 0.8, 1.2)

    run = ScheduleRun("constant", (cp(0, 0.94), cp(100, 0.79), cp(200, 0.81)), False, 0.01, 200, 1.0)
    assert max_ratio(run) == pytest.approx(0.81 / 0.8)
    assert init_ratio(run) == pytest.approx(0.94 / 0.8)
