"""The parts of the shift lens; each takes the subject, its settings and its own seed.

Subject-driven parts (they measure what the subject holds): ``covariate``, ``label``, ``groups``,
``detection``. Settings-driven studies of the theorems on generators with known answers (they
check the estimators, not the user's model): ``variance`` (B.8 and the support-mismatch negative
control), ``misspecification`` (A.6), ``prevalence`` (A.17).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps
from sklearn.linear_model import LogisticRegression

from multilens.data.shift import gaussian_corruption, gaussian_covariate_shift, resample_to_priors
from multilens.lenses.calibration import metrics as CM
from multilens.lenses.calibration.temperature import fit_temperature
from multilens.lenses.shift import estimators as E
from multilens.lenses.shift import theory as TH
from multilens.plots import PALETTE, bars, errorbar_trace, figure, line_trace
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Part,
    Recommendation,
    Table,
    check_bound,
    check_in_interval,
    check_within,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import DETERMINISTIC, Interval, bootstrap_ci, check_sign, clopper_pearson, json_float, mean_ci

LENS = "shift"
SEC = "shift."


def _not_in_subject(part: str, what: str) -> Part:
    return Part(part, notes=(f"{part} part skipped: the subject has no {what}",))


# ----------------------------------------------------------------------------------------------
# covariate shift on the subject's data


def covariate_part(subject: Any, s: Any, seed: int) -> Part:
    d = subject.covariate
    if d is None:
        return _not_in_subject("covariate", "covariate-shift data")
    lvl = s.level
    loss = np.asarray(d.loss_source, np.float64)
    n = loss.shape[0]
    estimates: list[Estimate] = []
    checks: list[Check] = []
    metrics: dict[str, float] = {}
    rows = []
    src = mean_ci(loss, lvl, unit="examples")
    estimates.append(src.to_estimate("source_risk", note="unweighted mean loss on source"))
    truth = d.target_risk
    if truth is not None:
        estimates.append(
            Estimate("target_risk", float(truth), n=0, no_interval_reason=d.target_risk_kind or DETERMINISTIC)
        )
    w_hat = E.domain_classifier_ratio(
        d.x_source, d.x_target, quadratic=s.quadratic_features, c=s.classifier_c, seed=derive_seed(seed, "ratio")
    )
    variants: list[tuple[str, np.ndarray, bool]] = []
    if d.ratio_source is not None:
        w_true = np.asarray(d.ratio_source, np.float64)
        variants += [
            ("true", w_true, False),
            ("true_self_normalized", w_true, True),
            ("true_clipped", E.clip_weights(w_true, s.clip_quantile), False),
        ]
    variants += [
        ("estimated", w_hat, False),
        ("estimated_self_normalized", w_hat, True),
        ("estimated_clipped", E.clip_weights(w_hat, s.clip_quantile), False),
    ]
    res = {}
    for name, w, sn in variants:
        r = E.weighted_risk(loss, w, self_normalized=sn, level=lvl)
        res[name] = r
        estimates.append(r.interval.to_estimate(f"iw_risk_{name}", note=f"Kish ESS {r.ess:.1f} of {n}"))
        estimates.append(
            Estimate(
                f"ess_fraction_{name}",
                r.ess_fraction,
                n=n,
                no_interval_reason="a property of the weights at hand (Kish ESS / n)",
            )
        )
        rows.append([name, r.estimate, r.interval.low, r.interval.high, r.ess, r.ess_fraction])
    if truth is not None:
        for name in ("true", "estimated_self_normalized"):
            if name in res:
                ci = res[name].interval
                checks.append(
                    check_in_interval(
                        f"iw_risk_{name}_covers_target_risk",
                        float(truth),
                        ci.low,
                        ci.high,
                        kind="agreement",
                        what=f"importance-weighted risk ({name} ratio) vs the target risk",
                    )
                )
        checks.append(
            Check(
                "unweighted_risk_misses_target",
                not src.covers(float(truth)),
                src.estimate,
                float(truth),
                None,
                f"unweighted source risk {src.estimate:.4g} [{src.low:.4g}, {src.high:.4g}] vs target risk {truth:.4g}",
                "info",
                kind="agreement",
                criterion="the source interval does not cover the target risk (the shift matters)",
            )
        )
    main = res["true"] if "true" in res else res["estimated_self_normalized"]
    ess_frac = res["estimated"].ess_fraction
    checks.append(
        Check(
            "estimated_weights_usable",
            ess_frac >= s.min_ess_fraction,
            ess_frac,
            s.min_ess_fraction,
            None,
            f"Kish ESS of the estimated weights is {ess_frac:.3g} of n = {n} (usable at >= {s.min_ess_fraction:g})",
            "info",
            kind="sanity",
            criterion=f"ESS / n >= {s.min_ess_fraction:g}",
        )
    )
    metrics[SEC + "ess_fraction"] = float(ess_frac)
    if "true" in res:
        metrics[SEC + "ess_fraction_true"] = float(res["true"].ess_fraction)
    metrics |= metric_with_interval(SEC + "iw_risk", main.interval.to_estimate("r"))
    metrics |= metric_with_interval(SEC + "source_risk", src.to_estimate("r"))
    if truth is not None:
        metrics[SEC + "target_risk"] = float(truth)
    table = Table(
        "importance_weighting",
        "Importance-weighted risk estimates (B.8)",
        ["weights", "estimate", "low", "high", "Kish ESS", "ESS / n"],
        [[r[0]] + [json_float(v) for v in r[1:]] for r in rows],
    )
    fig = figure(
        "weights",
        "Importance weights at the source points (sorted)",
        [line_trace(np.arange(n), np.sort(w_hat)[::-1], "estimated (domain classifier)", markers=False)]
        + (
            [line_trace(np.arange(n), np.sort(d.ratio_source)[::-1], "true", markers=False, color=PALETTE[1])]
            if d.ratio_source is not None
            else []
        ),
        xlabel="rank",
        ylabel="w",
        ylog=True,
    )
    assumptions = []
    recs = []
    if truth is not None and any(c.name == "iw_risk_true_covers_target_risk" for c in checks):
        assumptions.append(
            Assumption(
                "Covariate shift: p(y|x) is the same in source and target (B.8's premise)",
                "DEF-SHIFT line 130; B.8 line 329",
                ("iw_risk_true_covers_target_risk",),
            )
        )
    if any(c.name == "iw_risk_estimated_self_normalized_covers_target_risk" for c in checks):
        recs.append(
            Recommendation(
                f"Report target risk as the self-normalised importance-weighted estimate with the domain-classifier "
                f"ratio: {res['estimated_self_normalized'].estimate:.4g} (ESS {res['estimated'].ess:.0f} of {n}).",
                ("iw_risk_estimated_self_normalized_covers_target_risk", "estimated_weights_usable"),
            )
        )
    return Part(
        "covariate", tuple(estimates), tuple(checks), (fig,), (table,), tuple(assumptions), tuple(recs), metrics
    )


# ----------------------------------------------------------------------------------------------
# B.8: variance grows with E[w^2 l^2]; support-mismatch negative control


def _fixed_line(seed: int, noise: float) -> np.ndarray:
    cs = gaussian_covariate_shift(2000, 2, shift=0.0, noise=noise, seed=seed)
    x = np.column_stack([np.ones(2000), cs.x_s[:, 0]])
    return np.linalg.lstsq(x, cs.y_s, rcond=None)[0]


def _loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (y - theta[0] - theta[1] * x[:, 0]) ** 2


def variance_part(subject: Any, s: Any, seed: int) -> Part:
    lvl = s.level
    theta = _fixed_line(derive_seed(seed, "fit"), s.noise)
    rows, checks, estimates = [], [], []
    pred_v, meas_v = [], []
    for i, sh in enumerate(s.shifts):
        big = gaussian_covariate_shift(s.n_mc, s.n_mc, shift=sh, noise=s.noise, seed=derive_seed(seed, "mc", i))
        w_big = big.true_ratio(big.x_s)
        l_big = _loss(theta, big.x_s, big.y_s)
        e_w2l2 = float(np.mean(w_big**2 * l_big**2))
        r_t = float(np.mean(_loss(theta, big.x_t, big.y_t)))
        pred = (e_w2l2 - r_t**2) / s.n
        rng = as_generator(derive_seed(seed, "reps", i))
        ests, ess = np.empty(s.replicates), np.empty(s.replicates)
        for r in range(s.replicates):
            cs = gaussian_covariate_shift(s.n, 2, shift=sh, noise=s.noise, seed=rng)
            w = cs.true_ratio(cs.x_s)
            ests[r] = float(np.mean(w * _loss(theta, cs.x_s, cs.y_s)))
            ess[r] = E.kish_ess(w) / s.n
        var_ci = bootstrap_ci(
            lambda a: float(np.var(a, ddof=1)),
            ests,
            n_boot=s.n_boot,
            level=lvl,
            seed=derive_seed(seed, "boot", i),
            unit="replicates",
        )
        mean = mean_ci(ests, lvl, unit="replicates")
        checks.append(
            check_in_interval(
                f"b8_variance_matches_shift_{i}",
                pred,
                var_ci.low,
                var_ci.high,
                kind="agreement",
                what=f"shift {sh:g}: (E_s[w^2 l^2] - R_t^2) / n against the variance over {s.replicates} replicates",
            )
        )
        checks.append(
            check_in_interval(
                f"b8_unbiased_shift_{i}",
                r_t,
                mean.low,
                mean.high,
                kind="agreement",
                what=f"shift {sh:g}: mean of the weighted estimates vs target risk (Monte Carlo, n = {s.n_mc})",
            )
        )
        estimates += [
            var_ci.to_estimate(f"iw_variance_shift_{i}", note=f"shift {sh:g}"),
            mean.to_estimate(f"iw_mean_shift_{i}", note=f"shift {sh:g}"),
            Estimate(
                f"e_w2l2_shift_{i}",
                e_w2l2,
                n=s.n_mc,
                stderr=float(np.std(w_big**2 * l_big**2, ddof=1) / math.sqrt(s.n_mc)),
                method="Monte Carlo mean with the exact ratio",
            ),
        ]
        pred_v.append(pred)
        meas_v.append(var_ci.estimate)
        rows.append([sh, e_w2l2, r_t, pred, var_ci.estimate, var_ci.low, var_ci.high, float(ess.mean())])
    rho = float(sps.spearmanr(pred_v, meas_v).statistic) if len(pred_v) >= 3 else math.nan
    checks.append(
        check_within(
            "b8_variance_grows_with_w2l2",
            rho,
            1.0,
            1e-9,
            kind="agreement",
            what="rank correlation of measured variance with E_s[w^2 l^2] across shifts",
        )
    )
    # Support-mismatch negative control (built to fail: gates never read it): the source is N(0, I)
    # truncated to the negative orthant, the target N(m 1, sd^2 I) lies almost entirely outside it.
    rng = as_generator(derive_seed(seed, "control"))
    dim, m, sd = s.control_dim, s.control_target_mean, s.control_target_sd
    xs = np.empty((0, dim))
    while xs.shape[0] < s.n:
        z = rng.standard_normal((8 * s.n, dim))
        xs = np.vstack([xs, z[(z < 0).all(1)]])
    xs = xs[: s.n]
    xt = m + sd * rng.standard_normal((s.n, dim))
    log_w = (sps.norm.logpdf(xs, m, sd) - sps.norm.logpdf(xs)).sum(1) + dim * math.log(0.5)
    frac_true = E.kish_ess(np.exp(log_w - log_w.max())) / s.n  # Kish ESS is scale-free
    w_c = E.domain_classifier_ratio(xs, xt, quadratic=True, c=100.0, seed=derive_seed(seed, "control-ratio"))
    frac_est = E.kish_ess(w_c) / s.n
    sep = E.domain_classifier_test(xs, xt, seed=derive_seed(seed, "control-sep"), level=lvl)
    outside = 1.0 - float(sps.norm.cdf(0.0, m, sd)) ** dim
    checks.append(
        Check(
            "support_mismatch_ess_collapses",
            frac_true < s.min_ess_fraction,
            frac_true,
            s.min_ess_fraction,
            None,
            f"negative control ({outside:.1%} of the target outside the source support): Kish ESS / n "
            f"of the true weights = {frac_true:.3g}",
            kind="agreement",
            criterion=f"ESS / n < {s.min_ess_fraction:g} when the supports do not overlap",
        )
    )
    checks.append(
        Check(
            "support_mismatch_flagged",
            sep.accuracy.low >= s.separable_accuracy,
            sep.statistic,
            s.separable_accuracy,
            None,
            f"negative control: a domain classifier separates source from target with held-out accuracy "
            f"{sep.statistic:.3g} [{sep.accuracy.low:.3g}, {sep.accuracy.high:.3g}]; the estimated "
            f"weights' ESS / n is {frac_est:.3g}, so the weights alone would not reveal the mismatch",
            kind="agreement",
            criterion=f"held-out separability interval >= {s.separable_accuracy:g}: supports do not overlap",
        )
    )
    estimates += [
        Estimate(
            "control_ess_fraction_true",
            frac_true,
            n=s.n,
            no_interval_reason="a property of the weights at hand (Kish ESS / n)",
        ),
        Estimate(
            "control_ess_fraction_estimated",
            frac_est,
            n=s.n,
            no_interval_reason="a property of the weights at hand (Kish ESS / n)",
        ),
        sep.accuracy.to_estimate("control_separability"),
        Estimate("control_target_mass_outside_support", outside, no_interval_reason="exact (normal tail)"),
    ]
    frac = frac_true
    table = Table(
        "b8_variance",
        "B.8: variance of the importance-weighted risk against E_s[w^2 l^2]",
        ["shift", "E_s[w^2 l^2]", "R_t", "predicted var", "measured var", "low", "high", "mean ESS / n"],
        [[json_float(v) for v in r] for r in rows],
    )
    fig = figure(
        "b8_variance",
        "Variance of the weighted risk estimate vs (E[w^2 l^2] - R_t^2) / n",
        [
            errorbar_trace(pred_v, meas_v, [r[5] for r in rows], [r[6] for r in rows], "measured"),
            line_trace(
                [min(pred_v), max(pred_v)], [min(pred_v), max(pred_v)], "prediction", markers=False, color=PALETTE[7]
            ),
        ],
        xlabel="predicted variance",
        ylabel="measured variance",
        xlog=True,
        ylog=True,
    )
    assumptions = [
        Assumption(
            "Bounded density ratio (here sd_t < sd_s, so w is bounded and E[w^2 l^2] finite)",
            "B.8 line 249",
            ("b8_variance_matches_shift_*",),
        )
    ]
    return Part(
        "variance",
        tuple(estimates),
        tuple(checks),
        (fig,),
        (table,),
        tuple(assumptions),
        (),
        {SEC + "control_ess_fraction": float(frac)},
    )


# ----------------------------------------------------------------------------------------------
# A.6: source ERM is inconsistent for a misspecified class, consistent for a well-specified one


def misspecification_part(subject: Any, s: Any, seed: int) -> Part:
    lvl = s.level
    mu_t, sd_t = s.shift, s.sd_target
    sig_t, sig_s = TH.second_moment(mu_t, sd_t), TH.second_moment(0.0, 1.0)
    th_t, th_s = TH.misspecified_projection(mu_t, sd_t), TH.misspecified_projection(0.0, 1.0)
    limit = TH.excess_risk(th_s, th_t, sig_t)
    rng = as_generator(derive_seed(seed, "reps"))
    rows, estimates = [], []
    last: dict[str, Interval] = {}
    for n in s.ns:
        ex = {"misspecified": [], "misspecified_iw": [], "well_specified": []}
        for _ in range(s.replicates):
            cs = gaussian_covariate_shift(n, 2, shift=mu_t, sd_t=sd_t, noise=s.noise, seed=rng)
            x = np.column_stack([np.ones(n), cs.x_s[:, 0]])
            w = cs.true_ratio(cs.x_s)
            th = np.linalg.lstsq(x, cs.y_s, rcond=None)[0]
            sw = np.sqrt(w)
            th_iw = np.linalg.lstsq(x * sw[:, None], cs.y_s * sw, rcond=None)[0]
            y_ws = 1.0 + 2.0 * cs.x_s[:, 0] + s.noise * rng.standard_normal(n)
            th_ws = np.linalg.lstsq(x, y_ws, rcond=None)[0]
            ex["misspecified"].append(TH.excess_risk(th, th_t, sig_t))
            ex["misspecified_iw"].append(TH.excess_risk(th_iw, th_t, sig_t))
            ex["well_specified"].append(TH.excess_risk(th_ws, np.array([1.0, 2.0]), sig_t))
        for k, v in ex.items():
            ci = mean_ci(v, lvl, unit="replicates")
            estimates.append(ci.to_estimate(f"a6_excess_{k}_n{n}"))
            last[k] = ci
        rows.append(
            [
                n,
                last["misspecified"].estimate,
                last["misspecified_iw"].estimate,
                last["well_specified"].estimate,
                TH.ols_excess_well_specified(s.noise**2, sig_t, sig_s, n),
            ]
        )
    n_max = s.ns[-1]
    pred_ws = TH.ols_excess_well_specified(s.noise**2, sig_t, sig_s, n_max)
    # Importance-weighted ERM with the ratio estimated by a domain classifier (quadratic features:
    # the log-ratio of two Gaussians is quadratic) from an unlabelled target sample of the same size.
    rng_e = as_generator(derive_seed(seed, "estimated-ratio"))
    ex_est = []
    for r in range(s.replicates_estimated):
        cs = gaussian_covariate_shift(n_max, n_max, shift=mu_t, sd_t=sd_t, noise=s.noise, seed=rng_e)
        w_hat = E.domain_classifier_ratio(cs.x_s, cs.x_t, quadratic=True, c=100.0, seed=derive_seed(seed, "dc", r))
        x = np.column_stack([np.ones(n_max), cs.x_s[:, 0]])
        sw = np.sqrt(w_hat)
        th_e = np.linalg.lstsq(x * sw[:, None], cs.y_s * sw, rcond=None)[0]
        ex_est.append(TH.excess_risk(th_e, th_t, sig_t))
    last["misspecified_iw_estimated"] = mean_ci(ex_est, lvl, unit="replicates")
    estimates.append(last["misspecified_iw_estimated"].to_estimate(f"a6_excess_misspecified_iw_estimated_n{n_max}"))
    estimates.append(Estimate("a6_limit_excess_misspecified", limit, no_interval_reason="exact closed form"))
    checks = [
        check_within(
            "a6_source_erm_inconsistent",
            last["misspecified"].estimate,
            limit,
            s.rel_tol,
            kind="agreement",
            relative=True,
            what=f"misspecified line, n = {n_max}: mean excess target risk of source ERM vs "
            "the closed-form limit (theta*_s - theta*_t)^T Sigma_t (theta*_s - theta*_t) > 0",
        ),
        check_in_interval(
            "a6_well_specified_consistent",
            pred_ws,
            last["well_specified"].low,
            last["well_specified"].high,
            kind="agreement",
            what=f"well-specified line, n = {n_max}: excess vs v tr(Sigma_t Sigma_s^-1) / n -> 0",
        ),
        check_bound(
            "a6_estimated_ratio_weighting_consistent",
            last["misspecified_iw_estimated"].high,
            s.iw_fraction * limit,
            what=f"misspecified line, n = {n_max}: upper end of the excess of importance-weighted ERM with the "
            f"domain-classifier ratio vs {s.iw_fraction:g} x the source-ERM limit",
        ),
        check_bound(
            "a6_importance_weighting_consistent",
            last["misspecified_iw"].high,
            s.iw_fraction * limit,
            what=f"misspecified line, n = {n_max}: upper end of the importance-weighted ERM excess vs "
            f"{s.iw_fraction:g} x the source-ERM limit",
        ),
    ]
    table = Table(
        "a6",
        "A.6: excess target risk (exact, averaged over replicates)",
        [
            "n",
            "source ERM (misspecified)",
            "IW-ERM (misspecified)",
            "source ERM (well specified)",
            "predicted (well specified)",
        ],
        [[json_float(v) for v in r] for r in rows],
    )
    ns = list(s.ns)
    fig = figure(
        "a6",
        "A.6: excess target risk against the source sample size",
        [
            line_trace(ns, [r[1] for r in rows], "source ERM, misspecified", color=PALETTE[3]),
            line_trace(ns, [r[2] for r in rows], "importance-weighted ERM, misspecified", color=PALETTE[2]),
            line_trace(ns, [r[3] for r in rows], "source ERM, well specified", color=PALETTE[0]),
            line_trace(ns, [limit] * len(ns), "closed-form limit", markers=False, color=PALETTE[7]),
        ],
        xlabel="n (source)",
        ylabel="excess target risk",
        xlog=True,
        ylog=True,
    )
    assumptions = [
        Assumption(
            "Unweighted source ERM converges to the source projection, not the target's",
            "A.6 lines 226, 297",
            ("a6_source_erm_inconsistent",),
        )
    ]
    return Part(
        "misspecification",
        tuple(estimates),
        tuple(checks),
        (fig,),
        (table,),
        tuple(assumptions),
        (),
        {SEC + "a6_limit_excess": limit},
    )


# ----------------------------------------------------------------------------------------------
# Label shift: BBSE, EM, B.18


def _priors_interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    k = boot.shape[1]
    a = (1 - level) / k  # Bonferroni: simultaneous over the K classes
    return np.quantile(boot, a / 2, axis=0), np.quantile(boot, 1 - a / 2, axis=0)


def label_part(subject: Any, s: Any, seed: int) -> Part:
    d = subject.label
    if d is None:
        return _not_in_subject("label", "label-shift data")
    lvl = s.level
    yv = np.asarray(d.val_labels)
    pv = np.asarray(d.val_probs, np.float64)
    pt = np.asarray(d.target_probs, np.float64)
    k = pv.shape[1]
    pi_s = (
        np.asarray(d.source_priors, np.float64)
        if d.source_priors is not None
        else np.bincount(yv, minlength=k) / yv.size
    )
    hv, ht = pv.argmax(1), pt.argmax(1)
    b = E.bbse(yv, hv, ht, k)
    em = E.em_priors(pt, pi_s, tol=s.em_tol, max_iter=s.em_max_iter)
    rng = as_generator(derive_seed(seed, "boot"))
    bb, ee = np.empty((s.n_boot, k)), np.empty((s.n_boot, k))
    em_fail = 0
    for r in range(s.n_boot):
        iv, it = rng.integers(0, yv.size, yv.size), rng.integers(0, pt.shape[0], pt.shape[0])
        bb[r] = E.bbse(yv[iv], hv[iv], ht[it], k).priors
        e = E.em_priors(pt[it], pi_s, tol=s.em_tol, max_iter=s.em_max_iter)
        ee[r] = e.priors
        em_fail += not e.converged
    b_lo, b_hi = _priors_interval(bb, lvl)
    e_lo, e_hi = _priors_interval(ee, lvl)
    estimates = [
        Estimate("bbse_condition_number", b.condition_number, no_interval_reason=DETERMINISTIC),
        Estimate(
            "em_n_iter", float(em.n_iter), converged=em.converged, n_iter=em.n_iter, no_interval_reason=DETERMINISTIC
        ),
    ]
    for j in range(k):
        estimates.append(
            Estimate(
                f"bbse_prior_{j}",
                float(b.priors[j]),
                float(b_lo[j]),
                float(b_hi[j]),
                level=1 - (1 - lvl) / k,
                method=f"percentile bootstrap, {s.n_boot} resamples of "
                "source-validation and target examples (Bonferroni over classes)",
                n=s.n_boot,
            )
        )
        estimates.append(
            Estimate(
                f"em_prior_{j}",
                float(em.priors[j]),
                float(e_lo[j]),
                float(e_hi[j]),
                level=1 - (1 - lvl) / k,
                method=f"percentile bootstrap, {s.n_boot} resamples of target examples (Bonferroni over classes)",
                n=s.n_boot,
                converged=em.converged,
                n_iter=em.n_iter,
                n_dropped=0,
                note=f"{em_fail} bootstrap EM runs hit the iteration cap" if em_fail else "",
            )
        )
    checks = [
        Check(
            "em_converged",
            em.converged,
            float(em.n_iter),
            float(s.em_max_iter),
            s.em_tol,
            f"EM prior adaptation: {'converged' if em.converged else 'hit the cap'} after {em.n_iter} "
            f"iterations (L1 step < {s.em_tol:g})",
            kind="sanity",
            criterion="L1 change < tol before the cap",
        )
    ]
    metrics = {SEC + "bbse_condition_number": float(b.condition_number)}
    truth = d.true_priors
    rows = []
    if truth is not None:
        tp = np.asarray(truth, np.float64)
        cov_b = bool(np.all((b_lo <= tp) & (tp <= b_hi)))
        cov_e = bool(np.all((e_lo <= tp) & (tp <= e_hi)))
        miss_b = [j for j in range(k) if not b_lo[j] <= tp[j] <= b_hi[j]]
        miss_e = [j for j in range(k) if not e_lo[j] <= tp[j] <= e_hi[j]]
        checks.append(
            Check(
                "target_priors_covered",
                cov_b,
                float(np.abs(b.priors - tp).sum()),
                0.0,
                None,
                f"BBSE: simultaneous {lvl:.0%} intervals cover the true target prior of "
                f"{k - len(miss_b)}/{k} classes"
                + (f" (missed: {miss_b})" if miss_b else "")
                + f"; ||pi_hat - pi||_1 = {np.abs(b.priors - tp).sum():.3g}",
                kind="agreement",
                criterion="every class's interval covers its true target prior",
            )
        )
        checks.append(
            Check(
                "em_target_priors_covered",
                cov_e,
                float(np.abs(em.priors - tp).sum()),
                0.0,
                None,
                f"EM: intervals cover {k - len(miss_e)}/{k} classes"
                + (f" (missed: {miss_e})" if miss_e else "")
                + f"; ||pi_hat - pi||_1 = {np.abs(em.priors - tp).sum():.3g}",
                kind="agreement",
                criterion="every class's interval covers its true target prior",
            )
        )
        metrics[SEC + "bbse_prior_l1_error"] = float(np.abs(b.priors - tp).sum())
        rows = [
            [
                j,
                float(pi_s[j]),
                float(tp[j]),
                float(b.priors[j]),
                float(b_lo[j]),
                float(b_hi[j]),
                float(em.priors[j]),
                float(e_lo[j]),
                float(e_hi[j]),
            ]
            for j in range(k)
        ]
        if d.target_labels is not None:
            yt = np.asarray(d.target_labels)
            p_true = E.correct_posteriors(pt, pi_s, tp)
            p_hat = E.correct_posteriors(pt, pi_s, em.priors)
            acc = lambda p: float(np.mean(p.argmax(1) == yt))  # noqa: E731
            a_unc, a_hat, a_true = acc(pt), acc(p_hat), acc(p_true)
            bound = float(np.mean(np.abs(p_hat - p_true).sum(1)))
            excess = a_true - a_hat
            checks.append(
                check_bound(
                    "b18_excess_within_bound",
                    excess,
                    bound,
                    what="target error of the EM-corrected rule minus that of the true-prior "
                    "rule vs E_t ||p_hat(.|x) - p(.|x)||_1 (plug-in bound; B.18)",
                )
            )
            diff = bootstrap_ci(
                lambda y, a, b_: float(np.mean(a.argmax(1) == y) - np.mean(b_.argmax(1) == y)),
                yt,
                p_hat,
                pt,
                n_boot=s.n_boot,
                level=lvl,
                seed=derive_seed(seed, "acc"),
            )
            estimates += [
                clopper_pearson(int(round(a * yt.size)), yt.size, lvl).to_estimate(f"target_accuracy_{n}")
                for n, a in (("uncorrected", a_unc), ("em_corrected", a_hat), ("true_prior", a_true))
            ]
            estimates.append(diff.to_estimate("accuracy_gain_from_correction"))
            metrics |= metric_with_interval(SEC + "accuracy_gain_from_correction", diff.to_estimate("g"))
    figs = []
    if rows:
        figs.append(
            figure(
                "priors",
                "Target priors: true vs BBSE and EM (simultaneous intervals)",
                [
                    line_trace(list(range(k)), [r[2] for r in rows], "true", markers=True, color=PALETTE[7]),
                    errorbar_trace(
                        list(range(k)),
                        [r[3] for r in rows],
                        [r[4] for r in rows],
                        [r[5] for r in rows],
                        "BBSE",
                        color=PALETTE[0],
                    ),
                    errorbar_trace(
                        list(range(k)),
                        [r[6] for r in rows],
                        [r[7] for r in rows],
                        [r[8] for r in rows],
                        "EM",
                        color=PALETTE[1],
                    ),
                ],
                xlabel="class",
                ylabel="prior",
            )
        )
    table = Table(
        "priors",
        "Label shift: source, true and estimated target priors",
        ["class", "source", "true target", "BBSE", "low", "high", "EM", "low", "high"],
        rows,
    )
    assumptions = [
        Assumption(
            "Label shift: p(x|y) unchanged; the source posteriors are calibrated (EM, B.18)",
            "B.18 lines 259, 339",
            tuple(c.name for c in checks if c.name.endswith("covered")),
        )
    ]
    return Part("label", tuple(estimates), tuple(checks), tuple(figs), (table,), tuple(assumptions), (), metrics)


# ----------------------------------------------------------------------------------------------
# A.17: source calibration breaks at prevalence 0.1 and 0.9


def _binary_ece(y: np.ndarray, p1: np.ndarray, n_bins: int) -> float:
    """ECE of P(y = 1 | x) itself (A.17 is about the positive-class probability; a top-label ECE
    would average the over- and under-confident sides of one confidence bin against each other)."""
    return CM.ece_from_conf(p1, (y == 1).astype(np.float64), n_bins, "width")


def prevalence_part(subject: Any, s: Any, seed: int) -> Part:
    from multilens.data import load_digits_split

    lvl = s.level
    split = load_digits_split(derive_seed(seed, "split"), test_fraction=0.5)
    xtr = gaussian_corruption(split.x_train.numpy(), s.noise, derive_seed(seed, "noise-train"))
    xpool = gaussian_corruption(split.x_test.numpy(), s.noise, derive_seed(seed, "noise-pool"))
    ytr = (split.y_train.numpy() >= 5).astype(np.int64)
    ypool = (split.y_test.numpy() >= 5).astype(np.int64)
    clf = LogisticRegression(C=s.classifier_c, max_iter=2000).fit(xtr, ytr)
    rng = as_generator(derive_seed(seed, "pool"))
    perm = rng.permutation(ypool.size)
    cal, test = perm[: ypool.size // 2], perm[ypool.size // 2 :]
    z_cal = clf.decision_function(xpool[cal])
    # Source-calibrate on the calibration half: temperature scaling of the binary logit.
    T = fit_temperature(ypool[cal], np.column_stack([np.zeros_like(z_cal), z_cal])).temperature
    pi_s = float(ytr.mean())
    checks, estimates, rows = [], [], []
    eces: dict[float, Interval] = {}
    for i, prev in enumerate(s.prevalences):
        idx = test[resample_to_priors(ypool[test], np.array([1 - prev, prev]), s.n_test, derive_seed(seed, "r", i))]
        y = ypool[idx]
        p1 = 1 / (1 + np.exp(-clf.decision_function(xpool[idx]) / T))
        corr = E.correct_posteriors(
            np.column_stack([1 - p1, p1]), np.array([1 - pi_s, pi_s]), np.array([1 - prev, prev])
        )[:, 1]
        bs = derive_seed(seed, "boot", i)
        e_u = bootstrap_ci(lambda a, b: _binary_ece(a, b, s.n_bins), y, p1, n_boot=s.n_boot, level=lvl, seed=bs)
        e_c = bootstrap_ci(lambda a, b: _binary_ece(a, b, s.n_bins), y, corr, n_boot=s.n_boot, level=lvl, seed=bs)
        gain = bootstrap_ci(
            lambda a, b, c: _binary_ece(a, b, s.n_bins) - _binary_ece(a, c, s.n_bins),
            y,
            p1,
            corr,
            n_boot=s.n_boot,
            level=lvl,
            seed=bs,
        )
        eces[prev] = e_u
        estimates += [
            e_u.to_estimate(f"a17_ece_prevalence_{prev:g}"),
            e_c.to_estimate(f"a17_ece_corrected_prevalence_{prev:g}"),
            gain.to_estimate(f"a17_ece_reduction_by_correction_{prev:g}"),
        ]
        rows.append([prev, e_u.estimate, e_u.low, e_u.high, e_c.estimate, e_c.low, e_c.high])
        if abs(prev - pi_s) > 0.2:
            checks.append(
                check_sign(
                    f"a17_prior_correction_restores_{prev:g}",
                    gain,
                    positive=True,
                    what=f"prevalence {prev:g}: ECE uncorrected minus prior-corrected",
                )
            )
    base = min(s.prevalences, key=lambda p: abs(p - pi_s))
    for prev in s.prevalences:
        if abs(prev - pi_s) > 0.2:
            dd = eces[prev].estimate - eces[base].estimate
            se = math.sqrt(eces[prev].stderr ** 2 + eces[base].stderr ** 2)
            z = float(sps.norm.ppf(0.5 + lvl / 2))
            ci = Interval(dd, dd - z * se, dd + z * se, se, s.n_test, lvl, "normal, two bootstrap SEs")
            checks.append(
                check_sign(
                    f"a17_calibration_breaks_at_{prev:g}",
                    ci,
                    positive=True,
                    what=f"ECE at prevalence {prev:g} minus at the source-like {base:g}",
                )
            )
    estimates.append(Estimate("a17_source_temperature", T, no_interval_reason=DETERMINISTIC))
    table = Table(
        "a17",
        "A.17: binary ECE of a source-calibrated model at target prevalences",
        ["prevalence", "ECE", "low", "high", "ECE prior-corrected", "low", "high"],
        [[json_float(v) for v in r] for r in rows],
    )
    fig = bars(
        "a17",
        "A.17: ECE by target prevalence (uncorrected)",
        [f"{r[0]:g}" for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        xlabel="prevalence",
        ylabel="ECE",
    )
    assumptions = [
        Assumption(
            "Calibration is relative to the deployment prior; prior correction restores it",
            "A.17 lines 237, 308",
            ("a17_calibration_breaks_at_*", "a17_prior_correction_*"),
        )
    ]
    return Part("prevalence", tuple(estimates), tuple(checks), (fig,), (table,), tuple(assumptions), (), {})


# ----------------------------------------------------------------------------------------------
# A.20: worst-group accuracy with a spurious feature; reweighting as the fix


def _group_acc(y: np.ndarray, pred: np.ndarray, g: np.ndarray) -> dict[int, tuple[int, int]]:
    return {int(h): (int(np.sum(pred[g == h] == y[g == h])), int(np.sum(g == h))) for h in np.unique(g)}


def groups_part(subject: Any, s: Any, seed: int) -> Part:
    d = subject.groups
    if d is None:
        return _not_in_subject("groups", "grouped data")
    lvl = s.level
    xtr, ytr, gtr = (np.asarray(a) for a in (d.x_train, d.y_train, d.g_train))
    xte, yte, gte = (np.asarray(a) for a in (d.x_test, d.y_test, d.g_test))
    counts = {h: int(np.sum(gtr == h)) for h in np.unique(gtr)}
    sw = np.array([1.0 / counts[h] for h in gtr])
    sw *= sw.size / sw.sum()
    models = {
        "erm": LogisticRegression(C=s.classifier_c, max_iter=5000).fit(xtr, ytr),
        "reweighted": LogisticRegression(C=s.classifier_c, max_iter=5000).fit(xtr, ytr, sample_weight=sw),
    }
    if s.dro_steps:
        models["group_dro"] = E.group_dro_logistic(xtr, ytr, gtr, steps=s.dro_steps, lr=s.dro_lr, eta_q=s.dro_eta)
    estimates, rows, res = [], [], {}
    for name, m in models.items():
        z_tr = m.decision_function(xtr)
        train_loss = float(np.mean(np.logaddexp(0.0, z_tr) - ytr * z_tr))
        pred = m.predict(xte)
        ga = _group_acc(yte, pred, gte)
        worst = min(ga, key=lambda h: ga[h][0] / ga[h][1])
        wci = clopper_pearson(*ga[worst], lvl)
        avg = clopper_pearson(int(np.sum(pred == yte)), int(yte.size), lvl)
        res[name] = (pred, worst, wci, avg, train_loss)
        estimates += [
            wci.to_estimate(f"{name}_worst_group_accuracy", note=f"group {worst}"),
            avg.to_estimate(f"{name}_average_accuracy"),
            Estimate(f"{name}_train_loss", train_loss, no_interval_reason=DETERMINISTIC),
        ]
        for h, (c, n) in ga.items():
            ci = clopper_pearson(c, n, lvl)
            rows.append([name, h, counts.get(h, 0), n, ci.estimate, ci.low, ci.high])
    _, w_e, wci_e, avg_e, tl = res["erm"]
    checks = [
        Check(
            "a20_worst_group_gap",
            wci_e.high < avg_e.low,
            wci_e.estimate,
            avg_e.estimate,
            None,
            f"ERM (train loss {tl:.3g}): worst-group accuracy {wci_e.estimate:.3g} [{wci_e.low:.3g}, "
            f"{wci_e.high:.3g}] vs average {avg_e.estimate:.3g} [{avg_e.low:.3g}, {avg_e.high:.3g}]",
            kind="agreement",
            criterion="the worst group's interval lies below the average's",
        )
    ]

    def gain(y: np.ndarray, a: np.ndarray, b: np.ndarray, g: np.ndarray) -> float:
        wa = min(np.mean(a[g == h] == y[g == h]) for h in np.unique(g))
        wb = min(np.mean(b[g == h] == y[g == h]) for h in np.unique(g))
        return float(wa - wb)

    gi = bootstrap_ci(
        gain, yte, res["reweighted"][0], res["erm"][0], gte, n_boot=s.n_boot, level=lvl, seed=derive_seed(seed, "boot")
    )
    checks.append(
        check_sign(
            "reweighting_improves_worst_group",
            gi,
            positive=True,
            what="worst-group accuracy, group-reweighted minus ERM (paired bootstrap)",
        )
    )
    estimates.append(gi.to_estimate("worst_group_gain_from_reweighting"))
    if "group_dro" in res:
        gd = bootstrap_ci(
            gain,
            yte,
            res["group_dro"][0],
            res["erm"][0],
            gte,
            n_boot=s.n_boot,
            level=lvl,
            seed=derive_seed(seed, "boot"),
        )
        checks.append(
            check_sign(
                "group_dro_improves_worst_group",
                gd,
                positive=True,
                what=f"worst-group accuracy, group DRO ({s.dro_steps} full-batch steps, fixed "
                "budget) minus ERM (paired bootstrap)",
            )
        )
        estimates.append(gd.to_estimate("worst_group_gain_from_group_dro"))
        dro = models["group_dro"]
        estimates.append(
            Estimate(
                "group_dro_max_group_train_loss",
                float(dro.group_losses.max()),
                n_iter=dro.n_iter,
                converged=None,
                no_interval_reason="fixed budget of full-batch steps; deterministic",
            )
        )
    metrics = metric_with_interval(SEC + "worst_group_accuracy", res["reweighted"][2].to_estimate("w"))
    metrics |= metric_with_interval(SEC + "erm_worst_group_accuracy", wci_e.to_estimate("w"))
    table = Table(
        "groups",
        "Accuracy per group (test, spurious correlation broken)",
        ["model", "group", "n train", "n test", "accuracy", "low", "high"],
        [[r[0], r[1], r[2], r[3]] + [json_float(v) for v in r[4:]] for r in rows],
    )
    recs = [
        Recommendation(
            f"Train with group-balanced weights: worst-group accuracy {wci_e.estimate:.3g} -> "
            f"{res['reweighted'][2].estimate:.3g}.",
            ("reweighting_improves_worst_group",),
        )
    ]
    assumptions = [
        Assumption(
            "A low training loss does not imply a low error on every group at deployment",
            "A.20 lines 240, 311",
            ("a20_worst_group_gap",),
        )
    ]
    return Part("groups", tuple(estimates), tuple(checks), (), (table,), tuple(assumptions), tuple(recs), metrics)


# ----------------------------------------------------------------------------------------------
# Shift detection: MMD permutation test and domain-classifier test


def detection_part(subject: Any, s: Any, seed: int) -> Part:
    d = subject.detection
    if d is None:
        return _not_in_subject("detection", "source/target samples to compare")
    rng = as_generator(derive_seed(seed, "subsample"))
    xs, xt = np.asarray(d[0], np.float64), np.asarray(d[1], np.float64)
    xs = xs[rng.permutation(xs.shape[0])[: s.n_max]]
    xt = xt[rng.permutation(xt.shape[0])[: s.n_max]]
    half = xs.shape[0] // 2
    mmd = E.mmd_test(xs, xt, n_perm=s.n_perm, seed=derive_seed(seed, "mmd"))
    mmd0 = E.mmd_test(xs[:half], xs[half:], n_perm=s.n_perm, seed=derive_seed(seed, "mmd-null"))
    dc = E.domain_classifier_test(xs, xt, seed=derive_seed(seed, "dc"), level=s.level, c=s.classifier_c)
    dc0 = E.domain_classifier_test(
        xs[:half], xs[half:], seed=derive_seed(seed, "dc-null"), level=s.level, c=s.classifier_c
    )
    a = s.alpha
    checks = [
        Check(
            "mmd_detects_shift",
            mmd.p_value < a,
            mmd.p_value,
            a,
            None,
            f"MMD^2 = {mmd.statistic:.4g}, permutation p = {mmd.p_value:.3g} ({mmd.n_permutations} permutations)",
            kind="agreement",
            criterion=f"p < {a:g}",
        ),
        Check(
            "mmd_null_control_not_rejected",
            mmd0.p_value >= a,
            mmd0.p_value,
            a,
            None,
            f"two halves of the source: p = {mmd0.p_value:.3g}",
            "info",
            kind="agreement",
            criterion=f"p >= {a:g} (fails {a:.0%} of the time by design)",
        ),
        Check(
            "domain_classifier_detects_shift",
            dc.accuracy.low > 0.5,
            dc.statistic,
            0.5,
            None,
            f"held-out accuracy {dc.statistic:.3g} [{dc.accuracy.low:.3g}, {dc.accuracy.high:.3g}], binomial p = "
            f"{dc.p_value:.3g}",
            kind="agreement",
            criterion="the accuracy interval lies above 1/2",
        ),
        Check(
            "domain_classifier_null_control",
            dc0.accuracy.low <= 0.5,
            dc0.statistic,
            0.5,
            None,
            f"two halves of the source: accuracy {dc0.statistic:.3g} [{dc0.accuracy.low:.3g}, {dc0.accuracy.high:.3g}]",
            "info",
            kind="agreement",
            criterion="the interval reaches 1/2",
        ),
    ]
    estimates = [
        Estimate(
            "mmd2",
            mmd.statistic,
            note=f"bandwidth {mmd.bandwidth:.3g}",
            n=xs.shape[0] + xt.shape[0],
            no_interval_reason="a test statistic; its null distribution gives the p-value",
        ),
        Estimate("mmd_p_value", mmd.p_value, n=mmd.n_permutations, no_interval_reason="permutation p-value"),
        Estimate("mmd_null_p_value", mmd0.p_value, n=mmd0.n_permutations, no_interval_reason="permutation p-value"),
        dc.accuracy.to_estimate("domain_classifier_accuracy"),
        dc0.accuracy.to_estimate("domain_classifier_null_accuracy"),
    ]
    metrics = {SEC + "mmd_p_value": mmd.p_value}
    metrics |= metric_with_interval(SEC + "domain_classifier_accuracy", dc.accuracy.to_estimate("a"))
    return Part("detection", tuple(estimates), tuple(checks), (), (), (), (), metrics)
