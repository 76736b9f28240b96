"""Double descent on the protocol's shared data family (C.18, C.20; expansion line 1480).

The model is random ReLU features, phi(x) = relu(W x)/sqrt(p) with W_ij ~ N(0, 1/d_in) (the
same features as the ``random_features`` part), fitted to one-hot targets of the family's sampled
labels. It is chosen over ReLU MLPs trained to zero error because its interpolation threshold is
a theorem, not an empirical convention: for generic features rank(Phi) = min(n, p), so the
min-norm least-squares fit interpolates exactly from p = n on, and its variance is singular there
(the labels are noisy: the family's Bayes error is about 0.095), so the test loss peaks at p = n;
the fit is a closed form (no optimizer that may stop short of interpolation), and a width sweep
over three seeds costs seconds.

Part ``family``: min-norm fits over widths p (nested features: width p uses the first p rows of one
draw of W), ``seeds`` independent training draws of ``n_train`` examples. Per seed the
interpolation threshold p* is the smallest grid width whose training MSE is at most
``train_tol`` x the targets' energy per output (1/K); p*/n has a t-interval over seeds. The test
loss is the MSE on the family's fixed test split; its peak is the argmax over widths of the
geometric mean over seeds, with a percentile-bootstrap interval over seeds.

Part ``peak_vs_batch``: the same features trained by minibatch SGD on the squared loss from zero,
at batch b and at batch workers*b. SGD from zero on least squares keeps the weights in the span of
the training features, theta = Phi^T alpha, so the run is computed exactly in the n-dimensional
dual: a step on batch B changes alpha_B by -(lr/|B|) (K_B alpha - Y_B) with K = Phi Phi^T (the
primal step, not an approximation; this makes the cost per step independent of p). Every run of
one seed follows the same per-epoch permutations; batch workers*b groups them into batches of
workers*b consecutive examples, which is what that many synchronous data-parallel workers at
batch b compute per step (the distributed lens checks that equality for real workers). The
prediction that the peak does not move: SGD from zero on least squares converges, for any stable
batch size, to the min-norm interpolant when p >= n (the implicit bias of SGD), so the converged
curves coincide; at a finite budget the peak is damped and its location is what is measured.

The sweeps run through ``runtime.executor`` when one is given (one task per seed for ``family``,
one per seed and batch size for ``peak_vs_batch``; specs are JSON-able and name the family by its
fields), serially in process otherwise, with the same numbers either way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

import multilens.plots as fig
from multilens.data.family import FamilySpec
from multilens.lenses.double_descent.neural import _peak, _spectral, one_hot, relu_features, run_tasks
from multilens.lenses.double_descent.settings import FamilySettings, PeakVsBatchSettings
from multilens.results import (
    Assumption,
    Check,
    Estimate,
    Figure,
    Part,
    Recommendation,
    check_difference_within,
    metric_with_interval,
)
from multilens.seeding import as_generator, derive_seed
from multilens.stats import json_safe, mean_ci

LENS = "double_descent"
N_BOOT = 1000
FAMILY_TASK = "multilens.lenses.double_descent.family:family_rf_task"
SGD_TASK = "multilens.lenses.double_descent.family:family_sgd_task"


# --------------------------------------------------------------------------------------------
# task functions (pure functions of JSON-able specs)


@lru_cache(maxsize=4)
def _test_split(fam: FamilySpec) -> tuple[np.ndarray, np.ndarray]:
    x, y = fam.test()
    xs, ys = x.double().numpy(), y.numpy().astype(np.int64)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _task_data(spec: dict[str, Any]) -> tuple[FamilySpec, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The family, training inputs and labels, test inputs and labels, and the feature weights."""
    fam = FamilySpec.from_dict(spec["family"])
    x, y = fam.train(int(spec["n"]), int(spec["train_seed"]))
    x_te, y_te = _test_split(fam)
    p_max = max(int(p) for p in spec["ps"])
    w_all = as_generator(int(spec["feature_seed"])).standard_normal((p_max, fam.d_in)) / math.sqrt(fam.d_in)
    return fam, x.double().numpy(), y.numpy().astype(np.int64), x_te, y_te, w_all


def family_rf_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One training draw and feature draw: the min-norm fit at every width p of ``spec["ps"]``."""
    fam, x, lab, x_te, lab_te, w_all = _task_data(spec)
    k = fam.n_classes
    y, y_te = one_hot(lab, k), one_hot(lab_te, k)
    out: dict[str, list] = {key: [] for key in ("train_mse", "test_mse", "train_err", "test_err", "rank", "cond")}
    for p in (int(v) for v in spec["ps"]):
        w = w_all[:p]
        phi = relu_features(x, w)
        u, s, vt, keep = _spectral(phi)
        inv = np.where(keep, 1.0 / np.where(s > 0, s, 1.0), 0.0)
        coef = vt.T @ (inv[:, None] * (u.T @ y))  # (p, K): the min-norm least-squares weights
        pred, pred_te = phi @ coef, relu_features(x_te, w) @ coef
        out["train_mse"].append(float(np.mean((pred - y) ** 2)))
        out["test_mse"].append(float(np.mean((pred_te - y_te) ** 2)))
        out["train_err"].append(float(np.mean(pred.argmax(1) != lab)))
        out["test_err"].append(float(np.mean(pred_te.argmax(1) != lab_te)))
        out["rank"].append(int(keep.sum()))
        out["cond"].append(float(s[0] / s[keep][-1]))
    return out


def family_sgd_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Minibatch SGD on the squared loss from zero at every width, in the dual (theta = Phi^T alpha).

    All widths of one seed follow the same per-epoch permutations (drawn from ``order_seed``);
    batches are consecutive ``batch``-blocks of each permutation (the last may be shorter).
    Returns per width the final training/test MSE and errors, the largest eigenvalue of K/n and
    whether the run stayed finite.
    """
    fam, x, lab, x_te, lab_te, w_all = _task_data(spec)
    k = fam.n_classes
    n = x.shape[0]
    y, y_te = one_hot(lab, k), one_hot(lab_te, k)
    ps = [int(p) for p in spec["ps"]]
    phis = [relu_features(x, w_all[:p]) for p in ps]
    kern = np.stack([f @ f.T for f in phis])  # (W, n, n)
    lam_max = [float(np.linalg.eigvalsh(kk / n)[-1]) for kk in kern]
    alpha = np.zeros((len(ps), n, k))
    b, lr, epochs = int(spec["batch"]), float(spec["lr"]), int(spec["epochs"])
    rng = as_generator(int(spec["order_seed"]))
    finite = True
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s0 in range(0, n, b):
            idx = perm[s0 : s0 + b]
            resid = np.matmul(kern[:, idx, :], alpha) - y[idx]
            alpha[:, idx, :] -= (lr / idx.size) * resid
        if not np.all(np.isfinite(alpha)):
            finite = False
            break
    out: dict[str, list] = {key: [] for key in ("train_mse", "test_mse", "train_err", "test_err")}
    for i, p in enumerate(ps):
        theta = phis[i].T @ alpha[i]
        pred, pred_te = phis[i] @ theta, relu_features(x_te, w_all[:p]) @ theta
        with np.errstate(invalid="ignore", over="ignore"):
            vals = (
                float(np.mean((pred - y) ** 2)),
                float(np.mean((pred_te - y_te) ** 2)),
                float(np.mean(pred.argmax(1) != lab)),
                float(np.mean(pred_te.argmax(1) != lab_te)),
            )
        for key, v in zip(out, vals):
            out[key].append(v if finite and math.isfinite(v) else None)
    return out | {"lam_max": lam_max, "finite": finite}


# --------------------------------------------------------------------------------------------
# helpers


def _arr(results: list[dict[str, Any]], key: str) -> np.ndarray:
    """(len(widths), seeds) array of a per-width statistic; None as NaN."""
    return np.array([[np.nan if v is None else v for v in r[key]] for r in results], dtype=float).T


def _argmax_loc(logs: np.ndarray, xs: list[float], cols: np.ndarray) -> float:
    m = np.nanmean(logs[:, cols], axis=1)
    if not np.any(np.isfinite(m)):
        return math.nan
    return xs[int(np.nanargmax(m))]


def _boot_locations(
    per_rep: list[np.ndarray], xs: list[float], seed: int, n_boot: int = N_BOOT
) -> tuple[list[float], np.ndarray]:
    """Peak locations (argmax of the mean log value) of each curve and their paired bootstrap replicates.

    ``per_rep``: arrays (len(xs), seeds) with the same seeds as columns; every replicate resamples
    the seeds once and uses that resample for every curve (a paired bootstrap). Returns the point
    locations and an (n_boot, len(per_rep)) array of replicate locations.
    """
    logs = [np.log(np.maximum(np.asarray(a, dtype=float), np.finfo(float).tiny)) for a in per_rep]
    r = logs[0].shape[1]
    point = [_argmax_loc(lg, xs, np.arange(r)) for lg in logs]
    rng = as_generator(seed)
    reps = np.empty((n_boot, len(logs)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only diverged runs: mean of empty slice
        for b in range(n_boot):
            cols = rng.integers(0, r, r)
            reps[b] = [_argmax_loc(lg, xs, cols) for lg in logs]
    return point, reps


def _percentile(v: np.ndarray, level: float) -> tuple[float, float, int]:
    fin = v[np.isfinite(v)]
    if fin.size < 2:
        return math.nan, math.nan, int(v.size - fin.size)
    a = (1.0 - level) / 2.0  # grid locations: the interval ends are replicate values, rounded outwards
    lo, hi = np.quantile(fin, a, method="lower"), np.quantile(fin, 1.0 - a, method="higher")
    return float(lo), float(hi), int(v.size - fin.size)


def _loc_estimate(name: str, point: float, reps: np.ndarray, level: float, n_seeds: int, what: str) -> Estimate:
    lo, hi, dropped = _percentile(reps, level)
    return Estimate(
        name,
        point if math.isfinite(point) else None,
        lo if math.isfinite(lo) else None,
        hi if math.isfinite(hi) else None,
        level=level,
        method=f"argmax over the width grid of the geometric-mean test MSE over seeds; percentile bootstrap over "
        f"{n_seeds} seeds ({N_BOOT} resamples)",
        n=n_seeds,
        n_dropped=dropped,
        note=f"{what}; a grid search: the grid spacing bounds its resolution",
        no_interval_reason="" if math.isfinite(lo) else "fewer than 2 finite bootstrap locations",
    )


def _pos(values: list[float | None]) -> list[float | None]:
    return [v if v is not None and math.isfinite(v) and v > 0 else None for v in values]


def _curve(per_rep: np.ndarray, level: float) -> dict[str, list[float | None]]:
    cis = [mean_ci(row, level) for row in per_rep]
    f = json_safe
    return {
        "mean": f([c.estimate for c in cis]),
        "ci_low": f([c.low for c in cis]),
        "ci_high": f([c.high for c in cis]),
    }


# --------------------------------------------------------------------------------------------
# part `family`


def family_sweep(
    fam: FamilySpec, ps: FamilySettings, seed: int, *, executor: Any = None, progress: Callable | None = None
) -> dict[str, Any]:
    """The min-norm width sweep on the family: per-width, per-seed statistics and the thresholds."""
    n = ps.n_train
    widths = list(ps.widths())
    specs = [
        {
            "family": fam.to_dict(),
            "n": n,
            "train_seed": derive_seed(seed, "family-train", r),
            "feature_seed": derive_seed(seed, "family-features", r),
            "ps": widths,
        }
        for r in range(ps.seeds)
    ]
    results, errors = run_tasks(FAMILY_TASK, specs, executor, progress)
    ok = [r for r in results if r is not None]
    if len(ok) < 2:
        raise RuntimeError(f"family: fewer than 2 seeds finished ({'; '.join(errors)})")
    train_mse = _arr(ok, "train_mse")
    energy = 1.0 / fam.n_classes  # per-output energy of one-hot targets
    interp = train_mse <= ps.train_tol * energy
    thresholds = [next((widths[i] for i in range(len(widths)) if interp[i, j]), None) for j in range(len(ok))]
    return {
        "n_train": n,
        "n_classes": fam.n_classes,
        "n_test": fam.n_test,
        "p": widths,
        "p_over_n": [p / n for p in widths],
        "n_seeds": len(ok),
        "n_failed": len(results) - len(ok),
        "errors": errors,
        "train_mse": train_mse,
        "test_mse": _arr(ok, "test_mse"),
        "train_err": _arr(ok, "train_err"),
        "test_err": _arr(ok, "test_err"),
        "rank": _arr(ok, "rank"),
        "cond": _arr(ok, "cond"),
        "interpolates": interp,
        "threshold_p": thresholds,
        "train_tol": ps.train_tol,
    }


def family_part(fam: FamilySpec | None, ps: FamilySettings, *, seed: int, runtime: Any = None) -> Part:
    if fam is None:
        return Part("family", notes=("family: not measured: the subject has no data family",))
    ex = getattr(runtime, "executor", None)
    prog = getattr(runtime, "progress", None)
    sw = family_sweep(fam, ps, seed, executor=ex, progress=prog)
    n, widths, xs = sw["n_train"], sw["p"], sw["p_over_n"]
    checks: list[Check] = []
    # rank(Phi) = min(n, p): the linear-algebra fact the threshold theorem rests on.
    want = np.array([min(n, p) for p in widths], dtype=float)[:, None]
    bad = sorted({widths[i] for i, j in zip(*np.nonzero(sw["rank"] != want))})
    checks.append(
        Check(
            f"{LENS}.family_rank", not bad, float(len(bad)), 0.0, 0.0,
            f"rank(Phi) = min(n, p) at every width and seed (n = {n}); widths where some seed differs: {bad or 'none'}",
            kind="sanity", criterion="numerical rank of the training features == min(n, p) at every width and seed",
        )
    )  # fmt: skip
    ratios = [math.nan if t is None else t / n for t in sw["threshold_p"]]
    thr = mean_ci(ratios, ps.level, "seeds")
    est_thr = thr.to_estimate(
        f"{LENS}.interpolation_ratio",
        note=f"p*/n: p* = the smallest grid width whose training MSE is <= {ps.train_tol:g} x the targets' energy "
        f"(per seed: {', '.join('none' if t is None else str(t) for t in sw['threshold_p'])}; n = {n})",
    )
    missing = sum(t is None for t in sw["threshold_p"])
    drop_txt = f"; {missing} seed(s) never interpolated on the grid and were dropped" if missing else ""
    theo = n  # min-norm random features: interpolation exactly from p = n
    checks.append(
        check_difference_within(
            f"{LENS}.family_threshold",
            None if not thr.ok else thr.low - theo / n,
            None if not thr.ok else thr.high - theo / n,
            ps.threshold_tol,
            kind="agreement",
            what=f"measured interpolation threshold p*/n = {thr.estimate:.4g} [{thr.low:.4g}, {thr.high:.4g}] "
            f"(t-interval over {thr.n} seeds) vs the theory's p = n = {n} for min-norm random features "
            f"(rank(Phi) = min(n, p)){drop_txt}",
        )
    )
    test = sw["test_mse"]
    (pk,), reps = _boot_locations([test], xs, derive_seed(seed, "bootstrap"))
    est_pk = _loc_estimate(f"{LENS}.family_peak_ratio", pk, reps[:, 0], ps.level, sw["n_seeds"], "peak p/n")
    checks.append(
        check_difference_within(
            f"{LENS}.family_peak_location",
            None if est_pk.ci_low is None else est_pk.ci_low - 1.0,
            None if est_pk.ci_high is None else est_pk.ci_high - 1.0,
            ps.peak_tol,
            kind="agreement",
            what=f"test-loss peak p/n = {pk:.4g} (bootstrap interval [{est_pk.ci_low}, {est_pk.ci_high}]) vs the "
            "theory's p = n, where the min-norm variance is singular",
        )
    )
    peak = _peak(xs, test, ps.level)
    checks.append(
        Check(
            f"{LENS}.family_peak_significant", bool(peak["significant"]), peak["height"], None, None,
            f"highest geometric-mean test MSE {peak['height']:.3g} at p/n = {peak['x']:.4g}; its lower "
            f"{ps.level:.0%} bound on the mean log MSE {'exceeds' if peak['significant'] else 'does not exceed'} the "
            "upper bound of a point on each side (the family's labels are noisy, so the theory predicts a peak)",
            kind="agreement",
            criterion="the peak's lower interval bound (log scale) above some point's upper bound on each side",
        )
    )  # fmt: skip
    widest = mean_ci(test[-1], ps.level, "seeds").to_estimate(
        f"{LENS}.family_test_mse_widest", note=f"min-norm test MSE at the widest p = {widths[-1]}"
    )
    estimates = [est_thr, est_pk, widest]
    metrics = {
        **metric_with_interval(f"{LENS}.interpolation_ratio", est_thr),
        **metric_with_interval(f"{LENS}.family_peak_ratio", est_pk),
    }
    outputs = {f"{LENS}.interpolation_ratio": float(thr.estimate)} if math.isfinite(thr.estimate) else {}
    assumptions = [
        Assumption(
            "Generic random features: rank(Phi) = min(n, p), so the min-norm fit interpolates exactly from p = n on",
            "linear algebra of ridgeless least squares",
            checked_by=(f"{LENS}.family_rank", f"{LENS}.family_threshold"),
        ),
        Assumption(
            "The min-norm variance is singular at p = n and the family's labels are noisy (Bayes error > 0), so the "
            "test loss peaks at p = n",
            "Belkin et al. 2019; Mei & Montanari 2019",
            checked_by=(f"{LENS}.family_peak_location", f"{LENS}.family_peak_significant"),
        ),
    ]
    recs = [
        Recommendation(
            f"On the shared data family (n = {n}) min-norm random features interpolate from p*/n = {thr.estimate:.3g} "
            f"and the test loss peaks at p/n = {pk:.3g} (geometric-mean test MSE {peak['height']:.3g} against "
            f"{widest.value:.3g} at p/n = {xs[-1]:.3g}); runs whose parameter count is near the number of training "
            "examples sit in the peak band: keep them out of power-law fits or regularize them.",
            rests_on=(f"{LENS}.family_threshold", f"{LENS}.family_peak_location", f"{LENS}.family_peak_significant"),
        )
    ]
    notes = []
    if sw["n_failed"]:
        notes.append(f"family: {sw['n_failed']} seed(s) failed in the executor and were left out: {sw['errors'][:3]}")
    data = {
        "model": "random ReLU features relu(W x)/sqrt(p), W ~ N(0, 1/d_in), min-norm least squares on one-hot targets",
        "family": fam.to_dict(),
        "n_train": n,
        "p": widths,
        "p_over_n": xs,
        "n_seeds": sw["n_seeds"],
        "test_mse": _curve(test, ps.level),
        "test_mse_per_seed": json_safe(test.tolist()),
        "train_mse_per_seed": json_safe(sw["train_mse"].tolist()),
        "test_err_mean": json_safe(np.nanmean(sw["test_err"], axis=1).tolist()),
        "train_err_mean": json_safe(np.nanmean(sw["train_err"], axis=1).tolist()),
        "rank_min": json_safe(sw["rank"].min(axis=1).tolist()),
        "cond_median": json_safe(np.median(sw["cond"], axis=1).tolist()),
        "threshold_p": sw["threshold_p"],
        "train_tol": ps.train_tol,
        "peak": {"p_over_n": pk, "ci_low": est_pk.ci_low, "ci_high": est_pk.ci_high, "height": peak["height"]},
    }
    return Part(
        "family",
        estimates=estimates,
        checks=checks,
        figures=(_family_figure(data),),
        assumptions=assumptions,
        recommendations=recs,
        metrics=metrics,
        outputs=outputs,
        predictions={"family_threshold_p": theo, "family_threshold_ratio": 1.0},
        data=json_safe(data),
        notes=tuple(notes),
    )


def _family_figure(d: dict[str, Any]) -> Figure:
    xs = d["p_over_n"]
    tr = np.asarray(json_safe(d["train_mse_per_seed"]), dtype=float)
    traces = [
        fig.errorbar_trace(
            xs, d["test_mse"]["mean"], _pos(d["test_mse"]["ci_low"]), d["test_mse"]["ci_high"], "test MSE (mean, CI)"
        ),
        fig.line_trace(xs, _pos(np.nanmean(tr, axis=1).tolist()), "train MSE (mean)"),
    ]
    return fig.figure(
        "double_descent_family",
        "Shared data family: min-norm random features, test and train MSE vs p/n",
        traces,
        xlabel="p/n (features per training example)",
        ylabel="MSE per output (one-hot targets)",
        xlog=True,
        ylog=True,
        caption=f"n = {d['n_train']} training examples of the family, {d['n_seeds']} seeds, test MSE on the fixed "
        "test split; training MSE drops to rounding level from p = n on (not drawn where it is 0).",
    )


# --------------------------------------------------------------------------------------------
# part `peak_vs_batch`


def sgd_sweep(
    fam: FamilySpec, ps: PeakVsBatchSettings, seed: int, *, executor: Any = None, progress: Callable | None = None
) -> dict[str, Any]:
    """The SGD width sweep at batch b and at batch workers*b: per-width, per-seed statistics."""
    n = ps.n_train
    widths = list(ps.widths())
    runs = (("small", ps.batch, ps.lr), ("large", ps.batch * ps.workers, ps.lr_large))
    keys = [(r, tag) for r in range(ps.seeds) for tag, _, _ in runs]
    conf = {tag: (b, lr) for tag, b, lr in runs}
    specs = [
        {
            "family": fam.to_dict(),
            "n": n,
            "train_seed": derive_seed(seed, "sgd-train", r),
            "feature_seed": derive_seed(seed, "sgd-features", r),
            "order_seed": derive_seed(seed, "sgd-order", r),
            "ps": widths,
            "batch": conf[tag][0],
            "lr": conf[tag][1],
            "epochs": ps.epochs,
        }
        for r, tag in keys
    ]
    results, errors = run_tasks(SGD_TASK, specs, executor, progress)
    nan_run = {k: [None] * len(widths) for k in ("train_mse", "test_mse", "train_err", "test_err")}
    out: dict[str, Any] = {"n_train": n, "p": widths, "p_over_n": [p / n for p in widths], "errors": errors}
    for tag, b, lr in runs:
        res = [results[i] if results[i] is not None else nan_run | {"lam_max": [], "finite": False}
               for i, (_, t) in enumerate(keys) if t == tag]  # fmt: skip
        out[tag] = {
            "batch": b,
            "lr": lr,
            "train_mse": _arr(res, "train_mse"),
            "test_mse": _arr(res, "test_mse"),
            "train_err": _arr(res, "train_err"),
            "test_err": _arr(res, "test_err"),
            "lam_max": max((max(r["lam_max"]) for r in res if r["lam_max"]), default=math.nan),
            "n_diverged": sum(not r["finite"] for r in res),
        }
    out["n_failed"] = sum(r is None for r in results)
    return out


def peak_vs_batch_part(fam: FamilySpec | None, ps: PeakVsBatchSettings, *, seed: int, runtime: Any = None) -> Part:
    if fam is None:
        return Part("peak_vs_batch", notes=("peak_vs_batch: not measured: the subject has no data family",))
    ex = getattr(runtime, "executor", None)
    prog = getattr(runtime, "progress", None)
    sw = sgd_sweep(fam, ps, seed, executor=ex, progress=prog)
    xs, n = sw["p_over_n"], sw["n_train"]
    small, large = sw["small"], sw["large"]
    b_s, b_l = small["batch"], large["batch"]
    (pk_s, pk_l), reps = _boot_locations([small["test_mse"], large["test_mse"]], xs, derive_seed(seed, "bootstrap"))
    est_s = _loc_estimate(f"{LENS}.peak_ratio_batch_small", pk_s, reps[:, 0], ps.level, ps.seeds, f"batch {b_s}")
    est_l = _loc_estimate(f"{LENS}.peak_ratio_batch_large", pk_l, reps[:, 1], ps.level, ps.seeds, f"batch {b_l}")
    est_d = _loc_estimate(
        f"{LENS}.peak_shift_batch", pk_l - pk_s, reps[:, 1] - reps[:, 0], ps.level, ps.seeds,
        f"peak p/n at batch {b_l} minus at batch {b_s}, paired over seeds",
    )  # fmt: skip
    checks: list[Check] = []
    lam = max(small["lam_max"], large["lam_max"])
    lr_max = max(small["lr"], large["lr"])
    diverged = small["n_diverged"] + large["n_diverged"]
    stable = bool(math.isfinite(lam) and lr_max * lam < 2.0 and diverged == 0)
    checks.append(
        Check(
            f"{LENS}.sgd_step_stable", stable, lr_max * lam if math.isfinite(lam) else None, 2.0, None,
            f"largest step x largest eigenvalue of K/n over widths and seeds: {lr_max:g} x {lam:.4g} = "
            f"{lr_max * lam:.3g} (gradient descent on the squared loss is stable below 2); {diverged} run(s) diverged",
            kind="sanity", criterion="lr x lambda_max(K/n) < 2 and every run finite",
        )
    )  # fmt: skip
    checks.append(
        check_difference_within(
            f"{LENS}.peak_batch_invariance",
            est_d.ci_low,
            est_d.ci_high,
            ps.max_shift,
            kind="agreement",
            what=f"peak p/n at batch {b_l} ({pk_l:.3g}) minus at batch {b_s} ({pk_s:.3g}), paired bootstrap over "
            f"seeds; the prediction (C.20; SGD from zero converges to the min-norm interpolant for any stable batch "
            f"size) is no shift; lr {small['lr']:g} at batch {b_s} and {large['lr']:g} at batch {b_l} "
            f"({ps.lr_scaling} scaling), {ps.epochs} epochs",
        )
    )
    for tag, est in (("small", est_s), ("large", est_l)):
        x = est.value
        w = ps.peak_window
        crit = f"an interior grid point with 1/{w:g} <= peak p/n <= {w:g}"
        edge = x is not None and x in (xs[0], xs[-1])
        ok = None if x is None else bool(1.0 / w <= x <= w and not edge)
        checks.append(
            Check(
                f"{LENS}.sgd_peak_near_threshold.{tag}", ok, x, 1.0, None,
                f"SGD at batch {sw[tag]['batch']}: test-loss peak at p/n = {x}"
                + (" (the edge of the grid: no interior peak)" if edge else "")
                + f" vs the min-norm threshold p = n; pass needs an interior point in [{1 / w:.3g}, {w:g}] (a finite "
                "budget damps the peak, so informational)",
                severity="info", kind="agreement", criterion=crit,
            )
        )  # fmt: skip
    metrics = {
        **metric_with_interval(f"{LENS}.peak_ratio_batch_small", est_s),
        **metric_with_interval(f"{LENS}.peak_ratio_batch_large", est_l),
        **metric_with_interval(f"{LENS}.peak_shift_batch", est_d),
    }
    estimates = [est_s, est_l, est_d]
    for tag in ("small", "large"):
        tm = sw[tag]["train_mse"][-1]
        estimates.append(
            mean_ci(tm, ps.level, "seeds").to_estimate(
                f"{LENS}.sgd_train_mse_widest.{tag}",
                note=f"training MSE after {ps.epochs} epochs at the widest p = {sw['p'][-1]}, batch {sw[tag]['batch']}",
            )
        )
    assumptions = [
        Assumption(
            "SGD from zero on least squares stays in the span of the training features, so for any stable batch size "
            "it converges to the min-norm interpolant when p >= n: the peak location does not depend on the batch size "
            "or the number of synchronous workers",
            "implicit bias of SGD on least squares; C.20",
            checked_by=(f"{LENS}.sgd_step_stable", f"{LENS}.peak_batch_invariance"),
        )
    ]
    recs = [
        Recommendation(
            f"The test-loss peak of the SGD-trained width sweep sat at p/n = {pk_s:.3g} with batch {b_s} and at "
            f"{pk_l:.3g} with batch {b_l} (shift {pk_l - pk_s:.3g}, interval [{est_d.ci_low}, {est_d.ci_high}]): "
            f"the interpolation band measured at one batch size carries over to {ps.workers} synchronous workers.",
            rests_on=(f"{LENS}.peak_batch_invariance", f"{LENS}.sgd_step_stable"),
        )
    ]
    notes = []
    if sw["n_failed"]:
        notes.append(f"peak_vs_batch: {sw['n_failed']} run(s) failed in the executor: {sw['errors'][:3]}")
    data = {
        "model": "random ReLU features (as in `family`) trained by minibatch SGD on the squared loss from zero",
        "n_train": n,
        "p": sw["p"],
        "p_over_n": xs,
        "epochs": ps.epochs,
        "workers": ps.workers,
        "lr_scaling": ps.lr_scaling,
    }
    for tag in ("small", "large"):
        r = sw[tag]
        data[tag] = {
            "batch": r["batch"],
            "lr": r["lr"],
            "lam_max": r["lam_max"],
            "n_diverged": r["n_diverged"],
            "test_mse": _curve(r["test_mse"], ps.level),
            "test_mse_per_seed": r["test_mse"].tolist(),
            "train_mse_mean": np.nanmean(r["train_mse"], axis=1).tolist() if np.isfinite(r["train_mse"]).any() else [],
            "test_err_mean": np.nanmean(r["test_err"], axis=1).tolist() if np.isfinite(r["test_err"]).any() else [],
        }
    data["peak"] = {"small": pk_s, "large": pk_l, "shift": pk_l - pk_s}
    data = json_safe(data)
    return Part(
        "peak_vs_batch",
        estimates=estimates,
        checks=checks,
        figures=(_sgd_figure(data),),
        assumptions=assumptions,
        recommendations=recs,
        metrics=metrics,
        predictions={"peak_shift_batch": 0.0},
        data=data,
        notes=tuple(notes),
    )


def _sgd_figure(d: dict[str, Any]) -> Figure:
    traces = []
    for tag in ("small", "large"):
        r = d[tag]
        traces.append(
            fig.errorbar_trace(
                d["p_over_n"], r["test_mse"]["mean"], _pos(r["test_mse"]["ci_low"]), r["test_mse"]["ci_high"],
                f"test MSE, batch {r['batch']} (lr {r['lr']:g})", mode="lines+markers",
            )
        )  # fmt: skip
    return fig.figure(
        "double_descent_peak_vs_batch",
        "Shared data family: SGD-trained random features, test MSE vs p/n at two batch sizes",
        traces,
        xlabel="p/n (features per training example)",
        ylabel="test MSE per output",
        xlog=True,
        caption=f"n = {d['n_train']}, {d['epochs']} epochs of SGD from zero; batch {d['large']['batch']} = "
        f"{d['workers']} synchronous workers at batch {d['small']['batch']} ({d['lr_scaling']} learning-rate scaling).",
    )
