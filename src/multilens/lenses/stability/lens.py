"""The stability lens: replace-one retraining against the uniform-stability bound (WE-9, B.7, A.14).

Parts (each draws randomness only from its own seed; every part runs on every task, the first
task being the main subject):

* ``replace_one``: S of size n from the pool; for sampled positions i, retrain (through
  ``runtime.executor`` when given and the trainer is the bundled LogisticRidge) on S with z_i
  replaced by a point from outside S, warm-started from theta_S. beta_i = max over the whole pool
  (the support) of |loss(theta_S, z) - loss(theta_{S^i}, z)|; beta_hat = max_i beta_i (a lower
  estimate of the uniform stability), with a bootstrap interval over replacements. Bounds:
  ||theta_S - theta_{S^i}|| <= 2 L / (lam n) and beta <= 2 L^2 / (lam n) with L = R (logistic
  loss, R = max ||x|| over the pool);
* ``scaling``: the log-log slopes of mean_i beta_i in n (fixed lam) and in lam (fixed n), with
  cluster-bootstrap intervals over several training sets per grid point, against the bound's -1;
* ``gap``: the expected generalization gap E[R(A(S)) - R_S(A(S))] by Monte Carlo over training
  sets drawn i.i.d. from the pool (R is exact: the mean loss over the pool), against beta_hat and
  against 2 L^2 / (lam n) (the stability theorem: |E gap| <= beta), and the slope of E gap in n
  against B.7's 1 / (lam n) rate (information: the theorem bounds the gap, it does not fix its rate);
* ``sgd``: SGD on the unregularised logistic loss, coupled on S and S^i (same sample path),
  against Hardt, Recht & Singer (2016, Thm 3.8): eps <= (2 L^2 / n) sum_t alpha_t, which grows
  with the number of steps; an MLP trained by SGD as the non-convex variant (information only);
* ``integrity``: a train/test duplicate detector (exact and near duplicates, with a planted-copy
  self-test) and per-example memorization scores (loss change of an example when it is removed),
  against the exact sign (>= 0 for ERM) and a one-Newton-step (influence) prediction;
* ``family``: replace-one stability and the expected gap of logistic ERM on the protocol's shared
  data family (C.18), its fits sent through ``runtime.executor``
  (:mod:`multilens.lenses.stability.family`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn

from multilens import plots
from multilens.data.family import FamilySpec
from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.stability.config import (
    GapSettings,
    IntegritySettings,
    ReplaceOneSettings,
    ScalingSettings,
    Settings,
    SgdSettings,
)
from multilens.lenses.stability.family import family_part
from multilens.lenses.stability.logistic import FitResult, LogisticRidge
from multilens.lenses.stability.logistic import losses as logistic_losses
from multilens.lenses.stability.tasks import StabilitySubject, Task, digits_task, synthetic_task
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    LensResult,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_in_interval,
    check_within,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed, torch_generator
from multilens.stats import DETERMINISTIC, bootstrap_ci, clopper_pearson, json_safe, mean_ci

LENS = "stability"
SEC = "stability"
EXACT = "exact closed form"


def _rng(seed: int, task_index: int) -> np.random.Generator:
    return as_generator(derive_seed(seed, "task", task_index))


def _lipschitz(task: Task) -> float:
    return float(task.trainer.lipschitz(task.radius))


FIT_TASK = "multilens.lenses.stability.lens:logistic_fit_task"


def logistic_fit_task(spec: dict) -> dict:
    """One :class:`LogisticRidge` fit on the spec's arrays (a pure function of a JSON-able spec)."""
    tr = LogisticRidge(tol=float(spec["tol"]), max_iter=int(spec["max_iter"]))
    theta0 = None if spec.get("theta0") is None else np.asarray(spec["theta0"], np.float64)
    f = tr.fit(np.asarray(spec["x"], np.float64), np.asarray(spec["y"], np.float64), float(spec["lam"]), theta0)
    return {"theta": f.theta.tolist(), "n_iter": f.n_iter, "converged": bool(f.converged),
            "grad_norm": f.grad_norm, "param_error_bound": f.param_error_bound}  # fmt: skip


def _refits(tr, sets: list[tuple[np.ndarray, np.ndarray]], lam: float, theta0: np.ndarray, executor) -> list:
    """Warm-started fits of every (x, y) in ``sets``: through ``executor`` when the trainer is the bundled
    :class:`LogisticRidge` (its specs are JSON-able), in process otherwise. A fit that fails in the executor is
    redone in process (the same code on the same arrays, so the same numbers)."""
    if executor is None or type(tr) is not LogisticRidge or len(sets) < 2:
        return [tr.fit(xs, ys, lam, theta0) for xs, ys in sets]
    specs = [{"x": xs.tolist(), "y": ys.tolist(), "lam": lam, "tol": tr.tol, "max_iter": tr.max_iter,
              "theta0": theta0.tolist()} for xs, ys in sets]  # fmt: skip
    out: list = [None] * len(sets)
    for i, res in executor.map_unordered(FIT_TASK, specs):
        if res.get("ok"):
            r = res["result"]
            out[i] = FitResult(np.asarray(r["theta"], np.float64), int(r["n_iter"]), bool(r["converged"]),
                               float(r["grad_norm"]), float(r["param_error_bound"]))  # fmt: skip
    return [f if f is not None else tr.fit(xs, ys, lam, theta0) for f, (xs, ys) in zip(out, sets)]


def replace_one(task: Task, n: int, lam: float, m: int, rng: np.random.Generator, *, paired_with=None, executor=None):
    """theta_S and m replace-one retrainings; returns (betas, distances, fits, draw).

    The retrainings go through ``executor`` (when given and the trainer is the bundled LogisticRidge).
    """
    x, y = np.asarray(task.x, np.float64), np.asarray(task.y, np.float64)
    if paired_with is None:
        perm = rng.permutation(len(y))
        s, rest = perm[:n], perm[n:]
        pos = rng.choice(n, m, replace=False)
        rep = rng.choice(rest, m, replace=False)
        draw = (s, pos, rep)
    else:
        draw = paired_with
        s, pos, rep = draw
    tr = task.trainer
    full = tr.fit(x[s], y[s], lam)
    base = tr.losses(full.theta, x, y)
    sets = []
    for j, r in zip(pos, rep):
        s2 = s.copy()
        s2[j] = r
        sets.append((x[s2], y[s2]))
    refits = _refits(tr, sets, lam, full.theta, executor)
    betas, dists, fits = [], [], [full]
    for f in refits:
        fits.append(f)
        betas.append(float(np.max(np.abs(tr.losses(f.theta, x, y) - base))))
        dists.append(float(np.linalg.norm(f.theta - full.theta)))
    return np.array(betas), np.array(dists), fits, draw


def _vs_measured(check: Check, measured: float) -> Check:
    """bound / measured as the looseness: the measured value is an estimate (a lower estimate of the true
    stability for beta_hat), not an exact value, so the ratio is stated as against the measurement."""
    bound = check.expected
    if bound is None or not measured or not math.isfinite(measured):
        return check
    ratio = float(bound) / float(measured)
    return replace(check, bound_ratio=ratio, reason=f"{check.reason}; the bound is {ratio:.3g}x the measured value")


def _solver_estimate(name: str, fits) -> tuple[Estimate, bool]:
    ok = all(f.converged for f in fits)
    gmax = max(f.grad_norm for f in fits)
    est = Estimate(
        name,
        gmax,
        method="max ||grad F|| over all fits (Newton stopping rule)",
        n=len(fits),
        converged=ok,
        n_iter=int(max(f.n_iter for f in fits)),
        no_interval_reason=DETERMINISTIC,
    )
    return est, ok


# -------------------------------------------------------------------------------------- replace_one
def replace_one_part(subject: StabilitySubject, ps: ReplaceOneSettings, *, seed: int, executor=None) -> Part:
    ests, checks, metrics, rows = [], [], {}, []
    for ti, task in enumerate(subject.tasks):
        t = task.name
        rng = _rng(seed, ti)
        m = min(ps.n_replacements, task.n, len(task.y) - task.n)
        betas, dists, fits, _ = replace_one(task, task.n, task.lam, m, rng, executor=executor)
        L = _lipschitz(task)
        bound_loss = 2 * L * L / (task.lam * task.n)
        bound_par = 2 * L / (task.lam * task.n)
        solver, ok = _solver_estimate(f"{t}_solver_grad_norm", fits)
        b_hat = bootstrap_ci(np.max, betas, n_boot=ps.n_boot, seed=rng, unit="replacements")
        d_max = bootstrap_ci(np.max, dists, n_boot=ps.n_boot, seed=rng, unit="replacements")
        e_beta = b_hat.to_estimate(
            f"{t}_beta_hat",
            note="max over sampled replacements of max over the pool of "
            "|loss change|; a lower estimate of the uniform stability",
        )
        e_mean = mean_ci(betas, unit="replacements").to_estimate(f"{t}_beta_mean")
        e_dist = d_max.to_estimate(f"{t}_param_distance_max", note="max ||theta_S - theta_S^i||")
        e_bl = Estimate(
            f"{t}_bound_loss",
            bound_loss,
            method=f"2 L^2 / (lam n), L = R = {L:.4g}, lam = {task.lam:g}, n = {task.n}",
            no_interval_reason=EXACT,
        )
        e_bp = Estimate(f"{t}_bound_param", bound_par, method="2 L / (lam n)", no_interval_reason=EXACT)
        ests += [e_beta, e_mean, e_dist, e_bl, e_bp, solver]
        # Solver error: each theta is within tol/lam of its minimiser, so a loss value within L tol / lam.
        slack = 2 * L * max(f.param_error_bound for f in fits)
        checks += [
            Check(
                f"{t}_solver_converged",
                ok,
                solver.value,
                max(getattr(task.trainer, "tol", 0.0), 0.0),
                None,
                f"{t}: all {len(fits)} fits {'met' if ok else 'did not meet'} ||grad|| <= tol "
                f"(max {solver.value:.3g}, max {solver.n_iter} Newton steps)",
                kind="sanity",
                criterion="||grad F|| <= tol for every fit",
            ),
            _vs_measured(
                check_bound(
                    f"{t}_loss_stability_bound",
                    float(np.max(betas)),
                    bound_loss,
                    slack=slack,
                    what=f"{t}: beta_hat vs 2 L^2 / (lam n)",
                ),
                float(np.max(betas)),
            ),
            _vs_measured(
                check_bound(
                    f"{t}_param_stability_bound",
                    float(np.max(dists)),
                    bound_par,
                    slack=2 * max(f.param_error_bound for f in fits),
                    what=f"{t}: max ||theta_S - theta_S^i|| vs 2 L / (lam n)",
                ),
                float(np.max(dists)),
            ),
        ]
        rows.append([t, task.n, task.lam, L, float(np.max(betas)), bound_loss, bound_loss / max(np.max(betas), 1e-300)])
        if ti == 0:
            metrics |= metric_with_interval(f"{SEC}.beta_hat", e_beta)
            metrics[f"{SEC}.bound"] = bound_loss
            metrics[f"{SEC}.bound_holds"] = float(checks[-2].passed is True)
            metrics[f"{SEC}.bound_looseness"] = bound_loss / max(float(np.max(betas)), 1e-300)
    table = Table(
        "stability_replace_one",
        "Replace-one stability vs the bound",
        ["task", "n", "lambda", "L", "beta_hat", "bound 2L^2/(lam n)", "bound / beta_hat"],
        json_safe(rows),
    )
    main = subject.tasks[0].name
    assumptions = [
        Assumption(
            "The solver reaches the ERM minimiser (the theorem is about exact ERM).",
            "THM-STAB, Example 9",
            tuple(f"{t.name}_solver_converged" for t in subject.tasks),
        ),
        Assumption(
            "The loss is L-Lipschitz on the data's domain with L = max ||x|| (logistic loss).",
            "WE-9",
            tuple(f"{t.name}_loss_stability_bound" for t in subject.tasks),
        ),
    ]
    recs = [
        Recommendation(
            f"The uniform-stability bound holds on `{main}` and is {metrics[f'{SEC}.bound_looseness']:.3g}x "
            "the measured replace-one change: use it as a guarantee, not as an estimate.",
            (f"{main}_loss_stability_bound", f"{main}_solver_converged"),
        )
    ]
    return Part(
        "replace_one", tuple(ests), tuple(checks), (), (table,), tuple(assumptions), tuple(recs), metrics=metrics
    )


# ------------------------------------------------------------------------------------------ scaling
def _slope(xs: np.ndarray, ys: np.ndarray) -> float:
    """OLS slope of log ys on log xs; NaN when a value is not positive (no log-log slope exists)."""
    if np.any(np.asarray(ys) <= 0) or not np.all(np.isfinite(ys)):
        return float("nan")
    lx, ly = np.log(xs), np.log(ys)
    return float(np.polyfit(lx, ly, 1)[0])


def scaling_part(subject: StabilitySubject, ps: ScalingSettings, *, seed: int, executor=None) -> Part:
    ests, checks, figs, metrics = [], [], [], {}
    for ti, task in enumerate(subject.tasks):
        t = task.name
        rng = _rng(seed, ti)
        L = _lipschitz(task)
        N = len(task.y)
        per = max(2, ps.n_replacements // ps.n_sets)  # replacements per training set
        ns = [n for n in ps.n_values if n < N - per]

        def grid_point(n: int, lam: float, task: Task = task, per: int = per, rng=rng) -> list[np.ndarray]:
            # several independent training sets, each with its own replacements: the interval then
            # includes the variability over S that the theorem averages over, not only over replacements
            return [replace_one(task, n, lam, min(per, n), rng, executor=executor)[0] for _ in range(ps.n_sets)]

        by_n = [grid_point(n, task.lam) for n in ns]
        by_l = [grid_point(task.n, lam) for lam in ps.lambdas]
        rows_ok = []
        for sets, grid, kind in ((by_n, np.array(ns, float), "n"), (by_l, np.array(ps.lambdas, float), "lambda")):
            arr = [np.concatenate(g) for g in sets]
            means = np.array([a.mean() for a in arr])
            s0 = _slope(grid, means)
            reps = []
            for _ in range(ps.n_boot):  # cluster bootstrap: resample training sets within each grid point
                bm = [np.concatenate([g[i] for i in rng.integers(0, len(g), len(g))]).mean() for g in sets]
                reps.append(_slope(grid, np.array(bm)))
            lo, hi = np.quantile(reps, [0.025, 0.975])
            e = Estimate(
                f"{t}_slope_{kind}",
                s0,
                float(lo),
                float(hi),
                float(np.std(reps, ddof=1)),
                0.95,
                f"OLS of log mean beta_i on log {kind}; cluster bootstrap over the {ps.n_sets} training sets "
                f"per grid point, {ps.n_boot} resamples",
                int(sum(a.size for a in arr)),
            )
            ests.append(e)
            checks.append(
                check_in_interval(
                    f"{t}_slope_{kind}_covers_minus_one",
                    -1.0,
                    e.ci_low,
                    e.ci_high,
                    kind="agreement",
                    what=f"{t}: bound's slope -1 vs the slope in {kind}",
                )
            )
            if ti == 0:
                metrics |= metric_with_interval(f"{SEC}.slope_{kind}", e)
            bounds = 2 * L * L / (grid * task.lam) if kind == "n" else 2 * L * L / (grid * task.n)
            ratio = max(float(a.max()) / b for a, b in zip(arr, bounds))
            rows_ok.append(ratio)
            figs.append(
                plots.figure(
                    f"stability_{t}_beta_vs_{kind}",
                    f"{t}: replace-one stability vs {kind}",
                    [
                        plots.line_trace(grid, means, "mean_i beta_i"),
                        plots.line_trace(grid, [a.max() for a in arr], "max_i beta_i"),
                        plots.line_trace(grid, bounds, "bound 2 L^2 / (lam n)", markers=False),
                    ],
                    xlabel=kind,
                    ylabel="loss change",
                    xlog=True,
                    ylog=True,
                    caption=f"slope {s0:.3f} [{lo:.3f}, {hi:.3f}]; the bound has slope -1",
                )
            )
        checks.append(
            check_bound(
                f"{t}_bound_holds_on_grid",
                max(rows_ok),
                1.0,
                what=f"{t}: max over the n and lambda grids of beta_hat / bound",
            )
        )
    return Part("scaling", tuple(ests), tuple(checks), tuple(figs), metrics=metrics)


# ---------------------------------------------------------------------------------------------- gap
def gap_part(subject: StabilitySubject, ps: GapSettings, *, seed: int) -> Part:
    ests, checks, metrics = [], [], {}
    for ti, task in enumerate(subject.tasks):
        t = task.name
        rng = _rng(seed, ti)
        x, y = np.asarray(task.x, np.float64), np.asarray(task.y, np.float64)
        N, n, tr = len(y), task.n, task.trainer
        gaps, betas = [], []
        for _ in range(ps.n_draws):
            s = rng.integers(0, N, n)  # i.i.d. from the population (the pool's empirical distribution)
            f = tr.fit(x[s], y[s], task.lam)
            pop = tr.losses(f.theta, x, y)
            gaps.append(float(pop.mean() - pop[s].mean()))
            s2 = s.copy()
            s2[rng.integers(0, n)] = rng.integers(0, N)
            f2 = tr.fit(x[s2], y[s2], task.lam, f.theta)
            betas.append(float(np.max(np.abs(tr.losses(f2.theta, x, y) - pop))))
        g = mean_ci(gaps, unit="training sets")
        L = _lipschitz(task)
        bound = 2 * L * L / (task.lam * n)
        b_hat = float(np.max(betas))
        e_gap = g.to_estimate(f"{t}_expected_gap", note="R(theta_S) - R_S(theta_S), R exact over the pool")
        e_b = Estimate(
            f"{t}_gap_beta_hat",
            b_hat,
            method=f"max over {len(betas)} training sets of one replace-one",
            n=len(betas),
            no_interval_reason="a maximum over draws; its spread is in `replace_one`",
        )
        ests += [e_gap, e_b]
        worst = max(abs(g.low), abs(g.high)) if g.ok else float("nan")
        checks += [
            check_bound(
                f"{t}_gap_within_beta_hat",
                worst,
                b_hat,
                what=f"{t}: |E gap| (farther interval end) vs the measured beta_hat",
            ),
            _vs_measured(
                check_bound(
                    f"{t}_gap_within_stability_bound",
                    worst,
                    bound,
                    what=f"{t}: |E gap| vs 2 L^2 / (lam n)",
                ),
                abs(g.estimate),
            ),
        ]
        if ti == 0:
            metrics |= metric_with_interval(f"{SEC}.expected_gap", e_gap)
        # B.7: the expected gap against n at fixed lambda (the bound scales as 1 / (lam n)).
        grid = [m for m in ps.n_values if m < N]
        if len(grid) >= 2 and ps.grid_draws >= 2:
            gaps_by_n = []
            for m in grid:
                gg = []
                for _ in range(ps.grid_draws):
                    s = rng.integers(0, N, m)
                    f = tr.fit(x[s], y[s], task.lam)
                    pop = tr.losses(f.theta, x, y)
                    gg.append(float(pop.mean() - pop[s].mean()))
                gaps_by_n.append(np.array(gg))
            gx = np.array(grid, float)
            s0 = _slope(gx, np.array([g.mean() for g in gaps_by_n]))
            reps = np.array(
                [
                    _slope(gx, np.array([g[rng.integers(0, g.size, g.size)].mean() for g in gaps_by_n]))
                    for _ in range(ps.n_boot)
                ]
            )
            fin = reps[np.isfinite(reps)]
            lo, hi = np.quantile(fin, [0.025, 0.975]) if fin.size >= 2 else (math.nan, math.nan)
            e_sl = Estimate(
                f"{t}_gap_slope_n",
                s0 if math.isfinite(s0) else None,
                float(lo),
                float(hi),
                float(fin.std(ddof=1)) if fin.size >= 2 else None,
                0.95,
                f"OLS of log E gap on log n; percentile bootstrap over draws, {ps.n_boot}",
                int(sum(g.size for g in gaps_by_n)),
                n_dropped=int(reps.size - fin.size),
                note="" if math.isfinite(s0) else "a mean gap <= 0: no log-log slope",
                no_interval_reason="" if fin.size >= 2 else "too few finite bootstrap slopes",
            )
            ests.append(e_sl)
            checks.append(
                check_in_interval(
                    f"{t}_gap_slope_n_covers_minus_one",
                    -1.0,
                    e_sl.ci_low,
                    e_sl.ci_high,
                    kind="agreement",
                    severity="info",
                    what=f"{t}: B.7's 1/(lam n) rate vs the slope of E gap in n (the theorem "
                    "bounds the gap; the rate of the gap itself is B.7's claim)",
                )
            )
            if ti == 0:
                metrics |= metric_with_interval(f"{SEC}.gap_slope_n", e_sl)
    assumptions = [
        Assumption(
            "Training sets are i.i.d. draws (the theorem's exchangeability).",
            "THM-STAB proof",
            tuple(f"{t.name}_gap_within_stability_bound" for t in subject.tasks),
        )
    ]
    return Part("gap", tuple(ests), tuple(checks), (), (), tuple(assumptions), metrics=metrics)


# ---------------------------------------------------------------------------------------------- sgd
def coupled_sgd(task: Task, n: int, epochs: tuple[int, ...], step: float, pairs: int, rng: np.random.Generator):
    """Unregularised logistic SGD (one example per step, with replacement) on S and on m copies S^i.

    Every run follows the same sample path; run p differs from S only at position pos[p]. Returns
    betas (len(epochs) x pairs): max over the pool of |loss change| at each epoch count, and the
    parameter distances.
    """
    from scipy.special import expit

    x, y = np.asarray(task.x, np.float64), np.asarray(task.y, np.float64)
    perm = rng.permutation(len(y))
    s, rest = perm[:n], perm[n:]
    pos = rng.choice(n, pairs, replace=False)
    rep = rng.choice(rest, pairs, replace=False)
    theta = np.zeros((pairs + 1, x.shape[1]))  # row 0: S; row p + 1: S^(pos[p])
    out_b, out_d = [], []
    t_total = 0
    for e in sorted(epochs):
        while t_total < e * n:
            i = int(rng.integers(0, n))
            xi = np.repeat(x[s[i]][None, :], pairs + 1, axis=0)
            yi = np.full(pairs + 1, y[s[i]])
            hit = np.nonzero(pos == i)[0]
            xi[hit + 1] = x[rep[hit]]
            yi[hit + 1] = y[rep[hit]]
            m = yi * np.einsum("pd,pd->p", theta, xi)
            theta += step * (yi * expit(-m))[:, None] * xi  # minus the gradient of log(1 + exp(-m))
            t_total += 1
        base = logistic_losses(theta[0], x, y)
        out_b.append([float(np.max(np.abs(logistic_losses(th, x, y) - base))) for th in theta[1:]])
        out_d.append([float(np.linalg.norm(th - theta[0])) for th in theta[1:]])
    return np.array(out_b), np.array(out_d)


def coupled_mlp(task: Task, n: int, epochs: tuple[int, ...], width: int, lr: float, pairs: int, seed: int):
    """The non-convex variant: a tanh MLP trained by SGD (batch 1) on S and S^i from the same init and path."""
    x = torch.as_tensor(np.asarray(task.x), dtype=torch.float64)
    y = torch.as_tensor((np.asarray(task.y) + 1) / 2, dtype=torch.float64)
    rng = as_generator(seed)
    perm = rng.permutation(len(y))
    s, rest = perm[:n], perm[n:]
    out = []
    for p in range(pairs):
        i, r = int(rng.integers(0, n)), int(rng.choice(rest))
        g = torch_generator(derive_seed(seed, "mlp", p))
        init = nn.Sequential(nn.Linear(x.shape[1], width), nn.Tanh(), nn.Linear(width, 1)).double()
        with torch.no_grad():
            for prm in init.parameters():
                prm.copy_(torch.randn(prm.shape, generator=g, dtype=torch.float64) / math.sqrt(max(prm.shape[-1], 1)))
        nets = [init, copy.deepcopy(init)]
        order = torch.randint(0, n, (max(epochs) * n,), generator=g)
        res = []
        t_done = 0
        for e in sorted(epochs):
            while t_done < e * n:
                k = int(order[t_done])
                for j, net in enumerate(nets):
                    idx = r if (j == 1 and k == i) else int(s[k])
                    loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx : idx + 1])[:, 0], y[idx : idx + 1])
                    net.zero_grad()
                    loss.backward()
                    with torch.no_grad():
                        for prm in net.parameters():
                            prm -= lr * prm.grad
                t_done += 1
            with torch.no_grad():
                l0 = nn.functional.binary_cross_entropy_with_logits(nets[0](x)[:, 0], y, reduction="none")
                l1 = nn.functional.binary_cross_entropy_with_logits(nets[1](x)[:, 0], y, reduction="none")
            res.append(float((l0 - l1).abs().max()))
        out.append(res)
    return np.array(out).T  # (len(epochs), pairs)


def sgd_part(subject: StabilitySubject, ps: SgdSettings, *, seed: int) -> Part:
    ests, checks, figs, metrics = [], [], [], {}
    ep = np.array(sorted(ps.epochs), float)
    for ti, task in enumerate(subject.tasks):
        t = task.name
        rng = _rng(seed, ti)
        L = _lipschitz(task)
        smooth = float(task.trainer.smoothness(task.radius))
        betas, _ = coupled_sgd(task, task.n, tuple(sorted(ps.epochs)), ps.step, min(ps.n_pairs, task.n), rng)
        bounds = 2 * L * L * ps.step * ep  # (2 L^2 / n) * sum_t alpha_t with T = epochs * n steps
        for e, row in zip(sorted(ps.epochs), betas):
            ests.append(mean_ci(row, unit="replacements").to_estimate(f"{t}_sgd_beta_epoch_{e}"))
        means = betas.mean(axis=1)
        s0 = _slope(ep, means)
        reps = []
        for _ in range(ps.n_boot):
            idx = rng.integers(0, betas.shape[1], betas.shape[1])
            reps.append(_slope(ep, betas[:, idx].mean(axis=1)))
        reps = np.asarray(reps)
        reps = reps[np.isfinite(reps)]
        lo, hi = np.quantile(reps, [0.025, 0.975]) if reps.size >= 2 else (float("nan"), float("nan"))
        e_s = Estimate(
            f"{t}_sgd_growth_slope",
            s0,
            float(lo),
            float(hi),
            float(np.std(reps, ddof=1)) if reps.size >= 2 else None,
            0.95,
            f"OLS of log mean beta on log epochs; percentile bootstrap over coupled pairs, {ps.n_boot}",
            int(betas.size),
            n_dropped=int(ps.n_boot - reps.size),
            note="resamples whose mean beta is 0 at some epoch (the replaced example not yet visited) give no slope"
            if reps.size < ps.n_boot
            else "",
            no_interval_reason="" if np.isfinite(lo) else "fewer than 2 finite bootstrap slopes",
        )
        ests.append(e_s)
        ratio = float(np.max(betas.max(axis=1) / bounds))
        checks += [
            Check(
                f"{t}_sgd_step_admissible",
                ps.step <= 2.0 / smooth,
                ps.step,
                2.0 / smooth,
                None,
                f"{t}: step {ps.step:g} vs 2 / smoothness = {2.0 / smooth:.4g} (Hardt et al.'s condition)",
                kind="sanity",
                criterion="step <= 2 / beta",
            ),
            check_bound(
                f"{t}_sgd_hardt_bound", ratio, 1.0, what=f"{t}: max over epochs of beta_hat / (2 L^2 alpha T / n)"
            ),
            Check(
                f"{t}_sgd_stability_grows",
                bool(lo > 0),
                float(lo),
                0.0,
                None,
                f"{t}: growth slope interval [{lo:.3g}, {hi:.3g}] {'above' if lo > 0 else 'not above'} 0",
                severity="info",
                kind="agreement",
                criterion="the slope's interval lies above 0 (growth with T)",
            ),
        ]
        traces = [
            plots.line_trace(ep, means, "mean beta (convex SGD)"),
            plots.line_trace(ep, bounds, "Hardt et al. bound", markers=False),
        ]
        if ti == 0 and ps.mlp_pairs > 0:
            mb = coupled_mlp(
                task, task.n, tuple(sorted(ps.epochs)), ps.mlp_width, ps.mlp_lr, ps.mlp_pairs, derive_seed(seed, "mlp")
            )
            for e, row in zip(sorted(ps.epochs), mb):
                ci = mean_ci(row, unit="replacements")
                ests.append(
                    ci.to_estimate(
                        f"{t}_mlp_sgd_beta_epoch_{e}", note="non-convex MLP: information only, no theorem applies"
                    )
                )
            traces.append(plots.line_trace(ep, mb.mean(axis=1), "mean beta (MLP, info)"))
        if ti == 0:
            metrics |= metric_with_interval(f"{SEC}.sgd_growth_slope", e_s)
        figs.append(
            plots.figure(
                f"stability_{t}_sgd",
                f"{t}: SGD stability vs epochs",
                traces,
                xlabel="epochs",
                ylabel="max loss change over the pool",
                xlog=True,
                ylog=True,
            )
        )
    return Part("sgd", tuple(ests), tuple(checks), tuple(figs), metrics=metrics)


# ---------------------------------------------------------------------------------------- integrity
def find_duplicates(x_train: np.ndarray, x_test: np.ndarray, near_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over test rows: exact duplicates of a train row, and near duplicates.

    Near: nearest-train distance <= near_factor x the median nearest-train distance of the test rows.
    """
    a = np.round(np.asarray(x_train, np.float64), 12)
    b = np.round(np.asarray(x_test, np.float64), 12)
    seen = {r.tobytes() for r in a}
    exact = np.array([r.tobytes() in seen for r in b])
    dist, _ = NearestNeighbors(n_neighbors=1).fit(a).kneighbors(b)
    d = dist[:, 0]
    near = d <= near_factor * float(np.median(d))
    return exact, near


def integrity_part(subject: StabilitySubject, ps: IntegritySettings, *, seed: int) -> Part:
    ests, checks, metrics, tables = [], [], {}, []
    for ti, task in enumerate(subject.tasks):
        t = task.name
        rng = _rng(seed, ti)
        x, y = np.asarray(task.x, np.float64), np.asarray(task.y, np.float64)
        perm = rng.permutation(len(y))
        tr_idx = perm[: task.n]
        x_te = np.asarray(task.x_test, np.float64) if task.x_test is not None else x[perm[task.n :]]
        exact, near = find_duplicates(x[tr_idx], x_te, ps.near_factor)
        cp = clopper_pearson(int(near.sum()), len(near))
        ests += [
            cp.to_estimate(
                f"{t}_near_duplicate_fraction", note=f"test rows within {ps.near_factor:g} x median NN distance"
            ),
            Estimate(
                f"{t}_exact_duplicates",
                float(exact.sum()),
                n=len(exact),
                method="row hashes (12 decimals)",
                no_interval_reason="a count over the whole split",
            ),
        ]
        # Self-test: plant copies of training rows (perturbed far below the near threshold) into the test split.
        k = min(ps.n_planted, task.n)
        src = rng.choice(task.n, k, replace=False)
        planted = x[tr_idx[src]] + 1e-9 * rng.standard_normal((k, x.shape[1]))
        _, near2 = find_duplicates(x[tr_idx], np.vstack([x_te, planted]), ps.near_factor)
        found = int(near2[len(x_te) :].sum())
        checks.append(
            check_within(
                f"{t}_duplicate_detector_finds_planted",
                float(found),
                float(k),
                0.0,
                kind="sanity",
                what=f"{t}: planted near-copies found",
            )
        )
        # Memorization: loss change of z_i when it is removed (weight set to zero: lam scaled by n / (n - 1)).
        tr = task.trainer
        xs, ys = x[tr_idx], y[tr_idx]
        full = tr.fit(xs, ys, task.lam)
        mem, pred = [], []
        ids = rng.choice(task.n, min(ps.n_memorization, task.n), replace=False)
        n = task.n
        for i in ids:
            keep = np.ones(n, bool)
            keep[i] = False
            f = tr.fit(xs[keep], ys[keep], task.lam * n / (n - 1), full.theta)
            l0 = float(tr.losses(full.theta, xs[i : i + 1], ys[i : i + 1])[0])
            mem.append(float(tr.losses(f.theta, xs[i : i + 1], ys[i : i + 1])[0]) - l0)
            if hasattr(tr, "grad_hess"):  # one Newton step from theta_S on the objective without z_i
                g_i, h_i = tr.grad_hess(full.theta, xs[i : i + 1], ys[i : i + 1], 0.0)
                _, h = tr.grad_hess(full.theta, xs, ys, task.lam)
                th = full.theta + np.linalg.solve(h - h_i / n, g_i / n)
                pred.append(float(tr.losses(th, xs[i : i + 1], ys[i : i + 1])[0]) - l0)
        mem_a = np.array(mem)
        ests.append(
            mean_ci(mem_a, unit="examples").to_estimate(
                f"{t}_memorization_mean", note="loss(theta_{S minus i}, z_i) - loss(theta_S, z_i)"
            )
        )
        ests.append(
            Estimate(
                f"{t}_memorization_max",
                float(mem_a.max()),
                n=mem_a.size,
                method="max over sampled examples",
                no_interval_reason="a maximum over the sampled examples",
            )
        )
        tol = max(getattr(tr, "tol", 0.0) / task.lam * _lipschitz(task) * 4, 1e-12)
        checks.append(
            check_bound(
                f"{t}_memorization_nonnegative",
                float(mem_a.min()),
                -tol,
                direction=">=",
                what=f"{t}: min memorization score vs 0 (exact for ERM), solver slack {tol:.1g}",
            )
        )
        if pred:
            pa = np.array(pred)
            rel = float(np.max(np.abs(mem_a - pa)) / max(float(np.max(np.abs(mem_a))), 1e-300))
            checks.append(
                check_within(
                    f"{t}_memorization_matches_influence",
                    rel,
                    0.0,
                    ps.influence_tol,
                    kind="agreement",
                    what=f"{t}: max |retrained - one-Newton-step| / max score",
                )
            )
        top = ids[np.argsort(-mem_a)[:5]]
        tables.append(
            Table(
                f"stability_{t}_memorization",
                f"{t}: most memorized sampled examples",
                ["pool index", "score"],
                json_safe([[int(tr_idx[i]), float(mem_a[list(ids).index(i)])] for i in top]),
            )
        )
        if ti == 0:
            metrics[f"{SEC}.near_duplicate_fraction"] = float(cp.estimate)
            metrics[f"{SEC}.memorization_max"] = float(mem_a.max())
    return Part("integrity", tuple(ests), tuple(checks), (), tuple(tables), metrics=metrics)


# --------------------------------------------------------------------------------------- entry points
def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> StabilitySubject:
    """Digits (even vs odd, main), when ``synthetic`` a logistic teacher on the unit sphere, and the
    protocol's shared data family ``FamilySpec()`` when the ``family`` part is on."""
    tasks = [digits_task(lam=settings.main_lambda, n=settings.main_n, tol=settings.tol)]
    if settings.synthetic:
        tasks.append(
            synthetic_task(
                lam=settings.main_lambda,
                n=min(settings.main_n, settings.synthetic_pool // 2),
                d=settings.synthetic_d,
                pool=settings.synthetic_pool,
                seed=derive_seed(seed, "stability", "synthetic"),
                tol=settings.tol,
            )
        )
    fam = FamilySpec() if settings.family is not None else None
    name = "digits even/odd + synthetic logistic" + (" + shared data family" if fam is not None else "")
    return StabilitySubject(tuple(tasks), name=name, family=fam)


def _on_tasks(name: str, subject: StabilitySubject, fn) -> Any:
    """A task-based part, or an empty one with a note when the subject has no tasks (only a family)."""
    return (
        fn if subject.tasks else (lambda ps, s: Part(name, notes=(f"{name}: not measured: the subject has no tasks",)))
    )


def measure(subject: StabilitySubject, settings: Settings, *, seed: int, runtime: Runtime | None = None) -> LensResult:
    """Stability of ``subject``'s tasks (and of logistic ERM on its data family, when it has one)."""
    if isinstance(subject, FamilySpec):
        subject = StabilitySubject((), name="data family", family=subject)
    t0 = time.perf_counter()
    ex = None if runtime is None else runtime.executor
    parts, notes = run_parts(
        LENS,
        [
            ("replace_one", settings.replace_one,
             _on_tasks("replace_one", subject, lambda ps, s: replace_one_part(subject, ps, seed=s, executor=ex))),
            ("scaling", settings.scaling,
             _on_tasks("scaling", subject, lambda ps, s: scaling_part(subject, ps, seed=s, executor=ex))),
            ("gap", settings.gap, _on_tasks("gap", subject, lambda ps, s: gap_part(subject, ps, seed=s))),
            ("sgd", settings.sgd, _on_tasks("sgd", subject, lambda ps, s: sgd_part(subject, ps, seed=s))),
            ("integrity", settings.integrity,
             _on_tasks("integrity", subject, lambda ps, s: integrity_part(subject, ps, seed=s))),
            ("family", settings.family,
             lambda ps, s: family_part(subject.family, ps, tol=settings.tol, seed=s, runtime=runtime)),
        ],
        seed,
    )  # fmt: skip
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": subject.name})
