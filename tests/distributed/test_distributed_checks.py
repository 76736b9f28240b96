"""The distributed lens's checks on hand-made worker records (no processes): kinds, the bound's
looseness, checks that fail when the measurement is wrong, recommendations dropped with them,
held-out timing runs, and parts that draw from their own seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from multilens.lenses.contract import part_seed
from multilens.lenses.distributed import Settings, default_subject, theory
from multilens.lenses.distributed.jobs import quadratic_seed, timing_tasks
from multilens.lenses.distributed.lens import PARTS, collect_tasks
from multilens.lenses.distributed.parts_quadratic import noise_floor_part
from multilens.lenses.distributed.problems import make_quadratic
from multilens.lenses.distributed.settings import NoiseFloorSettings
from multilens.results import LensResult

PS = NoiseFloorSettings(workers=(1, 2), dim=20, kappa=5.0, eta_l=0.5, replicas=32, steps=600, burn_in=150,
                        delay_workers=0)  # fmt: skip
SEED = 11


def fake_outputs(scale: dict[int, float], rng: np.random.Generator) -> tuple[dict, ...]:
    """Rank-0 records of the noise tasks whose replica tail means scatter 1% around scale[m] * exact floor."""
    q = make_quadratic(PS.dim, PS.kappa, PS.init_dist, quadratic_seed(SEED))
    coords = q.eigvecs.T @ (q.theta0 - q.theta_star)
    tasks = {}
    for m in PS.workers:
        exact = theory.exact_stationary_floor(q.eigvals, PS.eta_l, PS.sigma2, m)
        curve = theory.exact_error_curve(q.eigvals, coords, PS.eta_l, PS.sigma2, m, np.arange(PS.steps + 1))
        tail = scale[m] * exact * (1 + 0.01 * rng.standard_normal(PS.replicas))
        tasks[f"noise_m{m}"] = {"tail_mean": [tail.tolist()], "n_tail": PS.steps - PS.burn_in,
                                "err_mean": [curve.tolist()], "err_sd": [(0.05 * curve).tolist()]}  # fmt: skip
    return ({"tasks": tasks},)


def dense_bound_over_exact() -> float:
    """eta sigma^2/mu over the exact floor, from the dense stationary covariance (Lyapunov equation)."""
    from scipy.linalg import solve_discrete_lyapunov

    q = make_quadratic(PS.dim, PS.kappa, PS.init_dist, quadratic_seed(SEED))
    a = np.eye(PS.dim) - PS.eta_l * q.hessian
    cov = solve_discrete_lyapunov(a, (PS.eta_l**2 * PS.sigma2 / PS.dim) * np.eye(PS.dim))
    return (PS.eta_l * PS.sigma2 / q.mu) / float(np.trace(cov))


def test_noise_floor_checks_have_kinds_and_the_bound_reports_its_looseness(rng: np.random.Generator) -> None:
    r = LensResult.from_parts("distributed", [noise_floor_part(PS, SEED, fake_outputs({1: 1.0, 2: 1.0}, rng))])
    for m in PS.workers:
        assert r.check(f"noise_floor_exact_m{m}").kind == "agreement" and r.check(f"noise_floor_exact_m{m}").passed
        b = r.check(f"noise_floor_bound_m{m}")
        assert b.kind == "bound" and b.passed is True
        assert b.bound_ratio == pytest.approx(dense_bound_over_exact(), rel=1e-9)
    assert dense_bound_over_exact() == pytest.approx(4.235, abs=0.01)  # the theorem's floor is ~4.2x the exact one
    assert r.check("noise_floor_ratio_2").kind == "agreement" and r.check("noise_floor_ratio_2").passed
    assert r.check("noise_floor_burn_in_m1").kind == "sanity"
    assert any("cut the SGD noise floor" in rec.text for rec in r.recommendations)
    assert {a.status for a in r.assumptions} == {"holds"}


def test_a_floor_above_the_bound_fails_the_bound_check(rng: np.random.Generator) -> None:
    r = LensResult.from_parts("distributed", [noise_floor_part(PS, SEED, fake_outputs({1: 5.0, 2: 5.0}, rng))])
    assert r.check("noise_floor_bound_m1").passed is False  # 5x the exact floor exceeds the 4.2x bound
    assert r.check("noise_floor_exact_m1").passed is False
    assert r.check("noise_floor_ratio_2").passed is True  # the 1/m law still holds


def test_no_averaging_gain_fails_the_ratio_and_drops_its_recommendation(rng: np.random.Generator) -> None:
    r = LensResult.from_parts("distributed", [noise_floor_part(PS, SEED, fake_outputs({1: 1.0, 2: 2.0}, rng))])
    assert r.check("noise_floor_ratio_2").passed is False  # floor(m=2) = floor(m=1): ratio 1, not 2
    assert not any("cut the SGD noise floor" in rec.text for rec in r.recommendations)
    assert any("noise_floor_ratio_2" in d["reason"] for d in r.dropped_recommendations)
    assert next(a for a in r.assumptions if "unbiased" in a.text).status == "violated"


def test_nonfinite_replicas_are_counted_and_named_in_the_reason(rng: np.random.Generator) -> None:
    out = fake_outputs({1: 1.0, 2: 1.0}, rng)
    tail = out[0]["tasks"]["noise_m1"]["tail_mean"][0]
    tail[0], tail[1] = float("nan"), float("inf")
    r = LensResult.from_parts("distributed", [noise_floor_part(PS, SEED, out)])
    est = r.estimate("noise_floor_m1")
    assert est.n_dropped == 2 and est.n == PS.replicas - 2
    assert "2 non-finite replica(s) dropped" in r.check("noise_floor_exact_m1").reason


def test_the_optimal_worker_model_is_fitted_on_runs_held_out_from_the_comparison() -> None:
    s = Settings.for_profile("quick")
    tasks = {t["name"]: t for t in timing_tasks(s.timing, 5, {"build": "m:f", "args": {}})}
    for m in s.timing.workers:
        fit, held = tasks[f"sync_fit_m{m}"], tasks[f"sync_heldout_m{m}"]
        assert fit["batch_seed"] != held["batch_seed"]  # other batches: a different run, not a re-split of one
        assert fit["steps"] == s.timing.fit_steps and held["steps"] == s.timing.steps


def test_each_part_draws_from_its_own_seed() -> None:
    s = Settings.for_profile("smoke")
    subject = default_subject(s, seed=0)
    full = {t["name"]: t for t in collect_tasks(subject, s, 0)}
    for p in PARTS:
        if p == "faults":
            continue
        alone = dataclasses.replace(s, **{q: None for q in PARTS if q != p})
        tasks = collect_tasks(subject, alone, 0)
        assert tasks and all(t == full[t["name"]] for t in tasks)
        assert all(t["seed"] == part_seed(0, "distributed", p) for t in tasks)
