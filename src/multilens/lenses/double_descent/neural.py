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

The MLP sweep trains one-hidden-layer ReLU networks (MSE on one-hot targets, full-batch Adam)
with :func:`multilens.train.loop.train_model` and records test error at several horizons
(early stopping) and for several weight decays. Its interpolation threshold is compared with the
parameter count n*K at which MSE interpolation of K outputs becomes possible (the threshold
Belkin et al. 2019 use for networks); there is no exact theorem for it, so its checks are informational.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multilens.data.digits import load_digits_split
from multilens.lenses.double_descent.minnorm import median_ci
from multilens.models.mlp import MLPSpec, build_mlp, n_params
from multilens.seeding import as_generator, derive_seed
from multilens.stats import mean_ci
from multilens.theory.filters import gd_filter
from multilens.train.loop import TrainConfig, train_model

N_CLASSES = 10
# Training MSE counts as zero (interpolation) below this fraction of the one-hot targets' energy.
INTERPOLATION_RTOL = 1e-8


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
    }


def _curve_summary(per_rep: np.ndarray, level: float) -> dict[str, list[float]]:
    """Mean and t-interval over repetitions (axis 1) for each x."""
    cis = [mean_ci(per_rep[i], level) for i in range(per_rep.shape[0])]
    return {"mean": [c.mean for c in cis], "ci_low": [c.low for c in cis], "ci_high": [c.high for c in cis]}


def _spectral(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD (u, s, vt) of phi (n, p) via the smaller Gram matrix, and the numerical-rank mask.

    Several times cheaper than numpy's SVD at these shapes. The Gram matrix's eigenvalues carry
    absolute error ~ eps * lam_max * size, so modes with lam <= lam_max * max(n, p) * eps are
    treated as numerically zero (the Gram analogue of numpy.linalg.lstsq's rcond cutoff); this
    keeps condition numbers up to ~1e6, above anything the sweep meets.
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
    return u, s, vt, keep


def random_features_sweep(
    n_train: int,
    ratios: tuple[float, ...],
    n_seeds: int,
    label_noise: tuple[float, ...],
    ridge: tuple[float, ...],
    gd_steps: tuple[int, ...],
    level: float,
    seed: int,
) -> dict[str, Any]:
    """Min-norm, ridge and early-stopped GD on random ReLU features of digits, swept over p/n."""
    split = load_digits_split(seed, n_train=n_train)
    x_tr = split.x_train.double().numpy()
    x_te = split.x_test.double().numpy()
    lab_tr = split.y_train.numpy()
    lab_te = split.y_test.numpy()
    y_te = one_hot(lab_te)
    n, d_in = x_tr.shape
    ps = sorted({max(1, round(r * n)) for r in ratios})
    variants = ["min-norm"] + [f"ridge lam={lam:g}" for lam in ridge] + [f"GD T={t}" for t in gd_steps]
    stats_names = ("test_mse", "test_err", "train_mse", "train_err", "df")
    # vals[q][variant][stat]: (len(ps), n_seeds)
    vals = {q: {v: {k: np.zeros((len(ps), n_seeds)) for k in stats_names} for v in variants} for q in label_noise}
    cond = np.zeros((len(ps), n_seeds))
    rank = np.zeros((len(ps), n_seeds))
    for r in range(n_seeds):
        labels = {
            q: noisy_labels(lab_tr, q, N_CLASSES, as_generator(derive_seed(seed, "rf-labels", q, r)))
            for q in label_noise
        }
        rng = as_generator(derive_seed(seed, "rf-features", r))
        w_all = rng.standard_normal((max(ps), d_in)) / math.sqrt(d_in)  # nested features: p uses the first p rows
        for i, p in enumerate(ps):
            w = w_all[:p]
            phi_tr, phi_te = relu_features(x_tr, w), relu_features(x_te, w)
            u, s, vt, keep = _spectral(phi_tr)
            tr_basis, te_basis = phi_tr @ vt.T, phi_te @ vt.T  # (n, k), (n_test, k)
            rank[i, r] = keep.sum()
            cond[i, r] = s[0] / s[keep][-1]
            filters = {"min-norm": keep.astype(float)}
            for lam in ridge:
                filters[f"ridge lam={lam:g}"] = np.where(keep, s**2 / (s**2 + n * lam), 0.0)
            for t in gd_steps:
                filters[f"GD T={t}"] = np.where(keep, gd_filter(s, 1.0 / s[0] ** 2, t), 0.0)
            for q in label_noise:
                for v, f in filters.items():
                    fs = _filter_fit(u, s, tr_basis, te_basis, f, one_hot(labels[q]), labels[q], y_te, lab_te)
                    for k in stats_names:
                        vals[q][v][k][i, r] = getattr(fs, k)
    curves: list[dict[str, Any]] = []
    x_ratio = [p / n for p in ps]
    energy = float(np.mean(one_hot(lab_tr) ** 2))  # per-coordinate energy of one-hot targets (= 1/K)
    for q in label_noise:
        for v in variants:
            test = _curve_summary(vals[q][v]["test_mse"], level)
            terr = _curve_summary(vals[q][v]["test_err"], level)
            train_mse = vals[q][v]["train_mse"].mean(axis=1)
            train_err = vals[q][v]["train_err"].mean(axis=1)
            df = vals[q][v]["df"].mean(axis=1)
            interp = [bool(np.all(vals[q][v]["train_mse"][i] <= INTERPOLATION_RTOL * energy)) for i in range(len(ps))]
            emp = next((ps[i] for i in range(len(ps)) if interp[i]), None)
            theo = next((ps[i] for i in range(len(ps)) if df[i] >= n - 0.5), None)
            curves.append(
                {
                    "label_noise": q,
                    "variant": v,
                    "p": ps,
                    "p_over_n": x_ratio,
                    "test_mse": test["mean"],
                    "test_mse_ci_low": test["ci_low"],
                    "test_mse_ci_high": test["ci_high"],
                    "test_err": terr["mean"],
                    "test_err_ci_low": terr["ci_low"],
                    "test_err_ci_high": terr["ci_high"],
                    "train_mse": train_mse.tolist(),
                    "train_err": train_err.tolist(),
                    "df": df.tolist(),
                    "df_over_n": (df / n).tolist(),
                    "interpolates": interp,
                    "threshold_empirical_p": emp,
                    "threshold_theoretical_p": theo,
                    "peak": _peak(x_ratio, vals[q][v]["test_mse"], level),
                    "test_mse_per_seed": vals[q][v]["test_mse"].tolist(),  # (len(p), n_seeds)
                }
            )
    cond_med = [median_ci(cond[i], level) for i in range(len(ps))]
    return {
        "n_train": n,
        "n_test": int(x_te.shape[0]),
        "n_seeds": n_seeds,
        "p": ps,
        "p_over_n": x_ratio,
        "rank_mean": rank.mean(axis=1).tolist(),
        "cond_median": [c[0] for c in cond_med],
        "cond_ci_low": [c[1] for c in cond_med],
        "cond_ci_high": [c[2] for c in cond_med],
        "variants": variants,
        "curves": curves,
        "level": level,
        "interpolation_rtol": INTERPOLATION_RTOL,
    }


def _mlp_run(
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    lab_tr: torch.Tensor,
    x_te: torch.Tensor,
    y_te: torch.Tensor,
    lab_te: torch.Tensor,
    width: int,
    weight_decay: float,
    steps: int,
    lr: float,
    horizons: tuple[int, ...],
    seed: int,
) -> dict[int, dict[str, float]]:
    """Train one MLP full-batch and return its errors at each horizon (step count)."""
    spec = MLPSpec(int(x_tr.shape[1]), (width,), N_CLASSES)
    model = build_mlp(spec, seed=derive_seed(seed, "init"))
    every = math.gcd(*horizons)
    at: dict[int, dict[str, float]] = {}

    @torch.no_grad()
    def record(step: int, m: torch.nn.Module) -> None:
        if step not in horizons:
            return
        m.eval()
        out_tr, out_te = m(x_tr), m(x_te)
        m.train()
        at[step] = {
            "train_mse": float(torch.mean((out_tr - y_tr) ** 2)),
            "test_mse": float(torch.mean((out_te - y_te) ** 2)),
            "train_err": float((out_tr.argmax(1) != lab_tr).float().mean()),
            "test_err": float((out_te.argmax(1) != lab_te).float().mean()),
        }

    cfg = TrainConfig(
        optimizer="adam",
        lr=lr,
        batch_size=int(x_tr.shape[0]),
        epochs=steps,
        weight_decay=weight_decay,
        loss="mse",
        n_curve_points=10,
    )
    res = train_model(model, x_tr, y_tr, cfg, seed=derive_seed(seed, "batches"), callback=record, callback_every=every)
    if res.diverged:
        return {}
    return at


def mlp_width_sweep(
    n_train: int,
    widths: tuple[int, ...],
    n_seeds: int,
    label_noise: tuple[float, ...],
    weight_decays: tuple[float, ...],
    steps: int,
    lr: float,
    horizons: tuple[int, ...],
    level: float,
    seed: int,
) -> dict[str, Any]:
    """One-hidden-layer MLP test/train error vs width, per label noise, weight decay and horizon."""
    split = load_digits_split(seed, n_train=n_train)
    n = int(split.x_train.shape[0])
    lab_te = split.y_test
    y_te = torch.nn.functional.one_hot(lab_te, N_CLASSES).float()
    widths = tuple(sorted(set(widths)))
    horizons = tuple(sorted(set(horizons)))
    params = [n_params(MLPSpec(split.d_in, (w,), N_CLASSES)) for w in widths]
    curves: list[dict[str, Any]] = []
    n_diverged = 0
    for q in label_noise:
        labs = [
            torch.as_tensor(
                noisy_labels(split.y_train.numpy(), q, N_CLASSES, as_generator(derive_seed(seed, "mlp-labels", q, r)))
            )
            for r in range(n_seeds)
        ]
        for wd in weight_decays:
            # res[h][stat]: (len(widths), n_seeds), NaN where a run diverged
            res = {
                h: {
                    k: np.full((len(widths), n_seeds), np.nan)
                    for k in ("train_mse", "test_mse", "train_err", "test_err")
                }
                for h in horizons
            }
            for i, w in enumerate(widths):
                for r in range(n_seeds):
                    lab = labs[r]
                    y_tr = torch.nn.functional.one_hot(lab, N_CLASSES).float()
                    at = _mlp_run(
                        split.x_train,
                        y_tr,
                        lab,
                        split.x_test,
                        y_te,
                        lab_te,
                        w,
                        wd,
                        steps,
                        lr,
                        horizons,
                        derive_seed(seed, "mlp", q, wd, w, r),
                    )
                    n_diverged += int(not at)
                    for h, vals in at.items():
                        for k, v in vals.items():
                            res[h][k][i, r] = v
            for h in horizons:
                ok = ~np.isnan(res[h]["test_mse"])
                cis = [
                    mean_ci(res[h]["test_mse"][i][ok[i]], level) if ok[i].sum() >= 2 else None
                    for i in range(len(widths))
                ]
                mean = [c.mean if c else None for c in cis]
                lo = [c.low if c else None for c in cis]
                hi = [c.high if c else None for c in cis]
                train_err = np.nanmean(res[h]["train_err"], axis=1)
                zero = [bool(np.all(res[h]["train_err"][i][ok[i]] == 0.0)) and ok[i].any() for i in range(len(widths))]
                emp = next((params[i] for i in range(len(widths)) if zero[i]), None)
                finite = all(m is not None for m in mean)
                curves.append(
                    {
                        "label_noise": q,
                        "weight_decay": wd,
                        "horizon": h,
                        "width": list(widths),
                        "params": params,
                        "params_over_nK": [p / (n * N_CLASSES) for p in params],
                        "test_mse": mean,
                        "test_mse_ci_low": lo,
                        "test_mse_ci_high": hi,
                        "test_err": np.nanmean(res[h]["test_err"], axis=1).tolist(),
                        "train_mse": np.nanmean(res[h]["train_mse"], axis=1).tolist(),
                        "train_err": train_err.tolist(),
                        "threshold_empirical_params": emp,
                        "peak": _peak([p / (n * N_CLASSES) for p in params], res[h]["test_mse"], level)
                        if finite
                        else None,
                        "test_mse_per_seed": [[_num(v) for v in row] for row in res[h]["test_mse"]],  # (widths, seeds)
                    }
                )
    return {
        "n_train": n,
        "n_classes": N_CLASSES,
        "threshold_theoretical_params": n * N_CLASSES,
        "widths": list(widths),
        "params": params,
        "n_seeds": n_seeds,
        "steps": steps,
        "lr": lr,
        "horizons": list(horizons),
        "weight_decays": list(weight_decays),
        "curves": curves,
        "n_diverged": n_diverged,
        "level": level,
    }
