"""The scaling lens: ``measure(runs, settings)`` on a table of finished runs, part by part.

Parts (each switched off by setting it to None; each draws randomness only from its own seed):

* ``compute_law``: L(C) = A C^-alpha + L_inf on the compute frontier (best model size per
  budget), the floor estimated, bootstrap over frontier runs; the straight log-log line shown as
  the biased contrast.
* ``chinchilla``: L(N, D) = E + A/N^alpha + B/D^beta by Hoffmann et al. 2022 Approach 3 with
  bootstrap intervals over runs; the floor E against the Bayes risk (a bound) and the repeat
  count of training examples (the assumption that D counts fresh data).
* ``regimes``: broken power laws of the frontier's reducible loss L - L_inf (L_inf from the
  L(C) fit), 0-2 breakpoints chosen by cross-validation, bootstrap selection frequencies.
* ``allocation``: the compute-optimal N*, D* at multiples of the largest budget with
  propagated intervals and the regret of a misjudged exponent, and the two checks that advice
  rests on: the fit quality of L(N, D) and its extrapolation to the held-out largest budget.
* ``approach2``: Approach 2 (parabola minima of each iso-FLOP profile, regressed on log C)
  against Approach 3's allocation exponent, paired over the same bootstrap resamples of runs.
* ``lr_tuning`` (C.1): the exponents alpha, beta and the allocation exponent a fitted with the
  per-width tuned learning rates and on the untuned sweep at the single lr, side by side, and the
  tuning grid (validation loss per width and lr).
* ``variables``: the study's variables held invariant, swept, and monitored as confounders with
  their measured ranges.
* ``invariance`` (C.6): alpha refitted on a reduced grid for the main recipe, SGD and a 4x batch.

Hand-offs (``outputs``): ``scaling.allocation`` and ``scaling.allocation_approach2`` (allocation
part; see :mod:`.handoff`) and ``scaling.runs`` (chinchilla part). With
``runtime.inputs["double_descent.interpolation_ratio"]`` the runs whose N/D lies within a factor
``peak_band`` of it are left out of the L(N, D) fit (listed in ``scaling.peak_excluded``), and the
regimes part reports the compute where the frontier's N/D crosses it (mechanistic boundary).

The L(N, D) fit and its bootstrap (used by chinchilla, allocation and approach2) and the point
fit of L(C) (used by compute_law and regimes) are shared steps computed once in ``measure``,
seeded from ``part_seed(seed, "scaling", "lnd_fit")``, so switching a part off never changes
another part's numbers.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multilens.errors import ConfigError, ConvergenceWarning, DataError
from multilens.lenses.contract import finish, part_seed, run_parts
from multilens.lenses.scaling.allocation import AllocationResult, allocation_with_intervals
from multilens.lenses.scaling.chinchilla import ChinchillaFit, bootstrap_chinchilla, fit_chinchilla
from multilens.lenses.scaling.compute_law import ComputeLawFit, bootstrap_compute_law, fit_compute_law
from multilens.lenses.scaling.data import ScalingData
from multilens.lenses.scaling.extrapolation import extrapolation_check
from multilens.lenses.scaling.figures import (
    allocation_figures,
    allocation_tables,
    chinchilla_figures,
    frontier_figure,
    params_table,
    regimes_table,
)
from multilens.lenses.scaling.handoff import allocation_dict, approach2_allocation, excluded_runs, fit_with_bootstrap
from multilens.lenses.scaling.intervals import BootstrapResult, percentile_interval
from multilens.lenses.scaling.regimes import detect_regimes
from multilens.lenses.scaling.report import to_estimates
from multilens.lenses.scaling.settings import (
    AllocationSettings,
    Approach2Settings,
    ChinchillaSettings,
    ComputeLawSettings,
    RegimesSettings,
    Settings,
)
from multilens.lenses.scaling.subject import Runs, TrainFn
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Part,
    Recommendation,
    Table,
    check_difference_within,
    metric_with_interval,
)
from multilens.seeding import derive_seed
from multilens.stats import clopper_pearson, json_safe, mean_ci

LENS = "scaling"
BOUNDARY_REASON = "the fitted floor sits at its lower boundary: the runs do not identify it; no valid interval"


def as_runs(subject: Any) -> Runs:
    """The table of runs of a subject: Runs, ScalingData (e.g. from load_scaling_csv) or TrainFn."""
    if isinstance(subject, Runs):
        return subject
    if isinstance(subject, ScalingData):
        return Runs.from_data(subject)
    if isinstance(subject, TrainFn):
        return subject.run()
    raise ConfigError(
        f"the scaling lens measures a Runs table, a ScalingData or a TrainFn; got {type(subject).__name__}."
    )


def floor_identified(floor: float, loss: Any) -> bool:
    """False when a fitted floor sits at its boundary (exp of a log-parameter driven to -inf).

    Then every bootstrap refit lands on the same boundary and the percentile interval collapses
    to a point; such an interval says nothing about the floor (Andrews 2000 on the bootstrap at
    a boundary), so intervals and checks that rely on it are reported as not evaluated.
    """
    return bool(floor > 1e-3 * float(np.min(loss)))


def frontier_mask(runs: Runs) -> np.ndarray:
    """Per budget, the runs of the model size with the lowest mean loss over seeds."""
    keep = np.zeros(runs.n_runs, dtype=bool)
    for b in np.unique(runs.budget):
        at = runs.budget == b
        sizes = np.unique(runs.N[at])
        means = [runs.loss[at & (runs.N == n)].mean() for n in sizes]
        keep |= at & (runs.N == sizes[int(np.argmin(means))])
    return keep


@dataclass
class Shared:
    """The fits several parts use, computed once per ``measure`` from their own seed."""

    runs: Runs
    level: float
    lnd: Runs | None = None  # the runs of the L(N, D) fit (the peak band left out when the ratio is known)
    dropped: np.ndarray | None = None  # mask over ``runs``: dropped in the peak band
    ratio: float | None = None  # double_descent.interpolation_ratio (N/D at the interpolation threshold)
    band: float = 2.0
    fit: ChinchillaFit | None = None
    boot: BootstrapResult | None = None
    front: np.ndarray | None = None
    cfit: ComputeLawFit | None = None
    notes: list[str] = field(default_factory=list)


def shared_fits(runs: Runs, settings: Settings, seed: int, ratio: float | None = None) -> Shared:
    sh = Shared(runs, settings.ci_level, ratio=ratio, band=settings.peak_band)
    sh.lnd, sh.dropped = excluded_runs(runs, ratio, settings.peak_band)
    if any(p is not None for p in (settings.chinchilla, settings.allocation, settings.approach2)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            sh.fit = fit_chinchilla(sh.lnd.data)
            sh.boot = bootstrap_chinchilla(
                sh.lnd.data, sh.fit, n_boot=settings.bootstrap, seed=part_seed(seed, LENS, "lnd_fit"), level=sh.level
            )
        sh.notes += [f"L(N, D) fit: {w.message}" for w in caught if issubclass(w.category, ConvergenceWarning)]
    if settings.compute_law is not None or settings.regimes is not None:
        sh.front = frontier_mask(runs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            sh.cfit = fit_compute_law(runs.compute[sh.front], runs.loss[sh.front])
        sh.notes += [f"L(C) fit: {w.message}" for w in caught if issubclass(w.category, ConvergenceWarning)]
    return sh


def _refit_check(name: str, what: str, boot: BootstrapResult, max_failed: float) -> Check:
    ok = boot.n_failed <= max_failed * boot.n_boot
    return Check(
        name,
        ok,
        float(boot.n_failed),
        0.0,
        max_failed * boot.n_boot,
        f"{boot.n_failed} of {boot.n_boot} {what} bootstrap refits failed ({'<=' if ok else '>'} {max_failed:.0%})",
        kind="sanity",
        criterion=f"failed refits <= {max_failed:g} x refits",
    )


def _converged_check(name: str, what: str, converged: bool, n_iter: int, message: str) -> Check:
    return Check(
        name,
        bool(converged),
        reason=f"{what} {'converged' if converged else 'did not converge'} ({n_iter} iterations)"
        + (f": {message}" if message else ""),
        kind="sanity",
        criterion="the optimizer's stopping rule was met",
    )


def _floor_estimates(estimates: tuple[Estimate, ...], name: str, identified: bool) -> list[Estimate]:
    out = []
    for e in estimates:
        if e.name == name and not identified:
            e = Estimate(e.name, e.value, method=e.method, n=e.n, note=BOUNDARY_REASON,
                         converged=e.converged, n_iter=e.n_iter, no_interval_reason=BOUNDARY_REASON)  # fmt: skip
        out.append(e)
    return out


# ---------------------------------------------------------------- compute_law


def compute_law_part(sh: Shared, ps: ComputeLawSettings, seed: int) -> Part:
    runs, cfit, level = sh.runs, sh.cfit, sh.level
    Cf, Lf = runs.compute[sh.front], runs.loss[sh.front]
    cboot = bootstrap_compute_law(Cf, Lf, cfit, n_boot=ps.bootstrap, seed=seed, level=level)
    identified = floor_identified(cfit.L_inf, runs.loss)
    est = _floor_estimates(to_estimates(cfit, cboot, prefix="scaling.frontier."), "scaling.frontier.L_inf", identified)
    reason = "a contrast only: the straight log-log line ignores the floor and is biased toward 0; no interval"
    est.append(Estimate("scaling.frontier.naive_loglog_alpha", float(cfit.naive_alpha), method="OLS slope of log L on "
                        "log C", n=len(Lf), note=reason, no_interval_reason=reason))  # fmt: skip
    checks = [
        _converged_check("compute_law_fit_converged", "L(C) fit", cfit.converged, cfit.n_iter, cfit.message),
        _refit_check("compute_law_bootstrap_refits", "L(C)", cboot, ps.max_failed_refits),
    ]
    by = {e.name: e for e in est}
    metrics = {"scaling.r2_compute": float(cfit.r2)}
    metrics |= metric_with_interval("scaling.L_inf", by["scaling.frontier.L_inf"])
    metrics |= metric_with_interval("scaling.frontier_alpha", by["scaling.frontier.alpha"])
    return Part(
        "compute_law",
        estimates=est,
        checks=checks,
        figures=[frontier_figure(runs, sh.front, cfit, cboot, level)],
        tables=[
            params_table(
                "scaling.compute_law_params",
                "L(C) on the compute frontier (bootstrap over runs)",
                cboot,
                ("A", "alpha", "L_inf"),
                level,
            )
        ],  # fmt: skip
        assumptions=[
            Assumption(
                "The frontier (best model size per budget) is compute-optimal at every measured budget",
                "Hoffmann et al. 2022, Sec. 3.1 (Approach 1)",
            ),
        ],
        metrics=metrics,
        data=json_safe(cfit.to_dict() | {"bootstrap": cboot.to_dict(), "frontier_runs": int(sh.front.sum())}),
    )


# ---------------------------------------------------------------- chinchilla


def repeats_check(runs: Runs, max_repeats: float) -> tuple[Check, float | None]:
    """The largest repeat count D / distinct examples over runs (1 = every example seen once)."""
    crit = f"largest repeat count D / distinct examples <= {max_repeats:g}"
    if runs.distinct is None:
        why = "not evaluated: the runs table does not record how many distinct examples each run saw (`distinct`)"
        return Check("examples_fresh", None, reason=why, kind="sanity", criterion=crit), None
    rep = runs.D / runs.distinct
    j = int(np.argmax(rep))
    ok = bool(rep[j] <= max_repeats + 1e-9)
    reason = (
        f"largest repeat count {rep[j]:.3g} (run with D = {runs.D[j]:.6g} examples, {runs.distinct[j]:.6g} distinct) "
        f"{'<=' if ok else '>'} {max_repeats:g}; median {float(np.median(rep)):.3g}"
    )
    return Check("examples_fresh", ok, float(rep[j]), 1.0, max_repeats, reason, kind="sanity", criterion=crit), float(
        rep[j]
    )


def bayes_check(fit: ChinchillaFit, boot: BootstrapResult, runs: Runs, level: float) -> Check:
    bayes = runs.bayes_risk
    if runs.bayes_risk_ci is not None:
        # A Monte Carlo Bayes risk: compare with the lower end of its interval (the floor may sit anywhere in it).
        bayes = float(runs.bayes_risk_ci[0])
    hi = boot.intervals["E"].ci_high
    if not floor_identified(fit.E, runs.loss):
        return Check(
            "floor_above_bayes_risk",
            None,
            fit.E,
            bayes,
            reason=f"not evaluated: the fit put E = {fit.E:.3g} at its lower boundary (every run is far above the "
            f"noise floor {bayes:.3g}), so the runs do not identify the floor; add larger budgets",
            kind="bound",
            criterion=f"upper end of the {level:.0%} interval of E >= Bayes risk",
        )
    return Check(
        "floor_above_bayes_risk",
        None if hi is None else bool(hi >= bayes),
        hi,
        bayes,
        0.0,
        f"E = {fit.E:.4g}, upper end of its {level:.0%} interval {hi:.4g} {'>=' if hi >= bayes else '<'} Bayes risk "
        f"{bayes:.4g} (no model beats the noise)"
        if hi is not None
        else "not evaluated: no bootstrap interval of E",
        kind="bound",
        criterion=f"upper end of the {level:.0%} interval of E >= Bayes risk"
        + (" (lower end of its Monte Carlo interval)" if runs.bayes_risk_ci else ""),
    )


def gen_gap(runs: Runs, level: float) -> tuple[Estimate | None, list[str]]:
    """Mean of test_loss - train_loss over the runs at the largest budget (t-interval over those runs)."""
    if runs.train_loss is None:
        return None, ["generalization gap not measured: the runs table has no `train_loss` column"]
    at = runs.budget == runs.budget.max()
    gaps = runs.loss[at] - runs.train_loss[at]
    note = (
        f"test loss - loss on the run's own training examples, over the {int(at.sum())} runs at the largest "
        f"budget C = {runs.budget.max():.3g} (one pass over fresh examples)"
    )
    return mean_ci(gaps, level, unit="runs").to_estimate("scaling.gen_gap", note=note), []


def gen_gap_split_adjusted(runs: Runs, level: float) -> Estimate | None:
    """The gap minus the split offset (teacher's loss on the test split - on the run's training sample)."""
    if runs.train_loss is None or runs.split_offset is None or not np.any(np.isfinite(runs.split_offset)):
        return None
    at = runs.budget == runs.budget.max()
    gaps = runs.loss[at] - runs.train_loss[at] - runs.split_offset[at]
    note = ("test - train loss minus the teacher's own test - train loss on the same examples: the fixed test "
            "split's sampled labels are not equally hard as each training sample's")  # fmt: skip
    return mean_ci(gaps, level, unit="runs").to_estimate("scaling.gen_gap_split_adjusted", note=note)


def peak_table(sh: Shared) -> tuple[Table, list[str]]:
    """The runs dropped from the L(N, D) fit because their N/D lies in the double-descent peak band."""
    cols = ["N", "D", "N/D", "budget"]
    if sh.ratio is None:
        why = (
            "no peak exclusion: the double-descent phase's interpolation ratio (double_descent.interpolation_ratio) "
            "was not given, so no run is known to sit at the interpolation peak; every run is fitted"
        )
        return Table("scaling.peak_excluded", "Runs excluded from the L(N, D) fit (peak band)", cols, [], why), [why]
    lo, hi = sh.ratio / sh.band, sh.ratio * sh.band
    d = np.flatnonzero(sh.dropped)
    rows = [
        [float(sh.runs.N[i]), float(sh.runs.D[i]), float(sh.runs.N[i] / sh.runs.D[i]), float(sh.runs.budget[i])]
        for i in d
    ]
    cap = (
        f"interpolation ratio N/D = {sh.ratio:.4g} (double-descent phase); band [{lo:.4g}, {hi:.4g}] (factor "
        f"{sh.band:g} each side): {len(d)} of {sh.runs.n_runs} runs dropped"
        + ("" if len(d) else "; none fell in the band")
    )
    return Table("scaling.peak_excluded", "Runs excluded from the L(N, D) fit (peak band)", cols, rows, cap), [cap]


def chinchilla_part(sh: Shared, ps: ChinchillaSettings, level: float) -> Part:
    runs, fit, boot = sh.lnd, sh.fit, sh.boot
    identified = floor_identified(fit.E, runs.loss)
    est = _floor_estimates(to_estimates(fit, boot), "scaling.E", identified)
    total = runs.n_runs + runs.n_failed
    est.append(clopper_pearson(runs.n_failed, total, level).to_estimate("scaling.failed_fraction", unit="runs"))
    fresh, max_rep = repeats_check(runs, ps.max_repeats)
    checks = [
        _converged_check(
            "lnd_fit_converged", f"L(N, D) fit (best of {fit.n_starts} starts)", fit.converged, fit.n_iter, fit.message
        ),  # fmt: skip
        _refit_check("lnd_bootstrap_refits", "L(N, D)", boot, ps.max_failed_refits),
        fresh,
    ]
    if runs.bayes_risk is not None:
        checks.append(bayes_check(fit, boot, runs, level))
    by = {e.name: e for e in est}
    metrics = {
        "scaling.failed_fraction": runs.n_failed / total,
        "scaling.r2_chinchilla": float(fit.r2),
        **metric_with_interval("scaling.alpha", by["scaling.alpha"]),
        **metric_with_interval("scaling.beta", by["scaling.beta"]),
        **metric_with_interval("scaling.E", by["scaling.E"]),
        **metric_with_interval("scaling.a", by["scaling.a"]),
    }
    if runs.bayes_risk is not None:
        metrics["scaling.bayes_risk"] = float(runs.bayes_risk)
    if max_rep is not None:
        metrics["scaling.max_repeats"] = max_rep
    gap_est, gap_note = gen_gap(sh.runs, level)
    if gap_est is not None:
        est.append(gap_est)
        metrics |= metric_with_interval("scaling.gen_gap", gap_est)
    adj = gen_gap_split_adjusted(sh.runs, level)
    if adj is not None:
        est.append(adj)
        metrics |= metric_with_interval("scaling.gen_gap_split_adjusted", adj)
    drop_table, drop_notes = peak_table(sh)
    return Part(
        "chinchilla",
        estimates=est,
        checks=checks,
        figures=chinchilla_figures(runs, fit),
        tables=[
            params_table(
                "scaling.params",
                "L(N, D) parameters, Approach 3 (bootstrap over runs)",
                boot,
                ("E", "A", "B", "alpha", "beta", "a", "b"),
                level,
            ),
            drop_table,
        ],  # fmt: skip
        outputs={"scaling.runs": json_safe(sh.runs.handoff_rows())},
        notes=[*drop_notes, *gap_note],
        assumptions=[
            Assumption(
                "D counts distinct fresh examples: each run sees every training example at most once",
                "Hoffmann et al. 2022 (one epoch over fresh tokens); Muennighoff et al. 2023 on repeated data",
                checked_by=("examples_fresh",),
            ),
            Assumption(
                "Runs are independent draws, so resampling runs gives valid bootstrap intervals",
                "Efron & Tibshirani 1993, ch. 13",
            ),
        ],
        metrics=metrics,
        data=json_safe(fit.to_dict() | {"bootstrap": boot.to_dict()}),
    )


# ---------------------------------------------------------------- regimes


def regimes_part(sh: Shared, ps: RegimesSettings, seed: int, level: float) -> Part:
    runs, cfit = sh.runs, sh.cfit
    Cf, Lf = runs.compute[sh.front], runs.loss[sh.front]
    crit = "the CV-selected number of breakpoints of ln(L - L_inf) against ln C is 0"
    name = "regimes_single_power_law"
    notes: list[str] = []
    l_inf: float | None = float(cfit.L_inf)
    if not np.all(Lf > l_inf):
        notes.append(f"L_inf = {l_inf:.4g} is not below every frontier loss; regimes fitted on ln L instead")
        l_inf = None
    try:
        reg = detect_regimes(Cf, Lf, l_inf=l_inf, n_folds=ps.n_folds, n_boot=ps.n_boot, seed=seed, level=level,
                             min_seg=ps.min_seg, n_grid=ps.n_grid, rule=ps.rule)  # fmt: skip
    except DataError as e:  # too few frontier runs to cross-validate: say so, do not guess
        chk = Check(name, None, reason=f"not evaluated: {e}", kind="agreement", severity="info", criterion=crit)
        btable, _, bnotes = boundaries(sh, None)
        return Part("regimes", checks=[chk], tables=[btable], assumptions=[_regime_assumption()],
                    notes=[f"regimes: {e}", *notes, *bnotes])  # fmt: skip
    method = f"bootstrap percentile over frontier runs, refitting K = {reg.n_breaks}"
    est = [
        Estimate(
            "scaling.regimes.n_breaks",
            float(reg.n_breaks),
            method=f"{reg.n_folds}-fold CV, {reg.rule} rule",
            n=reg.n_points,
            n_iter=reg.n_iter,
            no_interval_reason="a discrete choice; its bootstrap selection frequencies are in the regimes table",
        )  # fmt: skip
    ]
    for k, (s, iv) in enumerate(zip(reg.slopes, reg.slope_intervals)):
        est.append(iv.to_estimate(f"scaling.regimes.slope_{k}", level=level, method=method, n_iter=reg.n_iter,
                                  note=f"d {reg.response.split(' vs ')[0]} / d ln C of segment {k}"))  # fmt: skip
    for k, iv in enumerate(reg.breakpoint_intervals):
        est.append(iv.to_estimate(f"scaling.regimes.breakpoint_{k}_log10_C", level=level, method=method,
                                  n_iter=reg.n_iter))  # fmt: skip
    ok = reg.n_breaks == 0
    freq0 = reg.selection_frequency[0]
    chk = Check(
        name,
        ok,
        float(reg.n_breaks),
        0.0,
        0.0,
        f"{reg.response}: CV chose K = {reg.n_breaks} breakpoint(s) ({reg.rule} rule); bootstrap chose K = 0 in "
        f"{freq0:.0%} of resamples",
        severity="info",  # a broken power law is a finding about the runs, not an error of the lens
        kind="agreement",
        criterion=crit,
    )
    metrics = {"scaling.regimes_n_breaks": float(reg.n_breaks)}
    if reg.n_breaks == 0:
        metrics |= metric_with_interval("scaling.regimes_slope", est[1])
    btable, bmetrics, bnotes = boundaries(sh, reg)
    metrics |= bmetrics
    notes += bnotes
    return Part(
        "regimes",
        estimates=est,
        checks=[chk],
        tables=[regimes_table(reg), btable],
        assumptions=[_regime_assumption()],
        metrics=metrics,
        data=json_safe(reg.to_dict() | {"l_inf": l_inf}),
        notes=notes,
    )


def frontier_n_over_d(sh: Shared, log10_c: float) -> float:
    """The frontier's N/D at compute 10**log10_c (log-linear interpolation between frontier budgets)."""
    runs, f = sh.runs, sh.front
    lc = np.log10(runs.compute[f])
    lnd = np.log10(runs.N[f] / runs.D[f])
    order = np.argsort(lc, kind="stable")
    return float(10 ** np.interp(log10_c, lc[order], lnd[order]))


def boundaries(sh: Shared, reg: Any) -> tuple[Table, dict[str, float], list[str]]:
    """Regime boundaries: statistical (the CV-selected breakpoints) and mechanistic (N/D = interpolation ratio)."""
    rows, metrics, notes = [], {}, []
    pairs = [] if reg is None else list(zip(reg.breakpoints, reg.breakpoint_intervals))
    for k, (b, iv) in enumerate(pairs):
        nd = frontier_n_over_d(sh, float(b))
        ends = [frontier_n_over_d(sh, v) for v in (iv.ci_low, iv.ci_high) if v is not None]
        lo, hi = (min(ends), max(ends)) if len(ends) == 2 else (None, None)
        rows.append(
            [
                "statistical",
                f"breakpoint {k}",
                float(b),
                nd,
                lo,
                hi,
                "interval overlap of the segment exponents (CV-selected broken power law)",
            ]
        )
        if k == 0:
            metrics["scaling.breakpoint_n_over_d"] = nd
            if lo is not None:
                metrics["scaling.breakpoint_n_over_d_ci_low"] = lo
                metrics["scaling.breakpoint_n_over_d_ci_high"] = hi
    if not pairs:
        notes.append("no statistical regime break detected on the frontier: scaling.breakpoint_n_over_d not emitted")
    runs, f = sh.runs, sh.front
    lc = np.log10(runs.compute[f])
    nd = runs.N[f] / runs.D[f]
    if sh.ratio is None:
        notes.append("no mechanistic boundary: the interpolation ratio of the double-descent phase was not given")
    else:
        order = np.argsort(lc, kind="stable")
        x, y = np.log10(nd[order]) - math.log10(sh.ratio), lc[order]
        cross = [
            y[i] + (y[i + 1] - y[i]) * (-x[i]) / (x[i + 1] - x[i])
            for i in range(len(x) - 1)
            if x[i] * x[i + 1] <= 0 and x[i] != x[i + 1]
        ]
        if cross:
            rows.append(
                [
                    "mechanistic",
                    "frontier N/D = interpolation ratio",
                    float(cross[0]),
                    float(sh.ratio),
                    None,
                    None,
                    "compute where the frontier's N/D crosses the double-descent interpolation ratio",
                ]
            )
        else:
            notes.append(
                f"mechanistic boundary outside the measured range: the frontier's N/D spans "
                f"[{nd.min():.3g}, {nd.max():.3g}], interpolation ratio {sh.ratio:.3g}"
            )
    cols = ["kind", "boundary", "log10 C", "frontier N/D", "N/D ci low", "N/D ci high", "criterion"]
    return (
        Table("scaling.regime_boundaries", "Regime boundaries: statistical and mechanistic", cols, rows),
        metrics,
        notes,
    )


def _regime_assumption() -> Assumption:
    return Assumption(
        "The frontier's reducible loss L - L_inf is one power law of compute (no regime change)",
        "the compute law L(C) = A C^-alpha + L_inf; seed chapter task C.1 (regimes)",
        checked_by=("regimes_single_power_law",),
    )


# ---------------------------------------------------------------- allocation


def flops_check(runs: Runs, tol: float) -> Check:
    """C = 6ND against the FLOPs counted from each run's model (forward + backward = 3 x forward)."""
    crit = f"|6ND / counted training FLOPs - 1| <= {tol:g} for every run"
    if runs.flops is None:
        why = "not evaluated: the runs table does not record counted training FLOPs (`flops`)"
        return Check("compute_is_6nd", None, reason=why, kind="agreement", criterion=crit)
    rel = runs.compute / runs.flops - 1.0
    j = int(np.argmax(np.abs(rel)))
    ok = bool(abs(rel[j]) <= tol)
    reason = (
        f"largest |6ND / counted - 1| = {abs(rel[j]):.3g} (run N = {runs.N[j]:.6g}: 6ND = {runs.compute[j]:.4g}, "
        f"counted {runs.flops[j]:.4g}) {'<=' if ok else '>'} {tol:g}"
    )
    return Check("compute_is_6nd", ok, float(rel[j]), 0.0, tol, reason, kind="agreement", criterion=crit)


def _ci(iv: Any) -> str:
    return "(no interval)" if iv.ci_low is None or iv.ci_high is None else f"[{iv.ci_low:.3g}, {iv.ci_high:.3g}]"


def allocation_part(sh: Shared, ps: AllocationSettings, seed: int, level: float, settings: Settings) -> Part:
    runs, fit, boot = sh.lnd, sh.fit, sh.boot
    notes: list[str] = []
    quality = Check(
        "lnd_fit_quality",
        bool(fit.r2 >= ps.min_r2),
        float(fit.r2),
        ps.min_r2,
        None,
        f"R^2 of log-loss {fit.r2:.4f} {'>=' if fit.r2 >= ps.min_r2 else '<'} {ps.min_r2:g} (RMSE {fit.rmse:.3g})",
        kind="sanity",
        criterion=f"R^2 of log-loss of the L(N, D) fit >= {ps.min_r2:g}",
    )
    metrics: dict[str, float] = {}
    extra = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            extra = extrapolation_check(runs.data, form="chinchilla", holdout_budgets=ps.holdout_budgets,
                                        n_boot=ps.extrapolation_bootstrap, seed=seed, level=level)  # fmt: skip
        notes += [f"extrapolation: {w.message}" for w in caught if issubclass(w.category, ConvergenceWarning)]
        xcheck = extra.check
        metrics["scaling.extrapolation_within_interval"] = 1.0 if xcheck.passed else 0.0
        metrics["scaling.extrapolation_max_abs_rel_error"] = float(np.max(np.abs(extra.relative_error)))
    except DataError as e:
        xcheck = Check("extrapolation_within_interval", None, reason=f"not evaluated: {e}", kind="agreement",
                       criterion="every held-out loss inside its prediction interval")  # fmt: skip
    c_max = float(runs.compute.max())
    budgets = [c_max * m for m in ps.multiples]
    alloc: AllocationResult | None = None
    try:
        alloc = allocation_with_intervals(fit, boot, budgets, reference_compute=c_max, deltas=ps.regret_deltas,
                                          level=level)  # fmt: skip
        exists = Check("allocation_optimum_exists", True, reason=f"alpha = {fit.alpha:.3g} > 0 and beta = "
                       f"{fit.beta:.3g} > 0: L(C/6N, N) has one minimum in N", kind="sanity",
                       criterion="alpha > 0 and beta > 0 (and A, B > 0)")  # fmt: skip
    except ConfigError as e:  # loss does not fall with both N and D: no optimum exists to allocate
        exists = Check("allocation_optimum_exists", False, reason=f"no compute-optimal allocation: {e}",
                       kind="sanity", criterion="alpha > 0 and beta > 0 (and A, B > 0)")  # fmt: skip
        notes.append(
            "The fitted law has no compute-optimal allocation: loss does not fall with both model size and data "
            "over the measured range, so it cannot plan compute; check the training recipe (learning rate per "
            "width) before scaling up."
        )
    est: list[Estimate] = []
    recs: list[Recommendation] = []
    rests = ("lnd_fit_quality", "extrapolation_within_interval", "allocation_optimum_exists")
    if alloc is not None:
        m = alloc.method
        est.append(alloc.G.to_estimate("scaling.allocation.G", level=level, method=m))
        for c, mult, n, d, loss in zip(alloc.budgets, ps.multiples, alloc.N_opt, alloc.D_opt, alloc.L_opt):
            tag = f"{mult:g}x"
            est.append(n.to_estimate(f"scaling.allocation.N_opt_{tag}", level=level, method=m, unit="parameters",
                                     note=f"C = {c:.3g} FLOPs"))  # fmt: skip
            est.append(d.to_estimate(f"scaling.allocation.D_opt_{tag}", level=level, method=m, unit="examples",
                                     note=f"C = {c:.3g} FLOPs"))  # fmt: skip
            est.append(loss.to_estimate(f"scaling.allocation.L_opt_{tag}", level=level, method=m,
                                        note=f"C = {c:.3g} FLOPs"))  # fmt: skip
            if mult > 1:
                recs.append(Recommendation(
                    f"At C = {c:.3g} FLOPs ({mult:g}x the largest budget measured), the fitted law puts N* = "
                    f"{n.estimate:.3g} parameters {_ci(n)} and D* = {d.estimate:.3g} examples "
                    f"{_ci(d)} ({level:.0%} bootstrap intervals), predicted loss "
                    f"{loss.estimate:.4g}.", rests))  # fmt: skip
        worst = max(float(np.max(r.relative_regret)) for r in alloc.regret.values())
        dmax = max(abs(d) for d in alloc.regret)
        reason = "evaluated at the point estimate of the law (exact closed form given the fit)"
        method = f"closed-form excess loss of a misjudged exponent (+-{dmax:g})"
        est.append(Estimate("scaling.allocation.max_relative_regret", worst, method=method, n=len(alloc.budgets),
                            no_interval_reason=reason))  # fmt: skip
        metrics["scaling.allocation_max_relative_regret"] = worst
        advice = ("precision beyond that is not worth extra runs" if worst < 0.01
                  else "pin the exponent down with more budgets before scaling up")  # fmt: skip
        recs.append(Recommendation(
            f"Misjudging the allocation exponent by {dmax:g} costs at most {100 * worst:.2g}% excess loss up to "
            f"{max(ps.multiples):g}x the largest budget measured; {advice}.", rests))  # fmt: skip
    if xcheck.passed is False:
        notes.append("The law fitted on the smaller budgets missed the largest budget's runs: do not extrapolate it "
                     "further than measured; add budgets and refit.")  # fmt: skip
    # The hand-offs: the allocation at the target budget (Approach 3) and its Approach 2 fallback.
    a3 = allocation_dict(fit, boot, runs, settings)
    a2 = approach2_allocation(fit, boot, runs, settings, min_budgets=3)
    outputs = {"scaling.allocation": json_safe(a3), "scaling.allocation_approach2": json_safe(a2)}
    if a3["ok"]:
        lo, hi = a3["predicted_loss_ci"]
        pe = Estimate("scaling.predicted_loss_at_opt", a3["predicted_loss"], lo, hi, level=level,
                      method=f"L(N, D) law at (N*, D*) for C = {a3['budget']:.3g}; interval: the {boot.n_boot} "
                      "bootstrap refits evaluated at that point", n=boot.n_ok,
                      no_interval_reason="" if lo is not None else "fewer than 2 finite bootstrap refits")  # fmt: skip
        est.append(pe)
        metrics |= metric_with_interval("scaling.predicted_loss_at_opt", pe)
        metrics["scaling.n_star"] = float(a3["n_star"])
        metrics["scaling.d_star"] = float(a3["d_star"])
    else:
        notes.append(f"scaling.allocation: {a3['note']}")
    if not a2["ok"]:
        notes.append(f"scaling.allocation_approach2: {a2['note']}")
    return Part(
        "allocation",
        estimates=est,
        checks=[quality, xcheck, exists, flops_check(runs, ps.flops_tolerance)],
        figures=allocation_figures(alloc, extra, level),
        tables=allocation_tables(alloc, level),
        assumptions=[
            Assumption(
                "Loss follows L(N, D) = E + A/N^alpha + B/D^beta over the measured runs and beyond them",
                "Hoffmann et al. 2022, Sec. 3.3 (Approach 3)",
                checked_by=("lnd_fit_quality", "extrapolation_within_interval"),
            ),
            Assumption(
                "Loss falls with both model size and data (alpha, beta > 0), so one compute-optimal N* exists",
                "Hoffmann et al. 2022, App. D.3",
                checked_by=("allocation_optimum_exists",),
            ),
            Assumption(
                "Training compute is C = 6ND (forward 2N per example, backward twice the forward)",
                "Kaplan et al. 2020, Sec. 2.1; Hoffmann et al. 2022",
                checked_by=("compute_is_6nd",),
            ),
        ],
        recommendations=recs,
        metrics=metrics,
        outputs=outputs,
        data=json_safe(
            {"allocation": alloc.to_dict() if alloc else None, "extrapolation": extra.to_dict() if extra else None}
        ),  # fmt: skip
        notes=notes,
    )


# ---------------------------------------------------------------- approach2


def approach2_slope(runs: Runs, w: np.ndarray | None = None, min_budgets: int = 3) -> dict[str, Any]:
    """Hoffmann et al.'s Approach 2 on runs weighted by ``w`` (bootstrap counts; None = all once).

    Per budget, a parabola of ln L in ln N (weighted least squares); its minimum is that budget's
    ln N_opt when the parabola is convex and the minimum lies inside the sampled sizes (else the
    budget is left out: the minimum is not located there). The exponent is the OLS slope of
    ln N_opt on ln C over the remaining budgets; NaN with fewer than ``min_budgets``.
    """
    w = np.ones(runs.n_runs) if w is None else np.asarray(w, dtype=float)
    pts = []
    for b in np.unique(runs.budget):
        at = (runs.budget == b) & (w > 0)
        x, y = np.log(runs.N[at]), np.log(runs.loss[at])
        if len(np.unique(x)) < 3:
            continue
        c2, c1, _ = np.polyfit(x, y, 2, w=np.sqrt(w[at]))
        if c2 <= 0:
            continue
        xm = -c1 / (2 * c2)
        if x.min() <= xm <= x.max():
            pts.append((math.log(b), xm))
    out: dict[str, Any] = {"n_budgets": len(pts), "log_C": [p[0] for p in pts], "log_N_opt": [p[1] for p in pts]}
    if len(pts) < min_budgets:
        return out | {"slope": float("nan"), "note": f"only {len(pts)} budgets have an interior convex minimum; "
                      f"need {min_budgets}"}  # fmt: skip
    X, Y = np.array(pts).T
    return out | {"slope": float(np.polyfit(X, Y, 1)[0]), "note": ""}


def approach2_part(sh: Shared, ps: Approach2Settings, level: float) -> Part:
    runs, boot = sh.lnd, sh.boot
    name, crit = "approach2_vs_approach3", f"interval of a(Approach 2) - a(Approach 3) within +-{ps.tolerance:g}"
    point = approach2_slope(runs, None, ps.min_budgets)
    a3 = float(sh.fit.allocation_exponents[0])
    W = boot.weights
    a2s = np.array([approach2_slope(runs, W[r], ps.min_budgets)["slope"] for r in range(boot.n_boot)])
    diffs = a2s - boot.column("a")  # NaN where either estimator failed on that resample: dropped and counted
    method = f"paired percentile bootstrap over runs ({boot.n_boot} resamples shared with the L(N, D) bootstrap)"
    a2_iv = percentile_interval(point["slope"], a2s, level)
    d_iv = percentile_interval(point["slope"] - a3, diffs, level)
    if not math.isfinite(point["slope"]):
        est = [Estimate("scaling.approach2.a", None, note=point["note"])]
        chk = Check(name, None, reason=f"not evaluated: {point['note']}", kind="agreement", criterion=crit)
        return Part("approach2", estimates=est, checks=[chk], data=json_safe(point))
    est = [
        a2_iv.to_estimate("scaling.approach2.a", level=level, method=method,
                          note=f"OLS of ln N_opt (iso-FLOP parabola minima) on ln C over {point['n_budgets']} budgets"),
        d_iv.to_estimate("scaling.approach2.a_minus_approach3", level=level, method=method,
                         note=f"Approach 3: a = beta/(alpha+beta) = {a3:.4g}"),
    ]  # fmt: skip
    chk = check_difference_within(name, d_iv.ci_low, d_iv.ci_high, ps.tolerance, kind="agreement",
                                  what=f"a(Approach 2) = {point['slope']:.4f}, a(Approach 3) = {a3:.4f}")  # fmt: skip
    if d_iv.n_dropped:
        chk = Check(chk.name, chk.passed, chk.observed, chk.expected, chk.tolerance,
                    f"{chk.reason} ({d_iv.n_dropped} of {boot.n_boot} resamples dropped: an estimator failed)",
                    chk.severity, kind=chk.kind, criterion=chk.criterion)  # fmt: skip
    metrics = metric_with_interval("scaling.approach2_a", est[0])
    return Part("approach2", estimates=est, checks=[chk], metrics=metrics,
                data=json_safe(point | {"approach3_a": a3}))  # fmt: skip


# ---------------------------------------------------------------- lr_tuning, variables, invariance (C.1, C.6)


VARIANT_GRID_STRIDE = 7  # the comparison fits (lr tuning, invariance) screen 643 of the 4500 grid starts


def _fit_row(name: str, runs: Runs, settings: Settings, n_boot: int, seed: int) -> dict[str, Any]:
    """Fit L(N, D) and bootstrap it; the row of exponents with intervals (or the reason it failed)."""
    try:
        fit, boot, notes = fit_with_bootstrap(
            runs,
            dataclasses.replace(settings, bootstrap=n_boot) if n_boot != settings.bootstrap else settings,
            seed,
            grid_stride=VARIANT_GRID_STRIDE,
        )
    except (DataError, ConfigError) as e:
        return {"name": name, "error": str(e)}
    return {
        "name": name,
        "fit": fit,
        "boot": boot,
        "notes": notes,
        "n_runs": runs.n_runs,
        "seeds": int(len(np.unique(runs.seed))),
    }


def _iv_text(iv: Any) -> str:
    return f"{iv.estimate:.4g} {_ci(iv)}"


def lr_tuning_part(sh: Shared, ps: Any, settings: Settings, seed: int) -> Part:
    runs = sh.runs
    if runs.untuned is None:
        why = (
            "not evaluated: no untuned comparison sweep (a user's runs table, or `lr_factors` = [1.0] so the "
            "sweep is not tuned)"
        )
        chk = Check(
            "lr_tuning_fits_converged", None, reason=why, kind="sanity", criterion="both L(N, D) fits converged"
        )
        return Part("lr_tuning", checks=[chk], notes=[why])
    useeds = np.unique(runs.untuned.seed)
    tuned_same = runs.subset(np.isin(runs.seed, useeds))
    rows = []
    for k, (name, r) in enumerate((("tuned", tuned_same), ("untuned", runs.untuned))):
        fr, _ = excluded_runs(r, sh.ratio, sh.band)
        rows.append(_fit_row(name, fr, settings, ps.bootstrap, derive_seed(seed, name)))
    level = settings.ci_level
    est, metrics, checks, trows, notes = [], {}, [], [], []
    conv = all("fit" in r and r["fit"].converged for r in rows)
    checks.append(
        Check(
            "lr_tuning_fits_converged",
            conv,
            reason="; ".join(
                f"{r['name']}: "
                + (
                    r["error"]
                    if "error" in r
                    else f"{'converged' if r['fit'].converged else 'not converged'} ({r['fit'].n_iter} iterations)"
                )
                for r in rows
            ),
            kind="sanity",
            criterion="the L(N, D) fits with and without tuning both converged",
        )
    )
    for r in rows:
        if "fit" not in r:
            notes.append(f"lr_tuning: {r['name']} fit failed: {r['error']}")
            continue
        b, f = r["boot"], r["fit"]
        checks.append(
            _refit_check(f"lr_tuning_{r['name']}_bootstrap_refits", f"{r['name']} L(N, D)", b, ps.max_failed_refits)
        )
        m = f"bootstrap percentile over runs ({b.n_boot} refits), {r['name']} sweep on {r['seeds']} seed(s)"
        for p in ("alpha", "beta", "a"):
            e = b.intervals[p].to_estimate(f"scaling.lr_tuning.{p}_{r['name']}", level=level, method=m)
            est.append(e)
            metrics |= metric_with_interval(f"scaling.{p}_{r['name']}", e)
        iv = b.intervals
        trows.append(
            [
                r["name"],
                r["seeds"],
                r["n_runs"],
                _iv_text(iv["alpha"]),
                _iv_text(iv["beta"]),
                _iv_text(iv["a"]),
                f"{f.E:.4g}",
                f"{f.r2:.4f}",
            ]
        )
    cols = ["sweep", "seeds", "runs", "alpha [CI]", "beta [CI]", "allocation exponent a [CI]", "E", "R^2 log-loss"]
    cap = (
        f"Both fitted on the same seed(s) and grid; 'tuned' uses each width's lr chosen by validation loss at its "
        f"smallest budget, 'untuned' the single lr = {settings.lr:g}. {level:.0%} bootstrap intervals."
    )
    tables = [
        Table("scaling.lr_tuning_exponents", "L(N, D) exponents with and without per-width lr tuning", cols, trows, cap)
    ]
    if runs.lr_tuning:
        tr = [
            [r["width"], r["budget"], r["D"], r["factor"], r["lr"], r["val_loss"], "yes" if r["chosen"] else ""]
            for r in runs.lr_tuning
        ]
        tables.append(
            Table(
                "scaling.lr_tuning_grid",
                "Learning-rate tuning: validation loss per width and lr",
                ["width", "budget", "D", "lr factor", "lr", "validation loss", "chosen"],
                tr,
                "mean validation loss over the tuning seeds; the test split is never used to choose",
            )
        )
        chosen = [r for r in runs.lr_tuning if r["chosen"]]
        edge = [r["width"] for r in chosen if r["factor"] in (min(settings.lr_factors), max(settings.lr_factors))]
        checks.append(
            Check(
                "tuned_lr_inside_grid",
                not edge,
                float(len(edge)),
                0.0,
                0.0,
                f"{len(edge)} of {len(chosen)} widths chose an lr at the edge of the grid"
                + (f" (widths {edge}): the grid may not bracket their optimum" if edge else ""),
                severity="info",
                kind="sanity",
                criterion="no width's chosen lr factor is the smallest or largest of lr_factors",
            )
        )
    return Part(
        "lr_tuning",
        estimates=est,
        checks=checks,
        tables=tables,
        metrics=metrics,
        notes=notes,
        assumptions=[
            Assumption(
                "The lr grid brackets each width's best lr at its smallest budget, and that lr stays near-best "
                "for the width at larger budgets",
                "seed chapter task C.1 (per-width lr tuning)",
                checked_by=("tuned_lr_inside_grid",) if runs.lr_tuning else (),
            )
        ],
    )


def _range(v: Any, fmt: str = ".3g") -> str:
    a = np.asarray(v, dtype=float)
    a = a[np.isfinite(a)]
    return "n/a" if a.size == 0 else f"[{a.min():{fmt}}, {a.max():{fmt}}]"


def variables_part(sh: Shared, ps: Any, settings: Settings) -> Part:
    runs = sh.runs
    rec, fam = runs.recipe, runs.family
    unknown = "not recorded (a user's runs table)"
    inv = [
        [
            "data family",
            (
                f"FamilySpec(d_in={fam['d_in']}, classes={fam['n_classes']}, teacher width "
                f"{fam['teacher_width']}, logit scale {fam['logit_scale']}, teacher seed {fam['teacher_seed']})"
            )
            if fam
            else unknown,
        ],
        ["depth", rec["depth"] if rec else unknown],
        ["activation", rec["activation"] if rec else unknown],
        ["optimizer", rec["optimizer"] if rec else unknown],
        ["batch size", rec["batch_size"] if rec else unknown],
        ["lr schedule", rec["schedule"] if rec else unknown],
        ["passes over the data", "one (each example seen once)" if rec else unknown],
        ["loss", rec["loss"] if rec else unknown],
        ["test split", f"fixed, {fam['n_test']} examples (the same for every run and seed)" if fam else unknown],
        ["validation split", f"fixed, {fam['n_val']} examples (lr tuning selects on it)" if fam else unknown],
    ]
    swept = [
        ["N (parameters)", _range(runs.N)],
        ["D (training examples)", _range(runs.D)],
        ["C = 6ND (budgets)", ", ".join(f"{b:.3g}" for b in np.unique(runs.budget))],
        ["seed", f"{len(np.unique(runs.seed))} seeds"],
    ]
    total = runs.n_runs + runs.n_failed
    rep = "n/a" if runs.distinct is None else _range(runs.D / runs.distinct)
    gap = "n/a" if runs.train_loss is None else _range(runs.loss - runs.train_loss, ".3g")
    lrs = "n/a" if runs.lr is None else f"{_range(runs.lr)} ({len(np.unique(runs.lr))} distinct)"
    mon = [
        ["per-width learning rate", lrs],
        ["repeats D / distinct examples", rep],
        ["diverged runs", f"{runs.n_diverged} of {total}"],
        ["failed runs (incl. diverged)", f"{runs.n_failed} of {total}"],
        ["train-test gap (test - train loss)", gap],
        ["training wall time (s)", "n/a" if runs.wall_time is None else _range(runs.wall_time)],
    ]
    rows = (
        [["held invariant", *r] for r in inv]
        + [["swept", *r] for r in swept]
        + [["monitored (confounder)", *r] for r in mon]
    )
    frac = runs.n_diverged / total
    ok = frac <= ps.max_diverged_fraction
    chk = Check(
        "runs_not_diverged",
        ok,
        frac,
        0.0,
        ps.max_diverged_fraction,
        f"{runs.n_diverged} of {total} runs diverged ({frac:.1%}; allowed {ps.max_diverged_fraction:.0%})",
        kind="sanity",
        criterion=f"fraction of diverged runs <= {ps.max_diverged_fraction:g}",
    )
    table = Table(
        "scaling.variables",
        "Variables of the study: held invariant, swept, monitored as confounders",
        ["role", "variable", "value or measured range"],
        [[r[0], r[1], str(r[2])] for r in rows],
    )
    metrics = {"scaling.diverged_fraction": frac}
    return Part(
        "variables",
        checks=[chk],
        tables=[table],
        metrics=metrics,
        assumptions=[
            Assumption(
                "Training is stable for every run of the design (no run diverged)",
                "seed chapter task C.1 (confounders)",
                checked_by=("runs_not_diverged",),
            )
        ],
    )


def invariance_part(sh: Shared, ps: Any, settings: Settings, seed: int) -> Part:
    variants = sh.runs.variants
    names = ("main", "sgd", "large_batch")
    if not variants:
        why = "not evaluated: the variants (SGD, larger batch) exist only for the bundled sweep"
        chk = Check(
            "invariance_fits_converged", None, reason=why, kind="sanity", criterion="every variant fit converged"
        )
        return Part("invariance", checks=[chk], notes=[why])
    level = settings.ci_level
    est, metrics, trows, notes, reasons, conv = [], {}, [], [], [], True
    recipe = {
        "main": f"{settings.optimizer}, batch {settings.batch_size}, tuned lr per width",
        "sgd": f"sgd (momentum {ps.sgd_momentum:g}), lr {ps.sgd_lr:g}, batch {settings.batch_size}",
        "large_batch": f"{settings.optimizer}, batch {settings.batch_size * ps.batch_factor}, tuned lr per width",
    }
    for name in names:
        v = variants.get(name)
        if not isinstance(v, Runs):
            conv = False
            reasons.append(f"{name}: {v}")
            continue
        fr, _ = excluded_runs(v, sh.ratio, sh.band)
        r = _fit_row(name, fr, settings, ps.bootstrap, derive_seed(seed, name))
        if "error" in r:
            conv = False
            reasons.append(f"{name}: {r['error']}")
            continue
        f, b = r["fit"], r["boot"]
        conv &= bool(f.converged) and b.n_failed <= 0.05 * b.n_boot
        reasons.append(
            f"{name}: {'converged' if f.converged else 'not converged'} ({f.n_iter} iterations), "
            f"{b.n_failed} of {b.n_boot} refits failed"
        )
        m = f"bootstrap percentile over runs ({b.n_boot} refits) on the reduced grid"
        e = b.intervals["alpha"].to_estimate(
            f"scaling.invariance.alpha_{name}", level=level, method=m, note=recipe[name]
        )
        est.append(e)
        metrics |= metric_with_interval(f"scaling.alpha_{name}", e)
        trows.append(
            [
                name,
                recipe[name],
                r["n_runs"],
                _iv_text(b.intervals["alpha"]),
                _iv_text(b.intervals["beta"]),
                f"{f.r2:.4f}",
            ]
        )
    chk = Check(
        "invariance_fits_converged",
        conv,
        reason="; ".join(reasons),
        kind="sanity",
        criterion="every variant's L(N, D) fit converged and <= 5% of its bootstrap refits failed",
    )
    budgets = ", ".join(f"{b:.3g}" for b in settings.budgets[: ps.n_budgets])
    table = Table(
        "scaling.invariance",
        "Parameter exponent alpha across optimizers and batch sizes (C.6)",
        ["variant", "recipe", "runs", "alpha [CI]", "beta [CI]", "R^2 log-loss"],
        trows,
        f"all on the same reduced grid: budgets {budgets}, {ps.seeds} seed(s); {level:.0%} bootstrap "
        "intervals; the protocol compares them",
    )
    return Part("invariance", estimates=est, checks=[chk], tables=[table], metrics=metrics, notes=notes)


# ---------------------------------------------------------------- measure


def measure(subject: Any, settings: Settings, *, seed: int, runtime: Any = None) -> Any:
    """Measure a table of finished runs (a :class:`Runs`, a :class:`ScalingData` or a :class:`TrainFn`)."""
    t0 = time.perf_counter()
    if not isinstance(settings, Settings):
        raise ConfigError(f"`settings` must be scaling.Settings; got {type(settings).__name__}.")
    runs = as_runs(subject)
    level = settings.ci_level
    inputs = getattr(runtime, "inputs", None) or {}
    ratio = inputs.get("double_descent.interpolation_ratio")
    sh = shared_fits(runs, settings, seed, None if ratio is None else float(ratio))
    parts, notes = run_parts(
        LENS,
        [
            ("compute_law", settings.compute_law, lambda ps, s: compute_law_part(sh, ps, s)),
            ("chinchilla", settings.chinchilla, lambda ps, s: chinchilla_part(sh, ps, level)),
            ("regimes", settings.regimes, lambda ps, s: regimes_part(sh, ps, s, level)),
            ("allocation", settings.allocation, lambda ps, s: allocation_part(sh, ps, s, level, settings)),
            ("approach2", settings.approach2, lambda ps, s: approach2_part(sh, ps, level)),
            ("lr_tuning", settings.lr_tuning, lambda ps, s: lr_tuning_part(sh, ps, settings, s)),
            ("variables", settings.variables, lambda ps, s: variables_part(sh, ps, settings)),
            ("invariance", settings.invariance, lambda ps, s: invariance_part(sh, ps, settings, s)),
        ],
        seed,
    )
    data = {"source": runs.source, "n_runs": runs.n_runs, "n_failed": runs.n_failed, "runs": runs.rows()}
    result = finish(LENS, parts, settings, seed, t0, notes=[*sh.notes, *notes], data=json_safe(data))
    if runs.sweep is None:
        return result
    # How this execution got its runs (executed now vs reused from the store) is provenance, not a result.
    return dataclasses.replace(result, provenance=result.provenance | {"sweep": dict(runs.sweep)})
