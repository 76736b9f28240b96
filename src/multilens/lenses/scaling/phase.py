"""The scaling lens as a measured study and a capstone phase.

Runs the iso-FLOP sweep of :mod:`.study` through an executor into the store, then fits
(Hoffmann et al. 2022): the compute frontier L(C) = A C^-alpha + L_inf (floor estimated), the
parametric L(N, D) = E + A/N^alpha + B/D^beta by Approach 3 with bootstrap intervals over runs,
piecewise regimes of the frontier chosen by cross-validation, the compute-optimal allocation
N* ~ C^(beta/(alpha+beta)) with propagated intervals and the regret of exponent errors of
+-0.05, and an extrapolation check on the largest held-out budget.

An independent check compares Approach 3's allocation exponent with Approach 2's (parabola
minima of each iso-FLOP profile in log N, regressed on log C): two estimators of the same
exponent from the same runs, which must agree within their intervals.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from multilens.config import config_hash
from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.experiments.executors import LocalExecutor
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.lenses.scaling import (
    ScalingData,
    allocation_with_intervals,
    bootstrap_chinchilla,
    bootstrap_compute_law,
    detect_regimes,
    extrapolation_check,
    fit_chinchilla,
    fit_compute_law,
    naive_loglog_slope,
    predict_chinchilla,
    predict_compute,
    to_estimates,
)
from multilens.lenses.scaling.report import json_safe
from multilens.lenses.scaling.study import TASK, ScalingConfig, design
from multilens.protocol.phase import PhaseContext, PhaseOutput, phase_config
from multilens.plots import band_traces
from multilens.results import Assumption, Check, Estimate, Figure, LensResult, Table, check_within
from multilens.seeding import derive_seed

SWEEP = "scaling"


def _runs_table(cfg: ScalingConfig, store: Store, seeds: list[int]) -> tuple[list[dict[str, Any]], int, int]:
    """Finished runs of this design (metrics + config); counts of failed and total runs."""
    wanted = {config_hash(c) for c in design(cfg)}
    rows, failed, total = [], 0, 0
    for r in store.runs(sweep=SWEEP):
        if r.config_hash not in wanted or r.seed not in seeds:
            continue
        total += 1
        if r.status == "done" and r.metrics and r.metrics.get("test_loss") is not None:
            rows.append(r.metrics | {"seed": r.seed})
        else:
            failed += 1
    return rows, failed, total


def _frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per budget, the runs of the width with the lowest mean loss over seeds."""
    out = []
    for b in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == b]
        widths = sorted({r["width"] for r in at})
        mean = {w: np.mean([r["test_loss"] for r in at if r["width"] == w]) for w in widths}
        best = min(widths, key=lambda w: mean[w])
        out.extend(r for r in at if r["width"] == best)
    return out


def approach2_exponent(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Hoffmann et al.'s Approach 2: parabola in log N per budget -> N_opt(C) -> slope on log C.

    Budgets whose parabola is not convex or whose minimum lies outside the sampled widths are
    left out (the minimum is not located there). The slope's standard error is the regression's.
    """
    pts = []
    for b in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == b]
        x = np.log([r["N"] for r in at])
        y = np.log([r["test_loss"] for r in at])
        if len(np.unique(x)) < 3:
            continue
        c2, c1, _ = np.polyfit(x, y, 2)
        if c2 <= 0:
            continue
        xm = -c1 / (2 * c2)
        if not (x.min() <= xm <= x.max()):
            continue
        pts.append((math.log(b), xm))
    if len(pts) < 3:
        return {
            "slope": None,
            "stderr": None,
            "n_budgets": len(pts),
            "note": f"only {len(pts)} budgets have an interior convex minimum; need 3",
        }
    X, Y = np.array(pts).T
    A = np.vstack([X, np.ones_like(X)]).T
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    resid = Y - A @ coef
    dof = len(X) - 2
    s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    se = math.sqrt(s2 / float(((X - X.mean()) ** 2).sum())) if dof > 0 else float("nan")
    return {
        "slope": float(coef[0]),
        "stderr": se,
        "n_budgets": len(pts),
        "dof": dof,
        "log_C": X.tolist(),
        "log_N_opt": Y.tolist(),
        "note": "",
    }


def _t_quantile(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def run_scaling(
    cfg: ScalingConfig,
    seed: int = 0,
    *,
    store: Store | None = None,
    executor: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[LensResult, dict[str, float], tuple[str, ...]]:
    """Sweep, fit and check. Returns the lens result, gate metrics and recommendations."""
    own_exec = executor is None
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="multilens-scaling-")
        store = Store(Path(tmp.name) / "results.sqlite")
    if own_exec:
        executor = LocalExecutor()
    try:
        seeds = [derive_seed(seed, "scaling-run", i) for i in range(cfg.seeds)]
        rep = run_sweep(SWEEP, TASK, design(cfg), seeds, store, executor, progress)
        rows, failed, total = _runs_table(cfg, store, seeds)
    finally:
        if own_exec:
            executor.close()
        if tmp is not None:
            store.close()
            tmp.cleanup()
    return analyse(cfg, seed, rows, failed, total, executed=rep.executed)


def analyse(
    cfg: ScalingConfig, seed: int, rows: list[dict[str, Any]], failed: int, total: int, executed: int = 0
) -> tuple[LensResult, dict[str, float], tuple[str, ...]]:
    level = cfg.ci_level
    bayes = cfg.noise_std**2 if cfg.task == "teacher_student" else None
    data = ScalingData([r["N"] for r in rows], [r["D"] for r in rows], [r["test_loss"] for r in rows], source="sweep")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = fit_chinchilla(data)
        boot = bootstrap_chinchilla(data, fit, n_boot=cfg.bootstrap, seed=derive_seed(seed, "boot-nd"), level=level)
        front = _frontier(rows)
        Cf = np.array([r["C"] for r in front])
        Lf = np.array([r["test_loss"] for r in front])
        cfit = fit_compute_law(Cf, Lf)
        cboot = bootstrap_compute_law(Cf, Lf, cfit, n_boot=cfg.bootstrap, seed=derive_seed(seed, "boot-c"), level=level)
        try:
            regimes = detect_regimes(
                Cf, Lf, l_inf=None, n_boot=min(cfg.bootstrap, 200), seed=derive_seed(seed, "regimes"), level=level
            )
        except DataError as e:  # too few frontier runs to cross-validate: say so, do not guess
            regimes, regimes_note = None, f"regimes not measured: {e}"
        else:
            regimes_note = ""
        c_max = float(data.compute.max())
        budgets = [c_max, 10 * c_max, 100 * c_max]
        try:
            alloc = allocation_with_intervals(fit, boot, budgets, reference_compute=c_max, level=level)
            alloc_note = ""
        except ConfigError as e:  # loss does not fall with both N and D: no optimum exists to allocate
            alloc, alloc_note = None, f"no compute-optimal allocation: {e}"
        extra = extrapolation_check(
            data,
            form="chinchilla",
            holdout_budgets=1,
            n_boot=min(cfg.bootstrap, 200),
            seed=derive_seed(seed, "extrapolation"),
            level=level,
        )
    notes = [f"{w.message}" for w in caught if issubclass(w.category, ConvergenceWarning)]
    notes += [n for n in (regimes_note, alloc_note) if n]
    a2 = approach2_exponent(rows)

    estimates = list(to_estimates(fit, boot)) + list(to_estimates(cfit, cboot, prefix="scaling.frontier."))
    boundary = {"scaling.E": fit.E, "scaling.frontier.L_inf": cfit.L_inf}
    estimates = [
        replace(
            e,
            ci_low=None,
            ci_high=None,
            stderr=None,
            note="at the fit's lower boundary: the runs do not identify this floor; no valid interval",
        )
        if e.name in boundary and not floor_identified(boundary[e.name], data.loss)
        else e
        for e in estimates
    ]
    naive = naive_loglog_slope(Cf, Lf)
    estimates.append(
        Estimate(
            "scaling.frontier.naive_loglog_alpha",
            float(naive),
            note=("straight line through log-loss without the floor: biased toward 0; shown only as a contrast"),
            method="OLS slope of log L on log C",
            n=len(Lf),
            stderr=None,
            ci_low=None,
            ci_high=None,
        )
    )
    if a2["slope"] is not None:
        tq = _t_quantile(level, a2["dof"])
        estimates.append(
            Estimate(
                "scaling.approach2.a",
                a2["slope"],
                a2["slope"] - tq * a2["stderr"],
                a2["slope"] + tq * a2["stderr"],
                a2["stderr"],
                level,
                "OLS of log N_opt (iso-FLOP parabola minima) on log C, t interval",
                a2["n_budgets"],
            )
        )
    else:
        estimates.append(Estimate("scaling.approach2.a", None, note=a2["note"]))

    checks: list[Check] = [
        Check(
            "L(N, D) fit converged",
            bool(fit.converged),
            None,
            None,
            None,
            f"best of {fit.n_starts} starts {'converged' if fit.converged else 'did not converge'} "
            f"({fit.n_iter} iterations): {fit.message}",
        ),
        Check(
            "bootstrap refits succeeded",
            boot.n_failed <= 0.05 * boot.n_boot,
            boot.n_failed,
            0.0,
            0.05 * boot.n_boot,
            f"{boot.n_failed} of {boot.n_boot} refits failed (tolerance 5%)",
        ),
        extra.check,
    ]
    e_found = floor_identified(fit.E, data.loss)
    if bayes is not None and not e_found:
        checks.append(
            Check(
                "floor E is not below the Bayes risk",
                None,
                fit.E,
                bayes,
                None,
                f"not evaluated: the fit put E = {fit.E:.3g} at its lower boundary (every run is far above "
                f"the noise floor {bayes:.3g}), so the runs do not identify the floor and a percentile "
                "interval at a boundary is not valid; add larger budgets",
            )
        )
    elif bayes is not None:
        hi = boot.intervals["E"].ci_high
        checks.append(
            Check(
                "floor E is not below the Bayes risk",
                bool(hi >= bayes),
                fit.E,
                bayes,
                None,
                f"E = {fit.E:.4g}, upper {level:.0%} CI {hi:.4g} {'>=' if hi >= bayes else '<'} "
                f"noise variance {bayes:.4g} (no model can beat the noise)",
            )
        )
    a_iv = alloc.a if alloc is not None else None
    if a_iv is None:
        checks.append(Check("Approach 2 and Approach 3 allocation exponents agree", None, reason=alloc_note))
    elif a2["slope"] is not None:
        lo2, hi2 = estimates[-1].ci_low, estimates[-1].ci_high
        ok = lo2 <= a_iv.ci_high and a_iv.ci_low <= hi2
        checks.append(
            Check(
                "Approach 2 and Approach 3 allocation exponents agree",
                bool(ok),
                a2["slope"],
                a_iv.estimate,
                None,
                f"Approach 2: a = {a2['slope']:.3f} [{lo2:.3f}, {hi2:.3f}]; Approach 3: a = "
                f"{a_iv.estimate:.3f} [{a_iv.ci_low:.3f}, {a_iv.ci_high:.3f}]: "
                f"{'intervals overlap' if ok else 'intervals do not overlap'}",
            )
        )
    else:
        checks.append(Check("Approach 2 and Approach 3 allocation exponents agree", None, reason=a2["note"]))
    if alloc is not None:
        checks.append(
            check_within(
                "allocation exponents sum to 1",
                a_iv.estimate + alloc.b.estimate,
                1.0,
                1e-12,
                what="a + b (C = 6ND implies N* D* = C/6)",
            )
        )

    figures = _figures(rows, front, fit, boot, cfit, cboot, extra, alloc, regimes, level)
    tables = _tables(fit, boot, cfit, cboot, alloc, regimes, level)
    assumptions = (
        Assumption(
            "Training compute is C = 6 N D (forward 2N + backward 4N FLOPs per example).",
            "Kaplan et al. 2020; seed theorem line 169",
            "",
            "unchecked",
        ),
        Assumption(
            "Loss follows L(N, D) = E + A/N^alpha + B/D^beta over the sampled range.",
            "Hoffmann et al. 2022, eq. 2",
            "L(N, D) fit converged",
            "unchecked",
        ),
        Assumption(
            "The law fitted on smaller budgets holds at the next budget.",
            "extrapolation premise of scaling laws",
            extra.check.name,
            "unchecked",
        ),
        Assumption(
            "Each run's loss is measured on the same held-out set; D counts distinct fresh examples.",
            "multilens.lenses.scaling.study",
            "",
            "holds",
        ),
    )
    alloc_d = alloc.to_dict() if alloc is not None else {"note": alloc_note}
    data_payload = {
        "n_runs": len(rows),
        "n_failed": failed,
        "n_total": total,
        "n_executed_now": executed,
        "bayes_risk": bayes,
        "config": asdict(cfg),
        "runs": [
            {k: r[k] for k in ("N", "D", "C", "budget", "width", "seed", "test_loss", "train_loss", "steps")}
            for r in rows
        ],
        "chinchilla": fit.to_dict() | {"bootstrap": boot.to_dict()},
        "compute_law": cfit.to_dict() | {"bootstrap": cboot.to_dict()},
        "regimes": regimes.to_dict() if regimes is not None else {"note": regimes_note},
        "allocation": alloc_d,
        "approach2": a2,
        "extrapolation": extra.to_dict() if hasattr(extra, "to_dict") else {},
    }
    result = LensResult(
        "scaling",
        tuple(estimates),
        tuple(checks),
        tuple(figures),
        tuple(tables),
        assumptions,
        predictions={"allocation_a": a_iv.estimate, "allocation_b": alloc.b.estimate} if alloc else {},
        data=json_safe(data_payload),
        notes=tuple(notes),
    )
    metrics = _metrics(fit, boot, cfit, cboot, extra, a_iv, failed, total, bayes, data.loss)
    recs = _recommendations(alloc, extra, level, alloc_note)
    return result, metrics, recs


def floor_identified(floor: float, loss: Any) -> bool:
    """False when a fitted floor sits at its boundary (exp of a log-parameter driven to -inf).

    Then every bootstrap refit lands on the same boundary and the percentile interval collapses
    to a point; such an interval says nothing about the floor (Andrews 2000 on the bootstrap at
    a boundary), so intervals and checks that rely on it are reported as not evaluated.
    """
    return bool(floor > 1e-3 * float(np.min(loss)))


def _metrics(fit, boot, cfit, cboot, extra, a_iv, failed, total, bayes, losses) -> dict[str, float]:
    e_found, l_found = floor_identified(fit.E, losses), floor_identified(cfit.L_inf, losses)
    m: dict[str, Any] = {
        "scaling.failed_fraction": failed / total if total else 1.0,
        "scaling.r2_chinchilla": fit.r2,
        "scaling.r2_compute": cfit.r2,
        "scaling.alpha": fit.alpha,
        "scaling.beta": fit.beta,
        "scaling.a": a_iv.estimate if a_iv else None,
        "scaling.a_ci_low": a_iv.ci_low if a_iv else None,
        "scaling.a_ci_high": a_iv.ci_high if a_iv else None,
        "scaling.E": fit.E,
        # Boundary floors have no valid interval: leave them unmeasured so cross-checks say so.
        "scaling.E_ci_low": boot.intervals["E"].ci_low if e_found else None,
        "scaling.E_ci_high": boot.intervals["E"].ci_high if e_found else None,
        "scaling.L_inf": cfit.L_inf,
        "scaling.L_inf_ci_low": cboot.intervals["L_inf"].ci_low if l_found else None,
        "scaling.L_inf_ci_high": cboot.intervals["L_inf"].ci_high if l_found else None,
        "scaling.extrapolation_within_interval": 1.0 if extra.check.passed else 0.0,
        "scaling.extrapolation_max_abs_rel_error": float(np.max(np.abs(extra.relative_error))),
    }
    if bayes is not None:
        m["scaling.bayes_risk"] = bayes
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in m.items()}


def _recommendations(alloc, extra, level: float, alloc_note: str) -> tuple[str, ...]:
    if alloc is None:
        return (
            f"The fitted law has {alloc_note.removeprefix('no compute-optimal allocation: ')}: loss does not fall "
            "with both model size and data over the measured range, so it cannot plan compute; check the "
            "training recipe (learning rate per width) before scaling up.",
        )
    recs = []
    for i, c in enumerate(alloc.budgets[1:], start=1):
        n, d, loss = alloc.N_opt[i], alloc.D_opt[i], alloc.L_opt[i]
        recs.append(
            f"At C = {c:.3g} FLOPs ({c / alloc.budgets[0]:.0f}x the largest budget measured), the fitted law puts "
            f"N* = {n.estimate:.3g} parameters [{n.ci_low:.3g}, {n.ci_high:.3g}] and D* = {d.estimate:.3g} examples "
            f"[{d.ci_low:.3g}, {d.ci_high:.3g}] ({level:.0%} bootstrap intervals), predicted loss {loss.estimate:.4g}."
        )
    worst = max(float(np.max(r.relative_regret[1:])) for r in alloc.regret.values())
    recs.append(
        f"Misjudging the allocation exponent by 0.05 costs at most {100 * worst:.2g}% excess loss up to 100x "
        f"the largest budget measured; {'precision beyond that is not worth extra runs' if worst < 0.01 else 'pin the exponent down with more budgets before scaling up'}."
    )
    if not extra.check.passed:
        recs.append(
            "The law fitted on the smaller budgets missed the largest budget's runs: do not extrapolate it "
            "further than measured; add budgets and refit."
        )
    return tuple(recs)


def _figures(rows, front, fit, boot, cfit, cboot, extra, alloc, regimes, level) -> list[Figure]:
    figs = []
    # 1. Frontier with the L(C) fit and its bootstrap band.
    Cf = np.array([r["C"] for r in front])
    cg = np.geomspace(Cf.min() / 1.5, Cf.max() * 10, 60)
    cols = ("A", "alpha", "L_inf")
    ok = np.all(np.isfinite(cboot.samples), axis=1)
    curves = np.array([predict_compute(dict(zip(cols, s)), cg) for s in cboot.samples[ok]]) if ok.any() else None
    traces = [
        {
            "type": "scatter",
            "x": [r["C"] for r in rows],
            "y": [r["test_loss"] for r in rows],
            "mode": "markers",
            "marker": {"size": 5, "color": "rgba(120,120,120,0.5)"},
            "name": "all runs",
        },
        {
            "type": "scatter",
            "x": Cf.tolist(),
            "y": [r["test_loss"] for r in front],
            "mode": "markers",
            "marker": {"size": 8},
            "name": "frontier (best width per budget)",
        },
    ]
    if curves is not None:
        lo, hi = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
        traces += band_traces(cg, lo, hi, f"{level:.0%} bootstrap band")
    traces.append(
        {
            "type": "scatter",
            "x": cg.tolist(),
            "y": cfit.predict(cg).tolist(),
            "mode": "lines",
            "name": f"L(C) = {cfit.A:.3g} C^-{cfit.alpha:.3f} + {cfit.L_inf:.3g}",
        }
    )
    losses = np.array([r["test_loss"] for r in rows])
    y_lo, y_hi = losses.min() / 2.0, losses.max() * 1.5
    floor_note = ""
    if cfit.L_inf >= y_lo:
        traces.append(
            {
                "type": "scatter",
                "x": [cg[0], cg[-1]],
                "y": [cfit.L_inf, cfit.L_inf],
                "mode": "lines",
                "line": {"dash": "dot"},
                "name": "fitted floor L_inf",
            }
        )
    else:  # a floor far below the data would squash the plot; say where it is instead
        floor_note = (
            f" The fitted floor L_inf = {cfit.L_inf:.3g} lies below the plotted range: the runs have not approached it."
        )
    figs.append(
        Figure(
            "scaling.frontier",
            "Loss against training compute",
            traces,
            {
                "xaxis": {"type": "log", "title": "training FLOPs C = 6ND"},
                "yaxis": {"type": "log", "title": "held-out loss", "range": [math.log10(y_lo), math.log10(y_hi)]},
            },
            "Every run (grey), the compute frontier and the L(C) fit with its floor estimated." + floor_note,
        )
    )
    # 2. Iso-FLOP profiles with the fitted L(N, D = C/6N).
    traces = []
    for b in sorted({r["budget"] for r in rows}):
        at = sorted((r for r in rows if r["budget"] == b), key=lambda r: r["N"])
        traces.append(
            {
                "type": "scatter",
                "x": [r["N"] for r in at],
                "y": [r["test_loss"] for r in at],
                "mode": "markers",
                "name": f"C = {b:.2g}",
                "legendgroup": f"{b}",
            }
        )
        ng = np.geomspace(min(r["N"] for r in at) / 1.3, max(r["N"] for r in at) * 1.3, 40)
        traces.append(
            {
                "type": "scatter",
                "x": ng.tolist(),
                "y": predict_chinchilla(fit, ng, b / (6 * ng)).tolist(),
                "mode": "lines",
                "showlegend": False,
                "legendgroup": f"{b}",
                "name": f"fit C = {b:.2g}",
            }
        )
    figs.append(
        Figure(
            "scaling.isoflop",
            "Iso-FLOP profiles and the fitted L(N, D)",
            traces,
            {"xaxis": {"type": "log", "title": "parameters N"}, "yaxis": {"type": "log", "title": "held-out loss"}},
            "Each budget's runs against model size, with the Approach-3 law at D = C/(6N).",
        )
    )
    if alloc is None:
        figs += _extrapolation_and_residual_figures(rows, fit, extra, level)
        return figs
    # 3. Compute-optimal allocation with intervals.
    b = np.array(alloc.budgets)
    n_est = [v.estimate for v in alloc.N_opt]
    figs.append(
        Figure(
            "scaling.allocation",
            "Compute-optimal model size",
            [
                {
                    "type": "scatter",
                    "x": b.tolist(),
                    "y": n_est,
                    "mode": "lines+markers",
                    "name": "N*(C)",
                    "error_y": {
                        "type": "data",
                        "symmetric": False,
                        "array": [v.ci_high - v.estimate for v in alloc.N_opt],
                        "arrayminus": [v.estimate - v.ci_low for v in alloc.N_opt],
                    },
                }
            ],
            {"xaxis": {"type": "log", "title": "training FLOPs"}, "yaxis": {"type": "log", "title": "N* (parameters)"}},
            f"N* ~ C^a with a = beta/(alpha+beta) = {alloc.a.estimate:.3f}; bars are {level:.0%} bootstrap intervals.",
        )
    )
    return figs + _extrapolation_and_residual_figures(rows, fit, extra, level)


def _extrapolation_and_residual_figures(rows, fit, extra, level) -> list[Figure]:
    figs = []
    # 4. Extrapolation: observed vs predicted with the prediction interval.
    figs.append(
        Figure(
            "scaling.extrapolation",
            "Extrapolation to the held-out largest budget",
            [
                {
                    "type": "scatter",
                    "x": list(range(len(extra.observed))),
                    "y": np.asarray(extra.predicted).tolist(),
                    "mode": "markers",
                    "name": "predicted",
                    "error_y": {
                        "type": "data",
                        "symmetric": False,
                        "array": (np.asarray(extra.pi_high) - np.asarray(extra.predicted)).tolist(),
                        "arrayminus": (np.asarray(extra.predicted) - np.asarray(extra.pi_low)).tolist(),
                    },
                },
                {
                    "type": "scatter",
                    "x": list(range(len(extra.observed))),
                    "y": np.asarray(extra.observed).tolist(),
                    "mode": "markers",
                    "marker": {"symbol": "x", "size": 10},
                    "name": "observed",
                },
            ],
            {"xaxis": {"title": "held-out run"}, "yaxis": {"type": "log", "title": "held-out loss"}},
            f"Fitted on budgets up to {extra.train_max_compute:.3g} FLOPs; bars are {level:.0%} prediction intervals.",
        )
    )
    # 5. Residuals of the L(N, D) fit.
    figs.append(
        Figure(
            "scaling.residuals",
            "L(N, D) fit residuals (log-loss)",
            [
                {
                    "type": "scatter",
                    "x": [r["C"] for r in rows],
                    "y": list(fit.residuals),
                    "mode": "markers",
                    "name": "log pred - log obs",
                }
            ],
            {"xaxis": {"type": "log", "title": "training FLOPs"}, "yaxis": {"title": "residual"}},
            f"R^2 of log-loss {fit.r2:.3f}, RMSE {fit.rmse:.3g}.",
        )
    )
    return figs


def _iv_row(name, iv, unit=""):
    return [name, iv.estimate, iv.ci_low, iv.ci_high, iv.stderr]


def _tables(fit, boot, cfit, cboot, alloc, regimes, level) -> list[Table]:
    cols = ["quantity", "estimate", f"{level:.0%} CI low", f"{level:.0%} CI high", "stderr"]
    t1 = Table(
        "scaling.params",
        "Fitted scaling-law parameters (bootstrap over runs)",
        cols,
        [_iv_row(k, boot.intervals[k]) for k in ("E", "A", "B", "alpha", "beta")]
        + [_iv_row(f"frontier {k}", cboot.intervals[k]) for k in ("A", "alpha", "L_inf")]
        + ([_iv_row("a = beta/(alpha+beta)", alloc.a), _iv_row("b = alpha/(alpha+beta)", alloc.b)] if alloc else []),
    )
    if alloc is None:
        return [t1] + _regimes_table(regimes)
    t2 = Table(
        "scaling.allocation",
        "Compute-optimal allocation",
        ["C", "N*", "N* CI", "D*", "D* CI", "predicted loss"],
        [
            [
                c,
                n.estimate,
                f"[{n.ci_low:.3g}, {n.ci_high:.3g}]",
                d.estimate,
                f"[{d.ci_low:.3g}, {d.ci_high:.3g}]",
                l.estimate,
            ]
            for c, n, d, l in zip(alloc.budgets, alloc.N_opt, alloc.D_opt, alloc.L_opt)
        ],
    )
    t3 = Table(
        "scaling.regret",
        "Excess loss of a misspecified allocation exponent",
        ["exponent error", "C", "relative excess loss"],
        [[f"{k:+g}", c, float(r)] for k, rr in alloc.regret.items() for c, r in zip(rr.budgets, rr.relative_regret)],
    )
    return [t1, t2, t3] + _regimes_table(regimes)


def _regimes_table(regimes) -> list[Table]:
    if regimes is None:
        return []
    rd = regimes.to_dict()
    t4 = Table(
        "scaling.regimes",
        "Regimes of the frontier (piecewise power laws, CV-selected)",
        ["breakpoints (K)", "CV error", "CV stderr", "bootstrap selection frequency"],
        [[k, rd["cv_error"][k], rd["cv_stderr"][k], rd["selection_frequency"][k]] for k in ("0", "1", "2")],
        caption=f"chosen K = {regimes.n_breaks}; breakpoints at C = "
        + ", ".join(f"{c:.3g}" for c in regimes.breakpoints_C)
        if regimes.n_breaks
        else "chosen K = 0",
    )
    return [t4]


class ScalingPhase:
    """Capstone phase 1: the scaling study."""

    name = "scaling"
    title = "Scaling laws and compute-optimal allocation"
    consumes: dict[str, type] = {}
    produces: dict[str, type] = {"scaling.allocation": dict}

    def run(self, ctx: PhaseContext) -> PhaseOutput:
        cfg = phase_config(ctx, ScalingConfig, "scaling")
        result, metrics, recs = run_scaling(
            cfg, ctx.seed, store=ctx.store, executor=ctx.executor, progress=ctx.progress
        )
        return PhaseOutput(result, {"scaling.allocation": result.data["allocation"]}, metrics, recs)


def run_scaling_lens(cfg: ScalingConfig, seed: int = 0) -> LensResult:
    """The CLI entry (`multilens lens scaling`): the same study with a temporary store."""
    return run_scaling(cfg, seed)[0]
