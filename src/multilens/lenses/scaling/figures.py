"""Figures and tables of the scaling lens (plain Plotly JSON via :mod:`multilens.plots`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from multilens.lenses.scaling.allocation import AllocationResult
from multilens.lenses.scaling.chinchilla import ChinchillaFit, predict_chinchilla
from multilens.lenses.scaling.compute_law import ComputeLawFit, predict_compute
from multilens.lenses.scaling.extrapolation import ExtrapolationResult
from multilens.lenses.scaling.intervals import BootstrapResult, ParamInterval
from multilens.lenses.scaling.regimes import RegimeResult
from multilens.plots import band_traces
from multilens.results import Figure, Table


def frontier_figure(runs: Any, front: np.ndarray, cfit: ComputeLawFit, cboot: BootstrapResult, level: float) -> Figure:
    """Every run, the compute frontier and the L(C) fit with its bootstrap band and floor."""
    Cf, Lf = runs.compute[front], runs.loss[front]
    cg = np.geomspace(Cf.min() / 1.5, Cf.max() * 10, 60)
    cols = ("A", "alpha", "L_inf")
    ok = np.all(np.isfinite(cboot.samples), axis=1)
    curves = np.array([predict_compute(dict(zip(cols, s)), cg) for s in cboot.samples[ok]]) if ok.sum() > 1 else None
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": runs.compute.tolist(), "y": runs.loss.tolist(), "mode": "markers",
         "marker": {"size": 5, "color": "rgba(120,120,120,0.5)"}, "name": "all runs"},
        {"type": "scatter", "x": Cf.tolist(), "y": Lf.tolist(), "mode": "markers", "marker": {"size": 8},
         "name": "frontier (best model size per budget)"},
    ]  # fmt: skip
    if curves is not None:
        lo, hi = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
        traces += band_traces(cg, lo, hi, f"{level:.0%} bootstrap band")
    traces.append({"type": "scatter", "x": cg.tolist(), "y": cfit.predict(cg).tolist(), "mode": "lines",
                   "name": f"L(C) = {cfit.A:.3g} C^-{cfit.alpha:.3f} + {cfit.L_inf:.3g}"})  # fmt: skip
    y_lo, y_hi = runs.loss.min() / 2.0, runs.loss.max() * 1.5
    floor_note = ""
    if cfit.L_inf >= y_lo:
        traces.append({"type": "scatter", "x": [cg[0], cg[-1]], "y": [cfit.L_inf, cfit.L_inf], "mode": "lines",
                       "line": {"dash": "dot"}, "name": "fitted floor L_inf"})  # fmt: skip
    else:  # a floor far below the data would squash the plot; say where it is instead
        floor_note = (
            f" The fitted floor L_inf = {cfit.L_inf:.3g} lies below the plotted range: the runs have not approached it."
        )
    return Figure(
        "scaling.frontier",
        "Loss against training compute",
        traces,
        {
            "xaxis": {"type": "log", "title": "training FLOPs C = 6ND"},
            "yaxis": {"type": "log", "title": "held-out loss", "range": [math.log10(y_lo), math.log10(y_hi)]},
        },
        "Every run (grey), the compute frontier and the L(C) fit with its floor estimated." + floor_note,
    )


def chinchilla_figures(runs: Any, fit: ChinchillaFit) -> list[Figure]:
    """Iso-FLOP profiles with the fitted L(N, D = C/6N), and the fit's residuals."""
    traces = []
    for b in np.unique(runs.budget):
        at = np.flatnonzero(runs.budget == b)
        at = at[np.argsort(runs.N[at], kind="stable")]
        traces.append({"type": "scatter", "x": runs.N[at].tolist(), "y": runs.loss[at].tolist(), "mode": "markers",
                       "name": f"C = {b:.2g}", "legendgroup": f"{b}"})  # fmt: skip
        ng = np.geomspace(runs.N[at].min() / 1.3, runs.N[at].max() * 1.3, 40)
        traces.append({"type": "scatter", "x": ng.tolist(), "y": predict_chinchilla(fit, ng, b / (6 * ng)).tolist(),
                       "mode": "lines", "showlegend": False, "legendgroup": f"{b}",
                       "name": f"fit C = {b:.2g}"})  # fmt: skip
    iso = Figure(
        "scaling.isoflop",
        "Iso-FLOP profiles and the fitted L(N, D)",
        traces,
        {"xaxis": {"type": "log", "title": "parameters N"}, "yaxis": {"type": "log", "title": "held-out loss"}},
        "Each budget's runs against model size, with the Approach-3 law at D = C/(6N).",
    )
    res = Figure(
        "scaling.residuals",
        "L(N, D) fit residuals (log-loss)",
        [
            {
                "type": "scatter",
                "x": runs.compute.tolist(),
                "y": list(fit.residuals),
                "mode": "markers",
                "name": "log pred - log obs",
            }
        ],  # fmt: skip
        {"xaxis": {"type": "log", "title": "training FLOPs"}, "yaxis": {"title": "residual"}},
        f"R^2 of log-loss {fit.r2:.3f}, RMSE {fit.rmse:.3g}.",
    )
    return [iso, res]


def _err(values: tuple[ParamInterval, ...]) -> dict[str, Any]:
    def up(v: ParamInterval) -> float | None:
        return None if v.ci_high is None else v.ci_high - v.estimate

    def down(v: ParamInterval) -> float | None:
        return None if v.ci_low is None else v.estimate - v.ci_low

    return {
        "type": "data",
        "symmetric": False,
        "array": [up(v) for v in values],
        "arrayminus": [down(v) for v in values],
    }


def allocation_figures(alloc: AllocationResult | None, extra: ExtrapolationResult | None, level: float) -> list[Figure]:
    figs = []
    if alloc is not None:
        figs.append(
            Figure(
                "scaling.allocation",
                "Compute-optimal model size",
                [
                    {
                        "type": "scatter",
                        "x": list(alloc.budgets),
                        "y": [v.estimate for v in alloc.N_opt],
                        "mode": "lines+markers",
                        "name": "N*(C)",
                        "error_y": _err(alloc.N_opt),
                    }
                ],  # fmt: skip
                {
                    "xaxis": {"type": "log", "title": "training FLOPs"},
                    "yaxis": {"type": "log", "title": "N* (parameters)"},
                },
                f"N* ~ C^a with a = beta/(alpha+beta) = {alloc.a.estimate:.3f}; "
                f"bars are {level:.0%} bootstrap intervals.",
            )
        )
    if extra is not None:
        x = list(range(len(extra.observed)))
        pred = np.asarray(extra.predicted)
        figs.append(
            Figure(
                "scaling.extrapolation",
                "Extrapolation to the held-out largest budget",
                [
                    {
                        "type": "scatter",
                        "x": x,
                        "y": pred.tolist(),
                        "mode": "markers",
                        "name": "predicted",
                        "error_y": {
                            "type": "data",
                            "symmetric": False,
                            "array": (extra.pi_high - pred).tolist(),
                            "arrayminus": (pred - extra.pi_low).tolist(),
                        },
                    },
                    {
                        "type": "scatter",
                        "x": x,
                        "y": np.asarray(extra.observed).tolist(),
                        "mode": "markers",
                        "marker": {"symbol": "x", "size": 10},
                        "name": "observed",
                    },
                ],  # fmt: skip
                {"xaxis": {"title": "held-out run"}, "yaxis": {"type": "log", "title": "held-out loss"}},
                f"Fitted on budgets up to {extra.train_max_compute:.3g} FLOPs; "
                f"bars are {level:.0%} prediction intervals.",
            )
        )
    return figs


def _cols(level: float) -> list[str]:
    return ["quantity", "estimate", f"{level:.0%} CI low", f"{level:.0%} CI high", "stderr"]


def _row(name: str, iv: ParamInterval) -> list[Any]:
    return [name, iv.estimate, iv.ci_low, iv.ci_high, iv.stderr]


def params_table(key: str, title: str, boot: BootstrapResult, names: tuple[str, ...], level: float) -> Table:
    return Table(key, title, _cols(level), [_row(k, boot.intervals[k]) for k in names])


def allocation_tables(alloc: AllocationResult | None, level: float) -> list[Table]:
    if alloc is None:
        return []

    def ci(v: ParamInterval) -> str:
        return "no interval" if v.ci_low is None else f"[{v.ci_low:.3g}, {v.ci_high:.3g}]"

    t1 = Table(
        "scaling.allocation",
        "Compute-optimal allocation",
        ["C", "N*", f"N* {level:.0%} CI", "D*", f"D* {level:.0%} CI", "predicted loss"],
        [
            [c, n.estimate, ci(n), d.estimate, ci(d), loss.estimate]
            for c, n, d, loss in zip(alloc.budgets, alloc.N_opt, alloc.D_opt, alloc.L_opt)
        ],  # fmt: skip
    )
    t2 = Table(
        "scaling.regret",
        "Excess loss of a misspecified allocation exponent",
        ["exponent error", "C", "relative excess loss"],
        [[f"{k:+g}", c, float(r)] for k, rr in alloc.regret.items() for c, r in zip(rr.budgets, rr.relative_regret)],
    )
    return [t1, t2]


def regimes_table(reg: RegimeResult) -> Table:
    rd = reg.to_dict()
    where = ", ".join(f"{c:.3g}" for c in reg.breakpoints_C)
    return Table(
        "scaling.regimes",
        f"Regimes of the frontier: piecewise power laws of {reg.response}, CV-selected",
        ["breakpoints (K)", "CV error", "CV stderr", "bootstrap selection frequency"],
        [[k, rd["cv_error"][k], rd["cv_stderr"][k], rd["selection_frequency"][k]] for k in ("0", "1", "2")],
        caption=f"chosen K = {reg.n_breaks}" + (f"; breakpoints at C = {where}" if reg.n_breaks else ""),
    )
