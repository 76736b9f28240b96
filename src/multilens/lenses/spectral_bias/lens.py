"""The spectral-bias lens: which frequencies gradient descent fits first, against the theorem.

1. ``kernel_flow`` (kernel_flow.py): gradient descent on a kernel model, where the seed's
   spectral-bias theorem is exact: measured modal trajectories against c_j (1 - (1 - eta lambda_j)^k)
   (a closed-form identity: ``sanity``), against c_j (1 - exp(-lambda_j t)) within the O(eta) bound
   (``bound``), and the first-order convergence in eta (ratio 2 when eta halves: ``agreement``).
2. ``mlp`` (mlp_fourier.py): a plain MLP and a Fourier-feature MLP on the target: per-frequency
   fitting times from the FFT of the residual against the spectral-bias prediction (lower
   frequencies first) and against the empirical NTK at initialisation (``agreement``).

Intervals are Student-t over ``n_seeds`` seeds (feature draws, initialisations).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from multilens.lenses.spectral_bias import kernel_flow as kf
from multilens.lenses.spectral_bias import mlp_fourier as mf
from multilens.lenses.spectral_bias.settings import KernelFlowSettings, MLPSettings
from multilens.lenses.spectral_bias.subject import Subject
from multilens.plots import PALETTE, curve_trace, figure, line_trace
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_difference_within,
    check_within,
    metric_with_interval,
)
from multilens.seeding import derive_seed
from multilens.stats import Interval, interval_text, mean_ci
from multilens.stats import json_float as _f
from multilens.stats import json_floats as _fl

LENS = "spectral_bias"


def _log_idx(n: int, k: int = 120) -> np.ndarray:
    """About k indices of 0..n-1, log-spaced (plus 0) for plots on a log time axis."""
    return np.unique(np.r_[0, np.round(np.geomspace(1, n - 1, k)).astype(int)])


def _dropped(ci: Interval) -> str:
    return f" ({ci.n_dropped} non-finite replicate(s) dropped)" if ci.n_dropped else ""


def _agree(name: str, ci: Interval, expected: float, tol: float, what: str, severity: str = "error") -> Check:
    """The whole interval of (mean - expected) within +-tol; with one replicate, |value - expected| <= tol."""
    if ci.ok:
        return check_difference_within(
            name, ci.low - expected, ci.high - expected, tol, kind="agreement", what=what + _dropped(ci),
            severity=severity,
        )  # fmt: skip
    return check_within(name, ci.mean, expected, tol, kind="agreement", what=what + _dropped(ci), severity=severity)


def _steps_list(pred: np.ndarray) -> str:
    return ", ".join(f"{v:.3g}" if math.isfinite(v) else f"> {mf.PREDICTION_HORIZON:.0e}" for v in pred)


def _ratios(meas: np.ndarray, pred: np.ndarray) -> str:
    return ", ".join(f"{m / p:.2g}" for m, p in zip(meas, pred) if math.isfinite(m) and math.isfinite(p) and p > 0)


def _fmt_steps(v: np.ndarray, budget: int, level: float) -> str:
    if v.size and np.all(np.isfinite(v)):
        ci = mean_ci(v, level)
        return f"{ci.mean:.4g} {interval_text(ci, 4)}"
    return f"> {budget} in {int(np.sum(~np.isfinite(v)))}/{v.size} seeds"


# ----------------------------------------------------------------------------------------------
# 1. Exact kernel gradient descent


def kernel_flow_part(
    subject: Subject, ps: KernelFlowSettings, n_seeds: int, level: float, threshold: float, *, seed: int
) -> Part:
    x, y = subject.unit_x, subject.y
    ks = list(subject.frequencies or ())
    y_hat = np.fft.rfft(y)[ks]
    dev_disc, ratio_med, fit_match, order_rho, per_seed, freq_tau, freq_pred = [], [], [], [], [], [], []
    bound_ratio_meas, bound_ratio_exact = [], []
    plot: dict[str, Any] = {}
    for i in range(n_seeds):
        phi = kf.random_fourier_features(x, ps.features, ps.lengthscale, derive_seed(seed, "rff", i))
        run = kf.run_kernel_gd(phi, y, ps.lr_fraction, ps.steps)
        half = kf.run_kernel_gd(phi, y, ps.lr_fraction / 2.0, 2 * ps.steps)  # same continuous horizon
        c_abs = np.abs(run.c)
        live = c_abs >= 1e-6 * c_abs.max()  # modes the target actually has
        d_cont = run.dev_continuous
        # The bound, with room for rounding: measured and exact deviations as fractions of it.
        room = run.bound * (1.0 + 1e-9) + 1e-12 * c_abs.max()
        exact = np.max(np.abs(run.discrete - run.continuous), axis=0)  # closed forms only, no measurement
        bound_ratio_meas.append(float(np.max(d_cont[live] / room[live])))
        bound_ratio_exact.append(float(np.max(exact[live] / room[live])))
        h = run.eta * run.lam
        # First-order modes: small h, and the deviation's peak (at lambda t ~ 1) inside both horizons.
        sel = live & (h <= 0.1) & (h * ps.steps >= 2.0)
        ratios = d_cont[sel] / half.dev_continuous[sel]
        ratio_med.append(float(np.median(ratios)) if ratios.size else math.nan)
        tau_m = kf.fit_steps_measured(run, threshold)
        tau_p = kf.fit_steps_predicted(run, threshold)
        within = live & (tau_p <= ps.steps)
        fit_match.append(float(np.mean(np.abs(tau_m[within] - tau_p[within]) <= 1)) if within.any() else math.nan)
        fitted = live & np.isfinite(tau_m)
        order_rho.append(mf.rank_correlation(tau_m[fitted], -run.lam[fitted]) if fitted.sum() >= 3 else math.nan)
        dev_disc.append(run.dev_discrete)
        # Per-frequency view of the same run: FFT of the residual f_k - y.
        f_t = run.measured @ run.u.T  # (T+1, n): modal coordinates back to function values
        e = np.abs(np.fft.rfft(f_t - y[None, :], axis=1)[:, ks]) / np.abs(y_hat)[None, :]
        freq_tau.append([mf.first_crossing(e[:, j], threshold) for j in range(len(ks))])
        # The theorem's per-frequency prediction: residual -U (I - eta Lambda)^k U^T y from f_0 = 0.
        freq_pred.append(mf.predicted_fit_step(run.u, run.lam, -y, run.eta, ks, y_hat, ps.steps, threshold))
        per_seed.append(
            {
                "seed_index": i,
                "eta": run.eta,
                "lambda_max": float(run.lam[0]),
                "max_discrete_deviation": run.dev_discrete,
                "max_deviation_over_bound": bound_ratio_meas[-1],
                "first_order_ratio_median": _f(ratio_med[-1]),
                "n_first_order_modes": int(sel.sum()),
                "fit_steps_match_fraction": _f(fit_match[-1]),
                "fit_order_spearman_vs_lambda": _f(order_rho[-1]),
                "frequency_fit_steps": [_f(t) for t in freq_tau[-1]],
                "frequency_fit_steps_predicted": [_f(t) for t in freq_pred[-1]],
            }
        )
        if i == 0:
            top = np.argsort(c_abs)[::-1][: ps.plot_modes]
            top = top[np.argsort(-run.lam[top])]
            idx = _log_idx(ps.steps + 1)
            plot = {
                "eta": run.eta,
                "steps": idx.tolist(),
                "modes": [
                    {
                        "j": int(j),
                        "lambda": float(run.lam[j]),
                        "c": float(run.c[j]),
                        "measured": _fl(run.measured[idx, j]),
                        "predicted_discrete": _fl(run.discrete[idx, j]),
                        "predicted_continuous": _fl(run.continuous[idx, j]),
                        "bound": _f(run.bound[j]),
                        "max_continuous_deviation": float(d_cont[j]),
                    }
                    for j in top
                ],
            }
    max_dev = float(np.max(dev_disc))
    ci_ratio = mean_ci(ratio_med, level)
    ci_match = mean_ci(fit_match, level)
    ci_order = mean_ci(order_rho, level)
    match_min = float(np.nanmin(fit_match)) if np.isfinite(fit_match).any() else math.nan
    worst_meas, worst_exact = max(bound_ratio_meas), max(bound_ratio_exact)
    budget = {"n_iter": ps.steps}
    estimates = [
        mean_ci(dev_disc, level).to_estimate(
            "spectral_bias.kernel_discrete_deviation",
            note=f"max |measured - c(1-(1-eta lambda)^k)| / max|c| per seed (largest {max_dev:.3g})",
            **budget,
        ),
        ci_ratio.to_estimate(
            "kernel.first_order_ratio",
            note="max |measured - c(1-exp(-lambda t))| at eta over the same at eta/2 (median over first-order modes)",
            **budget,
        ),
        ci_match.to_estimate(
            "kernel.fit_step_match", note="fraction of modes whose fitting step equals the prediction (+-1)", **budget
        ),
        ci_order.to_estimate(
            "kernel.order_spearman",
            note="Spearman(measured fitting step, -lambda); 1 = a larger eigenvalue is always fitted first",
            **budget,
        ),
    ]
    checks = [
        check_within(
            "kernel_discrete_exact",
            max_dev,
            0.0,
            ps.exact_tol,
            kind="sanity",
            what="kernel GD's modal projections vs c_j(1 - (1 - eta lambda_j)^k), largest deviation / max|c| "
            "(GD on a quadratic is this closed form: an implementation self-test)",
        ),
        check_bound(
            "kernel_continuous_within_bound",
            worst_meas,
            1.0,
            exact=worst_exact,
            what="largest over modes and seeds of max_t |measured - c_j(1 - exp(-lambda_j t))| / (|c_j| h/(2e(1-h))), "
            "h = eta lambda_j",
        ),
        _agree(
            "kernel_first_order_in_eta",
            ci_ratio,
            2.0,
            2.0 * ps.order_tol,
            "gap to the continuous flow at eta over the gap at eta/2 (first order in eta predicts 2)",
        ),
        check_within(
            "kernel_fit_steps_exact",
            match_min,
            1.0,
            0.0,
            kind="sanity",
            what=f"fraction of modes (fitted within the budget) whose fitting step equals ceil(log {threshold:g} / "
            "log(1 - eta lambda)) to +-1, worst seed",
        ),
    ]
    t = np.asarray(plot["steps"], dtype=np.float64)
    traces = []
    for m, mode in enumerate(plot["modes"]):
        col = PALETTE[m % len(PALETTE)]
        c = mode["c"]
        traces.append(
            line_trace(
                t[1:],
                np.asarray(mode["measured"][1:], dtype=float) / c,
                f"mode {mode['j']} (lambda={mode['lambda']:.3g}) measured",
                color=col,
            )
        )
        traces.append(
            curve_trace(t[1:], np.asarray(mode["predicted_continuous"][1:], dtype=float) / c, "", color=col)
            | {"showlegend": False}
        )
    fig = figure(
        "kernel_modes",
        "Kernel gradient descent: modal trajectories vs 1 - exp(-lambda_j t)",
        traces,
        xlabel="GD step k (t = eta k)",
        ylabel="u_j^T f_k / c_j",
        xlog=True,
        caption="Markers: measured projections of the fitted values; dashed: the gradient-flow theorem.",
    )
    ft, fp = np.array(freq_tau, dtype=np.float64), np.array(freq_pred, dtype=np.float64)
    table = Table(
        "kernel_fit_steps",
        f"Kernel GD: steps to fit each target frequency (residual <= {threshold:g} of the target's coefficient)",
        ["frequency", "measured steps: mean, t-interval", "predicted steps per seed", "measured/predicted per seed"],
        [[k, _fmt_steps(ft[:, j], ps.steps, level), _steps_list(fp[:, j]), _ratios(ft[:, j], fp[:, j])]
         for j, k in enumerate(ks)],
    )  # fmt: skip
    return Part(
        "kernel_flow",
        estimates=estimates,
        checks=checks,
        figures=[fig],
        tables=[table],
        assumptions=[
            Assumption(
                "kernel GD step eta*lambda_j < 1 for every mode (the O(eta) bound's condition)",
                "seed line 162",
                checked_by=("kernel_continuous_within_bound",),
            )
        ],
        metrics={"spectral_bias.kernel_exact_deviation": max_dev},
        predictions={"kernel_flow": "u_j^T f_t = c_j (1 - exp(-lambda_j t)); discrete: c_j (1 - (1 - eta lambda_j)^k)"},
        data={
            "lengthscale": ps.lengthscale,
            "features": ps.features,
            "steps": ps.steps,
            "modal_trajectories_seed0": plot,
            "per_seed": per_seed,
            "frequency_fit_steps": [[_f(v) for v in row] for row in ft],
        },
    )


# ----------------------------------------------------------------------------------------------
# 2. MLPs


def _ci_dict(ci: Interval) -> dict[str, Any]:
    return {"mean": _f(ci.mean), "ci_low": _f(ci.low), "ci_high": _f(ci.high), "n": ci.n, "level": ci.level}


def _arch_summary(r: mf.ArchitectureRun, freqs: tuple[int, ...], lvl: float) -> dict[str, Any]:
    cap = r.steps + 1.0
    rows = []
    for j, k in enumerate(freqs):
        meas = r.tau[:, j]
        pred = r.tau_pred[:, j]
        both = np.isfinite(meas) & np.isfinite(pred)
        lr = np.log10(meas[both] / np.maximum(pred[both], 1.0)) if both.any() else np.array([])
        rows.append(
            {
                "frequency": k,
                "measured_steps": [_f(v) for v in meas],
                "predicted_steps": [_f(v) for v in pred],
                "n_fitted_within_budget": int(np.isfinite(meas).sum()),
                "budget": r.steps,
                "measured_mean": _ci_dict(mean_ci(meas, lvl)) if np.all(np.isfinite(meas)) else None,
                "predicted_mean": _ci_dict(mean_ci(pred, lvl)) if np.all(np.isfinite(pred)) else None,
                "log10_measured_over_predicted": _ci_dict(mean_ci(lr, lvl)) if lr.size else None,
                "final_error_mean": _f(np.nanmean(r.err[:, -1, j])),
                "censored_consistent": bool(np.all(np.isfinite(meas) | (pred > r.steps))),
            }
        )
    return {
        "kind": r.kind,
        "n_params": r.n_params,
        "eta": _fl(r.eta),
        "ntk_top_eigenvalues": r.lam_top.tolist(),
        "frequencies": rows,
        "spearman_per_seed": _fl(r.spearman),
        "spearman": _ci_dict(mean_ci(r.spearman, lvl)),
        "mode_fit_steps_measured": [[_f(v) for v in row] for row in np.minimum(r.mode_tau, cap)],
        "mode_fit_steps_predicted": [[_f(v) for v in row] for row in r.mode_tau_pred],
        "mode_eigenvalues": r.mode_lam.tolist(),
        "diverged": [bool(d) for d in r.diverged],
    }


def _order_ok(tau: np.ndarray, cap: float) -> bool | None:
    """Lower frequencies fitted strictly before higher ones (tau per frequency, ascending freq order)."""
    t = np.minimum(tau, cap)
    if not np.isfinite(tau[0]) or tau[0] > cap:
        return None
    for a in range(len(t)):
        for b in range(a + 1, len(t)):
            if t[a] < cap and not t[a] < t[b]:
                return False
    return True


def mlp_part(subject: Subject, ps: MLPSettings, n_seeds: int, level: float, threshold: float, *, seed: int) -> Part:
    x, y = subject.unit_x, subject.y
    freqs = tuple(sorted(subject.frequencies or ()))
    seeds = [derive_seed(seed, "init", i) for i in range(n_seeds)]
    n_modes = min(ps.ntk_modes, x.size)
    runs = {
        kind: mf.run_architecture(
            kind,
            x,
            y,
            freqs,
            seeds,
            ps.width,
            ps.depth,
            ps.activation,
            ps.lr_fraction,
            ps.steps,
            threshold,
            n_modes,
            ps.ff_features,
            ps.ff_sigma,
            builder=subject.model_builder,
        )  # fmt: skip
        for kind in ("plain", "fourier")
    }
    cap = ps.steps + 1.0
    summaries = {k: _arch_summary(r, freqs, level) for k, r in runs.items()}
    plain, ff = runs["plain"], runs["fourier"]
    hi = len(freqs) - 1
    # Spectral bias: the plain MLP fits lower frequencies first.
    verdicts = [_order_ok(plain.tau[i], cap) for i in range(n_seeds)]
    low_first: bool | None = None if any(v is None for v in verdicts) else all(verdicts)
    # NTK predicts the measured frequency order (censored measurements must be predicted beyond the budget).
    mismatches = []
    for kind, r in runs.items():
        for i in range(n_seeds):
            m = np.minimum(r.tau[i], cap)
            p = np.minimum(r.tau_pred[i], cap)
            if not np.array_equal(np.argsort(m, kind="stable"), np.argsort(p, kind="stable")):
                mismatches.append(
                    f"{kind} seed {i} (measured {_steps_list(r.tau[i])}; predicted {_steps_list(r.tau_pred[i])})"
                )
    ff_hi = np.minimum(ff.tau[:, hi], cap)
    plain_hi = np.minimum(plain.tau[:, hi], cap)
    rebalance = bool(np.all(np.isfinite(ff.tau[:, hi])) and np.all(ff_hi < plain_hi))
    with np.errstate(divide="ignore", invalid="ignore"):  # a frequency fitted at step 0: inf, dropped and counted
        speedup = plain_hi / ff_hi
    checks = [
        Check(
            "mlp_low_frequency_first",
            low_first if len(freqs) > 1 else None,
            None,
            None,
            None,
            "plain MLP: "
            + (
                "one target frequency only: no order to compare, not evaluated"
                if len(freqs) < 2
                else "the lowest frequency was not fitted within the budget in some seed: not evaluated"
                if low_first is None
                else "every seed fitted the frequencies in increasing order (a frequency not fitted within the "
                "budget counts as later)"
                if low_first
                else "some seed fitted a higher frequency first"
            ),
            kind="agreement",
            criterion="in every seed each frequency is fitted strictly before every higher one (spectral bias)",
        ),
        Check(
            "fourier_features_rebalance",
            rebalance,
            _f(float(np.min(speedup))),
            1.0,
            None,
            f"Fourier features fitted frequency {freqs[hi]} within the budget in every seed and sooner than the "
            f"plain MLP (plain/FF steps, plain capped at {int(cap)}: {np.min(speedup):.3g}x to "
            f"{np.max(speedup):.3g}x)"
            if rebalance
            else f"Fourier features did not fit frequency {freqs[hi]} sooner than the plain MLP in every seed",
            kind="agreement",
            criterion="Fourier-feature MLP fits the highest frequency within the budget and sooner than the plain "
            "MLP in every seed (Tancik et al. 2020)",
        ),
        Check(
            "ntk_predicts_frequency_order",
            (not mismatches) if len(freqs) > 1 else None,
            None,
            None,
            None,
            "one target frequency only: no order to predict, not evaluated"
            if len(freqs) < 2
            else "the NTK at initialisation predicted the measured order of the target frequencies in every seed and "
            "both architectures"
            if not mismatches
            else "the NTK-predicted frequency order differs from the measured one in " + "; ".join(mismatches),
            "info",
            kind="agreement",
            criterion="measured and NTK-predicted frequency orders identical in every seed and architecture",
        ),
    ]
    factor = math.log10(ps.fit_time_factor)
    for kind, r in runs.items():
        both = np.isfinite(r.tau) & np.isfinite(r.tau_pred)
        lr = np.log10(r.tau[both] / np.maximum(r.tau_pred[both], 1.0))
        ci = mean_ci(lr, level, unit="(seed, frequency) pairs")
        checks.append(
            _agree(
                f"ntk_fit_time_{kind}",
                ci,
                0.0,
                factor,
                f"{kind}: log10(measured / NTK-predicted fitting steps) over {ci.n} (seed, frequency) pairs fitted "
                f"within the budget (within a factor {ps.fit_time_factor:g})",
                severity="info",
            )
        )
        rho = mean_ci(r.spearman, level)
        ok = bool(rho.mean >= ps.spearman_min) if math.isfinite(rho.mean) else None
        checks.append(
            Check(
                f"ntk_mode_order_{kind}",
                ok,
                _f(rho.mean),
                ps.spearman_min,
                None,
                f"{kind}: Spearman correlation of measured and NTK-predicted fitting steps over the {n_modes} "
                f"NTK modes with most initial residual: {rho.mean:.3g} {interval_text(rho)}{_dropped(rho)} "
                f"({'>=' if ok else 'not >='} {ps.spearman_min:g})",
                "info",
                kind="agreement",
                criterion=f"mean Spearman over seeds >= {ps.spearman_min:g}",
            )
        )
    estimates = []
    budget = {"n_iter": ps.steps}  # fixed budgets of GD steps: converged stays None
    for kind, r in runs.items():
        estimates.append(
            mean_ci(r.spearman, level).to_estimate(
                f"spectral_bias.{'order_spearman' if kind == 'plain' else 'order_spearman_fourier'}",
                note=f"{kind} MLP: measured vs NTK-predicted mode order",
                **budget,
            )
        )
        for j, k in enumerate(freqs):
            meas = r.tau[:, j]
            note = f"{kind} MLP, steps to e_k <= {threshold:g}"
            if np.all(np.isfinite(meas)):
                estimates.append(
                    mean_ci(meas, level).to_estimate(f"mlp.{kind}.fit_steps_f{k}", unit="steps", note=note, **budget)
                )
            else:
                estimates.append(
                    Estimate(
                        f"mlp.{kind}.fit_steps_f{k}",
                        None,
                        n=n_seeds,
                        unit="steps",
                        n_iter=ps.steps,
                        note=f"{note}: not reached within {ps.steps} steps in {int(np.sum(~np.isfinite(meas)))} of "
                        f"{n_seeds} seeds (not measured; final error {np.nanmean(r.err[:, -1, j]):.3g})",
                    )
                )
    with np.errstate(divide="ignore", invalid="ignore"):
        ci_speed = mean_ci(np.log10(speedup), level)
    estimates.append(
        ci_speed.to_estimate(
            "spectral_bias.fourier_log10_speedup_high_freq",
            unit="log10",
            note=f"log10(plain / Fourier-feature steps to fit frequency {freqs[hi]}), plain capped at the budget "
            "(a lower bound when the plain MLP never fitted it)",
            **budget,
        )
    )

    def steps_of(r: mf.ArchitectureRun, j: int) -> str:
        meas = r.tau[:, j]
        missed = int(np.sum(~np.isfinite(meas)))
        return f"{np.mean(meas):.0f} steps" if not missed else f"more than {ps.steps} steps in {missed} seed(s)"

    rho_plain = mean_ci(plain.spearman, level)
    recs = [
        Recommendation(
            f"The plain MLP fitted frequency {freqs[0]} in {steps_of(plain, 0)} and frequency {freqs[hi]} in "
            f"{steps_of(plain, hi)}; with Fourier-feature inputs frequency {freqs[hi]} took {steps_of(ff, hi)}. "
            "When high-frequency detail matters, change the input encoding rather than training longer.",
            rests_on=("mlp_low_frequency_first", "fourier_features_rebalance"),
        ),
        Recommendation(
            f"The NTK at initialisation ranked the plain MLP's modes with Spearman {rho_plain.mean:.2f} against the "
            "measured fitting order; use it to anticipate which components are learned late, not to predict "
            "exact times.",
            rests_on=("ntk_mode_order_plain",),
        ),
    ]
    metrics = {
        **metric_with_interval("spectral_bias.order_spearman", estimates[0]),
        **metric_with_interval("spectral_bias.fourier_log10_speedup", estimates[-1]),
    }
    figs = _mlp_figures(runs, freqs, ps, threshold)
    table = Table(
        "mlp_fit_steps",
        f"MLPs: steps to fit each target frequency (residual <= {threshold:g} of the target's coefficient)",
        ["model, prediction", "frequency", "measured steps: mean, t-interval", "predicted steps per seed",
         "measured/predicted per seed"],
        [[f"{kind} MLP, NTK at init", k, _fmt_steps(r.tau[:, j], ps.steps, level), _steps_list(r.tau_pred[:, j]),
          _ratios(r.tau[:, j], r.tau_pred[:, j])] for kind, r in runs.items() for j, k in enumerate(freqs)],
    )  # fmt: skip
    return Part(
        "mlp",
        estimates=estimates,
        checks=checks,
        figures=figs,
        tables=[table],
        assumptions=[
            Assumption(
                "the network stays close to its linearisation at initialisation (NTK regime)",
                "Jacot et al. 2018; Lee et al. 2019",
                checked_by=("ntk_mode_order_plain",),
            )
        ],
        recommendations=recs,
        metrics=metrics,
        predictions={
            "mlp": "linearised: r_t = U (I - eta Lambda)^t U^T r_0 with Lambda, U from 2 Theta / n at init",
            "fourier_features": "flatter NTK spectrum: high frequencies fitted sooner (Tancik et al. 2020)",
        },
        data={
            "width": ps.width if subject.model_builder is None else None,
            "depth": ps.depth if subject.model_builder is None else None,
            "activation": ps.activation if subject.model_builder is None else "from model_builder",
            "steps": ps.steps,
            "lr_fraction": ps.lr_fraction,
            "fourier_features": {"m": ps.ff_features, "sigma": ps.ff_sigma},
            "plain": summaries["plain"],
            "fourier": summaries["fourier"],
        },
        notes=(
            "The MLP's NTK prediction is a linearisation at initialisation; its speed errors measure how far "
            "training leaves that regime. Both networks use the same fraction of their own stability limit.",
        ),
    )


def _mlp_figures(
    runs: dict[str, mf.ArchitectureRun], freqs: tuple[int, ...], ps: MLPSettings, threshold: float
) -> list[Any]:
    traces = []
    for a, (kind, r) in enumerate(runs.items()):
        idx = _log_idx(r.steps + 1)
        for j, k in enumerate(freqs):
            col = PALETTE[(2 * a + j) % len(PALETTE)]
            traces.append(
                line_trace(
                    idx, np.nanmean(r.err[:, idx, j], axis=0), f"{kind}, frequency {k}", markers=False, color=col
                )
            )
            traces.append(
                curve_trace(idx, np.nanmean(r.err_pred[:, idx, j], axis=0), f"{kind}, {k}: NTK prediction", color=col)
            )
    traces.append(curve_trace([1, ps.steps], [threshold] * 2, "fit threshold", dash="dot", color="#7f7f7f"))
    fig_f = figure(
        "mlp_frequency_error",
        "MLP: residual error per target frequency over training",
        traces,
        xlabel="GD step",
        ylabel="|R_t[k]| / |F*[k]|",
        xlog=True,
        ylog=True,
        caption="Solid: measured (mean over seeds); dashed: the NTK-at-initialisation linearisation.",
    )
    traces = []
    cap = ps.steps + 1.0
    for a, (kind, r) in enumerate(runs.items()):
        meas = np.minimum(r.mode_tau, cap).ravel()
        pred = r.mode_tau_pred.ravel()
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{kind} NTK modes",
                "x": _fl(np.minimum(pred, 1e12)),
                "y": _fl(meas),
                "marker": {"color": PALETTE[a]},
            }
        )
    lim = [1.0, float(cap)]
    traces.append(curve_trace(lim, lim, "measured = predicted", dash="dot", color="#7f7f7f"))
    fig_m = figure(
        "ntk_mode_fit_steps",
        "NTK modes: measured vs predicted fitting steps",
        traces,
        xlabel="predicted steps (NTK at init)",
        ylabel=f"measured steps (capped at {int(cap)})",
        xlog=True,
        ylog=True,
    )
    return [fig_f, fig_m]
