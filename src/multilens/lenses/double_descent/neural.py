"""Double descent with learned features: random ReLU features and MLP width sweeps on digits.

Follows the seed's C.3 task (line 265) and worked example 5: a capacity sweep through the
interpolation threshold on real data (scikit-learn digits), clean and with label noise, with
the threshold defined empirically (training error reaching zero) and theoretically (effective
degrees of freedom reaching n), and variants that regularize (ridge / weight decay, early
stopping). Random features follow Belkin, Hsu, Ma & Mandal (2019, "Reconciling modern
machine-learning practice and the classical bias-variance trade-off", PNAS) and Mei & Montanari
(2019, "The generalization error of random features regression"): features
phi(x) = relu(W x)/sqrt(p), W_ij ~ N(0, 1/64), fitted to one-hot targets by least squares.
For ridgeless least squares the fit interpolates exactly when rank(Phi) = n, i.e. p >= n, and
the variance term is singular there, so the test-risk peak is predicted at p = n.

Every random-features estimator is a filter on Phi's singular values, computed from one SVD
per (p, seed): min-norm (1 on every nonzero singular value, cutoff as numpy.linalg.lstsq's
default rcond), ridge s^2/(s^2 + n lam) and T steps of gradient descent on
(1/2n)||Y - Phi A||^2 from 0 with step n/s_max^2, whose iterate is exactly
1 - (1 - s^2/s_max^2)^T per mode. Effective degrees of freedom = trace of the hat matrix = the
sum of the filter.

Every model is trained by a task function (``rf_task``: one feature draw, every width, noise level
and variant; ``mlp_task``: one MLP) taking a JSON-able spec, so the sweeps run through
``runtime.executor`` when one is given (tasks referenced as "module:function") and serially in
process otherwise, with the same numbers either way.

The MLP sweep trains one-hidden-layer ReLU networks (MSE on one-hot targets, full-batch Adam)
with :func:`multilens.train.loop.train_model` and records test error at several horizons
(early stopping) and for several weight decays. Its interpolation threshold is compared with the
parameter count n*K at which MSE interpolation of K outputs becomes possible (the threshold
Belkin et al. 2019 use for networks); there is no exact theorem for it, so its checks are informational.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multilens.lenses.double_descent.minnorm import median_ci
from multilens.models.mlp import MLPSpec, build_mlp, n_params
from multilens.seeding import as_generator, derive_seed
from multilens.stats import mean_ci
from multilens.theory.filters import gd_filter
from multilens.train.loop import TrainConfig, train_model

N_CLASSES = 10
# Training MSE counts as zero (interpolation) below this fraction of the one-hot targets' energy.
INTERPOLATION_RTOL = 1e-8
# Above this condition number the Gram route's eps cond^2 error could hide interpolation: use an SVD.
GRAM_MAX_CONDITION = 1e3


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def noisy_labels(y: np.ndarray, fraction: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Replace round(fraction * n) labels, chosen at random, by a uniformly random *different* class."""
    y = np.asarray(y).copy()
    k = int(round(fraction * y.size))
    if k == 0:
        return y
    idx = rng.choice(y.size, size=k, replace=False)
    shift = rng.integers(1, n_classes, size=k)  # 1..K-1: never the original class
    y[idx] = (y[idx] + shift) % n_classes
    return y


def one_hot(y: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    return np.eye(n_classes)[np.asarray(y)]


def relu_features(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """relu(x W^T)/sqrt(p): (n, d_in) x (p, d_in) -> (n, p)."""
    return np.maximum(x @ w.T, 0.0) / math.sqrt(w.shape[0])


@dataclass(frozen=True)
class FitStats:
    """One fitted model's errors (MSE per output coordinate, classification error) and its df."""

    train_mse: float
    test_mse: float
    train_err: float
    test_err: float
    df: float


def _filter_fit(
    u: np.ndarray,
    s: np.ndarray,
    tr_basis: np.ndarray,
    te_basis: np.ndarray,
    filt: np.ndarray,
    y_oh: np.ndarray,
    labels_tr: np.ndarray,
    y_te_onehot: np.ndarray,
    labels_te: np.ndarray,
) -> FitStats:
    """Errors of the estimator A = V diag(filt/s) U^T Y (filt = 0 where s is numerically zero).

    ``tr_basis`` = Phi_train V and ``te_basis`` = Phi_test V are shared by every filter of one
    feature draw; predictions are the fitted weights applied to the features (Phi V coef), so the
    training error is that of the actual fit, not an algebraic identity.
    """
    uty = u.T @ y_oh  # (k, K)
    coef = (filt / np.where(s > 0, s, 1.0))[:, None] * uty
    pred_tr = tr_basis @ coef
    pred_te = te_basis @ coef
    return FitStats(
        train_mse=float(np.mean((pred_tr - y_oh) ** 2)),
        test_mse=float(np.mean((pred_te - y_te_onehot) ** 2)),
        train_err=float(np.mean(pred_tr.argmax(1) != labels_tr)),
        test_err=float(np.mean(pred_te.argmax(1) != labels_te)),
        df=float(filt.sum()),
    )


def _peak(x: list[float], per_rep: np.ndarray, level: float) -> dict[str, Any]:
    """Argmax of a measured curve and whether it is a significant interior peak.

    Works on log(test MSE): at the threshold the risk is heavy-tailed (its Gaussian analogue has
    infinite mean), so arithmetic-mean intervals there are uninformative while the log is well
    behaved. Significant: the maximum's lower interval bound (on the mean log risk) lies above
    the upper bound of some point on its left and of some point on its right, i.e. the curve
    rises and falls by more than its noise. ``height`` is the geometric mean at the peak.
    """
    logs = np.log(np.maximum(per_rep, np.finfo(float).tiny))
    cis = [mean_ci(logs[i][np.isfinite(logs[i])], level) for i in range(len(x))]  # diverged runs are NaN
    mean = [c.mean for c in cis]
    j = int(np.argmax(mean))
    left = [cis[i].high for i in range(j)]
    right = [cis[i].high for i in range(j + 1, len(x))]
    significant = bool(left and right and cis[j].low > min(left) and cis[j].low > min(right))
    return {
        "index": j,
        "x": x[j],
        "height": float(math.exp(mean[j])),
        "significant": significant,
        "scale": "geometric mean over repetitions (interval on log risk)",
        "n_dropped": int(sum(c.n_dropped for c in cis)),
    }


def _curve_summary(per_rep: np.ndarray, level: float) -> dict[str, list[float]]:
    """Mean and t-interval over repetitions (axis 1) for each x."""
    cis = [mean_ci(per_rep[i], level) for i in range(per_rep.shape[0])]
    return {
        "mean": [c.mean for c in cis],
        "ci_low": [c.low for c in cis],
        "ci_high": [c.high for c in cis],
        "n_dropped": [c.n_dropped for c in cis],
    }


def _spectral(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD (u, s, vt) of phi (n, p) via the smaller Gram matrix, and the numerical-rank mask.

    Several times cheaper than numpy's SVD at these shapes. The Gram matrix's eigenvalues carry
    absolute error ~ eps * lam_max * size, so modes with lam <= lam_max * max(n, p) * eps are
    treated as numerically zero (the Gram analogue of numpy.linalg.lstsq's rcond cutoff); this
    keeps condition numbers up to ~1e7, but the fit loses accuracy ~ eps cond^2, so a draw with
    condition number above GRAM_MAX_CONDITION (near-square Phi) is redone with a direct SVD, whose
    cutoff is numpy.linalg.lstsq's.
    """
    n, p = phi.shape
    if p >= n:
        lam, u = np.linalg.eigh(phi @ phi.T)
        lam, u = lam[::-1], u[:, ::-1]  # descending
        keep = lam > lam[0] * max(n, p) * np.finfo(float).eps
        s = np.sqrt(np.where(keep, lam, 0.0))
        vt = (u.T @ phi) / np.where(keep, s, 1.0)[:, None]
    else:
        lam, v = np.linalg.eigh(phi.T @ phi)
        lam, v = lam[::-1], v[:, ::-1]
        keep = lam > lam[0] * max(n, p) * np.finfo(float).eps
        s = np.sqrt(np.where(keep, lam, 0.0))
        vt = v.T
        u = (phi @ v) / np.where(keep, s, 1.0)[None, :]
    if keep.sum() < min(n, p) or s[0] > GRAM_MAX_CONDITION * s[keep][-1]:
        # Squaring costs accuracy ~ eps cond^2 (and loses modes beyond cond ~1e7): near-square Phi is
        # redone with numpy's SVD and numpy.linalg.lstsq's cutoff s > s_max max(n, p) eps.
        u, s, vt = np.linalg.svd(phi, full_matrices=False)
        keep = s > s[0] * max(n, p) * np.finfo(float).eps
        s = np.where(keep, s, 0.0)
    return u, s, vt, keep


def _rows(a: Any) -> list:
    return np.asarray(a).tolist()


def run_tasks(
    task: str, specs: list[dict[str, Any]], executor: Any = None, progress: Callable | None = None
) -> tuple[list[Any], list[str]]:
    """Results of ``task`` on every spec, in order, through ``executor`` (or serially), and errors.

    A run that fails under an executor is None in the results and its error is listed.
    """
    out: list[Any] = [None] * len(specs)
    errors: list[str] = []
    label = task.rsplit(":", 1)[-1]
    if executor is None:
        from multilens.experiments.executors import resolve

        fn = resolve(task)
        for i, s in enumerate(specs):
            out[i] = fn(s)
            if progress:
                progress(label, i + 1, len(specs))
        return out, errors
    done = 0
    for i, res in executor.map_unordered(task, specs):
        done += 1
        if res.get("ok"):
            out[i] = res["result"]
        else:
            errors.append(f"{label} run {i}: {str(res.get('error', '')).splitlines()[0]}")
        if progress:
            progress(label, done, len(specs))
    return out, errors


# --------------------------------------------------------------------------------------------
# random features


def rf_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One feature draw: every width p, label-noise level and variant (min-norm, ridge, early-stopped GD)."""
    x_tr = np.asarray(spec["x_train"], dtype=np.float64)
    x_te = np.asarray(spec["x_test"], dtype=np.float64)
    lab_tr = np.asarray(spec["y_train"], dtype=np.int64)
    lab_te = np.asarray(spec["y_test"], dtype=np.int64)
    k = int(spec["n_classes"])
    ps = [int(p) for p in spec["ps"]]
    n, d_in = x_tr.shape
    y_te = one_hot(lab_te, k)
    labels = [noisy_labels(lab_tr, q, k, as_generator(s)) for q, s in zip(spec["label_noise"], spec["label_seeds"])]
    rng = as_generator(int(spec["feature_seed"]))
    w_all = rng.standard_normal((max(ps), d_in)) / math.sqrt(d_in)  # nested features: p uses the first p rows
    variants = spec["variants"]
    vals = [{v: {s: [] for s in STATS} for v in variants} for _ in labels]
    rank, cond = [], []
    for p in ps:
        w = w_all[:p]
        phi_tr, phi_te = relu_features(x_tr, w), relu_features(x_te, w)
        u, s, vt, keep = _spectral(phi_tr)
        tr_basis, te_basis = phi_tr @ vt.T, phi_te @ vt.T
        rank.append(int(keep.sum()))
        cond.append(float(s[0] / s[keep][-1]))
        filters = {"min-norm": keep.astype(float)}
        for lam in spec["ridge"]:
            filters[f"ridge lam={lam:g}"] = np.where(keep, s**2 / (s**2 + n * lam), 0.0)
        for t in spec["gd_steps"]:
            filters[f"GD T={t}"] = np.where(keep, gd_filter(s, 1.0 / s[0] ** 2, t), 0.0)
        for j, lab in enumerate(labels):
            y_oh = one_hot(lab, k)
            for v, f in filters.items():
                fs = _filter_fit(u, s, tr_basis, te_basis, f, y_oh, lab, y_te, lab_te)
                for st in STATS:
                    vals[j][v][st].append(getattr(fs, st))
    return {"vals": vals, "rank": rank, "cond": cond}


STATS = ("test_mse", "test_err", "train_mse", "train_err", "df")
MLP_STATS = ("train_mse", "test_mse", "train_err", "test_err")


def random_features_sweep(
    data: Any,
    ratios: Sequence[float],
    n_seeds: int,
    label_noise: Sequence[float],
    ridge: Sequence[float],
    gd_steps: Sequence[int],
    level: float,
    seed: int,
    *,
    executor: Any = None,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """Min-norm, ridge and early-stopped GD on random ReLU features of ``data`` (a Classification), over p/n."""
    n = int(data.x_train.shape[0])
    k = data.n_classes
    ps = sorted({max(1, round(r * n)) for r in ratios})
    variants = ["min-norm"] + [f"ridge lam={lam:g}" for lam in ridge] + [f"GD T={t}" for t in gd_steps]
    common = {
        "x_train": _rows(data.x_train), "y_train": _rows(data.y_train), "x_test": _rows(data.x_test),
        "y_test": _rows(data.y_test), "n_classes": k, "ps": ps, "label_noise": list(label_noise),
        "ridge": list(ridge), "gd_steps": list(gd_steps), "variants": variants,
    }  # fmt: skip
    specs = [
        common
        | {
            "feature_seed": derive_seed(seed, "rf-features", r),
            "label_seeds": [derive_seed(seed, "rf-labels", q, r) for q in label_noise],
        }
        for r in range(n_seeds)
    ]
    results, errors = run_tasks("multilens.lenses.double_descent.neural:rf_task", specs, executor, progress)
    ok = [r for r in results if r is not None]
    if len(ok) < 2:
        raise RuntimeError(f"random features: fewer than 2 feature draws finished ({'; '.join(errors)})")
    m = len(ok)
    # vals[q][variant][stat]: (len(ps), m)
    vals = {
        q: {v: {s: np.array([res["vals"][j][v][s] for res in ok]).T for s in STATS} for v in variants}
        for j, q in enumerate(label_noise)
    }
    rank = np.array([res["rank"] for res in ok]).T
    cond = np.array([res["cond"] for res in ok]).T
    curves: list[dict[str, Any]] = []
    x_ratio = [p / n for p in ps]
    energy = 1.0 / k  # per-coordinate energy of one-hot targets
    for q in label_noise:
        for v in variants:
            test = _curve_summary(vals[q][v]["test_mse"], level)
            terr = _curve_summary(vals[q][v]["test_err"], level)
            df = vals[q][v]["df"].mean(axis=1)
            interp = [bool(np.all(vals[q][v]["train_mse"][i] <= INTERPOLATION_RTOL * energy)) for i in range(len(ps))]
            curves.append(
                {
                    "label_noise": q,
                    "variant": v,
                    "p": ps,
                    "p_over_n": x_ratio,
                    "test_mse": test["mean"],
                    "test_mse_ci_low": test["ci_low"],
                    "test_mse_ci_high": test["ci_high"],
                    "test_mse_n_dropped": test["n_dropped"],
                    "test_err": terr["mean"],
                    "test_err_ci_low": terr["ci_low"],
                    "test_err_ci_high": terr["ci_high"],
                    "train_mse": vals[q][v]["train_mse"].mean(axis=1).tolist(),
                    "train_err": vals[q][v]["train_err"].mean(axis=1).tolist(),
                    "df": df.tolist(),
                    "df_over_n": (df / n).tolist(),
                    "interpolates": interp,
                    "threshold_empirical_p": next((ps[i] for i in range(len(ps)) if interp[i]), None),
                    "peak": _peak(x_ratio, vals[q][v]["test_mse"], level),
                    "test_mse_per_seed": vals[q][v]["test_mse"].tolist(),  # (len(p), n_seeds)
                }
            )
    cond_med = [median_ci(cond[i], level) for i in range(len(ps))]
    return {
        "n_train": n,
        "n_test": int(np.asarray(data.x_test).shape[0]),
        "n_classes": k,
        "n_seeds": m,
        "n_failed": n_seeds - m,
        "errors": errors,
        "p": ps,
        "p_over_n": x_ratio,
        "rank_min": rank.min(axis=1).tolist(),
        "rank_max": rank.max(axis=1).tolist(),
        "rank_mean": rank.mean(axis=1).tolist(),
        "cond_median": [c[0] for c in cond_med],
        "cond_ci_low": [c[1] for c in cond_med],
        "cond_ci_high": [c[2] for c in cond_med],
        "variants": variants,
        "curves": curves,
        "level": level,
        "interpolation_rtol": INTERPOLATION_RTOL,
    }


# --------------------------------------------------------------------------------------------
# MLP widths


def mlp_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one MLP full-batch; its errors at each horizon (step count), or {} when it diverged."""
    k = int(spec["n_classes"])
    x_tr = torch.tensor(spec["x_train"], dtype=torch.float32)
    x_te = torch.tensor(spec["x_test"], dtype=torch.float32)
    lab_te = torch.tensor(spec["y_test"], dtype=torch.int64)
    lab_np = noisy_labels(np.asarray(spec["y_train"]), spec["label_noise"], k, as_generator(spec["label_seed"]))
    lab_tr = torch.as_tensor(lab_np, dtype=torch.int64)
    y_tr = torch.nn.functional.one_hot(lab_tr, k).float()
    y_te = torch.nn.functional.one_hot(lab_te, k).float()
    horizons = tuple(int(h) for h in spec["horizons"])
    seed = int(spec["seed"])
    model = build_mlp(MLPSpec(int(x_tr.shape[1]), (int(spec["width"]),), k), seed=derive_seed(seed, "init"))
    at: dict[str, dict[str, float]] = {}

    @torch.no_grad()
    def record(step: int, m: torch.nn.Module) -> None:
        if step not in horizons:
            return
        m.eval()
        out_tr, out_te = m(x_tr), m(x_te)
        m.train()
        at[str(step)] = {
            "train_mse": float(torch.mean((out_tr - y_tr) ** 2)),
            "test_mse": float(torch.mean((out_te - y_te) ** 2)),
            "train_err": float((out_tr.argmax(1) != lab_tr).float().mean()),
            "test_err": float((out_te.argmax(1) != lab_te).float().mean()),
        }

    cfg = TrainConfig(
        optimizer="adam",
        lr=float(spec["lr"]),
        batch_size=int(x_tr.shape[0]),
        epochs=int(spec["steps"]),
        weight_decay=float(spec["weight_decay"]),
        loss="mse",
        n_curve_points=10,
    )
    every = math.gcd(*horizons)
    res = train_model(model, x_tr, y_tr, cfg, seed=derive_seed(seed, "batches"), callback=record, callback_every=every)
    return {"at": {} if res.diverged else at}


def mlp_width_sweep(
    data: Any,
    widths: Sequence[int],
    n_seeds: int,
    label_noise: Sequence[float],
    weight_decays: Sequence[float],
    steps: int,
    lr: float,
    horizons: Sequence[int],
    level: float,
    seed: int,
    *,
    executor: Any = None,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """One-hidden-layer MLP test/train error vs width, per label noise, weight decay and horizon."""
    n = int(data.x_train.shape[0])
    k = data.n_classes
    d_in = int(data.x_train.shape[1])
    widths = tuple(sorted(set(widths)))
    horizons = tuple(sorted(set(horizons)))
    params = [n_params(MLPSpec(d_in, (w,), k)) for w in widths]
    common = {
        "x_train": _rows(np.asarray(data.x_train, dtype=np.float32)), "y_train": _rows(data.y_train),
        "x_test": _rows(np.asarray(data.x_test, dtype=np.float32)), "y_test": _rows(data.y_test),
        "n_classes": k, "steps": steps, "lr": lr, "horizons": list(horizons),
    }  # fmt: skip
    keys = [
        (q, wd, i, r) for q in label_noise for wd in weight_decays for i in range(len(widths)) for r in range(n_seeds)
    ]
    specs = [
        common
        | {
            "label_noise": q,
            "label_seed": derive_seed(seed, "mlp-labels", q, r),
            "weight_decay": wd,
            "width": widths[i],
            "seed": derive_seed(seed, "mlp", q, wd, widths[i], r),
        }
        for q, wd, i, r in keys
    ]
    results, errors = run_tasks("multilens.lenses.double_descent.neural:mlp_task", specs, executor, progress)
    res = {
        (q, wd): {h: {s: np.full((len(widths), n_seeds), np.nan) for s in MLP_STATS} for h in horizons}
        for q in label_noise for wd in weight_decays
    }  # fmt: skip
    n_diverged = 0
    for (q, wd, i, r), out in zip(keys, results):
        if out is None:
            continue
        n_diverged += int(not out["at"])
        for h, stats_at in out["at"].items():
            for s, v in stats_at.items():
                res[(q, wd)][int(h)][s][i, r] = v
    curves: list[dict[str, Any]] = []
    x = [p / (n * k) for p in params]
    for q in label_noise:
        for wd in weight_decays:
            for h in horizons:
                r_h = res[(q, wd)][h]
                ok = ~np.isnan(r_h["test_mse"])
                cis = [mean_ci(r_h["test_mse"][i], level) if ok[i].sum() >= 2 else None for i in range(len(widths))]
                zero = [bool(np.all(r_h["train_err"][i][ok[i]] == 0.0)) and ok[i].any() for i in range(len(widths))]
                finite = all(c is not None for c in cis)
                with np.errstate(invalid="ignore"):
                    curves.append(
                        {
                            "label_noise": q,
                            "weight_decay": wd,
                            "horizon": h,
                            "width": list(widths),
                            "params": params,
                            "params_over_nK": x,
                            "test_mse": [c.estimate if c else None for c in cis],
                            "test_mse_ci_low": [c.low if c else None for c in cis],
                            "test_mse_ci_high": [c.high if c else None for c in cis],
                            "n_runs": ok.sum(axis=1).tolist(),
                            "test_err": np.nanmean(r_h["test_err"], axis=1).tolist(),
                            "train_mse": np.nanmean(r_h["train_mse"], axis=1).tolist(),
                            "train_err": np.nanmean(r_h["train_err"], axis=1).tolist(),
                            "threshold_empirical_params": next(
                                (params[i] for i in range(len(widths)) if zero[i]), None
                            ),
                            "peak": _peak(x, r_h["test_mse"], level) if finite else None,
                            "test_mse_per_seed": [[_num(v) for v in row] for row in r_h["test_mse"]],
                        }
                    )
    return {
        "n_train": n,
        "n_classes": k,
        "threshold_theoretical_params": n * k,
        "widths": list(widths),
        "params": params,
        "n_seeds": n_seeds,
        "steps": steps,
        "lr": lr,
        "horizons": list(horizons),
        "weight_decays": list(weight_decays),
        "curves": curves,
        "n_diverged": n_diverged,
        "n_failed": sum(r is None for r in results),
        "errors": errors,
        "level": level,
    }
