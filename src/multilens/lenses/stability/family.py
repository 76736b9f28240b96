"""Stability on the protocol's shared data family (C.18): replace-one retraining and the expected gap.

The task: L2-regularised logistic ERM (:class:`~multilens.lenses.stability.logistic.LogisticRidge`,
Newton's method to ``||grad|| <= tol``) on ``FamilySpec.binary(n, seed)``: the family's inputs on
``[-1, 1]^d`` and its sampled labels as -1 (class 0) / +1 (the others). No intercept feature is
added: the family's teacher is odd (tanh of a linear map, inputs symmetric about 0), so the
Bayes decision boundary passes through the origin.

Replace-one. S = ``binary(n, train_seed)``; the replacements z'_j come from a disjoint stream of the
family (``binary(m, replacement_seed)``: another seed of the family's training stream), and
positions i_j are sampled without replacement. Each S^(i_j) (z_(i_j) replaced by z'_j) is refitted
warm-started from theta_S. beta_j = max over probe points z of |loss(theta_S, z) -
loss(theta_S^(i_j), z)|; the probe points are the family's fixed test split, S and the
replacements (the support is the whole box, so this is a lower estimate of the uniform stability).
beta_hat = max_j beta_j, with a percentile-bootstrap interval over replacements. The theorem's
bound is 2 L^2 / (lam n) with L = max ||x|| over the data the part used (the lens's convention;
the box's supremum is sqrt(d)); ||theta_S - theta_S^i|| <= 2 L / (lam n).

Expected gap. ``gap_draws`` training sets ``binary(n, seed_d)``; the gap of draw d is
R_test(theta_d) - R_S_d(theta_d) with R_test the mean loss on the family's fixed test split. Its
interval combines the spread over draws (Student t) with the test split's own sampling error
(the standard error of the test mean of the draw-averaged loss), in quadrature.

Every fit (the replace-one retrainings and the gap draws) is a task (:func:`fit_task`, a pure
function of a JSON-able spec that names the family by its fields) sent through
``runtime.executor`` when one is given, else run in process, with the same numbers either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as sps

from multilens.data.family import FamilySpec
from multilens.lenses.stability.config import FamilySettings
from multilens.lenses.stability.logistic import LogisticRidge
from multilens.lenses.stability.logistic import losses as logistic_losses
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Part,
    Recommendation,
    Table,
    check_bound,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import DETERMINISTIC, Interval, bootstrap_ci, json_safe

SEC = "stability"
FIT_TASK = "multilens.lenses.stability.family:fit_task"
EXACT = "exact closed form"


@lru_cache(maxsize=4)
def _test_binary(fam: FamilySpec) -> tuple[np.ndarray, np.ndarray]:
    x, y = fam.test()
    xs, ys = x.double().numpy(), np.where(y.numpy() == 0, -1.0, 1.0)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


@lru_cache(maxsize=8)
def _binary(fam: FamilySpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``fam.binary(n, seed)``, cached (the replace-one tasks of one training set share it); read-only."""
    x, y = fam.binary(n, seed)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _training_set(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The training set a spec names: binary(n, train_seed), with one example replaced when asked."""
    fam = FamilySpec.from_dict(spec["family"])
    x, y = _binary(fam, int(spec["n"]), int(spec["train_seed"]))
    rep = spec.get("replace")
    if rep is not None:
        xr, yr = _binary(fam, int(rep["m"]), int(rep["seed"]))
        i, j = int(rep["position"]), int(rep["index"])
        x, y = x.copy(), y.copy()
        x[i], y[i] = xr[j], yr[j]
    return x, y


def fit_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit L2-regularised logistic regression (Newton to ||grad|| <= tol) on the spec's training set.

    Returns theta, the mean training loss at theta, max ||x|| over the training set and the solver's report.
    """
    x, y = _training_set(spec)
    theta0 = None if spec.get("theta0") is None else np.asarray(spec["theta0"], dtype=np.float64)
    f = LogisticRidge(tol=float(spec["tol"])).fit(x, y, float(spec["lam"]), theta0)
    return {
        "theta": f.theta.tolist(),
        "train_loss": float(logistic_losses(f.theta, x, y).mean()),
        "radius": float(np.max(np.linalg.norm(x, axis=1))),
        "converged": bool(f.converged),
        "grad_norm": float(f.grad_norm),
        "n_iter": int(f.n_iter),
        "param_error_bound": float(f.param_error_bound),
    }


def _run(specs: list[dict[str, Any]], executor: Any, progress: Callable | None) -> tuple[list[Any], list[str]]:
    """:func:`fit_task` on every spec, in order, through ``executor`` (or in process); a failed run is None."""
    out: list[Any] = [None] * len(specs)
    errors: list[str] = []
    if executor is None:
        for i, s in enumerate(specs):
            out[i] = fit_task(s)
            if progress:
                progress("fit_task", i + 1, len(specs))
        return out, errors
    for done, (i, res) in enumerate(executor.map_unordered(FIT_TASK, specs), 1):
        if res.get("ok"):
            out[i] = res["result"]
        else:
            errors.append(f"fit {i}: {str(res.get('error', '')).splitlines()[0]}")
        if progress:
            progress("fit_task", done, len(specs))
    return out, errors


def family_part(fam: FamilySpec | None, ps: FamilySettings, *, tol: float, seed: int, runtime: Any = None) -> Part:
    if fam is None:
        return Part("family", notes=("family: not measured: the subject has no data family",))
    ex, prog = getattr(runtime, "executor", None), getattr(runtime, "progress", None)
    n, lam = ps.n, ps.lam
    base = {"family": fam.to_dict(), "n": n, "lam": lam, "tol": tol}
    train_seed, rep_seed = derive_seed(seed, "train"), derive_seed(seed, "replacements")
    rng = as_generator(derive_seed(seed, "positions"))
    m = ps.n_replacements
    positions = rng.choice(n, m, replace=False)
    # theta_S in process (one fit), then the m retrainings warm-started from it.
    full = fit_task(base | {"train_seed": train_seed})
    theta_s = np.asarray(full["theta"])
    specs = [
        base | {"train_seed": train_seed, "theta0": full["theta"],
                "replace": {"m": m, "seed": rep_seed, "position": int(i), "index": j}}
        for j, i in enumerate(positions)
    ]  # fmt: skip
    fits, errors = _run(specs, ex, prog)
    x_s, y_s = _binary(fam, n, train_seed)
    x_r, y_r = _binary(fam, m, rep_seed)
    x_te, y_te = _test_binary(fam)
    x_probe, y_probe = np.vstack([x_te, x_s, x_r]), np.concatenate([y_te, y_s, y_r])
    base_loss = logistic_losses(theta_s, x_probe, y_probe)
    done = [(f, j) for j, f in enumerate(fits) if f is not None]
    betas = np.array([np.max(np.abs(logistic_losses(np.asarray(f["theta"]), x_probe, y_probe) - base_loss))
                      for f, _ in done])  # fmt: skip
    dists = np.array([np.linalg.norm(np.asarray(f["theta"]) - theta_s) for f, _ in done])
    # The expected gap over independent training sets.
    gap_specs = [base | {"train_seed": derive_seed(seed, "gap", d)} for d in range(ps.gap_draws)]
    gap_fits, gap_errors = _run(gap_specs, ex, prog)
    gaps, test_losses, radii = [], [], [float(np.max(np.linalg.norm(x_probe, axis=1)))]
    for f in gap_fits:
        if f is None:
            continue
        lt = logistic_losses(np.asarray(f["theta"]), x_te, y_te)
        gaps.append(float(lt.mean() - f["train_loss"]))
        test_losses.append(lt)
        radii.append(f["radius"])
    all_fits = [full] + [f for f, _ in done] + [f for f in gap_fits if f is not None]
    L = max(radii)  # L = max ||x|| over every example the part used (logistic loss: L = R)
    bound = 2 * L * L / (lam * n)
    bound_par = 2 * L / (lam * n)
    solver_ok = all(f["converged"] for f in all_fits)
    gmax = max(f["grad_norm"] for f in all_fits)
    slack = 2 * L * max(f["param_error_bound"] for f in all_fits)
    ests: list[Estimate] = []
    checks: list[Check] = []
    b_ci = bootstrap_ci(np.max, betas, n_boot=ps.n_boot, seed=derive_seed(seed, "bootstrap"), unit="replacements")
    e_beta = b_ci.to_estimate(
        "family_beta_hat",
        note="max over sampled replacements of max over the probe points (test split, S, replacements) of "
        "|loss change|; a lower estimate of the uniform stability",
    )
    e_dist = Estimate(
        "family_param_distance_max", float(np.max(dists)), n=int(dists.size),
        method="max over replacements of ||theta_S - theta_S^i||", no_interval_reason="a maximum over the replacements",
    )  # fmt: skip
    e_bound = Estimate(
        "family_bound", bound, method=f"2 L^2 / (lam n), L = max ||x|| over the data = {L:.4g}, lam = {lam:g}, "
        f"n = {n}", no_interval_reason=EXACT,
    )  # fmt: skip
    gap_ci = _gap_interval(np.array(gaps), np.array(test_losses), ps.level)
    e_gap = gap_ci.to_estimate(
        "family_gap", unit="nats",
        note="E[R_test(theta_S) - R_S(theta_S)] over independent training sets; R_test on the family's test split",
    )  # fmt: skip
    e_solver = Estimate(
        "family_solver_grad_norm", gmax, method="max ||grad F|| over all fits (Newton stopping rule)",
        n=len(all_fits), converged=solver_ok, n_iter=int(max(f["n_iter"] for f in all_fits)),
        no_interval_reason=DETERMINISTIC,
    )  # fmt: skip
    ests += [e_beta, e_dist, e_bound, e_gap, e_solver]
    b_hat = float(np.max(betas))
    checks.append(
        Check(
            "family_solver_converged", solver_ok, gmax, tol, None,
            f"family: all {len(all_fits)} fits {'met' if solver_ok else 'did not meet'} ||grad|| <= {tol:g} "
            f"(max {gmax:.3g}, max {e_solver.n_iter} Newton steps)",
            kind="sanity", criterion="||grad F|| <= tol for every fit",
        )
    )  # fmt: skip
    checks.append(
        _looseness(
            check_bound(
                "family_loss_stability_bound", b_hat, bound, slack=slack,
                what=f"family: beta_hat = {b_hat:.4g} vs 2 L^2 / (lam n) = {bound:.4g} (L = {L:.4g}, n = {n})",
            ),
            b_hat,
        )
    )  # fmt: skip
    checks.append(
        _looseness(
            check_bound(
                "family_param_stability_bound", float(np.max(dists)), bound_par, slack=slack / L,
                what=f"family: max ||theta_S - theta_S^i|| vs 2 L / (lam n) = {bound_par:.4g}",
            ),
            float(np.max(dists)),
        )
    )  # fmt: skip
    worst = max(abs(gap_ci.low), abs(gap_ci.high)) if gap_ci.ok else None
    checks.append(
        _looseness(
            check_bound(
                "family_gap_within_stability_bound", worst, bound,
                what=f"family: |E gap| (farther end of its {ps.level:.0%} interval) vs 2 L^2 / (lam n) = {bound:.4g}",
            ),
            abs(gap_ci.estimate),
        )
    )  # fmt: skip
    checks.append(
        check_bound(
            "family_gap_within_beta_hat", worst, b_hat,
            what=f"family: |E gap| (farther end of its interval) vs the measured beta_hat = {b_hat:.4g} (the theorem: "
            "|E gap| <= beta; beta_hat is a lower estimate of beta, so a failure says beta_hat missed the worst case)",
        )
    )  # fmt: skip
    metrics = {
        **metric_with_interval(f"{SEC}.family_beta_hat", e_beta),
        f"{SEC}.family_bound": bound,
        **metric_with_interval(f"{SEC}.family_gap", e_gap),
        f"{SEC}.family_bound_looseness": bound / max(b_hat, 1e-300),
    }
    table = Table(
        "stability_family",
        "Shared data family: replace-one stability and the expected gap",
        [
            "n",
            "lambda",
            "L",
            "beta_hat",
            "bound 2L^2/(lam n)",
            "bound / beta_hat",
            "E gap",
            "gap CI low",
            "gap CI high",
        ],
        json_safe([[n, lam, L, b_hat, bound, bound / max(b_hat, 1e-300), gap_ci.estimate, gap_ci.low, gap_ci.high]]),
    )
    assumptions = [
        Assumption(
            "The solver reaches the ERM minimiser (the theorem is about exact ERM).",
            "THM-STAB, Example 9",
            ("family_solver_converged",),
        ),
        Assumption(
            "The logistic loss is L-Lipschitz on the data with L = max ||x||, so replacing one example moves any loss "
            "by at most 2 L^2 / (lam n) and the expected gap is at most that much.",
            "WE-9; Bousquet & Elisseeff 2002",
            ("family_loss_stability_bound", "family_param_stability_bound", "family_gap_within_stability_bound"),
        ),
    ]
    recs = [
        Recommendation(
            f"On the shared data family (n = {n}, lambda = {lam:g}) replacing one example moved a loss by at most "
            f"{b_hat:.3g} (bootstrap interval [{b_ci.low:.3g}, {b_ci.high:.3g}]); the bound 2 L^2/(lambda n) = "
            f"{bound:.3g} is {bound / max(b_hat, 1e-300):.3g}x that, and the measured expected gap is "
            f"{gap_ci.estimate:.3g} [{gap_ci.low:.3g}, {gap_ci.high:.3g}]: the bound is a guarantee, not an estimate.",
            ("family_loss_stability_bound", "family_gap_within_stability_bound", "family_solver_converged"),
        )
    ]
    notes = []
    for what, errs in (("replace-one", errors), ("gap", gap_errors)):
        if errs:
            notes.append(f"family: {len(errs)} {what} fit(s) failed in the executor and were left out: {errs[:3]}")
    data = {
        "family": fam.to_dict(),
        "n": n,
        "lambda": lam,
        "L": L,
        "positions": positions.tolist(),
        "betas": betas.tolist(),
        "param_distances": dists.tolist(),
        "gaps": gaps,
        "gap_method": gap_ci.method,
    }
    return Part(
        "family",
        tuple(ests),
        tuple(checks),
        (),
        (table,),
        tuple(assumptions),
        tuple(recs),
        metrics=metrics,
        predictions={"family_bound": bound, "family_bound_param": bound_par},
        data=json_safe(data),
        notes=tuple(notes),
    )


def _gap_interval(gaps: np.ndarray, test_losses: np.ndarray, level: float) -> Interval:
    """Mean gap with a t-interval over draws widened, in quadrature, by the fixed test split's standard error."""
    nan = float("nan")
    d = int(gaps.size)
    if d < 2:
        m = float(gaps.mean()) if d else nan
        return Interval(m, nan, nan, nan, d, level, "mean over draws", 0, "fewer than 2 training sets")
    m = float(gaps.mean())
    se_draws = float(gaps.std(ddof=1) / math.sqrt(d))
    avg = test_losses.mean(axis=0)  # the draw-averaged loss at each test point
    se_test = float(avg.std(ddof=1) / math.sqrt(avg.size))
    se = math.sqrt(se_draws**2 + se_test**2)
    q = float(sps.t.ppf(0.5 + level / 2.0, d - 1))
    method = (
        f"Student t over {d} independent training sets (se {se_draws:.3g}) and the fixed test split's sampling error "
        f"over {avg.size} points (se {se_test:.3g}), in quadrature"
    )
    return Interval(m, m - q * se, m + q * se, se, d, level, method)


def _looseness(check: Check, measured: float) -> Check:
    from dataclasses import replace

    bound = check.expected
    if bound is None or not measured or not math.isfinite(measured):
        return check
    ratio = float(bound) / float(measured)
    return replace(check, bound_ratio=ratio, reason=f"{check.reason}; the bound is {ratio:.3g}x the measured value")
