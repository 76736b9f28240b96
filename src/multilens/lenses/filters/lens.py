"""The spectral-filters lens: early-stopped gradient descent and ridge as filters on singular values.

Follows the seed's A.9 (line 300), B.12 (line 333) and C.13 (line 275), with the closed forms of
:mod:`multilens.theory.filters`. On a discretized Gaussian blur (a wide singular spectrum) and a
narrow-spectrum control:

1. GD on (1/2)||A x - y||^2 from 0 is actually run (t_max steps) on the right-hand sides
   y = u_j (every left singular vector at once) and ridge is actually solved
   ((A^T A + lam I) x = A^T y by Cholesky, not through the SVD). Each estimator is linear in y, so
   phi_j = s_j v_j^T x(u_j) is its measured filter factor on mode j, compared with
   1 - (1 - eta s^2)^t and s^2/(s^2 + lam).
2. For each checkpoint t, the ridge penalty lam(t) that best matches GD's measured filter in the
   minimax sense, and the per-mode discrepancy left over: no single lam matches on a wide
   spectrum. The continuum value min_lam sup_x |GD - ridge| bounds it from above.
3. Reconstruction error of a piecewise-smooth signal from noisy blurred data, along the GD path
   and the ridge path (and at each matched pair), with intervals over noise draws.

Non-normal dynamics (iterating on A itself rather than on A^T A) are not covered here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from multilens.lenses.filters.config import FiltersConfig
import multilens.plots as fig
from multilens.results import Assumption, Check, Estimate, Figure, LensResult, Table
from multilens.seeding import SeedLike, as_generator, derive_seed
from multilens.stats import mean_ci
from multilens.theory.filters import best_matching_lambda, continuum_gd_ridge_gap, gd_filter, ridge_filter

LENS = "filters"
EPS = float(np.finfo(np.float64).eps)


def gaussian_blur(m: int, width: float) -> np.ndarray:
    """The m x m discretized Gaussian blur (Toeplitz), rows of the kernel exp(-(i-j)^2/(2 w^2))/(sqrt(2 pi) w).

    Its singular values fall off like a Gaussian in frequency, a classical ill-posed test
    operator (Hansen 2010, Ch. 3).
    """
    i = np.arange(m)
    return np.exp(-((i[:, None] - i[None, :]) ** 2) / (2.0 * width**2)) / (math.sqrt(2.0 * math.pi) * width)


def narrow_operator(m: int, condition: float, seed: SeedLike) -> np.ndarray:
    """A random m x m operator U diag(s) V^T with s log-spaced on [1/condition, 1]."""
    rng = as_generator(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return (u * np.geomspace(1.0, 1.0 / condition, m)) @ v.T


def true_signal(m: int) -> np.ndarray:
    """A smooth bump plus a box on [0, 1]: both low- and high-frequency content."""
    u = np.linspace(0.0, 1.0, m)
    return np.exp(-((u - 0.3) ** 2) / 0.005) + 0.5 * ((u > 0.55) & (u < 0.8))


def checkpoints(t_max: int, k: int) -> list[int]:
    """k (or fewer, after rounding) log-spaced step counts from 1 to t_max."""
    return sorted({int(round(t)) for t in np.geomspace(1, t_max, k)})


@dataclass(frozen=True)
class GDRun:
    """GD iterates at the checkpoints for every right-hand side (columns of B)."""

    steps: tuple[int, ...]
    iterates: tuple[np.ndarray, ...]  # each (m, n_rhs)
    eta: float
    n_iter: int


def run_gd(a: np.ndarray, b: np.ndarray, eta: float, steps: list[int]) -> GDRun:
    """x_{k+1} = x_k - eta A^T (A x_k - b) from x_0 = 0, for every column of b; iterates at ``steps``."""
    g = a.T @ a
    c = a.T @ b
    x = np.zeros((a.shape[1], b.shape[1]))
    want = set(steps)
    out = []
    for k in range(1, max(steps) + 1):
        x = x - eta * (g @ x - c)
        if k in want:
            out.append(x.copy())
    return GDRun(tuple(steps), tuple(out), eta, max(steps))


def ridge_solve(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """argmin ||A x - b||^2 + lam ||x||^2 per column, via the normal equations (Cholesky)."""
    g = a.T @ a + lam * np.eye(a.shape[1])
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(g), a.T @ b)


def measured_filters(x_probe: np.ndarray, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
    """phi_j = s_j v_j^T x(u_j) and the largest off-diagonal leakage |s_j v_i^T x(u_j)| (i != j).

    ``x_probe[:, j]`` is the estimator applied to the data y = u_j.
    """
    proj = v.T @ x_probe  # (modes, probes): V^T R U
    phi = np.diag(proj) * s
    off = np.abs(proj * s[None, :])
    np.fill_diagonal(off, 0.0)
    return phi, float(off.max())


def _study(a: np.ndarray, cfg: FiltersConfig, noisy: np.ndarray | None, x_true: np.ndarray | None) -> dict[str, Any]:
    """Everything measured on one operator: filters, matched lambdas, gaps, reconstruction errors."""
    u, s, vt = np.linalg.svd(a)
    v = vt.T
    m = a.shape[0]
    # Modes above the numerical rank only: below it no estimator's filter is measurable.
    keep = s > s[0] * m * EPS
    eta = cfg.step_scale / s[0] ** 2
    steps = checkpoints(cfg.t_max, cfg.n_checkpoints)
    rhs = u if noisy is None else np.hstack([u, noisy])
    t0 = time.perf_counter()
    gd = run_gd(a, rhs, eta, steps)
    t_gd = time.perf_counter() - t0
    # The ridge path spans the penalties GD's checkpoints correspond to (lam ~ 0.5/(eta t)), with a
    # decade of margin; below it the normal equations lose accuracy without showing anything new.
    lam_grid = np.geomspace(0.1 / (eta * max(steps)), 1.0 / eta, cfg.n_lambdas)
    rows: list[dict[str, Any]] = []
    gd_err_max = 0.0
    ridge_err_max = 0.0
    leak_max = 0.0
    for t, x_t in zip(gd.steps, gd.iterates):
        phi_gd, leak = measured_filters(x_t[:, :m], s, v)
        leak_max = max(leak_max, leak)
        closed_gd = gd_filter(s, eta, t)
        gd_err_max = max(gd_err_max, float(np.max(np.abs(phi_gd - closed_gd)[keep])))
        match = best_matching_lambda(s[keep], phi_gd[keep])
        x_r = ridge_solve(a, rhs, match.lam)
        phi_r, leak_r = measured_filters(x_r[:, :m], s, v)
        leak_max = max(leak_max, leak_r)
        ridge_err_max = max(ridge_err_max, float(np.max(np.abs(phi_r - ridge_filter(s, match.lam))[keep])))
        diff = np.abs(phi_gd - phi_r)[keep]
        cont = continuum_gd_ridge_gap(t)
        row = {
            "t": t,
            "lambda": match.lam,
            "lambda_eta_t": match.lam * eta * t,
            "gap": float(diff.max()),
            "gap_closed_form": match.gap,
            "worst_mode": int(np.flatnonzero(keep)[int(np.argmax(diff))]),
            "worst_s": float(s[keep][int(np.argmax(diff))]),
            "continuum_gap": cont.gap,
            "continuum_lambda_eta_t": cont.lam * t,
            "converged": match.converged and cont.converged,
            "n_iter": match.n_iter,
            "phi_gd": phi_gd.tolist(),
            "phi_ridge": phi_r.tolist(),
            "phi_gd_closed": closed_gd.tolist(),
            "phi_ridge_closed": ridge_filter(s, match.lam).tolist(),
        }
        if noisy is not None and x_true is not None:
            err_gd = np.linalg.norm(x_t[:, m:] - x_true[:, None], axis=0) / np.linalg.norm(x_true)
            err_r = np.linalg.norm(x_r[:, m:] - x_true[:, None], axis=0) / np.linalg.norm(x_true)
            ci_gd, ci_r = mean_ci(err_gd, cfg.level), mean_ci(err_r, cfg.level)
            ci_d = mean_ci(err_r - err_gd, cfg.level)
            row |= {
                "err_gd": ci_gd.mean,
                "err_gd_ci_low": ci_gd.low,
                "err_gd_ci_high": ci_gd.high,
                "err_ridge_matched": ci_r.mean,
                "err_ridge_matched_ci_low": ci_r.low,
                "err_ridge_matched_ci_high": ci_r.high,
                "err_diff": ci_d.mean,
                "err_diff_ci_low": ci_d.low,
                "err_diff_ci_high": ci_d.high,
                "err_gd_draws": err_gd.tolist(),
            }
        rows.append(row)
    # The ridge path on its own grid (filters measured too, for the closed-form check).
    ridge_path: list[dict[str, Any]] = []
    for lam in lam_grid:
        x_r = ridge_solve(a, rhs, float(lam))
        phi_r, _ = measured_filters(x_r[:, :m], s, v)
        ridge_err_max = max(ridge_err_max, float(np.max(np.abs(phi_r - ridge_filter(s, lam))[keep])))
        entry: dict[str, Any] = {"lambda": float(lam)}
        if noisy is not None and x_true is not None:
            err = np.linalg.norm(x_r[:, m:] - x_true[:, None], axis=0) / np.linalg.norm(x_true)
            ci = mean_ci(err, cfg.level)
            entry |= {"err": ci.mean, "err_ci_low": ci.low, "err_ci_high": ci.high, "err_draws": err.tolist()}
        ridge_path.append(entry)
    lams = np.concatenate([lam_grid, [r["lambda"] for r in rows]])
    cond_ridge = float(np.max((s[0] ** 2 + lams) / (s[keep][-1] ** 2 + lams)))
    return {
        "s": s.tolist(),
        "n_modes": int(m),
        "n_modes_used": int(keep.sum()),
        "eta": eta,
        "steps": list(gd.steps),
        "rows": rows,
        "ridge_path": ridge_path,
        "gd_closed_form_max_error": gd_err_max,
        "ridge_closed_form_max_error": ridge_err_max,
        "max_leakage": leak_max,
        "gd_n_iter": gd.n_iter,
        "gd_wall_s": t_gd,
        "ridge_cond_max": cond_ridge,
    }


def _checks(cfg: FiltersConfig, wide: dict[str, Any], narrow: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for label, st in (("wide", wide), ("narrow", narrow)):
        tol_gd = 10.0 * max(st["steps"]) * st["n_modes"] * EPS
        obs = st["gd_closed_form_max_error"]
        checks.append(
            Check(
                f"{LENS}.gd_closed_form[{label}]",
                bool(obs <= tol_gd),
                obs,
                0.0,
                tol_gd,
                f"{label} spectrum: max |measured GD filter - (1 - (1 - eta s^2)^t)| = {obs:.3g} over {st['n_modes_used']} "
                f"modes and {len(st['steps'])} checkpoints; tolerance 10 t_max m eps = {tol_gd:.3g}",
            )
        )
        tol_r = 10.0 * st["n_modes"] * EPS * st["ridge_cond_max"]
        obs = st["ridge_closed_form_max_error"]
        checks.append(
            Check(
                f"{LENS}.ridge_closed_form[{label}]",
                bool(obs <= tol_r),
                obs,
                0.0,
                tol_r,
                f"{label} spectrum: max |measured ridge filter - s^2/(s^2+lam)| = {obs:.3g}; tolerance 10 m eps "
                f"cond(A^T A + lam I) = {tol_r:.3g} (backward-stable Cholesky solve)",
            )
        )
        viol = [(r["t"], r["gap"], r["continuum_gap"]) for r in st["rows"] if r["gap"] > r["continuum_gap"] + 1e-6]
        checks.append(
            Check(
                f"{LENS}.gap_within_continuum_bound[{label}]",
                not viol,
                max(r["gap"] - r["continuum_gap"] for r in st["rows"]),
                0.0,
                1e-6,
                f"{label} spectrum: for every t the measured minimax gap is at most the continuum value "
                f"min_lam sup_x |GD - ridge| (any spectrum is a subset of (0, 1] in eta s^2); "
                f"violations: {viol or 'none'}",
            )
        )
        nc = [r["t"] for r in st["rows"] if not r["converged"]]
        checks.append(
            Check(
                f"{LENS}.matching_converged[{label}]",
                not nc,
                float(len(nc)),
                0.0,
                0.0,
                f"{label} spectrum: the bisection for lam(t) converged at {len(st['rows']) - len(nc)}/{len(st['rows'])} "
                f"checkpoints" + (f"; not at t={nc}" if nc else ""),
            )
        )
    low = [
        (r["t"], round(r["gap"], 4), round(r["continuum_gap"], 4))
        for r in wide["rows"]
        if r["gap"] < 0.5 * r["continuum_gap"]
    ]
    wmin = min(r["gap"] for r in wide["rows"])
    checks.append(
        Check(
            f"{LENS}.no_single_lambda[wide]",
            not low,
            wmin,
            None,
            None,
            f"wide spectrum: at every checkpoint the best single lam still misses GD's filter by at least half the "
            f"continuum value min_lam sup_x |GD - ridge| (smallest measured gap {wmin:.3g}; the continuum value tends to "
            f"{wide['rows'][-1]['continuum_gap']:.3g} for large t); checkpoints below half: {low or 'none'}",
        )
    )
    wmean = float(np.mean([r["gap"] for r in wide["rows"]]))
    nmean = float(np.mean([r["gap"] for r in narrow["rows"]]))
    checks.append(
        Check(
            f"{LENS}.narrow_band_closer",
            bool(nmean < wmean),
            nmean,
            wmean,
            None,
            f"mean minimax gap over the checkpoints: {nmean:.3g} on the narrow spectrum (condition "
            f"{cfg.narrow_condition:g}) vs {wmean:.3g} on the wide one; B.12: the equivalence improves when the "
            f"spectrum is narrow (once eta t s_min^2 >> 1 both filters are ~1 on every mode)",
            severity="info",
        )
    )
    return checks


def _filter_figure(wide: dict[str, Any]) -> Figure:
    s = wide["s"]
    keep = wide["n_modes_used"]
    rows = wide["rows"]
    pick = sorted({0, len(rows) // 3, (2 * len(rows)) // 3, len(rows) - 1})
    traces = []
    for i in pick:
        r = rows[i]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"GD t={r['t']}, measured",
                "x": fig.floats(s[:keep]),
                "y": fig.floats(r["phi_gd"][:keep]),
            }
        )
        traces.append(
            fig.curve_trace(s[:keep], r["phi_gd_closed"][:keep], f"1-(1-eta s^2)^t, t={r['t']}", dash="solid")
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "marker": {"symbol": "x"},
                "name": f"ridge lam(t)={r['lambda']:.3g}, measured",
                "x": fig.floats(s[:keep]),
                "y": fig.floats(r["phi_ridge"][:keep]),
            }
        )
        traces.append(fig.curve_trace(s[:keep], r["phi_ridge_closed"][:keep], f"s^2/(s^2+lam), lam={r['lambda']:.3g}"))
    return fig.figure(
        "filters_factors",
        "Filter factors per singular value: GD at t vs ridge at matched lam(t)",
        traces,
        xlabel="singular value s",
        ylabel="filter factor phi",
        xlog=True,
        caption="Markers: filters measured by running GD / solving ridge on y = u_j and projecting on "
        "v_j; lines: closed forms.",
    )


def _gap_figure(wide: dict[str, Any], narrow: dict[str, Any]) -> Figure:
    t = [r["t"] for r in wide["rows"]]
    traces = [
        fig.line_trace(t, [r["gap"] for r in wide["rows"]], "wide spectrum (blur), measured"),
        fig.line_trace(
            [r["t"] for r in narrow["rows"]], [r["gap"] for r in narrow["rows"]], "narrow spectrum, measured"
        ),
        fig.curve_trace(t, [r["continuum_gap"] for r in wide["rows"]], "continuum bound min_lam sup_x"),
        fig.line_trace(t, [r["lambda_eta_t"] for r in wide["rows"]], "lam(t) * eta * t (wide)"),
    ]
    return fig.figure(
        "filters_gap",
        "How badly no single ridge penalty matches early-stopped GD",
        traces,
        xlabel="GD steps t",
        ylabel="max per-mode |phi_GD - phi_ridge|  /  lam(t) eta t",
        xlog=True,
        caption="lam(t) eta t near a constant is the 'lam ~ 1/(eta t)' rule of thumb.",
    )


def _recon_figure(wide: dict[str, Any]) -> Figure:
    rows = wide["rows"]
    eta = wide["eta"]
    x_gd = [1.0 / (eta * r["t"]) for r in rows]
    traces = fig.band_traces(x_gd, [r["err_gd_ci_low"] for r in rows], [r["err_gd_ci_high"] for r in rows], "GD")
    traces.append(fig.line_trace(x_gd, [r["err_gd"] for r in rows], "GD at t (plotted at 1/(eta t))"))
    rp = wide["ridge_path"]
    traces.append(
        fig.errorbar_trace(
            [e["lambda"] for e in rp],
            [e["err"] for e in rp],
            [e["err_ci_low"] for e in rp],
            [e["err_ci_high"] for e in rp],
            "ridge at lam",
            mode="lines+markers",
        )
    )
    traces.append(
        fig.line_trace([r["lambda"] for r in rows], [r["err_ridge_matched"] for r in rows], "ridge at matched lam(t)")
    )
    return fig.figure(
        "filters_reconstruction",
        "Reconstruction error along the GD and ridge paths",
        traces,
        xlabel="regularization lam (GD: 1/(eta t))",
        ylabel="relative error ||x - x*||/||x*||",
        xlog=True,
        ylog=True,
    )


def _table(wide: dict[str, Any]) -> Table:
    rows = [
        [
            r["t"],
            r["lambda"],
            r["lambda_eta_t"],
            r["gap"],
            r["continuum_gap"],
            r["worst_s"],
            r["err_gd"],
            r["err_ridge_matched"],
            r["err_diff_ci_low"],
            r["err_diff_ci_high"],
        ]
        for r in wide["rows"]
    ]
    return Table(
        "filters_matching",
        "GD at t vs ridge at its best-matching lam(t) (wide spectrum)",
        [
            "t",
            "lam(t)",
            "lam eta t",
            "max gap",
            "continuum gap",
            "worst s",
            "err GD",
            "err ridge",
            "diff CI low",
            "diff CI high",
        ],
        rows,
        caption="diff = ridge error - GD error per noise draw (t-interval).",
    )


def _best(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(entries, key=lambda e: e[key])


def run_filters(config: FiltersConfig, seed: int) -> LensResult:
    """Run the spectral-filters lens."""
    cfg = config
    t0 = time.perf_counter()
    a = gaussian_blur(cfg.m, cfg.blur_width)
    x_true = true_signal(cfg.m)
    clean = a @ x_true
    rng = as_generator(derive_seed(seed, "filters-noise"))
    sigma = cfg.noise_level * float(np.sqrt(np.mean(clean**2)))
    noisy = clean[:, None] + sigma * rng.standard_normal((cfg.m, cfg.n_noise))
    wide = _study(a, cfg, noisy, x_true)
    narrow = _study(narrow_operator(cfg.m, cfg.narrow_condition, derive_seed(seed, "filters-narrow")), cfg, None, None)
    checks = _checks(cfg, wide, narrow)
    worst = max(wide["rows"], key=lambda r: r["gap"])
    best_gd = _best(wide["rows"], "err_gd")
    best_r = _best(wide["ridge_path"], "err")
    # Paired comparison of the two optima over the same noise draws.
    diff = mean_ci(np.array(best_r["err_draws"]) - np.array(best_gd["err_gd_draws"]), cfg.level)
    estimates = [
        Estimate(
            f"{LENS}.max_filter_gap",
            worst["gap"],
            None,
            None,
            method="exact: minimax over lam by bisection on measured filters (deterministic, no sampling error)",
            n=wide["n_modes_used"],
            converged=worst["converged"],
            n_iter=worst["n_iter"],
            note=f"at t={worst['t']}, lam(t)={worst['lambda']:.3g}, worst mode s={worst['worst_s']:.3g}",
        ),
        Estimate(
            f"{LENS}.continuum_gap",
            worst["continuum_gap"],
            None,
            None,
            method="theory: minimax on a 20001-point grid of eta s^2 in (0, 1]",
            converged=True,
            note="a closed-form bound evaluated on a grid: deterministic, no sampling interval",
        ),
        Estimate(
            f"{LENS}.narrow_max_gap",
            max(r["gap"] for r in narrow["rows"]),
            None,
            None,
            method="exact: minimax on measured filters",
            n=narrow["n_modes_used"],
            note="deterministic: computed from filters measured without noise, no sampling interval",
        ),
        Estimate(
            f"{LENS}.best_gd_error",
            best_gd["err_gd"],
            best_gd["err_gd_ci_low"],
            best_gd["err_gd_ci_high"],
            level=cfg.level,
            method="t-interval over noise draws",
            n=cfg.n_noise,
            note=f"best checkpoint t={best_gd['t']} (selected on the same draws: optimistic)",
        ),
        Estimate(
            f"{LENS}.best_ridge_error",
            best_r["err"],
            best_r["err_ci_low"],
            best_r["err_ci_high"],
            level=cfg.level,
            method="t-interval over noise draws",
            n=cfg.n_noise,
            note=f"best lam={best_r['lambda']:.3g} on a {cfg.n_lambdas}-point grid (selected on the same draws)",
        ),
        Estimate(
            f"{LENS}.best_ridge_minus_best_gd",
            diff.mean,
            diff.low,
            diff.high,
            stderr=diff.stderr,
            level=cfg.level,
            method="paired t-interval over noise draws",
            n=cfg.n_noise,
        ),
    ]
    wall = time.perf_counter() - t0
    metrics = {
        f"{LENS}.max_filter_gap": worst["gap"],
        f"{LENS}.continuum_gap": worst["continuum_gap"],
        f"{LENS}.narrow_max_gap": estimates[2].value,
        f"{LENS}.gap_at_t_max": wide["rows"][-1]["gap"],
        f"{LENS}.best_gd_error": best_gd["err_gd"],
        f"{LENS}.best_ridge_error": best_r["err"],
        f"{LENS}.closed_form_max_error": max(wide["gd_closed_form_max_error"], wide["ridge_closed_form_max_error"]),
    }
    for e in wide["ridge_path"]:
        e.pop("err_draws", None)  # per-draw values were only needed for the paired interval
    for r in wide["rows"]:
        r.pop("err_gd_draws", None)
    data = {
        "operator": {
            "kind": "gaussian blur",
            "m": cfg.m,
            "width": cfg.blur_width,
            "condition": wide["s"][0] / wide["s"][wide["n_modes_used"] - 1],
        },
        "noise_sigma": sigma,
        "eta": wide["eta"],
        "wide": wide,
        "narrow": narrow,
        "worst": {k: worst[k] for k in ("t", "lambda", "gap", "continuum_gap", "worst_s", "lambda_eta_t")},
        "metrics": metrics,
        "wall_time_s": wall,
    }
    assumptions = [
        Assumption(
            "eta = step_scale/s_max^2 <= 1/s_max^2, so eta s^2 lies in (0, 1] on every mode",
            "construction",
            status="holds",
        ),
        Assumption(
            "Filters are measured only on modes above the numerical rank (s > m eps s_max)",
            "floating point",
            status="holds",
        ),
        Assumption(
            "The operator A is applied through A^T A, so GD's dynamics are normal in the SVD basis "
            "(measured off-diagonal leakage reported)",
            "B.12",
            checked_by=f"{LENS}.gd_closed_form[wide]",
            status="holds" if checks[0].passed else "violated",
        ),
    ]
    predictions = {
        "gd_filter": "1 - (1 - eta s^2)^t",
        "ridge_filter": "s^2/(s^2 + lam)",
        "continuum_gap": {str(r["t"]): r["continuum_gap"] for r in wide["rows"]},
    }
    notes = (
        "Non-normal operators (iterating on A itself) are not covered: with the normal equations GD is always "
        "diagonal in the SVD basis, which the measured leakage confirms.",
    )
    return LensResult(
        LENS,
        tuple(estimates),
        tuple(checks),
        (_filter_figure(wide), _gap_figure(wide, narrow), _recon_figure(wide)),
        (_table(wide),),
        tuple(assumptions),
        predictions,
        data,
        notes,
    )
