"""ECE, temperature scaling and BBSE side by side with torchmetrics and netcal, on the same predictions.

Data: (a) the calibration lens's bundled subject (digits MLP trained past interpolation, quick
profile; its last iterate's validation and test logits), (b) synthetic overconfident logits
(n = 100 000, K = 10; labels drawn from softmax(z), logits multiplied by T0 = 2.5, so the true
temperature is 2.5), (c) the issue-3510 example (preds [0.95, 1.0], labels [1, 0]).

Compared (values and speed, as ratios; times are medians over repetitions, the box is shared so
the load average is recorded):

1. Top-label ECE, 15 equal-width bins: ``multilens.calibration.metrics.ece`` vs torchmetrics
   ``multiclass_calibration_error(norm="l1")`` and netcal ``metrics.ECE``. multilens puts a
   confidence of exactly 1.0 in the last bin; torchmetrics 1.9.0 (issue 3510) does not.
2. Temperature scaling: multilens ``fit_temperature`` (bounded Brent in log T) vs the reference
   recipe of Guo et al. 2017 (gpleiss/temperature_scaling: ``torch.optim.LBFGS(lr=0.01,
   max_iter=50)`` on T). torchmetrics has no temperature scaling; netcal's
   ``scaling.TemperatureScaling`` needs tensorboard/gpytorch, which this venv does not have
   (netcal 1.4.0 installed with --no-deps: only ``netcal.metrics`` imports), so it is skipped.
3. BBSE: multilens ``bbse`` vs the direct recipe of Lipton et al. 2018 (``np.linalg.solve`` of the
   joint confusion matrix), against known target priors. Neither torchmetrics nor netcal
   implements label-shift estimation.

Usage: .venv/bin/python benchmarks/bench_calibration.py [--reps 20] [--out benchmarks/results/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from multilens.lenses.calibration import metrics as M
from multilens.lenses.calibration.temperature import fit_temperature
from multilens.lenses.shift import estimators as E


def timed(fn: Callable[[], Any], reps: int) -> tuple[Any, float]:
    out = fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def torchmetrics_ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(
        multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y), num_classes=p.shape[1], n_bins=n_bins)
    )


def netcal_ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float | None:
    try:
        from netcal.metrics import ECE
    except Exception:  # netcal not installed
        return None
    return float(ECE(bins=n_bins).measure(p, y))


def guo_temperature(y: np.ndarray, z: np.ndarray) -> float:
    """The reference recipe (gpleiss/temperature_scaling): LBFGS(lr=0.01, max_iter=50) on T from 1.5."""
    logits = torch.as_tensor(z, dtype=torch.float64)
    labels = torch.as_tensor(y)
    t = torch.nn.Parameter(torch.ones(1, dtype=torch.float64) * 1.5)
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / t, labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.detach())


def lipton_bbse(yv: np.ndarray, hv: np.ndarray, ht: np.ndarray, k: int) -> np.ndarray:
    c = np.zeros((k, k))
    np.add.at(c, (hv, yv), 1.0 / yv.size)
    mu = np.bincount(ht, minlength=k) / ht.size
    w = np.linalg.solve(c, mu)
    return w * c.sum(0)


def synthetic(n: int, k: int, t0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, k)) * 1.5
    p = M.softmax(base)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1).clip(0, k - 1)
    return y, base * t0


def ece_row(name: str, y: np.ndarray, p: np.ndarray, reps: int) -> dict[str, Any]:
    ml, t_ml = timed(lambda: M.ece(y, p, 15), reps)
    tm, t_tm = timed(lambda: torchmetrics_ece(y, p), reps)
    nc, t_nc = timed(lambda: netcal_ece(y, p), reps)
    row = {"data": name, "n": int(y.size), "multilens": ml, "torchmetrics": tm, "netcal": nc,
           "multilens_s": t_ml, "torchmetrics_s": t_tm, "netcal_s": t_nc if nc is not None else None,
           "torchmetrics_minus_multilens": tm - ml, "speed_ratio_torchmetrics_over_multilens": t_tm / t_ml}  # fmt: skip
    if nc is not None:
        row |= {"netcal_minus_multilens": nc - ml, "speed_ratio_netcal_over_multilens": t_nc / t_ml}
    row["n_confidence_exactly_1"] = int(np.sum(p.max(1) == 1.0))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"host": platform.node(), "loadavg_start": os.getloadavg(), "reps": args.reps}

    # (c) issue 3510
    y2, p2 = M.as_probs([1, 0], probs=[0.95, 1.0])
    out["issue_3510"] = {"definition": 0.475, "multilens": M.ece(y2, p2, 15),
                         "torchmetrics": torchmetrics_ece(y2, p2), "netcal": netcal_ece(y2, p2)}  # fmt: skip

    # (a) the lens's bundled subject
    from multilens.lenses.calibration import Settings, default_subject

    subj = default_subject(Settings.for_profile("quick"), seed=0)
    yv, zv = subj.val.labels, np.asarray(subj.val.logits, np.float64)
    yt, zt = subj.test.labels, np.asarray(subj.test.logits, np.float64)
    ys, zs = synthetic(100_000, 10, 2.5, seed=1)
    out["ece"] = [
        ece_row("digits MLP, test split (float64 softmax)", yt, M.softmax(zt), args.reps),
        ece_row("digits MLP, test split (float32 softmax)", yt,
                torch.softmax(torch.as_tensor(zt, dtype=torch.float32), 1).double().numpy(), args.reps),
        ece_row("synthetic n=100000, K=10", ys, M.softmax(zs), max(3, args.reps // 4)),
    ]  # fmt: skip

    # Temperature scaling
    rows = []
    for name, (y, z, truth) in {"digits MLP, validation split": (yv, zv, None),
                                "synthetic n=100000 (T0 = 2.5)": (ys, zs, 2.5)}.items():  # fmt: skip
        f, t_ml = timed(lambda y=y, z=z: fit_temperature(y, z), max(3, args.reps // 4))
        tg, t_g = timed(lambda y=y, z=z: guo_temperature(y, z), max(3, args.reps // 4))
        nll_g = M.nll_logits(y, z / tg)
        rows.append({"data": name, "true_T": truth, "multilens_T": f.temperature,
                     "multilens_converged": f.converged,
                     "multilens_nfev": f.n_iter, "multilens_nll": f.nll_after, "guo_lbfgs_T": tg,
                     "guo_lbfgs_nll": nll_g,
                     "nll_guo_minus_multilens": nll_g - f.nll_after, "multilens_s": t_ml, "guo_lbfgs_s": t_g,
                     "speed_ratio_guo_over_multilens": t_g / t_ml})  # fmt: skip
    out["temperature"] = rows

    # BBSE on a known label shift of the synthetic data: target = class k kept with prob 0.6^k.
    rng = np.random.default_rng(2)
    yb, zb = synthetic(60_000, 10, 1.0, seed=3)
    hb = zb.argmax(1)
    val = np.arange(20_000)
    pool = np.arange(20_000, 60_000)
    keep = rng.random(pool.size) < 0.6 ** yb[pool]
    tgt = pool[keep]
    truth = np.bincount(yb[tgt], minlength=10) / tgt.size
    b, t_b = timed(lambda: E.bbse(yb[val], hb[val], hb[tgt], 10), args.reps)
    lp, t_l = timed(lambda: lipton_bbse(yb[val], hb[val], hb[tgt], 10), args.reps)
    out["bbse"] = {"n_val": int(val.size), "n_target": int(tgt.size), "true_priors": truth.tolist(),
                   "multilens_priors": b.priors.tolist(), "lipton_priors": lp.tolist(),
                   "multilens_l1_error": float(np.abs(b.priors - truth).sum()),
                   "lipton_l1_error": float(np.abs(lp - truth).sum()),
                   "max_abs_difference": float(np.abs(b.priors - lp).max()),
                   "condition_number": b.condition_number, "multilens_s": t_b, "lipton_s": t_l,
                   "speed_ratio_lipton_over_multilens": t_l / t_b}  # fmt: skip
    out["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
