"""The representation lens: spectra, groups, downstream readouts, trajectory, B.13 and SSL collapse.

Parts (each draws randomness only from its own seed):

* ``spectrum``: the centred covariance spectrum of the training rows with basic-bootstrap
  intervals and a Marchenko-Pastur null of the same shape (C.4);
* ``groups``: per-class and per-domain spectra, principal angles between class subspaces against a
  within-class split-half baseline (C.4);
* ``downstream``: held-out linear probe and kNN (Clopper-Pearson), PCA and random-projection
  controls at matched rank, and the collapse criteria of the main subject as checks;
* ``trajectory``: PR and RankMe over checkpoints and the subspace alignment of consecutive
  checkpoints, with the warm-up end and learning-rate decays marked (C.4, C.11);
* ``collapse_bound``: B.13, a rank-1 collapse raises the probe's risk above Bayes + delta, with a
  truly one-dimensional control task where it does not;
* ``ssl``: A.11 and WE-8 on the bundled self-supervised encoders (demonstrations, not the main
  subject: the alignment-only encoder is built to collapse).

Retained rank (SSL): the number of covariance eigenvalues at least ``floor_fraction`` times the
mean eigenvalue of the same encoder at initialisation, on the same inputs. PR and RankMe are
scale invariant, so they cannot see a collapse towards a constant map, which shrinks every
direction together (A.11's "Sigma_z = 0"); the retained rank is anchored to an absolute scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats as sstats

from multilens import plots
from multilens.lenses.contract import Runtime, finish, run_parts
from multilens.lenses.representation import downstream as ds
from multilens.lenses.representation import spectra as sp
from multilens.lenses.representation.config import (
    CollapseBoundSettings,
    DownstreamSettings,
    GroupsSettings,
    Settings,
    SpectrumSettings,
    SslSettings,
    TrajectorySettings,
)
from multilens.lenses.representation.subjects import RepresentationSubject, SslRun, train_digits_mlp, train_ssl
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
from multilens.seeding import as_generator, derive_seed
from multilens.stats import DETERMINISTIC, SINGLE_SEED, json_safe, mean_ci

LENS = "representation"
SEC = "representation"


def _m(name: str, est: Estimate) -> dict[str, float]:
    return metric_with_interval(f"{SEC}.{name}", est)


def _acc_est(name: str, ci: Any, **kw: Any) -> Estimate:
    return ci.to_estimate(name, **kw)


# ----------------------------------------------------------------------------------------- spectrum
def spectrum_part(subject: RepresentationSubject, ps: SpectrumSettings, *, seed: int) -> Part:
    from multilens.representation import spectrum as spectrum_fn  # the public module imports this package

    z = np.asarray(subject.z_train, np.float64)
    n, d = z.shape
    spec = spectrum_fn(z, top_k=ps.top_k, n_boot=ps.n_boot, n_null=ps.n_null, seed=seed)
    s = spec.summary
    ests = [replace(e, name=f"global_{e.name}") for e in spec.estimates.values()]
    ests.append(
        Estimate(
            "global_numerical_rank",
            float(s.numerical_rank),
            method="eigenvalues above max(n, d) eps l_max",
            n=n,
            no_interval_reason=DETERMINISTIC,
        )
    )
    ests.append(
        Estimate(
            "global_spikes_above_mp_edge",
            float(spec.n_spikes),
            n=ps.n_null,
            method=f"eigenvalues above the MP edge {spec.mp_edge:.4g} (finite-n: {ps.n_null} null draws)",
            no_interval_reason="a count against a threshold; the threshold's spread is in the null draws",
        )
    )
    col_var = float(np.var(z, axis=0, ddof=1).sum())
    checks = [
        check_within(
            "spectrum_trace_identity",
            float(s.eigenvalues.sum()),
            col_var,
            1e-9,
            kind="sanity",
            relative=True,
            what="sum of covariance eigenvalues vs sum of column variances",
        ),
    ]
    pr = spec.estimates["participation_ratio"]
    null_lo = spec.null["participation_ratio"][0]
    checks.append(
        check_bound(
            "spectrum_structure_beyond_mp_null",
            pr.ci_high,
            null_lo,
            direction="<=",
            severity="info",
            what="PR (upper interval end) vs the 2.5% quantile of PR under isotropic Gaussian Z of the same "
            "shape: below it, the spectrum has structure finite-sample noise does not produce",
        )
    )
    metrics = {}
    for key in ("participation_ratio", "rankme", "rankme_centred", "stable_rank", "condition_number", "tail_mass"):
        metrics |= _m(key, spec.estimates[key])
    metrics[f"{SEC}.spikes_above_mp_edge"] = float(spec.n_spikes)
    ev = s.eigenvalues
    fig = plots.figure(
        "representation_spectrum",
        f"Covariance spectrum of {subject.name}",
        [
            plots.line_trace(list(range(1, ev.size + 1)), ev, "eigenvalues"),
            plots.line_trace([1, ev.size], [spec.mp_edge, spec.mp_edge], "MP edge (isotropic null)", markers=False),
        ],
        xlabel="index",
        ylabel="eigenvalue",
        ylog=True,
        caption="Centred covariance eigenvalues of the training rows; the line is the Marchenko-Pastur edge of "
        "isotropic noise with the same total variance (finite-n quantile). Eigenvalues above it are spikes.",
    )
    rows = [
        [m, spec.estimates[m].value, spec.estimates[m].ci_low, spec.estimates[m].ci_high, *spec.null[m]]
        for m in spec.estimates
    ]
    table = Table(
        "representation_spectrum_table",
        "Spectrum summaries vs the Marchenko-Pastur null",
        ["metric", "value", "ci_low", "ci_high", "null 2.5%", "null 50%", "null 97.5%"],
        json_safe(rows),
    )
    assumptions = [
        Assumption("Rows are exchangeable draws (the bootstrap over rows is valid).", "Efron & Tibshirani 1993", ()),
        Assumption(
            "The eigen-decomposition is exact to rounding (trace identity).",
            "linear algebra",
            ("spectrum_trace_identity",),
        ),
    ]
    return Part(
        "spectrum",
        tuple(ests),
        tuple(checks),
        (fig,),
        (table,),
        tuple(assumptions),
        metrics=metrics,
        data={"eigenvalues": json_safe(ev), "mp_edge": spec.mp_edge, "null": json_safe(spec.null)},
    )


# ------------------------------------------------------------------------------------------- groups
def _pr_rankme(x: np.ndarray) -> np.ndarray:
    ev = sp.covariance_eigenvalues(x)
    return np.array([sp.participation_ratio(ev), sp.rankme_value(x)])


def groups_part(subject: RepresentationSubject, ps: GroupsSettings, *, seed: int) -> Part:
    rng = as_generator(seed)
    z = np.asarray(subject.z_train, np.float64)
    y = np.asarray(subject.y_train)
    ests: list[Estimate] = []
    rows: list[list[Any]] = []
    classes = [c for c in np.unique(y) if np.sum(y == c) >= 3][: ps.max_groups]
    groups = [("class", c, z[y == c]) for c in classes]
    if subject.domains_train is not None:
        dom = np.asarray(subject.domains_train)
        groups += [("domain", g, z[dom == g]) for g in np.unique(dom)[: ps.max_groups] if np.sum(dom == g) >= 3]
    for kind, g, zg in groups:
        pr, rk = sp.bootstrap_rows(
            _pr_rankme, zg, (f"{kind}_{g}_participation_ratio", f"{kind}_{g}_rankme"), n_boot=ps.n_boot, seed=rng
        )
        ests += [pr, rk]
        rows.append([kind, json_safe(g), int(zg.shape[0]), pr.value, pr.ci_low, pr.ci_high, rk.value])
    # Principal angles between class subspaces vs a within-class split-half baseline.
    k = ps.subspace_k
    zs = [z[y == c] for c in classes]
    halves = []
    for zc in zs:
        perm = rng.permutation(zc.shape[0])
        halves.append((perm[: zc.shape[0] // 2], perm[zc.shape[0] // 2 :]))

    def overlaps(idx: list[np.ndarray]) -> tuple[float, float]:
        bases = [sp.orthonormal_basis(zc[i], k) for zc, i in zip(zs, idx)]
        between = [
            float(np.mean(sp.principal_angle_cosines(bases[a], bases[b]) ** 2))
            for a in range(len(bases))
            for b in range(a + 1, len(bases))
        ]
        within = []
        for zc, i, (h1, h2) in zip(zs, idx, halves):
            keep1, keep2 = np.isin(i, h1), np.isin(i, h2)
            if keep1.sum() > k and keep2.sum() > k:
                within.append(sp.subspace_overlap(zc[i[keep1]], zc[i[keep2]], k))
        return float(np.mean(between)) if between else math.nan, float(np.mean(within)) if within else math.nan

    checks: list[Check] = []
    metrics: dict[str, float] = {}
    if len(zs) >= 2 and min(zc.shape[0] for zc in zs) > 2 * k + 1:
        full_idx = [np.arange(zc.shape[0]) for zc in zs]
        b0, w0 = overlaps(full_idx)
        reps = np.array([overlaps([rng.integers(0, zc.shape[0], zc.shape[0]) for zc in zs]) for _ in range(ps.n_boot)])
        est_b, est_w = [], []
        for j, (nm, v) in enumerate((("class_subspace_overlap_between", b0), ("class_subspace_overlap_within", w0))):
            r = reps[:, j][np.isfinite(reps[:, j])]
            lo, hi = np.quantile(r, [0.025, 0.975]) if r.size >= 2 else (math.nan, math.nan)
            e = Estimate(
                nm,
                v,
                float(lo),
                float(hi),
                float(r.std(ddof=1)) if r.size >= 2 else None,
                0.95,
                f"percentile bootstrap over rows within classes, {r.size} resamples",
                int(z.shape[0]),
                note=f"mean cos^2 of principal angles between top-{k} class subspaces",
                n_dropped=int(reps.shape[0] - r.size),
            )
            (est_b if j == 0 else est_w).append(e)
        ests += est_b + est_w
        checks.append(
            check_bound(
                "class_subspaces_distinct",
                est_b[0].ci_high,
                est_w[0].ci_low,
                direction="<=",
                severity="info",
                what="between-class subspace overlap (upper end) vs within-class split-half overlap (lower end)",
            )
        )
        metrics |= _m("class_subspace_overlap_between", est_b[0])
    table = Table(
        "representation_groups",
        "Per-class and per-domain spectra",
        ["group", "label", "n", "PR", "PR ci_low", "PR ci_high", "RankMe"],
        json_safe(rows),
    )
    prs = [e.value for e in ests if e.name.startswith("class_") and e.name.endswith("participation_ratio")]
    if prs:
        metrics[f"{SEC}.class_pr_min"] = float(np.min(prs))
    return Part("groups", tuple(ests), tuple(checks), (), (table,), metrics=metrics)


# --------------------------------------------------------------------------------------- downstream
def downstream_part(subject: RepresentationSubject, ps: DownstreamSettings, *, seed: int) -> Part:
    z_tr, z_te = np.asarray(subject.z_train, np.float64), np.asarray(subject.z_test, np.float64)
    y_tr, y_te = np.asarray(subject.y_train), np.asarray(subject.y_test)
    n_classes = len(np.unique(np.concatenate([y_tr, y_te])))
    # Chance: the share of the most frequent held-out label (no constant predictor does better).
    chance = float(np.unique(y_te, return_counts=True)[1].max() / len(y_te)) if len(y_te) else 0.0
    probe = ds.linear_probe(z_tr, y_tr, z_te, y_te, c=ps.probe_c)
    knn = ds.knn_accuracy(z_tr, y_tr, z_te, y_te, k=ps.knn_k)
    s = sp.summarize(z_tr)
    r = max(1, int(round(s.participation_ratio))) if math.isfinite(s.participation_ratio) else 1
    ref_tr = subject.x_train if subject.x_train is not None else z_tr
    ref_te = subject.x_test if subject.x_test is not None else z_te
    r = min(r, np.asarray(ref_tr).shape[1])
    a, b = ds.pca_project(ref_tr, ref_te, r)
    pca = ds.linear_probe(a, y_tr, b, y_te, c=ps.probe_c)
    a, b = ds.random_project(ref_tr, ref_te, r, seed=seed)
    rnd = ds.linear_probe(a, y_tr, b, y_te, c=ps.probe_c)
    ref = "inputs" if subject.x_train is not None else "representation"
    ests = [
        _acc_est(
            "probe_accuracy",
            probe.accuracy,
            converged=probe.converged,
            n_iter=probe.n_iter,
            note="multinomial logistic regression on standardized features, held-out rows",
        ),
        _acc_est("knn_accuracy", knn, note=f"{ps.knn_k}-NN, Euclidean on Z"),
        _acc_est(
            "control_pca_accuracy",
            pca.accuracy,
            converged=pca.converged,
            n_iter=pca.n_iter,
            note=f"{ref} compressed by PCA to r = {r} = round(PR)",
        ),
        _acc_est(
            "control_random_projection_accuracy",
            rnd.accuracy,
            converged=rnd.converged,
            n_iter=rnd.n_iter,
            note=f"{ref} by a Gaussian random projection to r = {r}",
        ),
        Estimate(
            "kmeans_adjusted_rand",
            ds.kmeans_ari(z_te, y_te, seed=seed) if len(y_te) > len(np.unique(y_te)) else None,
            method="k-means on the held-out rows (k = number of classes, 4 restarts) vs labels",
            n=len(y_te),
            no_interval_reason="one clustering of the held-out rows; restarts, not resamples",
            note="" if len(y_te) > len(np.unique(y_te)) else "too few held-out rows to cluster",
        ),
        Estimate(
            "chance_accuracy",
            chance,
            method="majority class share of the held-out rows",
            n=len(y_te),
            no_interval_reason="the baseline the probe is compared with, computed exactly",
        ),
    ]
    nominal = s.nominal
    pr_frac = s.participation_ratio / nominal if nominal else math.nan
    ests.append(
        Estimate(
            "pr_fraction_of_nominal",
            pr_frac,
            method=f"PR / min(n - 1, d) = PR / {nominal}",
            n=int(z_tr.shape[0]),
            no_interval_reason="point value; the PR's interval is in `spectrum`",
        )
    )
    checks = [
        check_bound(
            "main_probe_above_chance",
            probe.accuracy.low,
            chance + ps.chance_margin,
            direction=">=",
            what=f"probe accuracy (lower end) vs chance + {ps.chance_margin:g}",
        ),
        check_bound(
            "main_rank_above_complete_collapse",
            s.rankme,
            ps.complete_rank,
            direction=">=",
            what=f"RankMe vs the complete-collapse threshold {ps.complete_rank:g} (rank ~1)",
        ),
        check_bound(
            "main_not_dimensionally_collapsed",
            pr_frac,
            ps.dimensional_fraction,
            direction=">=",
            severity="info",
            what=f"PR / nominal dimension vs {ps.dimensional_fraction:g}",
        ),
    ]
    complete = (s.rankme <= ps.complete_rank) and not (probe.accuracy.low >= chance + ps.chance_margin)
    dimensional = (pr_frac <= ps.dimensional_fraction) and (probe.accuracy.low >= chance + ps.chance_margin)
    metrics = _m("probe_accuracy", ests[0]) | _m("knn_accuracy", ests[1])
    metrics[f"{SEC}.complete_collapse"] = float(complete)
    metrics[f"{SEC}.dimensional_collapse"] = float(dimensional)
    metrics[f"{SEC}.probe_minus_pca_control"] = float(probe.accuracy.estimate - pca.accuracy.estimate)
    verdict = "complete collapse" if complete else ("dimensional collapse" if dimensional else "no collapse")
    assumptions = [
        Assumption(
            f"The representation of the main subject is not collapsed ({verdict}).",
            "C.4 collapse criteria; thresholds are settings",
            ("main_probe_above_chance", "main_rank_above_complete_collapse"),
        ),
    ]
    recs = [
        Recommendation(
            f"The representation supports a linear readout: probe accuracy {probe.accuracy.estimate:.3f} "
            f"vs chance {chance:.3f}, with {r} effective directions (PCA control at the same rank: "
            f"{pca.accuracy.estimate:.3f}).",
            ("main_probe_above_chance", "main_rank_above_complete_collapse"),
        ),
    ]
    return Part(
        "downstream",
        tuple(ests),
        tuple(checks),
        (),
        (),
        tuple(assumptions),
        tuple(recs),
        metrics=metrics,
        data={"verdict": verdict, "matched_rank": r, "n_classes": n_classes},
    )


# --------------------------------------------------------------------------------------- trajectory
def trajectory_part(subject: RepresentationSubject, ps: TrajectorySettings, *, seed: int) -> Part:
    cks = subject.checkpoints
    if len(cks) < 2:
        return Part("trajectory", notes=("trajectory: the subject has fewer than 2 checkpoints; nothing measured",))
    rng = as_generator(seed)
    ests: list[Estimate] = []
    steps, prs, rks, lo, hi = [], [], [], [], []
    for ck in cks:
        pr, rk = sp.bootstrap_rows(
            _pr_rankme,
            ck.z,
            (f"step_{ck.step}_participation_ratio", f"step_{ck.step}_rankme"),
            n_boot=ps.n_boot,
            seed=rng,
        )
        ests += [pr, rk]
        steps.append(ck.step)
        prs.append(pr.value)
        rks.append(rk.value)
        lo.append(pr.ci_low)
        hi.append(pr.ci_high)
    # Probe per checkpoint (C.4: pair spectra with downstream trends): fit on one half of the evaluation
    # rows, test on the other half (a fixed seeded split), Clopper-Pearson.
    pr_steps, pr_acc = [], []
    if all(ck.y is not None for ck in cks):
        half = rng.permutation(cks[0].z.shape[0])
        a_idx, b_idx = half[: half.size // 2], half[half.size // 2 :]
        for ck in cks:
            p = ds.linear_probe(ck.z[a_idx], ck.y[a_idx], ck.z[b_idx], ck.y[b_idx])
            ests.append(
                p.accuracy.to_estimate(
                    f"step_{ck.step}_probe_accuracy",
                    converged=p.converged,
                    n_iter=p.n_iter,
                    note="probe fit on half the evaluation rows",
                )
            )
            pr_steps.append(ck.step)
            pr_acc.append(p.accuracy.estimate)
    ov_steps, ov_vals = [], []
    last = None
    for a, b in zip(cks[:-1], cks[1:]):
        k = min(ps.subspace_k, a.z.shape[1])
        d = a.z.shape[1]

        def stat(zz: np.ndarray, k: int = k, d: int = d) -> float:  # rows of [z_a | z_b]: resampled in pairs
            return sp.subspace_overlap(zz[:, :d], zz[:, d:], k)

        e = sp.bootstrap_rows(
            stat, np.hstack([a.z, b.z]), f"alignment_{a.step}_to_{b.step}", n_boot=ps.n_boot, seed=rng
        )
        v = float(e.value)
        top = min(e.ci_high, 1.0) if e.ci_high is not None else None  # an overlap is at most 1
        last = replace(
            e,
            ci_high=top,
            method="paired " + e.method,
            note=f"mean cos^2 of principal angles between top-{k} subspaces (same rows at both steps)",
        )
        ests.append(last)
        ov_steps.append(b.step)
        ov_vals.append(v)
    checks = [
        check_bound(
            "trajectory_final_subspace_stable",
            last.ci_low,
            ps.stable_overlap,
            direction=">=",
            severity="info",
            what="top-subspace alignment of the last two checkpoints (lower end)",
        ),
    ]
    shapes = [
        {"type": "line", "x0": s, "x1": s, "yref": "paper", "y0": 0, "y1": 1, "line": {"dash": "dot"}}
        for s, _ in subject.events
    ]
    notes = [
        {"x": s, "yref": "paper", "y": 1.0, "text": t, "showarrow": False, "textangle": -90} for s, t in subject.events
    ]
    fig = plots.figure(
        "representation_trajectory",
        "Effective rank over training, optimizer events marked",
        [
            *plots.band_traces(steps, lo, hi, "PR"),
            plots.line_trace(steps, prs, "participation ratio"),
            plots.line_trace(steps, rks, "RankMe"),
            plots.line_trace(ov_steps, ov_vals, "alignment with previous checkpoint"),
            plots.line_trace(pr_steps, pr_acc, "probe accuracy (half-split)"),
        ],
        xlabel="optimizer step",
        ylabel="effective dimension / alignment",
        caption="Dotted lines: " + "; ".join(f"{t} at step {s}" for s, t in subject.events),
        layout={"shapes": shapes, "annotations": notes},
    )
    metrics = {f"{SEC}.final_subspace_alignment": float(last.value)}
    return Part(
        "trajectory",
        tuple(ests),
        tuple(checks),
        (fig,),
        metrics=metrics,
        data={"events": [[s, t] for s, t in subject.events]},
    )


# ----------------------------------------------------------------------------------- collapse_bound
def collapse_bound_part(subject: RepresentationSubject, ps: CollapseBoundSettings, *, seed: int) -> Part:
    z_tr, z_te = np.asarray(subject.z_train, np.float64), np.asarray(subject.z_test, np.float64)
    y_tr, y_te = np.asarray(subject.y_train), np.asarray(subject.y_test)
    full = ds.linear_probe(z_tr, y_tr, z_te, y_te)
    a, b = ds.top_direction_projection(z_tr, z_te)
    one = ds.linear_probe(a, y_tr, b, y_te)
    err = lambda p: p.accuracy  # noqa: E731
    full_err = (1 - err(full).estimate, 1 - err(full).high, 1 - err(full).low)
    one_err = (1 - err(one).estimate, 1 - err(one).high, 1 - err(one).low)
    # Control: two classes at +-mu e1 with unit isotropic noise in d dims; the label lives on one axis.
    rng = as_generator(seed)
    d, n, mu = ps.control_d, ps.control_n, ps.control_mu

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        yy = rng.integers(0, 2, m)
        xx = rng.standard_normal((m, d))
        xx[:, 0] += np.where(yy == 1, mu, -mu)
        return xx, yy

    xc_tr, yc_tr = draw(n)
    xc_te, yc_te = draw(n)
    a, b = ds.top_direction_projection(xc_tr, xc_te)
    ctrl = ds.linear_probe(a, yc_tr, b, yc_te)
    bayes = float(sstats.norm.cdf(-mu))
    c_err = (1 - ctrl.accuracy.estimate, 1 - ctrl.accuracy.high, 1 - ctrl.accuracy.low)
    mk = lambda nm, e, note: Estimate(nm, e[0], e[1], e[2], None, 0.95, "Clopper-Pearson exact", len(y_te), note=note)  # noqa: E731
    ests = [
        mk("b13_full_probe_risk", full_err, "held-out error of the probe on the full representation (>= Bayes risk)"),
        mk("b13_rank1_probe_risk", one_err, "held-out error after projecting on the top principal direction"),
        Estimate(
            "b13_control_rank1_probe_risk",
            c_err[0],
            c_err[1],
            c_err[2],
            None,
            0.95,
            "Clopper-Pearson exact",
            n,
            note=f"1-D control: +-{mu:g} e1 in {d} dims",
        ),
        Estimate(
            "b13_control_bayes_risk", bayes, method="Phi(-mu), closed form", no_interval_reason="exact closed form"
        ),
    ]
    checks = [
        check_bound(
            "b13_rank1_risk_above_bayes_plus_delta",
            one_err[1],
            full_err[2] + ps.delta,
            direction=">=",
            what=f"rank-1 probe risk (lower end) vs full-probe risk (upper end, >= Bayes) + delta {ps.delta:g}",
        ),
        check_in_interval(
            "b13_control_rank1_reaches_bayes",
            bayes,
            c_err[1],
            c_err[2],
            kind="agreement",
            what="Bayes risk Phi(-mu) of the 1-D control vs the rank-1 probe's risk interval",
        ),
    ]
    assumptions = [
        Assumption(
            "Classes of the main task are not separable along a single direction (B.13's class-separation "
            "assumption), while the control's are.",
            "B.13",
            ("b13_rank1_risk_above_bayes_plus_delta", "b13_control_rank1_reaches_bayes"),
        ),
    ]
    metrics = {f"{SEC}.b13_rank1_excess_risk": float(one_err[0] - full_err[0])}
    return Part("collapse_bound", tuple(ests), tuple(checks), (), (), tuple(assumptions), metrics=metrics)


# ---------------------------------------------------------------------------------------------- ssl
def ssl_label(run: SslRun, ps: SslSettings) -> str:
    return run.objective + ("_small_batch" if run.batch_size == ps.small_batch else "")


def _over_seeds(name: str, values: list[float], fallback: Estimate | None, **kw: Any) -> Estimate:
    """Mean over seeds with a t-interval; with one seed, ``fallback`` (an interval over rows) or no interval."""
    if len(values) >= 2:
        return mean_ci(values, unit="seeds").to_estimate(name, **kw)
    if fallback is not None:
        return replace(fallback, name=name, note=(fallback.note + "; " if fallback.note else "") + SINGLE_SEED)
    return Estimate(name, values[0] if values else None, n=len(values), no_interval_reason=SINGLE_SEED, **kw)


def ssl_part(subject: RepresentationSubject, ps: SslSettings, *, seed: int) -> Part:
    if not subject.ssl:
        return Part("ssl", notes=("ssl: the subject has no self-supervised runs; nothing measured",))
    rng = as_generator(seed)
    labels: dict[str, list[SslRun]] = {}
    for run in subject.ssl:
        labels.setdefault(ssl_label(run, ps), []).append(run)
    same_split = all(r.z_train.shape[0] == len(subject.y_train) for r in subject.ssl)
    ests: list[Estimate] = []
    rows, spec_traces, time_traces = [], [], []
    worst_hi: dict[str, float] = {}  # largest retained rank over seeds
    worst_lo: dict[str, float] = {}  # smallest retained rank over seeds
    worst_ratio: dict[str, float] = {}
    probes: dict[str, float] = {}
    acc_range: dict[str, tuple[float, float]] = {}
    for k, (lab, runs) in enumerate(labels.items()):
        retained, prs, rks, ratios, accs = [], [], [], [], []
        single = None
        for run in runs:
            floor = ps.floor_fraction * float(np.mean(sp.covariance_eigenvalues(run.z_init_train)))

            def stat(x: np.ndarray, floor: float = floor) -> np.ndarray:
                ev = sp.covariance_eigenvalues(x)
                return np.array([float(np.sum(ev >= floor)), sp.participation_ratio(ev), sp.rankme_value(x)])

            v = stat(run.z_train)
            retained.append(float(v[0]))
            prs.append(float(v[1]))
            rks.append(float(v[2]))
            ratios.append(run.align_final / run.align_init if run.align_init > 0 else math.nan)
            if len(runs) == 1:
                single = sp.bootstrap_rows(stat, run.z_train, ("r", "p", "k"), n_boot=ps.n_boot, seed=rng)
            if same_split:
                p = ds.linear_probe(run.z_train, subject.y_train, run.z_test, subject.y_test)
                accs.append((p.accuracy.estimate, p))
        fb = single or [None, None, None]
        ests += [
            _over_seeds(f"ssl_{lab}_retained_rank", retained, fb[0]),
            _over_seeds(f"ssl_{lab}_participation_ratio", prs, fb[1]),
            _over_seeds(f"ssl_{lab}_rankme", rks, fb[2]),
            _over_seeds(
                f"ssl_{lab}_alignment_ratio",
                ratios,
                None,
                note="E||z(v1) - z(v2)||^2 on fixed held-out view pairs, after / before training",
            ),
        ]
        if accs:
            cp = accs[0][1].accuracy.to_estimate("x") if len(accs) == 1 else None
            ests.append(_over_seeds(f"ssl_{lab}_probe_accuracy", [a for a, _ in accs], cp))
            probes[lab] = float(np.mean([a for a, _ in accs]))
        worst_hi[lab], worst_lo[lab], worst_ratio[lab] = max(retained), min(retained), max(ratios)
        if accs:
            acc_range[lab] = (min(a for a, _ in accs), max(a for a, _ in accs))
        rows.append(
            [
                lab,
                runs[0].batch_size,
                runs[0].steps,
                len(runs),
                float(np.mean(ratios)),
                retained,
                float(np.mean(prs)),
                float(np.mean(rks)),
                probes.get(lab),
            ]
        )
        color = plots.PALETTE[k % len(plots.PALETTE)]
        ev = sp.covariance_eigenvalues(runs[0].z_train) / max(
            float(np.mean(sp.covariance_eigenvalues(runs[0].z_init_train))), 1e-300
        )
        spec_traces.append(plots.line_trace(list(range(1, ev.size + 1)), ev, lab, color=color))
        if runs[0].spectrum_curve:
            ep = list(range(1, len(runs[0].spectrum_curve) + 1))
            rr = [float(np.sum(e >= ps.floor_fraction)) for e in runs[0].spectrum_curve]
            al = [a / runs[0].align_init for a in runs[0].align_curve]
            time_traces.append(plots.line_trace(ep, rr, f"{lab}: retained rank", color=color))
            time_traces.append(plots.line_trace(ep, al, f"{lab}: alignment / initial", color=color, markers=False))
    checks: list[Check] = []
    every = "every seed" if ps.n_seeds > 1 else "the seed"
    if "align" in worst_hi:
        checks.append(
            check_bound(
                "a11_alignment_loss_to_zero",
                worst_ratio["align"],
                ps.loss_ratio,
                what=f"alignment-only, {every}: held-out alignment after / before training",
            )
        )
        checks.append(
            check_bound(
                "a11_alignment_rank_small",
                worst_hi["align"],
                float(ps.small_rank),
                what=f"alignment-only, {every}: retained rank (directions keeping >= "
                f"{ps.floor_fraction:g} x the initial mean variance)",
            )
        )
    for lab in ("vicreg", "stopgrad"):
        if lab in worst_lo:
            checks.append(
                check_bound(
                    f"we8_{lab}_keeps_rank",
                    worst_lo[lab],
                    float(ps.healthy_rank),
                    direction=">=",
                    what=f"{lab}, {every}: retained rank vs {ps.healthy_rank}",
                )
            )
    for lab in ("vicreg", "stopgrad"):
        if lab in acc_range and "align" in acc_range:
            checks.append(
                check_bound(
                    f"we8_{lab}_probe_above_alignment_only",
                    acc_range[lab][0],
                    acc_range["align"][1],
                    direction=">=",
                    what=f"{lab} probe accuracy (worst seed) vs alignment-only (best seed)",
                )
            )
    if "vicreg_small_batch" in worst_hi:
        checks.append(
            check_bound(
                "we8_small_batch_brings_collapse",
                worst_hi["vicreg_small_batch"],
                float(ps.small_rank),
                what=f"VICReg at batch {ps.small_batch} (steps matched), {every}: retained rank",
            )
        )
    n_dims = len(ev)
    spec_traces.append(plots.line_trace([1, n_dims], [ps.floor_fraction] * 2, "retained-rank floor", markers=False))
    figs = [
        plots.figure(
            "representation_ssl_spectra",
            "SSL encoders: spectra relative to initialisation",
            spec_traces,
            xlabel="index",
            ylabel="eigenvalue / initial mean eigenvalue",
            ylog=True,
            caption="Eigenvalues above the floor line count towards the retained rank (first seed).",
        )
    ]
    if time_traces:
        figs.append(
            plots.figure(
                "representation_ssl_training",
                "SSL encoders over training (A.11, WE-8)",
                time_traces,
                xlabel="epoch",
                ylabel="retained rank / alignment ratio",
                ylog=True,
                caption="Alignment-only training drives the held-out alignment to 0 while the "
                "retained rank falls; VICReg and stop-gradient keep it (first seed).",
            )
        )
    table = Table(
        "representation_ssl",
        "SSL objectives: alignment, rank, probe",
        [
            "objective",
            "batch",
            "steps",
            "seeds",
            "alignment after/before",
            "retained rank per seed",
            "PR",
            "RankMe",
            "probe accuracy",
        ],
        json_safe(rows),
    )
    metrics = {
        f"{SEC}.demo_ssl_{k}_retained_rank": float(np.mean(v))
        for k, v in ((lab, [e.value for e in ests if e.name == f"ssl_{lab}_retained_rank"]) for lab in labels)
    }
    metrics |= {f"{SEC}.demo_ssl_{k}_probe_accuracy": v for k, v in probes.items()}
    names = [c.name for c in checks]
    a11 = tuple(n for n in names if n.startswith("a11"))
    assumptions = (
        [Assumption("Alignment-only SSL admits collapsed minimisers of zero loss.", "A.11", a11)] if a11 else []
    )
    verdicts = {
        lab: (
            "collapsed"
            if worst_hi[lab] <= ps.small_rank
            else ("partly collapsed" if worst_lo[lab] <= ps.small_rank else "not collapsed")
        )
        for lab in labels
    }
    return Part(
        "ssl",
        tuple(ests),
        tuple(checks),
        tuple(figs),
        (table,),
        tuple(assumptions),
        metrics=metrics,
        data={"verdicts": verdicts},
    )


# --------------------------------------------------------------------------------------- entry points
MAIN_MODEL_N_TRAIN = 2048  # the main model's representation: its first N training examples (probes fitted on them)


def default_subject(settings: Settings, *, seed: int, runtime: Runtime | None = None) -> RepresentationSubject:
    """The main model (``allocation.model_path``: its last hidden layer on its own training examples and the family
    test split) when an earlier phase saved one; else the digits MLP (penultimate layer, checkpoints, domains) plus
    the SSL encoders when ``ssl`` is on. The main model has no checkpoints and no SSL runs: those parts say so."""
    path = (runtime.inputs if runtime is not None else {}).get("allocation.model_path")
    if path:
        from multilens.lenses.allocation import main_subject
        from multilens.lenses.representation.adapter import from_subject

        subj, _ = from_subject(main_subject(path, n_train=MAIN_MODEL_N_TRAIN), settings)
        return replace(subj, name=f"{subj.name} (allocation.model_path = {path})")
    subj = train_digits_mlp(
        seed=seed,
        width=settings.mlp_width,
        embed_dim=settings.embed_dim,
        epochs=settings.mlp_epochs,
        n_checkpoints=settings.n_checkpoints,
    )
    ps = settings.ssl
    if ps is None:
        return subj
    # Every encoder uses the MLP's digits split (data_seed = seed), so one probe set serves all of them.
    runs = []
    for k in range(ps.n_seeds):
        s = seed if k == 0 else derive_seed(seed, "representation", "ssl-seed", k)
        trio = [
            train_ssl(o, seed=s, data_seed=seed, batch_size=ps.batch_size, epochs=ps.epochs)
            for o in ("align", "vicreg", "stopgrad")
        ]
        small = train_ssl("vicreg", seed=s, data_seed=seed, batch_size=ps.small_batch, max_steps=trio[1].steps)
        runs += [*trio, small]
    return replace(subj, ssl=tuple(runs))


def measure(
    subject: RepresentationSubject, settings: Settings, *, seed: int, runtime: Runtime | None = None
) -> LensResult:
    t0 = time.perf_counter()
    off_notes = []
    if "(allocation.model_path = " in subject.name:  # the main model: the adapter's part switches for a user model
        from multilens.lenses.representation.adapter import OFF_FOR_USER_MODELS

        off = [p for p in OFF_FOR_USER_MODELS if getattr(settings, p, None) is not None]
        settings = replace(settings, **{p: None for p in off})
        if off:
            off_notes.append(
                f"main model: parts {', '.join(off)} study bundled subjects and are off (as for any model)"
            )
    parts, notes = run_parts(
        LENS,
        [
            ("spectrum", settings.spectrum, lambda ps, s: spectrum_part(subject, ps, seed=s)),
            ("groups", settings.groups, lambda ps, s: groups_part(subject, ps, seed=s)),
            ("downstream", settings.downstream, lambda ps, s: downstream_part(subject, ps, seed=s)),
            ("trajectory", settings.trajectory, lambda ps, s: trajectory_part(subject, ps, seed=s)),
            ("collapse_bound", settings.collapse_bound, lambda ps, s: collapse_bound_part(subject, ps, seed=s)),
            ("ssl", settings.ssl, lambda ps, s: ssl_part(subject, ps, seed=s)),
        ],
        seed,
    )
    notes[0:0] = [f"subject: {subject.name}", *off_notes]
    return finish(LENS, parts, settings, seed, t0, notes=notes, data={"subject": subject.name})
