"""The implicit-bias lens end to end: settings, the smoke run, check kinds, user-built subjects, quick."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from multilens.config import from_dict
from multilens.errors import ConfigError
from multilens.lenses import implicit_bias as ib
from multilens.lenses.contract import run_lens
from multilens.lenses.implicit_bias import logistic as lg
from multilens.lenses.implicit_bias.lens import _risk_coefficient
from multilens.lenses.registry import get_lens
from multilens.protocol.phase import LensPhase, Phase, PhaseContext
from multilens.results import LensResult
from multilens.theory.implicit_bias import hard_margin_svm, row_space


@pytest.fixture(scope="module")
def smoke() -> LensResult:
    return run_lens(get_lens("implicit-bias"), ib.Settings.for_profile("smoke"), 7)


def test_profiles_and_nested_overrides() -> None:
    for p in ("smoke", "quick", "full"):
        assert ib.Settings.for_profile(p).schema_version == 1
    base = ib.Settings.for_profile("smoke")
    s = from_dict(ib.Settings, {"logistic": {"steps": 1234}, "optimizers": {"optimizers": ["gd", "sign"]}}, base=base)
    assert s.logistic.steps == 1234 and s.optimizers.optimizers == ("gd", "sign")
    assert s.least_squares == base.least_squares and s.logistic.n == base.logistic.n
    off = from_dict(ib.Settings, {"optimizers": False}, base=base)
    assert off.optimizers is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_instances": 0}, "`n_instances` must be an int >= 1; got 0."),
        ({"least_squares": {"d": 10, "n": 20}}, "`least_squares.d` must be > `least_squares.n`"),
        ({"least_squares": {"lr_fraction": 2.5}}, "`least_squares.lr_fraction` must be < 2"),
        ({"logistic": {"lr_fraction": 1.0}}, "`logistic.lr_fraction` must be < 1"),
        ({"optimizers": {"optimizers": ["gd", "lion"]}}, "`optimizers.optimizers[1]` must be one of"),
        ({"optimizers": {"schedules": ["linear"]}}, "`optimizers.schedules[0]` must be one of"),
        ({"least_squares": {"init_scales": [1.0, 2.0]}}, "`least_squares.init_scales` must start with 0.0"),
        ({"optimizers": {"batch_size": 100}}, "`optimizers.batch_size` must be <= `optimizers.n`"),
        ({"bogus": 1}, "unknown config key `implicit_bias.bogus`"),
        ({"logistic": {"bogus": 1}}, "unknown config key `implicit_bias.logistic.bogus`"),
    ],
)
def test_bad_settings_are_one_line_config_errors(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(ib.Settings, override, where="implicit_bias", base=ib.Settings.for_profile("smoke"))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_smoke_result_is_json_and_carries_the_curves(smoke: LensResult) -> None:
    d = smoke.to_dict()
    json.dumps(d, allow_nan=False)
    assert smoke.parts == ("least_squares", "logistic", "optimizers", "handoff")
    data = d["data"]
    curve = data["least_squares"]["curve_instance0"]
    assert len(curve["steps"]) == len(curve["distance_to_pinv"]) == len(curve["predicted"]) > 10
    lg = data["logistic"]
    assert len(lg["steps"]) == len(lg["gap_gd_mean"]) == len(lg["gap_predicted_mean"]) == len(lg["gap_ngd_mean"])
    assert {"slope", "intercept", "r2", "slope_predicted"} <= set(lg["per_instance"][0]["fit_inv_log"])
    assert {r["optimizer"] for r in data["optimizers"]["table"]} == set(ib.OptimizersSettings().optimizers)
    for key in ("implicit_bias.svm_cosine", "implicit_bias.pinv_distance", "implicit_bias.margin_fraction_above_eps"):
        assert math.isfinite(smoke.metrics[key])
        assert smoke.metrics[f"{key}_ci_low"] <= smoke.metrics[key] <= smoke.metrics[f"{key}_ci_high"]


def test_smoke_check_kinds_and_exact_checks(smoke: LensResult) -> None:
    kinds = {c.name: c.kind for c in smoke.checks}
    for name in (
        "ls_full_row_rank",
        "ls_exact_trajectory",
        "ls_rate_matches_spectrum",
        "ls_null_component_kept",
        "svm_kkt",
        "svm_planted_solution",
        "support_vectors_span",
        "max_margin_references_solved",
        "all_optimizers_interpolate",
    ):
        assert kinds[name] == "sanity", name
        if name != "all_optimizers_interpolate":  # not at a 200-epoch budget
            assert smoke.check(name).passed is True, smoke.check(name).reason
    for name in (
        "ls_converges_to_pinv",
        "ls_rate_vs_slowest_mode",
        "ls_null_component_risk",
        "soudry_gap_prediction",
        "soudry_norm_growth",
        "normalized_gd_faster",
        "nearest_direction_gd",
    ):
        assert kinds[name] == "agreement", name
    assert kinds["normalized_gd_rate_vs_bound"] == "bound"
    assert all(c.criterion for c in smoke.checks)
    assert smoke.check("ls_converges_to_pinv").passed is True
    # Fixed budgets report converged None; the least-squares stopping rule reports what it met.
    assert smoke.estimate("implicit_bias.svm_cosine").converged is None
    assert smoke.estimate("optimizers.gd.cos_l2").converged is None
    assert smoke.estimate("implicit_bias.pinv_distance").converged is True
    # Recommendations survive only on passing checks.
    for rec in smoke.recommendations:
        assert all(smoke.check(n).passed is True for n in rec.rests_on)
    for rec in smoke.dropped_recommendations:
        assert "fail" in rec["reason"] or "not evaluated" in rec["reason"]


def test_risk_coefficient_is_the_expected_excess_risk(seed: int) -> None:
    """tr(P_ker S_test)/d against a Monte Carlo mean of the exact excess test risk over theta_0 draws."""
    rng = np.random.default_rng(seed)
    n, d, m = 6, 20, 300
    x = rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d)  # anisotropic, unlike the bundled design
    xt = rng.standard_normal((m, d)) * np.linspace(2.0, 0.5, d)
    beta = rng.standard_normal(d) / np.sqrt(d)
    design = ib.Design(x, x @ beta, xt, xt @ beta + 0.1 * rng.standard_normal(m))
    coef = _risk_coefficient(design)
    rs = row_space(x)
    pinv = np.linalg.pinv(x) @ design.y
    base = np.mean((xt @ pinv - design.y_test) ** 2)
    draws = []
    for _ in range(2000):
        th = rng.standard_normal(d) / np.sqrt(d)
        draws.append(np.mean((xt @ (pinv + rs.project_null(th)) - design.y_test) ** 2) - base)
    se = np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - coef) <= 4 * se


def _user_subject(seed: int) -> ib.Subject:
    rng = np.random.default_rng(seed)
    # A uniform (not Gaussian) under-determined design without held-out data.
    x = rng.uniform(-1.0, 1.0, (7, 19))
    y = rng.uniform(-1.0, 1.0, 7)
    # A hand-built separable set in the plane: two clouds either side of a tilted line.
    pts = rng.uniform(-1.0, 1.0, (40, 2))
    side = pts @ np.array([1.0, 0.5])
    keep = np.abs(side) > 0.3
    xs, labels = pts[keep][:16], np.sign(side[keep][:16])
    return ib.Subject.of(ls=(x, y), separable=(xs, labels))


def test_measure_on_user_arrays(seed: int) -> None:
    subj = _user_subject(seed)
    s = ib.Settings.for_profile("smoke")
    r = ib.measure(subj, s, seed=seed)
    assert r.parts == ("least_squares", "logistic", "optimizers")
    x, y = subj.least_squares[0].x, subj.least_squares[0].y
    # GD from 0 reached the pseudoinverse solution computed here, independently.
    assert r.check("ls_converges_to_pinv").passed is True
    assert r.estimate("implicit_bias.pinv_distance").value <= s.least_squares.pinv_tol
    assert r.estimate("implicit_bias.pinv_distance").converged is True  # the gradient rule was met
    assert r.estimate("implicit_bias.pinv_distance").no_interval_reason  # one design: no interval, said why
    curve = r.data["least_squares"]["curve_instance0"]
    assert curve["distance_to_pinv"][0] == pytest.approx(np.linalg.norm(np.linalg.pinv(x) @ y), rel=1e-12)
    # No held-out data: no risk check; no closed-form SVM: no planted-solution check.
    names = {c.name for c in r.checks}
    assert "ls_null_component_risk" not in names and "svm_planted_solution" not in names
    assert r.check("svm_kkt").passed is True
    svm = hard_margin_svm(subj.separable[0].x, subj.separable[0].labels)
    assert r.data["logistic"]["per_instance"][0]["svm_norm"] == pytest.approx(np.linalg.norm(svm.w), rel=1e-9)
    # One instance: the Student-t interval is undefined, so agreement falls back to the fixed tolerance.
    gap = r.check("soudry_gap_prediction")
    assert gap.kind == "agreement" and "|observed - expected|" in gap.criterion
    assert "implicit_bias.max_optimizer_disagreement" not in r.metrics  # no held-out points
    json.dumps(r.to_dict(), allow_nan=False)


def test_separable_sets_of_different_shapes_run_one_by_one(seed: int) -> None:
    """Sets of different sizes cannot run in lockstep: each runs alone, and the numbers are the same."""
    a = lg.planted_separable(8, 3, 0.5, seed)
    b = lg.planted_separable(11, 3, 0.5, seed + 1)
    sets = (ib.Separable(a.x, a.y, w_svm=a.w_hat), ib.Separable(b.x, b.y, w_svm=b.w_hat))
    s = ib.Settings.for_profile("smoke")
    s = ib.Settings(n_instances=2, least_squares=None, logistic=s.logistic, optimizers=None)
    both = ib.measure(ib.Subject(separable=sets), s, seed=seed)
    alone = [ib.measure(ib.Subject(separable=(x,)), s, seed=seed) for x in sets]
    got = [p["gap_gd_final"] for p in both.data["logistic"]["per_instance"]]
    want = [r.data["logistic"]["per_instance"][0]["gap_gd_final"] for r in alone]
    assert got == want
    assert both.check("svm_planted_solution").passed is True
    assert both.estimate("implicit_bias.svm_cosine").n == 2


def test_checks_can_fail() -> None:
    """The evidence is not true by construction: broken subjects and budgets make the checks fail."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 20))
    x[5] = x[4]  # rank 5 < n = 6
    a = lg.planted_separable(8, 3, 0.5, 3)
    wrong = ib.Separable(a.x, a.y, w_svm=2.0 * a.w_hat)  # a wrong "closed-form" SVM
    s = ib.Settings(
        n_instances=1,
        least_squares=ib.LeastSquaresSettings(n=10, d=30, max_steps=10),  # far too few steps
        logistic=ib.LogisticSettings(steps=200, n_points=10),
        optimizers=None,
    )
    subj = ib.Subject((ib.Design(x, rng.standard_normal(6)),), (wrong,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ib.measure(subj, s, seed=0)
    assert r.check("ls_full_row_rank").passed is False
    assert r.check("ls_converges_to_pinv").passed is False
    assert r.estimate("implicit_bias.pinv_distance").converged is False
    assert r.check("svm_planted_solution").passed is False
    assert r.check("normalized_gd_faster").passed is False  # 200 steps: not yet 10x ahead of GD
    assert [d["text"][:9] for d in r.dropped_recommendations] == ["After 200"]  # it rested on that check
    status = {a.text.split(" (")[0]: a.status for a in r.assumptions}
    assert status["X has full row rank n < d"] == "violated"
    assert any("convergence warning" in n for n in r.notes)


def test_user_subject_validation() -> None:
    with pytest.raises(ValueError, match="under-determined"):
        ib.Design(np.ones((5, 3)), np.ones(5))
    with pytest.raises(ValueError, match="-1 or 1"):
        ib.Separable(np.ones((4, 2)), np.array([0.0, 1.0, 1.0, -1.0]))
    # A subject without separable data runs only the least-squares part, and says so.
    rng = np.random.default_rng(0)
    r = ib.measure(ib.Subject.of(ls=(rng.standard_normal((4, 9)), rng.standard_normal(4))),
                   ib.Settings.for_profile("smoke"), seed=0)  # fmt: skip
    assert r.parts == ("least_squares",)
    assert any("no data" in n for n in r.notes)


def test_generic_phase_runs_the_lens(tmp_path: Path) -> None:
    phase = LensPhase(get_lens("implicit-bias"))
    assert isinstance(phase, Phase) and phase.key_checks
    out = phase.run(
        PhaseContext(
            profile="smoke",
            seed=3,
            out_dir=tmp_path,
            config={"logistic": {"steps": 500}, "optimizers": False},
            artifacts={},
        )
    )
    assert math.isfinite(out.metrics["implicit_bias.svm_cosine"])
    assert set(phase.key_checks) <= {c.name for c in out.result.checks}


@pytest.mark.slow
def test_quick_profile_passes_its_theory_checks() -> None:
    res = run_lens(get_lens("implicit-bias"), ib.Settings.for_profile("quick"), 0)
    failed = [c.reason for c in res.checks if c.severity == "error" and c.passed is not True]
    assert not failed, failed
    assert res.estimate("implicit_bias.svm_cosine").value > 0.999
    assert res.recommendations
