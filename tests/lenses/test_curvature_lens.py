"""The curvature lens on the lens contract: smoke run, a user's own model, part independence, settings."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _curvature_helpers import TORCH_FWD_AD_FILTER, assert_unchanged, dense_hessian, snapshot
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses.contract import run_lens
from multilens.lenses.curvature import (
    AlongTrainingSettings,
    DensitySettings,
    LandscapeSettings,
    Settings,
    SharpnessSettings,
    Subject,
    default_subject,
    measure,
)
from multilens.lenses.curvature.margin import per_example_margins
from multilens.lenses.registry import get_lens
from multilens.protocol.phase import LensPhase, PhaseContext
from multilens.results import LensResult
from multilens.seeding import torch_generator

pytestmark = pytest.mark.filterwarnings(TORCH_FWD_AD_FILTER)
CE = nn.functional.cross_entropy


@pytest.fixture(scope="module")
def smoke():
    t0 = time.perf_counter()
    res = run_lens(get_lens("curvature"), Settings.for_profile("smoke"), seed=0)
    return res, time.perf_counter() - t0


def test_smoke_runs_fast_and_is_json(smoke):
    res, wall = smoke
    assert wall < 60  # ~6 s on an idle 2-core box; generous for a loaded one
    payload = json.dumps(res.to_dict(), allow_nan=False)  # no NaN/inf anywhere
    assert len(payload) > 1000
    parts = ("eigenvalues", "trace", "density", "per_layer", "margin", "sharpness", "invariance", "landscape")
    assert res.parts == (*parts, "along_training", "preconditioning")
    for key in (*parts, "model", "hessian", "top_eigenpairs", "exact"):
        assert key in res.data, key


def test_smoke_measurements_agree_with_the_dense_hessian(smoke):
    res, _ = smoke
    for name in (
        "lanczos_eigenvalue_1_vs_dense",
        "lanczos_eigenvalue_2_vs_dense",
        "slq_lambda_max_vs_dense",
        "slice_curvature_vs_top_eigenvalue",
        "per_layer_0_top_le_lambda_max",
    ):
        assert res.check(name).passed is True, res.check(name).reason
    exact = res.data["exact"]["eigenvalues_top"]
    got = res.data["eigenvalues"]["eigenvalues"]["eigenvalues"]
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    assert res.data["exact"]["trace"] == pytest.approx(res.estimate("trace").value, rel=0.2)


def test_check_kinds_and_fixed_tolerances(smoke):
    res, _ = smoke
    kinds = {
        "lanczos_eigenvalue_1_vs_dense": "agreement",
        "hutchpp_ci_covers_dense_trace": "agreement",
        "slq_lambda_max_vs_dense": "agreement",
        "slice_grid_contains_trained_point": "sanity",
        "slice_curvature_vs_top_eigenvalue": "agreement",
        "gd_rate_attained_kappa_10": "agreement",
        "gd_rate_bound_random_kappa_10": "bound",
        "eos_constant_bound": "bound",
        "per_layer_0_top_le_lambda_max": "bound",
        "invariance_relu_c2_outputs_unchanged": "sanity",
        "invariance_relu_c2_asam_invariant": "agreement",
    }
    for name, kind in kinds.items():
        assert res.check(name).kind == kind, name
    assert res.check("hutchpp_ci_covers_dense_trace").severity == "info"  # a 95% interval misses 5% of the time
    s = Settings.for_profile("smoke")
    lam1 = res.metrics["curvature.top_eigenvalue"]
    # The slice check's tolerance is the fixed relative setting, not the fit's standard error.
    assert res.check("slice_curvature_vs_top_eigenvalue").tolerance == pytest.approx(
        s.landscape.curvature_rel_tol * abs(lam1), rel=1e-12
    )
    # The SLQ check's tolerance is a fixed fraction of the dense spectral span, not SLQ's own residual.
    ex = res.data["exact"]
    span = ex["lambda_max"] - ex["lambda_min"]
    assert res.check("slq_lambda_max_vs_dense").tolerance == pytest.approx(s.density.extremes_rel_tol * span, rel=1e-12)
    for c in res.checks:
        assert c.criterion, c.name


def test_smoke_invariance_checks(smoke):
    res, _ = smoke
    for name in (
        "invariance_relu_c2_outputs_unchanged",
        "invariance_relu_c2_asam_invariant",
        "invariance_relu_top_eigenvalue_changes",
        "invariance_layernorm_c2_outputs_unchanged",
        "invariance_layernorm_c2_asam_invariant",
    ):
        assert res.check(name).passed is True, name
    rows = res.data["invariance"]["rows"]
    assert all(r["measured"] == "invariant" for r in rows if r["metric"] == "train loss")
    assert any(r["measured"] == "changes" for r in rows if r["metric"] == "top Hessian eigenvalue")


def test_asam_recommendation_rests_on_the_asam_checks(smoke):
    """The ASAM sentence is kept only while the ASAM invariance checks pass (issue 8, defect 5)."""
    res, _ = smoke
    asam = [r for r in res.recommendations if r.text.startswith("ASAM")]
    assert len(asam) == 1 and "invariance_*_asam_invariant" in asam[0].rests_on
    broken = tuple(
        dataclasses.replace(c, passed=False) if c.name == "invariance_relu_c2_asam_invariant" else c for c in res.checks
    )
    again = LensResult(res.lens, checks=broken, recommendations=res.recommendations)
    assert not [r for r in again.recommendations if r.text.startswith("ASAM")]
    assert any(d["text"].startswith("ASAM") for d in again.dropped_recommendations)


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
    assert contour["z"][n // 2][n // 2] == res.data["landscape"]["slice_2d"]["center_loss"]
    assert figs["curvature.along_training"].layout["yaxis"]["type"] == "log"


def test_estimates_carry_uncertainty_and_honest_convergence(smoke):
    res, _ = smoke
    tr = res.estimate("trace")
    assert tr.ci_low < tr.value < tr.ci_high and tr.stderr > 0 and tr.n > 0
    assert tr.converged is None  # a fixed budget of products: no stopping rule
    assert res.estimate("trace_hutchinson").converged is None
    assert res.estimate("density_negative_mass").converged is None
    for e in res.estimates:
        if e.name.startswith(("sam_", "asam_")):
            assert e.converged in (True, None) and e.no_interval_reason
    m = res.estimate("margin")
    assert m.ci_low <= m.value <= m.ci_high
    k = res.estimate("kappa")
    assert k.converged is True and k.value == res.data["eigenvalues"]["eigenvalues"]["eigenvalues"][0]
    assert "top Hessian eigenvalue" in res.notes[0]


def test_gate_metrics_and_outputs(smoke):
    res, _ = smoke
    m = res.metrics
    for name in (
        "curvature.margin",
        "curvature.margin_ci_low",
        "curvature.margin_ci_high",
        "curvature.kappa",
        "curvature.top_eigenvalue",
        "curvature.lanczos_converged",
        "curvature.trace",
    ):
        assert name in m and np.isfinite(m[name]), name
    assert m["curvature.kappa"] == m["curvature.top_eigenvalue"] == res.outputs["curvature.kappa"]
    assert m["curvature.margin"] == res.outputs["curvature.margin"] == res.estimate("margin").value
    assert m["curvature.margin_ci_low"] <= m["curvature.margin"] <= m["curvature.margin_ci_high"]
    assert m["curvature.lanczos_converged"] == 1.0
    assert set(get_lens("curvature").produces) == {
        "curvature.margin",
        "curvature.kappa",
        "curvature.lambda_max",
        "curvature.lr_max",
    }
    assert m["curvature.lambda_max"] == res.outputs["curvature.lambda_max"] == m["curvature.kappa"]
    assert res.outputs["curvature.lr_max"] == 2.0 / m["curvature.lambda_max_ci_high"] == m["curvature.lr_max"]


@pytest.mark.slow
def test_phase_runs_in_the_protocol(tmp_path: Path):
    ctx = PhaseContext("smoke", 0, tmp_path, {"along_training": {"schedules": ["constant"]}}, {})
    out = LensPhase(get_lens("curvature")).run(ctx)
    assert isinstance(out.artifacts["curvature.kappa"], float)
    assert out.metrics["curvature.kappa"] == out.artifacts["curvature.kappa"]


# --- a user's own model -------------------------------------------------------------------------------
def _user_subject() -> tuple[Subject, torch.Tensor, torch.Tensor]:
    g = torch_generator(123)
    x = torch.randn(96, 5, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    return Subject(model, CE, loader, info={"name": "hand-built tanh MLP"}), x, y


def _user_settings() -> Settings:
    s = Settings.for_profile("smoke")
    return dataclasses.replace(
        s,
        k=2,
        density=DensitySettings(n_vectors=3, n_iter=40),
        sharpness=SharpnessSettings(rhos=(0.01, 0.05), asam_rhos=(0.05,), steps=20),
        landscape=LandscapeSettings(points_1d=9, points_2d=5, fit_radius=1e-3, fit_points=11),
        along_training=None,
        preconditioning=None,
    )


@pytest.fixture(scope="module")
def user():
    sub, x, y = _user_subject()
    before = snapshot(sub.model)
    res = measure(sub, _user_settings(), seed=7)
    assert_unchanged(sub.model, before)  # the caller's model is never modified
    return res, sub, x, y


def test_measure_on_a_users_model_agrees_with_its_dense_hessian(user):
    res, sub, x, y = user
    h = dense_hessian(sub.model, CE, x, y)
    evals = np.linalg.eigvalsh(h)
    np.testing.assert_allclose(res.data["eigenvalues"]["eigenvalues"]["eigenvalues"], evals[::-1][:2], rtol=1e-8)
    assert res.data["exact"]["trace"] == pytest.approx(np.trace(h), rel=1e-10)
    assert res.data["hessian"]["n_batches"] == 3 and res.data["hessian"]["n_examples"] == 96
    for name in ("lanczos_eigenvalue_1_vs_dense", "lanczos_eigenvalue_2_vs_dense", "slq_lambda_max_vs_dense"):
        assert res.check(name).passed is True, res.check(name).reason
    # A smooth (tanh) net: the slice's second derivative along v1 is lambda_1.
    assert res.estimate("slice_curvature_along_v1").value == pytest.approx(evals[-1], rel=1e-4)
    assert res.check("slice_curvature_vs_top_eigenvalue").passed is True
    # The margin on the user's own data, against a direct computation.
    with torch.no_grad():
        m = per_example_margins(_logits(sub.model, x), y)
    assert res.estimate("margin").value == pytest.approx(float(np.quantile(m, 0.1)), rel=1e-10)
    # No ReLU pair in a tanh net: only the LayerNorm family runs, and it holds.
    assert not [c for c in res.checks if c.name.startswith("invariance_relu")]
    assert res.check("invariance_layernorm_c2_asam_invariant").passed is True
    assert res.provenance["seed"] == 7 and "curvature.kappa" in res.outputs


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    import copy

    return copy.deepcopy(model).double()(x.double())


def test_turning_a_part_off_leaves_the_others_bit_identical(user):
    """Issue 8, defect 10: every part draws from its own seed; shared eigenpairs have their own stream."""
    full, *_ = user
    sub, _, _ = _user_subject()
    for off in ("per_layer", "eigenvalues", "density"):
        res = measure(sub, dataclasses.replace(_user_settings(), **{off: None}), seed=7)
        assert off not in res.parts
        est = {e.name: e.to_dict() for e in res.estimates}
        for e in full.estimates:
            if not e.name.startswith(off) and e.name in est:
                assert est[e.name] == e.to_dict(), (off, e.name)
        names = {c.name for c in res.checks}
        for c in full.checks:
            if c.name in names:
                assert res.check(c.name).to_dict() == c.to_dict(), (off, c.name)
        for k, v in res.metrics.items():
            assert full.metrics[k] == v
    # margin and sharpness are in every run above and unchanged (the example).
    assert "margin" in est and "sam_sharpness_rho_0.05" in est


def test_default_subject_is_the_digits_mlp():
    s = dataclasses.replace(Settings.for_profile("smoke"), epochs=1, hessian_examples=64)
    sub = default_subject(s, seed=0, runtime=None)
    assert isinstance(sub, Subject) and sub.info["hessian_examples"] == 64
    assert sum(int(x.shape[0]) for x, _ in sub.data) == 64
    assert sub.eval_data[0].shape[0] == sub.info["n_train"]


# --- settings -------------------------------------------------------------------------------------------
def test_settings_profiles_and_nested_overrides():
    for p in ("smoke", "quick", "full"):
        assert Settings.for_profile(p).schema_version == 1
    base = Settings.for_profile("smoke")
    s = from_dict(
        Settings,
        {"k": 5, "sharpness": {"rhos": [0.02, 0.2]}, "along_training": {"schedules": ["cosine"]}, "per_layer": False},
        where="curvature",
        base=base,
    )
    assert s.k == 5 and s.sharpness.rhos == (0.02, 0.2) and s.sharpness.steps == base.sharpness.steps
    assert s.along_training.schedules == ("cosine",) and s.along_training.n_train == base.along_training.n_train
    assert s.per_layer is None and s.widths == base.widths
    with pytest.raises(ConfigError, match="`k` must be an int >= 1"):
        Settings(k=0)
    with pytest.raises(ConfigError, match="`points_2d` must be an odd int"):
        LandscapeSettings(points_2d=20)
    with pytest.raises(ConfigError, match="`schedules`"):
        AlongTrainingSettings(schedules=("linear",))
    with pytest.raises(ConfigError, match="unknown config key `curvature.kk`"):
        from_dict(Settings, {"kk": 1}, where="curvature")
    with pytest.raises(ConfigError, match="unknown config key `curvature.landscape.fit`"):
        from_dict(Settings, {"landscape": {"fit": 1}}, where="curvature")
    with pytest.raises(ConfigError, match="`profile`"):
        Settings.for_profile("huge")
    with pytest.raises(TypeError, match="Subject"):
        measure((None, None), base, seed=0)


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


def test_slice_check_fails_when_its_window_contains_relu_kinks():
    """The slice tolerance is fixed in advance: a wide window (ReLU kinks inside) fails, it is not excused."""
    base = Settings.for_profile("smoke")
    off = {f: None for f in ("eigenvalues", "trace", "density", "per_layer", "margin", "sharpness", "invariance")}
    s = dataclasses.replace(
        base, **off, along_training=None, preconditioning=None,
        landscape=LandscapeSettings(points_1d=5, points_2d=3, fit_radius=0.3, fit_points=11, curvature_radii=(0.3,)),
    )  # fmt: skip
    res = run_lens(get_lens("curvature"), s, 0)
    c = res.check("slice_curvature_vs_top_eigenvalue")
    lam1 = res.data["top_eigenpairs"]["eigenvalues"][0]
    assert c.tolerance == pytest.approx(1e-3 * abs(lam1), rel=1e-12)
    assert c.passed is False and abs(c.observed - lam1) > c.tolerance
    # The old rule, tol = max(1e-3 |lambda_1|, 3 fit stderr), grew with the fit's error and passed this slice.
    assert abs(c.observed - lam1) < 3 * res.estimate("slice_curvature_along_v1").stderr
