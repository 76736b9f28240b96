"""The parts measured on exactly solvable quadratics: noise floor, local-SGD drift, staleness.

Each function turns the workers' records of its own tasks into a :class:`Part`. The predictions
come from :mod:`.theory` (closed forms and exact linear recurrences), never from the measurement.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from multilens.errors import ConvergenceWarning
from multilens.lenses.distributed import theory
from multilens.lenses.distributed.analysis import (
    curve_band,
    delay_distribution,
    drift_rows,
    floor_estimate,
    stale_rows,
    task_records,
)
from multilens.lenses.distributed.common import EPS64, err_trace, f, layout, subsample, trace
from multilens.lenses.distributed.jobs import drift_eta, noise_variants, quadratic_seed, shards_seed, stale_eta
from multilens.lenses.distributed.problems import make_least_squares_shards, make_quadratic
from multilens.lenses.distributed.settings import LocalSgdSettings, NoiseFloorSettings, StalenessSettings
from multilens.lenses.distributed.timing import ratio_ci
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Figure,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_in_interval,
    check_within,
    metric_with_interval,
)
from multilens.stats import DETERMINISTIC

THEOREM = "seed line 172 (distributed convergence structure; example 10, B.6)"


def _dropped(n: int) -> str:
    return f"; {n} non-finite replica(s) dropped" if n else ""


# ---------------------------------------------------------------------------------------------
# Noise floor vs workers (and delayed noise)
# ---------------------------------------------------------------------------------------------


def noise_floor_part(ps: NoiseFloorSettings, seed: int, outputs: Any) -> Part:
    q = make_quadratic(ps.dim, ps.kappa, ps.init_dist, quadratic_seed(seed))
    eta = ps.eta_l  # L = 1
    init_sq = float(np.sum((q.theta0 - q.theta_star) ** 2))
    coords = q.eigvecs.T @ (q.theta0 - q.theta_star)
    estimates: list[Estimate] = []
    checks: list[Check] = []
    figures: list[Figure] = []
    metrics: dict[str, float] = {}
    floors = {}
    curve_traces: list[dict] = []
    worst_ratio: tuple[float, float, int, int] | None = None  # (measured/bound, exact/bound, m, t)
    for m in sorted(ps.workers):
        rec0 = task_records(outputs, f"noise_m{m}")[0]
        exact = theory.exact_stationary_floor(q.eigvals, eta, ps.sigma2, m)
        bound = theory.theorem_floor(q.mu, eta, ps.sigma2, m)
        fe = floor_estimate(rec0, 0, "sync", m, exact, bound, ps.level)
        floors[m] = fe
        # The tail average measures the stationary floor only if the exact transient has died out by burn_in.
        left = float(theory.exact_error_curve(q.eigvals, coords, eta, ps.sigma2, m, np.array([ps.burn_in]))[0]) - exact
        ok = left <= ps.burn_in_tolerance * exact
        if not ok:
            warnings.warn(
                f"noise floor m={m}: after burn_in={ps.burn_in} steps the transient is still {left / exact:.2%} "
                "of the floor; increase `noise_floor.burn_in`.",
                ConvergenceWarning,
                stacklevel=2,
            )
        checks.append(
            Check(
                f"noise_floor_burn_in_m{m}",
                bool(ok),
                left / exact,
                0.0,
                ps.burn_in_tolerance,
                f"exact transient left at step {ps.burn_in} = {left / exact:.3g} of the floor "
                f"({'<=' if ok else '>'} {ps.burn_in_tolerance:g})",
                kind="sanity",
                criterion="exact remaining transient / exact floor <= burn_in_tolerance",
            )
        )
        estimates.append(
            Estimate(
                f"noise_floor_m{m}",
                f(fe.value),
                f(fe.ci_low),
                f(fe.ci_high),
                f(fe.se),
                ps.level,
                fe.method,
                fe.n,
                "squared parameter distance",
                note=_dropped(fe.n_dropped).lstrip("; "),
                converged=None,
                n_iter=ps.steps,
                n_dropped=fe.n_dropped,
                no_interval_reason="" if f(fe.ci_low) is not None else "fewer than 2 finite replicas",
            )
        )
        c = check_in_interval(
            f"noise_floor_exact_m{m}",
            exact,
            f(fe.ci_low),
            f(fe.ci_high),
            kind="agreement",
            what=f"exact stationary floor sum_i eta sigma^2/(d m lam_i (2 - eta lam_i)) for m={m} in the measured CI",
        )
        checks.append(_with_dropped(c, fe.n_dropped))
        c = check_bound(
            f"noise_floor_bound_m{m}",
            f(fe.ci_high),
            bound,
            exact=exact,
            what=f"upper end of the measured floor interval (m={m}) vs the theorem's eta*sigma^2/(mu*m)",
        )
        checks.append(_with_dropped(c, fe.n_dropped))
        mean, lo, hi = curve_band(rec0, 0, ps.level)
        steps = np.arange(mean.size)
        bound_curve = theory.theorem_bound_curve(steps, init_sq, q.mu, eta, ps.sigma2, m)
        exact_curve = theory.exact_error_curve(q.eigvals, coords, eta, ps.sigma2, m, steps)
        r_meas = lo / bound_curve
        t_star = int(np.nanargmax(r_meas))
        cand = (float(r_meas[t_star]), float(np.max(exact_curve / bound_curve)), m, t_star)
        if worst_ratio is None or cand[0] > worst_ratio[0]:
            worst_ratio = cand
        idx = subsample(mean.size)
        curve_traces += [
            trace(steps[idx], mean[idx], f"measured m={m}", "lines"),
            trace(steps[idx], exact_curve[idx], f"exact E||e||^2 m={m}", "lines", line={"dash": "dash"}),
            trace(steps[idx], bound_curve[idx], f"theorem bound m={m}", "lines", line={"dash": "dot"}),
        ]
    assert worst_ratio is not None
    checks.append(
        check_bound(
            "noise_floor_bound_every_step",
            worst_ratio[0],
            1.0,
            exact=worst_ratio[1],
            what=(
                f"max over m and t of (measured CI low) / ((1-mu*eta)^t ||e0||^2 + eta*sigma^2/(mu*m)) "
                f"(at m={worst_ratio[2]}, t={worst_ratio[3]}); the exact curve's largest ratio is "
                f"{worst_ratio[1]:.3g}, so bound/exact below is where the bound is tightest"
            ),
        )
    )
    eta_ok = eta * q.lipschitz <= 1.0 + 1e-12
    checks.append(
        Check(
            "noise_floor_step_size_in_theorem_range",
            bool(eta_ok),
            eta * q.lipschitz,
            1.0,
            0.0,
            f"eta*L = {eta * q.lipschitz:g} {'<=' if eta_ok else '>'} 1 (the theorem assumes 0 < eta <= 1/L)",
            kind="sanity",
            criterion="eta * L <= 1",
        )
    )
    figures.append(
        Figure(
            "distributed_error_vs_steps",
            "E||theta_t - theta*||^2 vs steps: measured, exact, and the theorem's bound",
            curve_traces,
            layout("step t", "E||theta_t - theta*||^2", ylog=True),
            f"Mean over {ps.replicas} replicas of synchronous averaged SGD on a {ps.dim}-d quadratic "
            f"(kappa={ps.kappa:g}, eta*L={ps.eta_l:g}, sigma^2={ps.sigma2:g} per worker).",
        )
    )
    # floor(base) / floor(k): predicted k / base
    base = min(ps.workers)
    ratios = []
    recs: list[Recommendation] = []
    for k in sorted(ps.workers):
        if k == base:
            continue
        fb, fk = floors[base], floors[k]
        r, lo, hi = ratio_ci(fb.value, fb.se, fk.value, fk.se, ps.level)
        pred = k / base
        ratios.append({"k": k, "base": base, "ratio": f(r), "ci_low": f(lo), "ci_high": f(hi), "predicted": pred})
        est = Estimate(
            f"noise_floor_ratio_{k}",
            f(r),
            f(lo),
            f(hi),
            None,
            ps.level,
            "delta method on the log ratio of independent replica means",
            fb.n + fk.n,
            "ratio",
            n_dropped=fb.n_dropped + fk.n_dropped,
            no_interval_reason="" if f(lo) is not None else "a floor estimate has no standard error",
        )
        estimates.append(est)
        metrics |= metric_with_interval(f"distributed.noise_floor_ratio_{k}", est)
        name = f"noise_floor_ratio_{k}"
        c = check_in_interval(
            name, pred, f(lo), f(hi), kind="agreement", what=f"floor(m={base})/floor(m={k}) interval contains {pred:g}"
        )
        checks.append(_with_dropped(c, fb.n_dropped + fk.n_dropped))
        if f(r) is not None and f(lo) is not None:
            recs.append(
                Recommendation(
                    f"Averaging gradients over {k} workers cut the SGD noise floor by {r:.2f}x [{lo:.2f}, {hi:.2f}] "
                    f"(theory: {pred:g}x): at a fixed step size, data parallelism buys a lower floor, not only "
                    "throughput.",
                    rests_on=(name, f"noise_floor_exact_m{base}", f"noise_floor_exact_m{k}"),
                )
            )
    ms = sorted(floors)
    mgrid = np.linspace(min(ms), max(ms), 50)
    figures.append(
        Figure(
            "distributed_noise_floor_vs_workers",
            "Noise floor vs number of workers",
            [
                err_trace(
                    ms,
                    [floors[m].value for m in ms],
                    [floors[m].ci_low for m in ms],
                    [floors[m].ci_high for m in ms],
                    "measured (CI)",
                ),
                trace(
                    mgrid,
                    [theory.exact_stationary_floor(q.eigvals, eta, ps.sigma2, 1) / m for m in mgrid],
                    "exact (1/m)",
                    "lines",
                    line={"dash": "dash"},
                ),
                trace(
                    mgrid,
                    [theory.theorem_floor(q.mu, eta, ps.sigma2, 1) / m for m in mgrid],
                    "theorem bound",
                    "lines",
                    line={"dash": "dot"},
                ),
            ],
            layout("workers m", "stationary E||theta - theta*||^2", xlog=True, ylog=True),
        )
    )
    bound_ratio = theory.theorem_floor(q.mu, eta, ps.sigma2, 1) / theory.exact_stationary_floor(
        q.eigvals, eta, ps.sigma2, 1
    )
    metrics["distributed.noise_floor_bound_over_exact"] = float(bound_ratio)
    delay_rows, delay_checks, delay_est, delay_figs = _delayed(ps, seed, outputs, q)
    checks += delay_checks
    estimates += delay_est
    figures += delay_figs
    table = Table(
        "distributed_noise_floor",
        "Noise floor per worker count (quadratic): measured, exact, and the theorem's bound",
        ["workers", "measured", "CI low", "CI high", "exact", "bound", "bound / exact"],
        [
            [m, f(fe.value), f(fe.ci_low), f(fe.ci_high), f(fe.exact), f(fe.bound), f(fe.bound / fe.exact)]
            for m, fe in sorted(floors.items())
        ],
    )
    assumptions = [
        Assumption(
            "F is mu-strongly convex and L-smooth with known mu, L (quadratic with spectrum linspace(1/kappa, 1))",
            THEOREM,
            ("noise_floor_exact_m*",),
        ),
        Assumption("constant step 0 < eta <= 1/L", THEOREM, ("noise_floor_step_size_in_theorem_range",)),
        Assumption(
            "the time average after burn-in measures the stationary floor (the transient has died out)",
            "exact error curve",
            ("noise_floor_burn_in_m*",),
        ),
    ]
    if ratios:
        assumptions.append(
            Assumption(
                "worker gradients unbiased with variance sigma^2, independent across workers and steps "
                "(synthetic Gaussian, seeded per rank), so averaging over m divides the noise variance by m",
                THEOREM,
                ("noise_floor_ratio_*",),
            )
        )
    predictions = {
        "noise_floor_exact": {str(m): theory.exact_stationary_floor(q.eigvals, eta, ps.sigma2, m) for m in ps.workers},
        "noise_floor_bound": {str(m): theory.theorem_floor(q.mu, eta, ps.sigma2, m) for m in ps.workers},
        "noise_floor_ratio": {str(r["k"]): r["predicted"] for r in ratios},
        "floor_formula": "E||e||^2 = sum_i eta*sigma^2 / (d*m*lam_i*(2 - eta*lam_i)), sigma^2 = E||xi||^2 per worker",
        "mu": q.mu,
        "L": q.lipschitz,
        "eta": eta,
    }
    data = {
        "floors": {str(m): fe.to_dict() for m, fe in floors.items()},
        "ratios": ratios,
        "delayed_noise_floors": delay_rows,
    }
    return Part("noise_floor", estimates, checks, figures, [table], assumptions, recs, metrics, {}, predictions, data)


def _with_dropped(c: Check, n_dropped: int) -> Check:
    if not n_dropped:
        return c
    from dataclasses import replace

    return replace(c, reason=c.reason + _dropped(n_dropped))


def _delayed(
    ps: NoiseFloorSettings, seed: int, outputs: Any, q: Any
) -> tuple[list[dict], list[Check], list[Estimate], list[Figure]]:
    """Delayed noisy SGD at ``delay_workers``: constant delays against the Lyapunov floor, random delays."""
    rows: list[dict] = []
    checks: list[Check] = []
    estimates: list[Estimate] = []
    figures: list[Figure] = []
    if not ps.with_delays:
        return rows, checks, estimates, figures
    mw, eta = ps.delay_workers, ps.eta_l
    variants = noise_variants(ps, True)
    recs = task_records(outputs, f"noise_m{mw}")
    rec0 = recs[0]
    bound = theory.theorem_floor(q.mu, eta, ps.sigma2, mw)
    for i, v in enumerate(variants):
        if v["delay"] == "none":
            continue
        tau = int(v.get("tau", 0))
        exact = theory.delayed_stationary_floor(q.eigvals, eta, ps.sigma2, mw, tau) if v["delay"] == "const" else None
        fe = floor_estimate(rec0, i, v["name"], mw, exact, bound, ps.level)
        row = {
            "variant": v["name"],
            "workers": mw,
            "floor": f(fe.value),
            "ci_low": f(fe.ci_low),
            "ci_high": f(fe.ci_high),
            "exact": f(exact),
        }
        estimates.append(
            Estimate(
                f"delayed_floor_{v['name']}",
                f(fe.value),
                f(fe.ci_low),
                f(fe.ci_high),
                f(fe.se),
                ps.level,
                fe.method,
                fe.n,
                n_dropped=fe.n_dropped,
                n_iter=ps.steps,
                no_interval_reason="" if f(fe.ci_low) is not None else "fewer than 2 finite replicas",
            )
        )
        if v["delay"] == "const":
            c = check_in_interval(
                f"noise_floor_delayed_exact_tau{tau}",
                f(exact),
                f(fe.ci_low),
                f(fe.ci_high),
                kind="agreement",
                what=f"Lyapunov floor with constant delay {tau} (m={mw}) in the measured CI",
            )
            checks.append(_with_dropped(c, fe.n_dropped))
        else:
            dd = delay_distribution(recs, i, v["delay"])
            row["delay_distribution"] = dd.to_dict()
            largest = (
                len(dd.realized_counts)
                - 1
                - next((j for j, c in enumerate(reversed(dd.realized_counts)) if c > 0), len(dd.realized_counts))
            )
            checks.append(
                Check(
                    "noise_floor_delay_bounded",
                    bool(largest <= dd.tau_max),
                    float(largest),
                    float(dd.tau_max),
                    0.0,
                    f"largest applied delay {largest} <= tau_max = {dd.tau_max} (bounded staleness)",
                    kind="sanity",
                    criterion="largest applied delay <= tau_max",
                )
            )
            checks.append(
                Check(
                    "noise_floor_delay_distribution_matches_stated",
                    None if dd.chi2_pvalue is None else bool(dd.chi2_pvalue >= 1e-3),
                    dd.chi2_pvalue,
                    1e-3,
                    None,
                    f"chi-square goodness of fit of {dd.n} drawn delays to the stated {dd.kind} pmf: "
                    f"p = {dd.chi2_pvalue if dd.chi2_pvalue is None else f'{dd.chi2_pvalue:.3g}'}",
                    severity="info",
                    kind="sanity",
                    criterion="chi-square p-value >= 1e-3",
                )
            )
            n = max(sum(dd.window_counts), 1)
            figures.append(
                Figure(
                    "distributed_delay_distribution",
                    f"Realized delay distribution ({dd.kind}, tau_max={dd.tau_max})",
                    [
                        {
                            "type": "bar",
                            "name": "realized",
                            "x": list(range(dd.tau_max + 1)),
                            "y": [c / n for c in dd.window_counts],
                        },
                        {"type": "bar", "name": "stated pmf", "x": list(range(dd.tau_max + 1)), "y": list(dd.pmf)},
                    ],
                    layout("delay tau (steps)", "probability") | {"barmode": "group"},
                    f"{dd.n} delays drawn by the workers' delay buffers on the noisy quadratic.",
                )
            )
        rows.append(row)
    return rows, checks, estimates, figures


# ---------------------------------------------------------------------------------------------
# Local SGD drift
# ---------------------------------------------------------------------------------------------


def local_sgd_part(ps: LocalSgdSettings, seed: int, outputs: Any) -> Part:
    shards = make_least_squares_shards(ps.dim, ps.workers, ps.rows_per_worker, ps.heterogeneity, shards_seed(seed))
    eta = drift_eta(ps, seed)
    rec0 = task_records(outputs, "local_drift")[0]
    rows = drift_rows(rec0, shards, eta, ps.steps)
    checks: list[Check] = []
    worst_c = max(r.contraction for r in rows)
    if worst_c > 1e-3:
        warnings.warn(
            f"local SGD did not reach its fixed point in local_sgd.steps={ps.steps} (a factor {worst_c:.2g} of the "
            "start is left); the measured drift includes that transient. Increase `local_sgd.steps`.",
            ConvergenceWarning,
            stacklevel=2,
        )
    checks.append(
        Check(
            "local_sgd_reached_fixed_point",
            bool(worst_c <= 1e-3),
            worst_c,
            0.0,
            1e-3,
            f"largest (spectral radius of the round map)^rounds over (h, K) = {worst_c:.3g} (<= 1e-3 wanted)",
            kind="sanity",
            criterion="rho(round map)^rounds <= 1e-3",
        )
    )
    scale = max(1.0, float(np.max(np.abs(shards.theta_star))))
    tol = 1e3 * EPS64 * ps.steps * scale
    worst = max(r.max_abs_diff_vs_exact for r in rows)
    checks.append(
        check_within(
            "local_sgd_matches_exact_iterate",
            worst,
            0.0,
            tol,
            kind="agreement",
            what="max |distributed local-SGD iterate - exact affine-map iterate| over (h, K)",
        )
    )
    k1 = [r for r in rows if r.k == 1]
    finals = {(lev, k): np.asarray(th) for (lev, k), th in zip(rec0["combos"], rec0["final"])}
    if k1:
        d = max(float(np.max(np.abs(finals[(r.heterogeneity, 1)] - finals[(r.heterogeneity, 0)]))) for r in k1)
        checks.append(
            check_within(
                "local_sgd_k1_equals_sync",
                d,
                0.0,
                tol,
                kind="sanity",
                what="local SGD with K=1 vs gradient all-reduce (final parameters)",
            )
        )
    local = [r for r in rows if r.k > 0]
    hmax = max(ps.heterogeneity)
    ks = sorted({r.k for r in local})
    by_k = [next(r for r in local if r.k == k and r.heterogeneity == hmax) for k in ks]
    checks.append(
        _monotone(
            "local_sgd_drift_grows_with_k",
            [r.measured for r in by_k],
            f"at heterogeneity {hmax:g}, ||theta_bar - theta*||^2 over K={ks}",
        )
    )
    kmax = max(ks)
    hs = sorted(ps.heterogeneity)
    by_h = [next(r for r in local if r.k == kmax and r.heterogeneity == h) for h in hs]
    checks.append(
        _monotone(
            "local_sgd_drift_grows_with_heterogeneity",
            [r.measured for r in by_h],
            f"at K={kmax}, ||theta_bar - theta*||^2 over heterogeneity {hs}",
        )
    )
    estimates = [
        Estimate(
            f"local_sgd_drift_h{h:g}_k{r.k}",
            r.measured,
            method="distributed float64 local GD (noise-free)",
            n=1,
            unit="squared parameter distance",
            no_interval_reason=DETERMINISTIC,
            converged=None,
            n_iter=r.n_iter,
        )
        for h in (min(hs), hmax)
        for r in local
        if r.heterogeneity == h and r.k in (min(ks), kmax)
    ]
    traces = []
    for h in hs:
        sel = sorted((r for r in local if r.heterogeneity == h), key=lambda r: r.k)
        traces.append(trace([r.k for r in sel], [r.measured for r in sel], f"measured h={h:g}", "markers"))
        traces.append(
            trace(
                [r.k for r in sel],
                [r.asymptotic for r in sel],
                f"exact fixed-point drift h={h:g}",
                "lines",
                line={"dash": "dash"},
            )
        )
    figure = Figure(
        "distributed_local_sgd_drift",
        "Local-SGD drift ||theta_bar - theta*||^2 vs K and heterogeneity",
        traces,
        layout("local steps K", "||theta_bar - theta*||^2", xlog=True, ylog=True),
    )
    table = Table(
        "distributed_drift",
        "Local SGD on non-IID least squares (noise-free, float64; K=0 is gradient all-reduce)",
        ["heterogeneity", "K", "measured", "exact iterate", "fixed-point drift", "bytes sent", "contraction", "n_iter"],
        [
            [r.heterogeneity, r.k, r.measured, r.predicted, r.asymptotic, r.bytes_sent, r.contraction, r.n_iter]
            for r in rows
        ],
    )

    def small(v: float) -> str:  # K = 1 has no drift; its value is rounding error
        return "0 (rounding)" if abs(v) < 1e3 * EPS64 else f"{v:.2g}"

    recs = [
        Recommendation(
            f"On non-IID shards (heterogeneity {hmax:g}) local SGD converges to a point away from theta*: the drift "
            f"||theta_bar - theta*||^2 grows from {small(by_k[0].measured)} at K={ks[0]} to "
            f"{small(by_k[-1].measured)} at K={kmax}; with heterogeneous workers keep K small or correct the drift.",
            rests_on=(
                "local_sgd_matches_exact_iterate",
                "local_sgd_drift_grows_with_k",
                "local_sgd_reached_fixed_point",
            ),
        )
    ]
    assumptions = [
        Assumption(
            "shard objectives are quadratics whose Hessians differ (otherwise theta* is a fixed point of every "
            "local map and there is no drift)",
            "Woodworth et al. 2020",
            ("local_sgd_drift_grows_with_heterogeneity",),
        ),
        Assumption(
            "one round of local GD is the affine map theta -> mean_r A_r^K theta + mean_r S_r eta b_r",
            "theory.local_sgd_round_map",
            ("local_sgd_matches_exact_iterate",),
        ),
    ]
    data = {"eta": eta, "rows": [r.to_dict() for r in rows]}
    metrics = {"distributed.local_sgd_drift_kmax": float(by_k[-1].measured)}
    return Part("local_sgd", estimates, checks, [figure], [table], assumptions, recs, metrics, data=data)


def _monotone(name: str, values: list[float], what: str) -> Check:
    """Theory: drift grows; criterion: the measured sequence is nondecreasing (to relative 1e-9)."""
    ok = all(b >= a * (1 - 1e-9) for a, b in zip(values, values[1:]))
    return Check(
        name,
        bool(ok) if len(values) > 1 else None,
        values[-1] if values else None,
        values[0] if values else None,
        1e-9,
        f"{what}: {[f'{v:.3g}' for v in values]}" + ("" if len(values) > 1 else " (needs 2 or more values)"),
        kind="agreement",
        criterion="measured sequence nondecreasing (relative 1e-9), as client-drift theory predicts",
    )


# ---------------------------------------------------------------------------------------------
# Staleness
# ---------------------------------------------------------------------------------------------


def staleness_part(ps: StalenessSettings, seed: int, outputs: Any) -> Part:
    eta = stale_eta(ps)
    rows = stale_rows(task_records(outputs, "staleness")[0], eta, ps.dim, ps.steps)
    cls = [r for r in rows if r.classifiable and r.measured_rate is not None]
    n_agree = sum(r.measured_stable == r.predicted_stable for r in cls)
    checks = [
        Check(
            "staleness_stability_matches_theory",
            bool(n_agree == len(cls)) if cls else None,
            float(n_agree),
            float(len(cls)),
            0.0,
            f"{n_agree}/{len(cls)} (kappa, tau) runs away from the stability boundary agree with the "
            "companion-matrix spectral radius",
            kind="agreement",
            criterion="every classifiable run's measured stability equals the predicted one",
        )
    ]
    errs = [
        abs(r.measured_rate - r.predicted_rate) - (ps.rate_rel_tol * abs(r.predicted_rate) + ps.rate_abs_tol)  # type: ignore[operator]
        for r in cls
    ]
    worst = max(errs) if errs else math.nan
    checks.append(
        Check(
            "staleness_rate_matches_theory",
            bool(worst <= 0) if errs else None,
            f(worst),
            0.0,
            None,
            f"max over runs of |measured - predicted ln-rate| - ({ps.rate_rel_tol:g}*|predicted| + "
            f"{ps.rate_abs_tol:g}) = {worst:.3g} (<= 0 wanted)",
            kind="agreement",
            criterion=f"|measured - predicted ln-rate| <= {ps.rate_rel_tol:g}*|predicted| + {ps.rate_abs_tol:g}",
        )
    )
    table, tol_rows = [], []
    for kappa in ps.kappas:
        sel = sorted((r for r in rows if r.kappa == kappa), key=lambda r: r.tau)
        tol_rows.append(
            {
                "kappa": kappa,
                "eta_l": eta * kappa,
                "levin_may_tau_max": theory.max_stable_delay(eta * kappa),
                "predicted_max_stable_grid_tau": max((r.tau for r in sel if r.predicted_stable), default=-1),
                "measured_max_stable_grid_tau": max((r.tau for r in sel if r.measured_stable), default=-1),
            }
        )
        table += [
            [
                r.kappa,
                r.tau,
                r.eta_l,
                r.measured_rate,
                r.predicted_rate,
                r.measured_stable,
                r.predicted_stable,
                r.classifiable,
            ]
            for r in sel
        ]
    ok_tol = all(t["measured_max_stable_grid_tau"] == t["predicted_max_stable_grid_tau"] for t in tol_rows)
    checks.append(
        Check(
            "staleness_tolerable_vs_kappa",
            bool(ok_tol),
            None,
            None,
            None,
            "largest stable delay in the grid per kappa, measured vs predicted: "
            + "; ".join(
                f"kappa={t['kappa']:g}: {t['measured_max_stable_grid_tau']} vs {t['predicted_max_stable_grid_tau']} "
                f"(Levin-May tau_max {t['levin_may_tau_max']})"
                for t in tol_rows
            ),
            kind="agreement",
            criterion="measured largest stable grid delay equals the predicted one for every kappa",
        )
    )
    traces = []
    for kappa in ps.kappas:
        sel = sorted((r for r in rows if r.kappa == kappa), key=lambda r: r.tau)
        traces.append(
            trace([r.tau for r in sel], [r.measured_rate for r in sel], f"measured kappa={kappa:g}", "markers")
        )
        traces.append(
            trace(
                [r.tau for r in sel],
                [r.predicted_rate for r in sel],
                f"predicted kappa={kappa:g}",
                "lines",
                line={"dash": "dash"},
            )
        )
    kgrid = np.geomspace(1.0, max(ps.kappas) * 2, 60)
    figures = [
        Figure(
            "distributed_staleness_rate",
            "Delayed GD: ln-rate per step of ||theta_t - theta*|| vs delay (> 0 diverges)",
            traces,
            layout("delay tau", "ln rate per step"),
        ),
        Figure(
            "distributed_tolerable_staleness",
            "Tolerable staleness vs condition number at a fixed step size",
            [
                trace(
                    kgrid,
                    [theory.max_stable_delay(eta * k, cap=10_000) for k in kgrid],
                    "Levin-May tau_max(eta*L)",
                    "lines",
                ),
                trace(
                    [t["kappa"] for t in tol_rows],
                    [t["measured_max_stable_grid_tau"] for t in tol_rows],
                    "measured (largest stable grid tau)",
                    "markers",
                ),
            ],
            layout("condition number kappa (mu = 1)", "largest stable delay", xlog=True),
            f"eta = {eta:.4g} for every kappa; L = kappa, so eta*L grows with kappa and the tolerable delay shrinks.",
        ),
    ]
    tables = [
        Table(
            "distributed_staleness",
            "Delayed GD on diagonal quadratics (noise-free)",
            [
                "kappa",
                "tau",
                "eta*L",
                "measured ln-rate",
                "predicted ln-rate",
                "measured stable",
                "predicted stable",
                "classifiable",
            ],
            table,
        )
    ]
    estimates = [
        Estimate(
            f"staleness_max_stable_tau_kappa{t['kappa']:g}",
            float(t["measured_max_stable_grid_tau"]),
            method="largest delay of the grid whose measured ln-rate is negative",
            n=len(ps.taus),
            no_interval_reason=DETERMINISTIC + "; resolution is the delay grid",
            converged=None,
            n_iter=ps.steps,
        )
        for t in tol_rows
    ]
    recs = [
        Recommendation(
            f"Staleness: at eta*L={t['eta_l']:.3g} (kappa={t['kappa']:g}) delays up to tau="
            f"{t['measured_max_stable_grid_tau']} of the grid were stable (Levin-May bound {t['levin_may_tau_max']}); "
            "keep the staleness below it or shrink eta by about 1/(tau+1).",
            rests_on=("staleness_stability_matches_theory", "staleness_tolerable_vs_kappa"),
        )
        for t in tol_rows
    ]
    assumptions = [
        Assumption(
            "delayed GD x_{t+1} = x_t - eta*lam*x_{t-tau} is stable iff eta*lam < 2 cos(tau*pi/(2 tau + 1))",
            "Levin & May 1976",
            ("staleness_stability_matches_theory", "staleness_tolerable_vs_kappa"),
        )
    ]
    data = {"eta": eta, "rows": [r.to_dict() for r in rows], "tolerable": tol_rows}
    predictions = {"levin_may": "x_{t+1} = x_t - a x_{t-tau} stable iff 0 < a < 2 cos(tau*pi/(2 tau + 1))"}
    return Part("staleness", estimates, checks, figures, tables, assumptions, recs, {}, {}, predictions, data)
