"""The parts of the calibration lens; each takes the subject, its settings and its own seed."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats as sps

from multilens.lenses.calibration import metrics as M
from multilens.lenses.calibration.api import calibration_metrics, metric_interval
from multilens.lenses.calibration.curvature_drift import curvature_drift
from multilens.lenses.calibration.temperature import AffineScaler, fit_temperature
from multilens.lenses.calibration.trajectory import Checkpoint, Predictions
from multilens.plots import PALETTE, band_traces, errorbar_trace, figure, line_trace
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Part,
    Recommendation,
    Table,
    check_difference_within,
    check_in_interval,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import DETERMINISTIC, Interval, bootstrap_ci, check_sign, clopper_pearson, json_float

LENS = "calibration"
SEC = "calibration."


def probs_of(p: Predictions) -> tuple[np.ndarray, np.ndarray]:
    return M.as_probs(p.labels, p.probs, p.logits)


def _z(level: float) -> float:
    return float(sps.norm.ppf(0.5 + level / 2))


def _diff_interval(a: Interval, b: Interval, level: float) -> tuple[float, float, float]:
    """(a - b, low, high): normal interval for independent samples from the two bootstrap SEs."""
    d = a.estimate - b.estimate
    se = math.sqrt(a.stderr**2 + b.stderr**2)
    return d, d - _z(level) * se, d + _z(level) * se


def _paired_diff(stat: Any, y: np.ndarray, pa: np.ndarray, pb: np.ndarray, *, n_boot: int, level: float, seed: int):
    """Percentile bootstrap of stat(y, pa) - stat(y, pb) resampling the same examples for both."""
    return bootstrap_ci(lambda yy, a, b: stat(yy, a) - stat(yy, b), y, pa, pb, n_boot=n_boot, level=level, seed=seed)


def reliability_figure(key: str, title: str, y: np.ndarray, p: np.ndarray, n_bins: int, level: float):
    rel = M.reliability(y, p, n_bins)
    nz = rel.counts > 0
    centers = (rel.edges[:-1] + rel.edges[1:]) / 2
    lo, hi = [], []
    for k, c in zip(rel.accuracy, rel.counts):
        if c > 0:
            ci = clopper_pearson(int(round(k * c)), int(c), level)
            lo.append(ci.low)
            hi.append(ci.high)
    acc = errorbar_trace(rel.confidence[nz], rel.accuracy[nz], lo, hi, "accuracy (Clopper-Pearson)", color=PALETTE[0])
    diag = line_trace([0, 1], [0, 1], "perfect calibration", markers=False, color=PALETTE[7])
    counts = {
        "type": "bar",
        "name": "examples per bin",
        "x": [float(c) for c in centers],
        "y": [int(c) for c in rel.counts],
        "yaxis": "y2",
        "opacity": 0.25,
        "width": 1.0 / n_bins,
        "marker": {"color": PALETTE[1]},
    }
    layout = {
        "yaxis2": {"title": {"text": "examples"}, "overlaying": "y", "side": "right"},
        "xaxis": {"title": {"text": "confidence"}, "range": [0, 1]},
    }
    table = Table(
        f"{key}_bins",
        f"{title}: per-bin counts",
        ["bin", "n", "mean confidence", "accuracy", "acc low", "acc high"],
        [
            [
                f"[{rel.edges[i]:.3g}, {rel.edges[i + 1]:.3g}{']' if i == n_bins - 1 else ')'}",
                int(rel.counts[i]),
                json_float(rel.confidence[i]),
                json_float(rel.accuracy[i]),
                *(lambda c: [json_float(c.low), json_float(c.high)])(
                    clopper_pearson(int(round(rel.accuracy[i] * rel.counts[i])), int(rel.counts[i]), level)
                    if rel.counts[i]
                    else Interval(*(math.nan,) * 4, 0, level, "")
                ),
            ]
            for i in range(n_bins)
        ],
    )
    fig = figure(
        key,
        title,
        [counts, diag, acc],
        xlabel="confidence",
        ylabel="accuracy",
        layout=layout,
        caption="Accuracy per equal-width confidence bin (error bars: Clopper-Pearson) against the diagonal; "
        "bars: examples per bin (right axis). A confidence of exactly 1.0 is in the last bin.",
    )
    return fig, table


# ----------------------------------------------------------------------------------------------
# metrics


def metrics_part(subject: Any, s: Any, seed: int) -> Part:
    y, p = probs_of(subject.test)
    kw = {"logits": subject.test.logits} if subject.test.logits is not None else {"probs": p}
    est = calibration_metrics(y, n_bins=s.n_bins, n_boot=s.n_boot, level=s.level, seed=derive_seed(seed, "boot"), **kw)
    estimates = [replace(e, name=f"test_{k}") for k, e in est.items()]
    metrics: dict[str, float] = {}
    for k, e in est.items():
        if k != "aurc":  # the selective part owns calibration.aurc
            metrics |= metric_with_interval(SEC + k, e)
    # Control: labels drawn from the model's own probabilities are calibrated by construction,
    # so the debiased squared error must be 0 up to sampling error (the plug-in ECE is not).
    rng = as_generator(derive_seed(seed, "self-sampled"))
    y_star = (rng.random(p.shape[0])[:, None] > np.cumsum(p, 1)).sum(1).clip(0, p.shape[1] - 1)
    sq = metric_interval(
        "sq_ce_debiased",
        y_star,
        p,
        n_bins=s.n_bins,
        n_boot=s.n_boot,
        level=s.level,
        seed=derive_seed(seed, "boot-star"),
    )
    plug = bootstrap_ci(
        lambda a, b: M.ece_adaptive(a, b, s.n_bins),
        y_star,
        p,
        n_boot=s.n_boot,
        level=s.level,
        seed=derive_seed(seed, "boot-star"),
    )
    checks = [
        check_in_interval(
            "debiased_error_zero_when_calibrated",
            0.0,
            sq.low,
            sq.high,
            kind="agreement",
            what="debiased squared calibration error on labels drawn from the model's own probabilities (true value 0)",
        ),
    ]
    estimates += [
        sq.to_estimate("self_sampled_sq_ce_debiased", note="labels drawn from the predicted probabilities"),
        plug.to_estimate("self_sampled_ece_adaptive", note="plug-in ECE on the same labels: biased above 0"),
    ]
    fig, table = reliability_figure("reliability_test", "Reliability diagram (test split)", y, p, s.n_bins, s.level)
    assumptions = [
        Assumption(
            "The debiased estimator removes the binning bias of the plug-in ECE (Kumar et al. 2019)",
            "Kumar, Liang & Ma, NeurIPS 2019",
            ("debiased_error_zero_when_calibrated",),
        ),
    ]
    return Part(
        "metrics",
        tuple(estimates),
        tuple(checks),
        (fig,),
        (table,),
        tuple(assumptions),
        (),
        metrics,
        data={"n_test": int(y.shape[0]), "n_bins": s.n_bins},
    )


# ----------------------------------------------------------------------------------------------
# temperature


def _temperature_interval(y: np.ndarray, z: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[Interval, Any]:
    from multilens.lenses.calibration.api import bootstrap_temperature

    fit = fit_temperature(y, z)
    ci, _ = bootstrap_temperature(y, z, n_boot=n_boot, level=level, seed=seed)
    return Interval(fit.temperature, ci.low, ci.high, ci.stderr, ci.n, level, ci.method, ci.n_dropped, ci.reason), fit


def temperature_part(subject: Any, s: Any, seed: int) -> Part:
    if subject.val.logits is None or subject.test.logits is None:
        return Part("temperature", notes=("temperature part skipped: the subject has no logits",))
    yv, zv = subject.val.labels, np.asarray(subject.val.logits, np.float64)
    yt, zt = subject.test.labels, np.asarray(subject.test.logits, np.float64)
    M.as_probs(yv, logits=zv)
    M.as_probs(yt, logits=zt)
    lvl = s.level
    t_val, fit = _temperature_interval(yv, zv, s.n_boot, lvl, derive_seed(seed, "boot-val"))
    t_test, fit_test = _temperature_interval(yt, zt, s.n_boot, lvl, derive_seed(seed, "boot-test"))
    T = fit.temperature
    bseed = derive_seed(seed, "metrics")
    before = calibration_metrics(
        yt,
        logits=zt,
        n_bins=s.n_bins,
        n_boot=s.n_boot,
        level=lvl,
        seed=bseed,
        metrics=("ece", "ece_adaptive", "nll", "brier"),
    )
    after = calibration_metrics(
        yt,
        logits=zt / T,
        n_bins=s.n_bins,
        n_boot=s.n_boot,
        level=lvl,
        seed=bseed,
        metrics=("ece", "ece_adaptive", "nll", "brier"),
    )
    d_ece = _paired_diff(
        lambda a, b: M.ece(a, b, s.n_bins),
        yt,
        M.softmax(zt / T),
        M.softmax(zt),
        n_boot=s.n_boot,
        level=lvl,
        seed=derive_seed(seed, "paired"),
    )
    d, lo, hi = _diff_interval(t_test, t_val, lvl)
    checks = [
        Check(
            "temperature_fit_converged",
            fit.converged,
            fit.grad,
            0.0,
            None,
            f"bounded Brent in log T: {fit.message}; {fit.n_iter} evaluations",
            kind="sanity",
            criterion="optimiser success, |dNLL/dlog T| <= 1e-5 and the optimum off the search bounds",
        ),
        Check(
            "temperature_not_worse_on_validation",
            fit.nll_after <= fit.nll_before + 1e-12,
            fit.nll_after,
            fit.nll_before,
            1e-12,
            f"validation NLL {fit.nll_before:.6g} at T = 1 -> {fit.nll_after:.6g} at T = {fit.temperature:.4g}",
            kind="sanity",
            criterion="NLL after <= NLL before (+1e-12)",
        ),
        check_in_interval(
            "temperature_transfers_to_test",
            0.0,
            lo,
            hi,
            kind="agreement",
            what=f"T fitted on test ({fit_test.temperature:.4g}) minus T fitted on validation "
            f"({T:.4g}): normal interval from the two bootstrap SEs covers 0",
        ),
    ]
    # Planted temperature: labels drawn from the model's own test probabilities (calibrated at T = 1),
    # logits multiplied by T0; half fits, and the interval must cover T0.
    rng = as_generator(derive_seed(seed, "planted"))
    p = M.softmax(zt)
    ys = (rng.random(p.shape[0])[:, None] > np.cumsum(p, 1)).sum(1).clip(0, p.shape[1] - 1)
    t_pl, _ = _temperature_interval(ys, zt * s.planted_temperature, s.n_boot, lvl, derive_seed(seed, "boot-planted"))
    checks.append(
        check_in_interval(
            "planted_temperature_recovered",
            s.planted_temperature,
            t_pl.low,
            t_pl.high,
            kind="agreement",
            what=f"planted T0 = {s.planted_temperature:g} "
            f"(labels drawn from softmax(z), logits z T0): fitted {t_pl.estimate:.4g}",
        )
    )
    estimates = [
        Estimate(
            "temperature",
            T,
            json_float(t_val.low),
            json_float(t_val.high),
            json_float(t_val.stderr),
            lvl,
            t_val.method,
            t_val.n,
            "",
            fit.message,
            fit.converged,
            fit.n_iter,
            t_val.n_dropped,
            "" if t_val.ok else t_val.reason,
        ),
        t_test.to_estimate("temperature_fitted_on_test", note="for the transfer check only"),
        t_pl.to_estimate("planted_temperature_fit"),
        d_ece.to_estimate("test_ece_change_after_temperature", note="paired bootstrap: after - before"),
        Estimate("validation_nll_before", fit.nll_before, no_interval_reason=DETERMINISTIC, n=int(yv.shape[0])),
        Estimate("validation_nll_after", fit.nll_after, no_interval_reason=DETERMINISTIC, n=int(yv.shape[0])),
    ]
    for k in before:
        estimates.append(replace(before[k], name=f"test_{k}_before_scaling"))
        estimates.append(replace(after[k], name=f"test_{k}_after_temperature"))
    rows = [
        ["none (T = 1)", None, before["ece"].value, before["nll"].value, before["brier"].value, None, None],
        ["temperature", T, after["ece"].value, after["nll"].value, after["brier"].value, fit.converged, fit.n_iter],
    ]
    for kind in s.variants:
        a = AffineScaler(kind, l2=s.l2).fit(yv, zv)
        pa = a.predict_proba(zt)
        e = calibration_metrics(
            yt,
            logits=a.transform(zt),
            n_bins=s.n_bins,
            n_boot=s.n_boot,
            level=lvl,
            seed=bseed,
            metrics=("ece", "nll", "brier"),
        )
        checks.append(
            Check(
                f"{kind}_scaling_not_worse_on_validation",
                a.nll_after_ <= a.nll_before_ + 1e-12,
                a.nll_after_,
                a.nll_before_,
                1e-12,
                f"{kind} scaling: validation NLL {a.nll_before_:.5g} -> {a.nll_after_:.5g}; L-BFGS {a.message_}",
                kind="sanity",
                criterion="NLL after <= NLL before (+1e-12)",
            )
        )
        for k, v in e.items():
            estimates.append(
                replace(v, name=f"test_{k}_after_{kind}_scaling", converged=a.converged_, n_iter=a.n_iter_)
            )
        rows.append(
            [f"{kind} scaling", None, e["ece"].value, e["nll"].value, e["brier"].value, a.converged_, a.n_iter_]
        )
        del pa
    metrics = {SEC + "temperature": T}
    metrics |= metric_with_interval(SEC + "ece_after_temperature", after["ece"])
    metrics |= metric_with_interval(SEC + "nll_after_temperature", after["nll"])
    metrics[SEC + "temperature_converged"] = float(fit.converged)
    table = Table(
        "post_hoc",
        "Post-hoc recalibration fitted on validation, evaluated on test",
        ["method", "T", "test ECE", "test NLL", "test Brier", "converged", "n_iter"],
        rows,
    )
    recs = []
    if after["ece"].value is not None and before["ece"].value is not None:
        recs.append(
            Recommendation(
                f"Divide the logits by T = {T:.3g} (fitted on {yv.shape[0]} validation examples): test ECE "
                f"{before['ece'].value:.3g} -> {after['ece'].value:.3g}, test NLL {before['nll'].value:.3g} -> "
                f"{after['nll'].value:.3g}.",
                ("temperature_fit_converged", "temperature_transfers_to_test"),
            )
        )
    assumptions = [
        Assumption(
            "The validation and test splits share one distribution, so a temperature fitted on one applies "
            "to the other",
            "held-out evaluation (DESIGN.md)",
            ("temperature_transfers_to_test",),
        ),
        Assumption(
            "The bounded 1-D search finds the NLL minimum (the NLL is convex in 1/T)",
            "Guo et al. 2017",
            ("temperature_fit_converged", "planted_temperature_recovered"),
        ),
    ]
    return Part("temperature", tuple(estimates), tuple(checks), (), (table,), tuple(assumptions), tuple(recs), metrics)


# ----------------------------------------------------------------------------------------------
# selective prediction


def selective_part(subject: Any, s: Any, seed: int) -> Part:
    y, p = probs_of(subject.test)
    rc = M.risk_coverage(y, p)
    bs = derive_seed(seed, "boot")
    aurc = bootstrap_ci(M.aurc, y, p, n_boot=s.n_boot, level=s.level, seed=bs)
    e_aurc = bootstrap_ci(lambda a, b: M.risk_coverage(a, b).e_aurc, y, p, n_boot=s.n_boot, level=s.level, seed=bs)
    err = 1.0 - M.accuracy(y, p)
    k = max(1, int(round(s.coverage * y.shape[0])))
    sel = bootstrap_ci(lambda a, b: M.risk_coverage(a, b).risk[k - 1], y, p, n_boot=s.n_boot, level=s.level, seed=bs)
    full = clopper_pearson(int(round(err * y.shape[0])), int(y.shape[0]), s.level)
    # Random abstention has expected AURC = the full-coverage error rate: a useful confidence ranks below it.
    d = bootstrap_ci(
        lambda a, b: M.aurc(a, b) - (1.0 - M.accuracy(a, b)), y, p, n_boot=s.n_boot, level=s.level, seed=bs
    )
    checks = [
        check_sign(
            "confidence_ranks_errors_first",
            d,
            positive=False,
            what="AURC minus the AURC of random abstention (= full-coverage error rate)",
        )
    ]
    estimates = [
        aurc.to_estimate("aurc"),
        e_aurc.to_estimate("e_aurc"),
        sel.to_estimate(f"selective_risk_at_coverage_{s.coverage:g}"),
        full.to_estimate("risk_at_full_coverage"),
        Estimate("aurc_optimal", rc.aurc_optimal, no_interval_reason="exact for the observed errors"),
    ]
    idx = np.unique(np.r_[np.round(np.linspace(0, y.shape[0] - 1, 100)).astype(int)])
    fig = figure(
        "risk_coverage",
        "Risk-coverage curve (test split)",
        [
            line_trace(rc.coverage[idx], rc.risk[idx], "selective risk", markers=False),
            line_trace([0, 1], [err, err], "random abstention (expected)", markers=False, color=PALETTE[7]),
        ],
        xlabel="coverage",
        ylabel="selective risk (error rate)",
        caption=f"AURC {rc.aurc:.4g} (optimal {rc.aurc_optimal:.4g}); examples ranked by confidence.",
    )
    metrics = metric_with_interval(SEC + "aurc", aurc.to_estimate("aurc"))
    metrics |= metric_with_interval(SEC + "selective_risk", sel.to_estimate("s"))
    return Part("selective", tuple(estimates), tuple(checks), (fig,), (), (), (), metrics)


# ----------------------------------------------------------------------------------------------
# subgroups


def _gap_stat(n_bins: int, groups: np.ndarray, names: np.ndarray):
    def stat(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
        overall = M.ece(y, p, n_bins)
        per = [M.ece(y[g == h], p[g == h], n_bins) for h in names if np.any(g == h)]
        return max(per) - overall

    return stat


def subgroups_part(subject: Any, s: Any, seed: int) -> Part:
    y, p = probs_of(subject.test)
    bs = derive_seed(seed, "boot")
    estimates, rows, checks = [], [], []
    onehot = np.eye(p.shape[1])[y]
    for k in range(p.shape[1]):
        ci = bootstrap_ci(
            lambda pk, ok: M.ece_from_conf(pk, ok, s.n_bins, "width"),
            p[:, k],
            onehot[:, k],
            n_boot=s.n_boot,
            level=s.level,
            seed=bs,
        )
        estimates.append(ci.to_estimate(f"class_{k}_ece", note="one-vs-rest ECE of p_k"))
        rows.append([f"class {k}", int(onehot[:, k].sum()), ci.estimate, json_float(ci.low), json_float(ci.high)])
    metrics: dict[str, float] = {}
    g = subject.test.groups
    if g is not None:
        g = np.asarray(g)
        names = np.unique(g)
        for h in names:
            m = g == h
            ci = bootstrap_ci(lambda a, b: M.ece(a, b, s.n_bins), y[m], p[m], n_boot=s.n_boot, level=s.level, seed=bs)
            estimates.append(ci.to_estimate(f"group_{h}_ece", note=f"top-label ECE within group {h}"))
            rows.append([f"group {h}", int(m.sum()), ci.estimate, json_float(ci.low), json_float(ci.high)])
        gap = bootstrap_ci(_gap_stat(s.n_bins, g, names), y, p, g, n_boot=s.n_boot, level=s.level, seed=bs)
        estimates.append(gap.to_estimate("worst_group_ece_gap", note="max over groups of group ECE minus overall ECE"))
        checks.append(
            check_difference_within(
                "subgroup_calibration_uniform", gap.low, gap.high, s.max_gap, what="worst-group ECE minus overall ECE"
            )
        )
        metrics |= metric_with_interval(SEC + "subgroup_ece_gap", gap.to_estimate("g"))
    table = Table(
        "subgroups", "Calibration per class (one-vs-rest) and per group", ["subgroup", "n", "ECE", "low", "high"], rows
    )
    assumptions = []
    if checks:
        assumptions.append(
            Assumption(
                f"Calibration is uniform across the given groups (gap within {s.max_gap:g})",
                "C.15: subgroup-level calibration metrics",
                ("subgroup_calibration_uniform",),
            )
        )
    notes = () if g is not None else ("no groups in the subject: per-class calibration only",)
    return Part(
        "subgroups", tuple(estimates), tuple(checks), (), (table,), tuple(assumptions), (), metrics, notes=notes
    )


# ----------------------------------------------------------------------------------------------
# trajectory (C.15)


def _ckpt_row(c: Checkpoint, n_bins: int) -> dict[str, Any]:
    yt, pt = probs_of(c.test)
    yv, pv = probs_of(c.val)
    row = {
        "step": c.step,
        "reason": c.reason,
        "train_loss": c.train_loss,
        "train_error": c.train_error,
        "val_nll": M.nll(yv, pv),
        "val_ece": M.ece(yv, pv, n_bins),
        "test_ece": M.ece(yt, pt, n_bins),
        "test_nll": M.nll(yt, pt),
        "test_acc": M.accuracy(yt, pt),
        "median_train_margin": float(np.median(M.margins(c.train.logits, c.train.labels)))
        if c.train.logits is not None
        else None,
        "top_hessian": c.top_hessian,
    }
    if c.test.logits is not None:
        q = np.quantile(M.margins(c.test.logits, c.test.labels), [0.1, 0.5, 0.9])
        row |= {"test_margin_q10": float(q[0]), "test_margin_q50": float(q[1]), "test_margin_q90": float(q[2])}
    if c.shifted is not None:
        ys, ps = probs_of(c.shifted)
        if c.shifted.logits is not None:
            row["shift_margin_q50"] = float(np.median(M.margins(c.shifted.logits, c.shifted.labels)))
        row |= {"shift_ece": M.ece(ys, ps, n_bins), "shift_nll": M.nll(ys, ps), "shift_acc": M.accuracy(ys, ps)}
    if c.val.logits is not None:
        f = fit_temperature(c.val.labels, np.asarray(c.val.logits, np.float64))
        row |= {
            "temperature": f.temperature,
            "temperature_converged": f.converged,
            "test_ece_after_ts": M.ece(yt, M.softmax(np.asarray(c.test.logits) / f.temperature), n_bins),
        }
        if c.shifted is not None:
            row["shift_ece_after_ts"] = M.ece(
                c.shifted.labels, M.softmax(np.asarray(c.shifted.logits) / f.temperature), n_bins
            )
    return row


def trajectory_part(subject: Any, s: Any, seed: int) -> Part:
    traj = tuple(subject.trajectory)
    if len(traj) < 2:
        return Part("trajectory", notes=("trajectory part skipped: the subject has fewer than 2 checkpoints",))
    rows = [_ckpt_row(c, s.n_bins) for c in traj]
    lvl, nb = s.level, s.n_bins
    bs = derive_seed(seed, "boot")
    first = next((i for i, c in enumerate(traj) if c.train_error == 0.0), None)
    last = len(traj) - 1
    estimates: list[Estimate] = []
    checks: list[Check] = []
    metrics: dict[str, float] = {}
    ece_fn = lambda a, b: M.ece(a, b, nb)  # noqa: E731
    if first is not None and first < last:
        a, b = traj[last], traj[first]
        _, pa = probs_of(a.test)
        yb, pb = probs_of(b.test)
        d_id = _paired_diff(ece_fn, yb, pa, pb, n_boot=s.n_boot, level=lvl, seed=bs)
        estimates.append(
            d_id.to_estimate(
                "test_ece_drift_past_interpolation",
                note=f"ECE at step {a.step} minus at step {b.step} (first zero training error), paired bootstrap",
            )
        )
        metrics |= metric_with_interval(SEC + "ece_drift", d_id.to_estimate("d"))
        tr_y = a.train.labels
        m_fn = lambda yy, za, zb: float(np.median(M.margins(za, yy)) - np.median(M.margins(zb, yy)))  # noqa: E731
        d_m = bootstrap_ci(m_fn, tr_y, a.train.logits, b.train.logits, n_boot=s.n_boot, level=lvl, seed=bs)
        estimates.append(d_m.to_estimate("median_train_margin_growth"))
        checks.append(
            check_sign(
                "margin_grows_past_interpolation",
                d_m,
                positive=True,
                what="median training margin, last minus first zero-error checkpoint",
            )
        )
        if a.shifted is not None and b.shifted is not None:
            _, sa = probs_of(a.shifted)
            ys, sb = probs_of(b.shifted)
            d_sh = _paired_diff(ece_fn, ys, sa, sb, n_boot=s.n_boot, level=lvl, seed=bs)
            estimates.append(d_sh.to_estimate("shift_ece_drift_past_interpolation"))
            checks.append(
                check_sign(
                    "shift_ece_grows_past_interpolation",
                    d_sh,
                    positive=True,
                    what="ECE under shift, last minus first zero-error checkpoint",
                )
            )
            metrics |= metric_with_interval(SEC + "shift_ece_drift", d_sh.to_estimate("d"))
    c = traj[last]
    if c.shifted is not None:
        yt, pt = probs_of(c.test)
        ys, ps = probs_of(c.shifted)
        e_t = bootstrap_ci(ece_fn, yt, pt, n_boot=s.n_boot, level=lvl, seed=bs)
        e_s = bootstrap_ci(ece_fn, ys, ps, n_boot=s.n_boot, level=lvl, seed=derive_seed(seed, "boot-shift"))
        d, lo, hi = _diff_interval(e_s, e_t, lvl)
        ci = Interval(d, lo, hi, math.nan, e_t.n, lvl, "normal interval from two bootstrap SEs")
        estimates += [e_s.to_estimate("last_shift_ece"), e_t.to_estimate("last_test_ece")]
        checks.append(
            check_sign(
                "shift_amplifies_miscalibration",
                ci,
                positive=True,
                what="last iterate: ECE under shift minus in-distribution ECE",
            )
        )
        metrics |= metric_with_interval(SEC + "shift_ece", e_s.to_estimate("e"))
        if c.val.logits is not None:
            T = fit_temperature(c.val.labels, np.asarray(c.val.logits, np.float64)).temperature
            ps_ts = M.softmax(np.asarray(c.shifted.logits, np.float64) / T)
            pt_ts = M.softmax(np.asarray(c.test.logits, np.float64) / T)
            e_sts = bootstrap_ci(ece_fn, ys, ps_ts, n_boot=s.n_boot, level=lvl, seed=derive_seed(seed, "boot-shift"))
            e_tts = bootstrap_ci(ece_fn, yt, pt_ts, n_boot=s.n_boot, level=lvl, seed=bs)
            d2, lo2, hi2 = _diff_interval(e_sts, e_tts, lvl)
            ci2 = Interval(d2, lo2, hi2, math.nan, e_t.n, lvl, "normal interval from two bootstrap SEs")
            estimates.append(e_sts.to_estimate("last_shift_ece_after_temperature"))
            checks.append(
                check_sign(
                    "temperature_does_not_repair_shift",
                    ci2,
                    positive=True,
                    what="last iterate after in-distribution temperature scaling: ECE under "
                    "shift minus in-distribution ECE",
                )
            )
    # Stopping rules, each followed by temperature scaling fitted on validation.
    rules = {
        "last iterate": last,
        "best validation NLL": int(np.argmin([r["val_nll"] for r in rows])),
        "best validation ECE": int(np.argmin([r["val_ece"] for r in rows])),
    }
    srows = []
    for rule, i in rules.items():
        r = rows[i]
        srows.append(
            [
                rule,
                traj[i].step,
                r["test_acc"],
                r["test_ece"],
                r["test_nll"],
                r.get("temperature"),
                r.get("test_ece_after_ts"),
                r.get("shift_ece"),
                r.get("shift_ece_after_ts"),
            ]
        )
        key = rule.replace(" ", "_")
        yt, pt = probs_of(traj[i].test)
        e = bootstrap_ci(ece_fn, yt, pt, n_boot=s.n_boot, level=lvl, seed=bs)
        estimates.append(e.to_estimate(f"stop_{key}_test_ece", note=f"checkpoint at step {traj[i].step}"))
        if traj[i].val.logits is not None:
            pts = M.softmax(np.asarray(traj[i].test.logits) / r["temperature"])
            e2 = bootstrap_ci(ece_fn, yt, pts, n_boot=s.n_boot, level=lvl, seed=bs)
            estimates.append(e2.to_estimate(f"stop_{key}_test_ece_after_temperature"))
    # Curvature beside calibration along the same trajectory.
    lam = [r["top_hessian"] for r in rows]
    if all(v is not None for v in lam) and "shift_ece" in rows[0] and len(rows) >= 3:
        rho = float(sps.spearmanr(lam, [r["shift_ece"] for r in rows]).statistic)
        estimates.append(
            Estimate(
                "spearman_top_hessian_vs_shift_ece",
                json_float(rho),
                n=len(rows),
                no_interval_reason=f"{len(rows)} checkpoints of one trajectory (single seed)",
            )
        )
    cd = curvature_drift(traj, probs_of, s, seed=derive_seed(seed, "boot-curvature"))
    estimates += cd.get("estimates", ())
    checks += cd.get("checks", ())
    metrics |= cd.get("metrics", {})
    cols = [
        "step",
        "reason",
        "train_loss",
        "train_error",
        "val_nll",
        "val_ece",
        "test_ece",
        "test_nll",
        "test_acc",
        "median_train_margin",
        "test_margin_q10",
        "test_margin_q50",
        "test_margin_q90",
        "shift_margin_q50",
        "top_hessian",
        "shift_ece",
        "shift_nll",
        "shift_acc",
        "temperature",
        "test_ece_after_ts",
        "shift_ece_after_ts",
    ]
    table = Table(
        "trajectory",
        "Checkpoints at matched training risk (C.15)",
        cols,
        [[json_float(r.get(k)) if isinstance(r.get(k), float) else r.get(k) for k in cols] for r in rows],
    )
    stable = Table(
        "stopping_rules",
        "Stopping rules, each with post-hoc temperature scaling (test split)",
        ["rule", "step", "test acc", "test ECE", "test NLL", "T", "test ECE after T", "shift ECE", "shift ECE after T"],
        [[json_float(v) if isinstance(v, float) else v for v in r] for r in srows],
    )
    steps = [r["step"] for r in rows]
    traces = [line_trace(steps, [r["test_ece"] for r in rows], "test ECE", color=PALETTE[0])]
    if "shift_ece" in rows[0]:
        traces.append(line_trace(steps, [r["shift_ece"] for r in rows], "shifted ECE", color=PALETTE[3]))
    if "test_ece_after_ts" in rows[0]:
        traces.append(line_trace(steps, [r["test_ece_after_ts"] for r in rows], "test ECE after T", color=PALETTE[2]))
    figs = [
        figure(
            "trajectory_ece",
            "Calibration along training past interpolation",
            traces,
            xlabel="step",
            ylabel="ECE",
            xlog=True,
            caption="Checkpoints where the training risk first fell below each level.",
        )
    ]
    if all(v is not None for v in lam):
        figs.append(
            figure(
                "trajectory_curvature",
                "Top Hessian eigenvalue and median training margin",
                [
                    line_trace(steps, lam, "top Hessian eigenvalue", color=PALETTE[4]),
                    line_trace(
                        steps, [r["median_train_margin"] for r in rows], "median training margin", color=PALETTE[5]
                    ),
                ],
                xlabel="step",
                xlog=True,
                ylog=True,
            )
        )
    if "test_margin_q50" in rows[0]:
        figs.append(
            figure(
                "trajectory_margins",
                "Margin distribution along the trajectory (test: 10%, 50%, 90% quantiles; shifted: median)",
                [
                    *band_traces(
                        steps,
                        [r["test_margin_q10"] for r in rows],
                        [r["test_margin_q90"] for r in rows],
                        "test margin 10-90%",
                        color=PALETTE[0],
                    ),
                    line_trace(steps, [r["test_margin_q50"] for r in rows], "test median margin", color=PALETTE[0]),
                    *(
                        [
                            line_trace(
                                steps, [r["shift_margin_q50"] for r in rows], "shifted median margin", color=PALETTE[3]
                            )
                        ]
                        if "shift_margin_q50" in rows[0]
                        else []
                    ),
                ],
                xlabel="step",
                ylabel="logit margin z_y - max_k z_k",
                xlog=True,
            )
        )
    assumptions = [
        Assumption(
            "Training past zero error keeps growing the margins (the implicit bias of logistic-type losses)",
            "chapter example 4 (lines 194-195)",
            ("margin_grows_past_interpolation",),
        ),
    ]
    if any(ch.name == "shift_amplifies_miscalibration" for ch in checks):
        assumptions.append(
            Assumption(
                "Calibration deteriorates under shift (C.15 hint; expansion line 1469)",
                "C.15, line 277",
                ("shift_amplifies_miscalibration",),
            )
        )
    notes = tuple(cd.get("notes", ()))
    traj_subject = (getattr(subject, "description", None) or {}).get("trajectory_subject")
    if traj_subject:
        notes = (f"trajectory subject: {traj_subject}", *notes)
    if subject.alternatives:
        e_opt, t_opt, f_opt = _optimizer_comparison(subject, s, seed)
        estimates += e_opt
        extra_tables, extra_figs = t_opt, f_opt
    else:
        extra_tables, extra_figs = [], []
    return Part(
        "trajectory",
        tuple(estimates),
        tuple(checks),
        tuple(figs) + tuple(extra_figs),
        (table, stable, *cd.get("tables", ()), *extra_tables),
        tuple(assumptions),
        (),
        metrics,
        data={"checkpoints": len(traj)},
        notes=notes,
    )


def _optimizer_comparison(subject: Any, s: Any, seed: int) -> tuple[list[Estimate], list[Table], list[Any]]:
    """Optimizers compared at matched training risk: the checkpoints that matched the same risk level."""
    trajs = {"main": tuple(subject.trajectory), **{k: tuple(v) for k, v in subject.alternatives.items()}}
    names = {"main": str(subject.description.get("optimizer", "main"))}
    if "main" in subject.description:
        names["main"] = str(subject.description["main"]).split(",")[0]
    by_level: dict[str, dict[float, Checkpoint]] = {
        k: {c.target_risk: c for c in t if c.target_risk is not None} for k, t in trajs.items()
    }
    common = sorted(set.intersection(*(set(v) for v in by_level.values())), reverse=True)
    rows, estimates, traces = [], [], []
    ece_fn = lambda a, b: M.ece(a, b, s.n_bins)  # noqa: E731
    for i, (k, lv) in enumerate(by_level.items()):
        label = names.get(k, k)
        xs, ys = [], []
        for level in sorted(lv, reverse=True):
            c = lv[level]
            r = _ckpt_row(c, s.n_bins)
            rows.append([label, level, c.step, c.train_loss, r["test_ece"], r.get("shift_ece"), r["test_nll"],
                         r.get("test_margin_q50"), c.top_hessian])  # fmt: skip
            xs.append(c.train_loss)
            ys.append(r["test_ece"])
        traces.append(line_trace(xs, ys, f"{label}: test ECE", color=PALETTE[i % len(PALETTE)]))
    if common and len(trajs) > 1:
        level = common[-1]  # the lowest training risk every optimizer reached
        base = by_level["main"][level]
        yb, pb = probs_of(base.test)
        for k in trajs:
            if k == "main":
                continue
            _, pk = probs_of(by_level[k][level].test)
            d = _paired_diff(ece_fn, yb, pk, pb, n_boot=s.n_boot, level=s.level, seed=derive_seed(seed, "opt", k))
            estimates.append(
                d.to_estimate(
                    f"ece_{k}_minus_{names['main']}_at_risk_{level:g}",
                    note=f"test ECE at training risk <= {level:g}, paired bootstrap",
                )
            )
            if base.shifted is not None and by_level[k][level].shifted is not None:
                ys_, sb = probs_of(base.shifted)
                _, sk = probs_of(by_level[k][level].shifted)
                d2 = _paired_diff(ece_fn, ys_, sk, sb, n_boot=s.n_boot, level=s.level,
                                  seed=derive_seed(seed, "opt-shift", k))  # fmt: skip
                estimates.append(d2.to_estimate(f"shift_ece_{k}_minus_{names['main']}_at_risk_{level:g}"))
    cols = ["optimizer", "risk level", "step", "train loss", "test ECE", "shift ECE", "test NLL", "median test margin",
            "top Hessian eigenvalue"]  # fmt: skip
    table = Table("optimizers_matched_risk", "Optimizers compared at matched training risk (C.15)", cols,
                  [[json_float(v) if isinstance(v, float) else v for v in r] for r in rows])  # fmt: skip
    fig = figure("optimizers_matched_risk", "Test ECE against training risk, per optimizer", traces,
                 xlabel="training risk (cross-entropy)", ylabel="test ECE", xlog=True,
                 caption="Each point is the first checkpoint whose training risk fell below a level; optimizers "
                 "are compared at equal training risk, not at equal step count.")  # fmt: skip
    return estimates, [table], [fig]
