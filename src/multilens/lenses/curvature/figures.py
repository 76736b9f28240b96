"""Figures and tables of the curvature lens, as plain Plotly dicts (no plotly import).

Builders only: every number comes in from a measurement made elsewhere in the lens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from multilens.lenses.curvature.along_training import ScheduleRun
from multilens.lenses.curvature.landscape import Slice1D, Slice2D
from multilens.lenses.curvature.preconditioning import ConditioningRow, PreconditionRow
from multilens.linalg import DensityResult
from multilens.plots import PALETTE, curve_trace, errorbar_trace, figure, floats, line_trace
from multilens.results import Figure, Table


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def density_figure(dens: DensityResult, top: Sequence[float], label: str = "top eigenvalues (Lanczos)") -> Figure:
    step = max(1, dens.grid.size // 300)
    # A log axis needs positive values: the density is clipped at 1e-12 of its peak for display.
    floor = 1e-12 * float(dens.density.max())
    trace = line_trace(dens.grid[::step], np.maximum(dens.density[::step], floor), "SLQ density", markers=False)
    ymax = float(dens.density.max())
    marks = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": label,
            "x": floats(top),
            "y": [ymax] * len(top),
            "marker": {"symbol": "triangle-down", "size": 10, "color": PALETTE[3]},
        }
    ]
    return figure(
        "curvature.density",
        "Hessian spectral density (stochastic Lanczos quadrature)",
        [trace, *marks],
        xlabel="eigenvalue",
        ylabel="density",
        ylog=True,
        caption=f"{dens.n_vectors} Rademacher start vectors x {dens.n_iter} Lanczos steps; Gaussian smoothing "
        f"sigma = {dens.sigma:.3g}. Triangles: {label}.",
    )


def slice_1d_figure(slices: Sequence[Slice1D]) -> Figure:
    traces = [
        line_trace(s.alphas, s.losses, f"{s.direction}", markers=False, color=PALETTE[i % 8])
        for i, s in enumerate(slices)
    ]
    centre = {
        "type": "scatter",
        "mode": "markers",
        "name": "trained point",
        "x": [0.0],
        "y": [_f(slices[0].center_loss)],
        "marker": {"symbol": "x", "size": 12, "color": "black"},
    }
    mode = slices[0].mode
    return figure(
        "curvature.slice_1d",
        "1-D loss slices through the trained point",
        [*traces, centre],
        xlabel="step along the direction (alpha)",
        ylabel="training loss",
        caption=f"L(theta + alpha d), model in {mode} mode. Eigen-directions are unit vectors in parameter space; "
        "random "
        "directions are filter-normalized (Li et al. 2018), so alpha = 1 moves every filter by its own norm. "
        "The grid is centred: alpha = 0 is the trained model itself.",
    )


def slice_2d_figure(sl: Slice2D) -> Figure:
    contour = {
        "type": "contour",
        "name": "loss",
        "x": floats(sl.alphas),
        "y": floats(sl.betas),
        "z": [floats(row) for row in sl.losses],
        "colorscale": "Viridis",
        "contours": {"coloring": "heatmap"},
        "colorbar": {"title": {"text": "loss"}},
    }
    centre = {
        "type": "scatter",
        "mode": "markers",
        "name": "trained point",
        "x": [0.0],
        "y": [0.0],
        "marker": {"symbol": "x", "size": 14, "color": "white", "line": {"width": 2, "color": "black"}},
    }
    return figure(
        "curvature.slice_2d",
        "2-D loss slice through the trained point",
        [contour, centre],
        xlabel=f"alpha: {sl.directions[0]}",
        ylabel=f"beta: {sl.directions[1]}",
        caption=f"L(theta + alpha u + beta v) on a centred {len(sl.alphas)}x{len(sl.betas)} grid, "
        f"model in {sl.mode} mode; normalization: {sl.normalization}; cos(u, v) = {sl.cosine:.2g}. "
        "The cross is the trained point (a grid point).",
    )


def along_training_figure(runs: Sequence[ScheduleRun]) -> Figure:
    traces = []
    for i, r in enumerate(runs):
        color = PALETTE[i % 8]
        steps = [c.step for c in r.checkpoints]
        traces.append(line_trace(steps, [c.top[0] for c in r.checkpoints], f"lambda_max, {r.schedule}", color=color))
        traces.append(curve_trace(steps, [c.threshold for c in r.checkpoints], f"2/eta, {r.schedule}", color=color))
    return figure(
        "curvature.along_training",
        "Top Hessian eigenvalue along training vs 2/eta (edge of stability)",
        traces,
        xlabel="GD step",
        ylabel="eigenvalue",
        ylog=True,
        caption="Full-batch GD on the squared loss, same initialization and peak learning rate per schedule. Solid: "
        "lambda_max of the full-batch Hessian (Lanczos, converged); dashed: the stability threshold 2/eta of the step "
        "just taken.",
    )


def trace_along_training_figure(runs: Sequence[ScheduleRun], level: float) -> Figure:
    traces = []
    for i, r in enumerate(runs):
        cps = r.checkpoints
        traces.append(
            errorbar_trace(
                [c.step for c in cps],
                [c.trace for c in cps],
                [c.trace_ci_low for c in cps],
                [c.trace_ci_high for c in cps],
                f"trace, {r.schedule}",
                mode="lines+markers",
                color=PALETTE[i % 8],
            )
        )
    return figure(
        "curvature.trace_along_training",
        "Hessian trace along training",
        traces,
        xlabel="GD step",
        ylabel="trace",
        caption=f"Hutch++ estimates with {level:.0%} Student-t intervals at each checkpoint.",
    )


def preconditioning_figure(cond: Sequence[ConditioningRow], pre: Sequence[PreconditionRow], tol: float) -> Figure:
    from multilens.lenses.curvature.preconditioning import theory_curve

    ks = np.geomspace(
        min(r.kappa for r in cond) / 2, max(max(r.kappa for r in cond), max(p.kappa for p in pre)) * 2, 50
    )
    traces = [
        line_trace([r.kappa for r in cond], [r.worst_iterations for r in cond], "GD, worst-case start", markers=True),
        line_trace([r.kappa for r in cond], [r.random_iterations for r in cond], "GD, random start", markers=True),
        curve_trace(ks, theory_curve(ks, tol), "theory ceil(log tol / log((k-1)/(k+1)))"),
        {
            "type": "scatter",
            "mode": "markers",
            "name": "S M S problems, no preconditioner",
            "x": floats([p.kappa for p in pre]),
            "y": floats([p.measured_plain for p in pre]),
            "marker": {"symbol": "square"},
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "S M S problems, Jacobi P = diag(H) (x = kappa(H))",
            "x": floats([p.kappa for p in pre]),
            "y": floats([p.measured_jacobi for p in pre]),
            "marker": {"symbol": "diamond"},
        },
    ]
    return figure(
        "curvature.preconditioning",
        "GD iterations to tolerance vs condition number",
        traces,
        xlabel="condition number kappa(H)",
        ylabel=f"iterations to relative error {tol:g}",
        xlog=True,
        ylog=True,
        caption="Quadratics with constructed spectra; step 2/(mu + L) with mu, L from Lanczos. Jacobi preconditioning "
        "of H = S M S removes the diagonal scaling S: its iteration count stays at kappa(M)'s.",
    )


def sharpness_figure(sam: Sequence[Any], asam: Sequence[Any], bounds: Sequence[Any]) -> Figure:
    traces = [
        line_trace([s.rho for s in sam], [s.value for s in sam], "SAM worst case (ascent)"),
        curve_trace([b.rho for b in bounds], [b.upper for b in bounds], "2nd-order model, upper bound"),
        curve_trace([b.rho for b in bounds], [b.lower for b in bounds], "2nd-order model, lower bound", dash="dot"),
        line_trace([s.rho for s in asam], [s.value for s in asam], "ASAM worst case (adaptive ball)"),
    ]
    return figure(
        "curvature.sharpness",
        "Worst-case loss increase in a ball of radius rho",
        traces,
        xlabel="rho",
        ylabel="L(theta + delta) - L(theta)",
        xlog=True,
        ylog=True,
        caption="Projected gradient ascent (a lower bound on the true maximum). "
        "ASAM's ball is ||delta / |theta| || <= rho.",
    )


def table(key: str, title: str, columns: list[str], rows: list[list[Any]], caption: str = "") -> Table:
    clean = [[_f(v) if isinstance(v, float) else v for v in row] for row in rows]
    return Table(key=key, title=title, columns=columns, rows=clean, caption=caption)
